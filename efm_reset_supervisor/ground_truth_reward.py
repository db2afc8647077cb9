"""Ground-truth reward (simulation only): the simulator's success as StepRewards, for fleets without a model.

A stand-in for the reward node when no trained reward model exists (``config/fleet_sim.yaml``): the episode
manager ends episodes on a StepReward's ``success`` and times them out at ``step == max_steps``, so
something must publish StepRewards. This node turns each ``sim/ground_truth_success`` (one per policy
step while an episode runs) into a StepReward of the current task's episode: ``step`` counts them from 0,
``success`` is the simulator's truth, ``steps_to_go`` 0 on success and NaN otherwise (no model estimates
it), ``reward`` 0, ``reward_model_version`` "ground_truth". Hardware has no ground truth: run the reward node.

Topics (robot namespace):
  subscribes task (efm_msgs/Task, latched), sim/ground_truth_success (std_msgs/Bool)
  publishes  reward (efm_msgs/StepReward, reliable)
Run: in a sim graph, ``- executable: ground_truth_reward`` next to ``sim`` and ``episode_manager``.
"""
from __future__ import annotations

from efm_runtime import COMMANDS, LATCHED, Node, NodeOptions, get_message, run_node

Task = get_message("efm_msgs/msg/Task")
StepReward = get_message("efm_msgs/msg/StepReward")
Header = get_message("std_msgs/msg/Header")
Bool = get_message("std_msgs/msg/Bool")


class GroundTruthReward(Node):
    default_name = "ground_truth_reward"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        self._episode_id, self._step = "", 0
        self._pub = self.create_publisher(StepReward, "reward", COMMANDS)
        self.create_subscription(Task, "task", self._on_task, LATCHED)
        self.create_subscription(Bool, "sim/ground_truth_success", self._on_truth, COMMANDS)

    def _on_task(self, msg) -> None:
        self._episode_id, self._step = msg.episode_id, 0

    def _on_truth(self, msg) -> None:
        if not self._episode_id:
            return
        success = bool(msg.data)
        self._pub.publish(StepReward(
            header=Header(stamp=self.get_clock().now().to_msg()), episode_id=self._episode_id, step=self._step,
            steps_to_go=0.0 if success else float("nan"), reward=0.0, success=success, success_threshold=0.0,
            success_streak=int(success), frame_late=False, reward_model_version="ground_truth"))
        self._step += 1


def main(args=None):
    return run_node(GroundTruthReward, args)
