"""Seeded simulated episodes: reset the scene, announce the task, end on ground-truth success or the
step limit, whatever drives the robot (the scripted oracle for demos, a policy node for evaluation).

``sim_episodes`` in a graph runs seeds ``first_seed``, ``first_seed + 1``, ... (``episodes`` of them,
0 = until stopped) of ``task_family`` and logs each outcome with the running success rate. Simulation
only: it ends episodes on the simulator's ground truth (``sim/ground_truth_success``), which a real
robot does not have; there the episode manager ends them on the reward model's success detector.

Topics (robot namespace): calls ``reset_scene``; subscribes ``scene_ready``, ``sim/ground_truth_success``,
``action`` (for the policy version) and ``/clock``; publishes ``task`` and ``episode``.
Parameters (graph use): ``task_family`` (""), ``first_seed`` (1), ``episodes`` (0), ``max_steps`` (200),
``embodiment`` ("").
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from efm_runtime import COMMANDS, LATCHED, Node, NodeOptions, Time, get_message, get_service, run_node

Task = get_message("efm_msgs/msg/Task")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
Header = get_message("std_msgs/msg/Header")
String = get_message("std_msgs/msg/String")
Bool = get_message("std_msgs/msg/Bool")
Clock = get_message("rosgraph_msgs/msg/Clock")
ResetScene = get_service("efm_msgs/srv/ResetScene")


def episode_id(env: str, task: str, seed: int) -> str:
    return f"{env}-{task or 'any'}-{seed:06d}"


@dataclass(frozen=True)
class DemoJob:
    env: str
    task: str
    seeds: Iterable[int]
    out_dir: str
    noise: float = 0.0
    max_steps: int = 0  # 0 = the environment's limit


class DemoDirector(Node):
    """Runs one episode per seed: reset scene -> task -> end on ground-truth success or step limit.
    Given a ``job`` (demo recording) it takes its seeds from it, otherwise from its parameters."""

    default_name = "demo_director"

    def __init__(self, options: NodeOptions | None = None, job: DemoJob | None = None, on_episode=None) -> None:
        super().__init__(self.default_name, options)
        self._announce = job is None          # in a graph: say how each episode went
        if job is None:
            job = self._job_from_parameters()
        self.job, self._on_episode = job, on_episode
        self._seeds = iter(job.seeds)
        self._policy_version = "oracle"
        self.outcomes: list[bool] = []
        self._reset = self.create_client(ResetScene, "reset_scene")
        self._task_pub = self.create_publisher(Task, "task", COMMANDS)
        self._status_pub = self.create_publisher(EpisodeStatus, "episode", COMMANDS)
        self.create_subscription(String, "scene_ready", self._on_scene_ready, LATCHED)
        self.create_subscription(Bool, "sim/ground_truth_success", self._on_truth, COMMANDS)
        self.create_subscription(Clock, "/clock", self._on_clock, COMMANDS)
        self.create_subscription(ActionChunk, "action", self._on_action, COMMANDS)
        self._current: dict | None = None
        self._ready_instruction: str | None = None
        self._sim_ns = 0
        self.done = False
        self.failed: str | None = None
        self.create_wall_timer(0.01, self._start_next_if_idle)

    def _job_from_parameters(self) -> DemoJob:
        family = self.declare_parameter("task_family", "", description="task family of every episode; empty = any").value
        first = self.declare_parameter("first_seed", 1, min=1, description="scene seed of the first episode").value
        count = self.declare_parameter("episodes", 0, min=0, description="episodes to run; 0 = until stopped").value
        max_steps = self.declare_parameter("max_steps", 200, min=1, description="policy steps before a time-out").value
        embodiment = self.declare_parameter("embodiment", "", description="written into each Task").value
        seeds = itertools.count(first) if count == 0 else range(first, first + count)
        return DemoJob(embodiment, family, seeds, out_dir="", max_steps=max_steps)

    def _on_clock(self, msg) -> None:
        self._sim_ns = Time.from_msg(msg.clock).nanoseconds

    def _on_action(self, msg) -> None:
        self._policy_version = msg.policy_version or self._policy_version

    def _start_next_if_idle(self) -> None:
        if self._current is not None or self.done:
            return
        seed = next(self._seeds, None)
        if seed is None:
            self.done = True
            return
        # steps counts policy steps: the first ground-truth reading belongs to the episode's first frame
        self._current = {"seed": seed, "id": episode_id(self.job.env, self.job.task, seed), "steps": -1,
                         "instruction": None, "started": False}
        future = self._reset.call_async(ResetScene.Request(seed=seed, task_family=self.job.task))
        future.add_done_callback(self._on_reset_answer)

    def _on_reset_answer(self, future) -> None:
        response = future.result()
        if not response.success:
            self.failed = f"scene reset for seed {self._current['seed']} refused: {response.message}"
            self.done = True
            return
        self._current["instruction"] = response.instruction
        self._current["family"] = response.task_family
        self._start_if_ready()

    def _on_scene_ready(self, msg) -> None:
        self._ready_instruction = msg.data
        self._start_if_ready()

    def _start_if_ready(self) -> None:
        """The reset answer and scene_ready may arrive in either order; start once both are in."""
        current = self._current
        if current is None or current["started"] or current["instruction"] is None \
                or current["instruction"] != self._ready_instruction:
            return
        current["started"] = True
        self._ready_instruction = None
        self._task_pub.publish(Task(
            header=Header(stamp=Time(self._sim_ns).to_msg()), robot=self.get_namespace().strip("/"),
            episode_id=current["id"], instruction=current["instruction"], task_family=current["family"],
            embodiment=self.job.env, max_steps=self.job.max_steps, seed=current["seed"]))

    def _on_truth(self, msg) -> None:
        current = self._current
        if current is None or not current["started"]:
            return
        current["steps"] += 1
        if msg.data or current["steps"] >= self.job.max_steps:
            state = EpisodeStatus.STATE_SUCCEEDED if msg.data else EpisodeStatus.STATE_TIMED_OUT
            self._status_pub.publish(EpisodeStatus(
                header=Header(stamp=Time(self._sim_ns).to_msg()), robot=self.get_namespace().strip("/"),
                episode_id=current["id"], instruction=current["instruction"], state=state,
                detector_success=bool(msg.data), steps=current["steps"], policy_version=self._policy_version))
            self._current = None
            self.outcomes.append(bool(msg.data))
            if self._announce:
                self.get_logger().info(
                    f"episode {current['id']} {'succeeded' if msg.data else 'timed out'} after {current['steps']} "
                    f"steps ({self._policy_version}); success {sum(self.outcomes)}/{len(self.outcomes)}")
            if self._on_episode is not None:
                self._on_episode(current["id"], bool(msg.data), current["steps"])


def main(args=None) -> None:
    run_node(DemoDirector, args)
