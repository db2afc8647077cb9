"""Episode manager node: starts, ends and resets one robot's episodes and serves the operator's commands.

Per docs/stage2_contract.md: after a scene reset (its own ``reset_scene`` call answered and
``scene_ready`` published, with ``auto_reset``; or a human's ``reset_done``) the robot is ready; the
episode starts at once (``auto_start``) or on ``start_episode``: a ``Task`` with a new episode id
(``<robot>-<UTC yyyymmddThhmmss>-<counter:05d>``) and the ``running`` status go out. The episode ends on
the reward node's success (the StepReward whose ``success`` is true), on time-out (the StepReward with
``step == max_steps``: the observation after the last action, so every action has its reward), when no
StepReward came for ``reward_timeout_s`` (aborted), or on an operator e-stop. Then the next scene reset
(seed ``first_seed + k * seed_stride``). The decisions live in :mod:`efm_reset_supervisor.episode_manager`;
this file only turns messages and service calls into plain data and back.

Topics (robot namespace):
  subscribes reward       efm_msgs/StepReward: success and time-out end the episode
             action       efm_msgs/ActionChunk: the policy version and step count of the episode
             scene_ready  std_msgs/String (latched): the scene of the last reset_scene call is ready
  publishes  task         efm_msgs/Task, reliable transient-local (latched), once per episode start
             episode      efm_msgs/EpisodeStatus, reliable transient-local (latched), at every state change
Services (robot namespace): start_episode (StartEpisode), reset_done (ResetDone; while e-stopped it clears
  the e-stop), pause, resume, estop (RobotCommand), label_episode (LabelEpisode). An illegal request is
  answered accepted=false with the reason and changes nothing. Calls reset_scene (ResetScene).
Parameters: robot ("": the namespace), embodiment (""), task_family (""), max_steps (200),
  auto_reset (true), auto_start (true), first_seed (1), seed_stride (1), instructions ([]),
  end_on_success (true), reward_timeout_s (10.0; 0 = never), episodes (0 = forever).
Run: ``ros2 run efm episode_manager --ros-args -r __ns:=/robot_a -p embodiment:=language_table`` or in a
graph (``efm up config/...yaml``) next to ``sim``, ``policy`` and ``reward``.
"""
from __future__ import annotations

import time

from efm_runtime import COMMANDS, LATCHED, Node, NodeOptions, ParameterError, Time, get_message, get_service, run_node

from .episode_manager import (ERROR, INFO, WARNING, EpisodeManager, ManagerSettings, Reply, ResetRequest, Status,
                              TaskInfo)

Header = get_message("std_msgs/msg/Header")
String = get_message("std_msgs/msg/String")
Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
StepReward = get_message("efm_msgs/msg/StepReward")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
ResetScene = get_service("efm_msgs/srv/ResetScene")
ResetDone = get_service("efm_msgs/srv/ResetDone")
StartEpisode = get_service("efm_msgs/srv/StartEpisode")
RobotCommand = get_service("efm_msgs/srv/RobotCommand")
LabelEpisode = get_service("efm_msgs/srv/LabelEpisode")

REWARD_TOPIC, ACTION_TOPIC, SCENE_READY_TOPIC = "reward", "action", "scene_ready"
TASK_TOPIC, EPISODE_TOPIC = "task", "episode"
RESET_SCENE = "reset_scene"
TICK_S = 0.1      # reward watchdog and reset retries; a wall timer, so it runs while sim time stands still


class EpisodeManagerNode(Node):
    default_name = "episode_manager"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        p = self.declare_parameter
        robot = p("robot", "", description="robot name in tasks, statuses and episode ids; empty: the namespace").value
        settings = dict(
            embodiment=p("embodiment", "", description="embodiment written into each Task "
                                                       "(language_table, aloha)").value,
            task_family=p("task_family", "", description="task family of scene resets and tasks; empty = any").value,
            max_steps=p("max_steps", 200, min=1, max=1_000_000,
                        description="policy steps of an episode; it times out at the StepReward with this step").value,
            auto_reset=p("auto_reset", True, description="true: call reset_scene and wait for scene_ready (sim, "
                                                         "scripted reset); false: wait for a human's reset_done").value,
            auto_start=p("auto_start", True, description="true: start as soon as the scene is ready; false: wait "
                                                         "for start_episode").value,
            first_seed=p("first_seed", 1, min=0, description="seed of the first scene reset").value,
            seed_stride=p("seed_stride", 1, min=1, max=1_000_000, description="seeds go first_seed, first_seed + "
                          "stride, ...: give the robots of a fleet distinct first seeds and stride = fleet size").value,
            instructions=tuple(p("instructions", [], type="string_array",
                                 description="instructions used when the scene reset supplies none (hardware); "
                                             "episode k takes entry seed_k % len").value),
            end_on_success=p("end_on_success", True, description="end an episode at its first detected success; "
                                                                 "false: run every episode to max_steps").value,
            reward_timeout_s=p("reward_timeout_s", 10.0, min=0.0, max=3600.0,
                               description="abort a running episode when no StepReward came for this long "
                                           "(node clock: sim time under use_sim_time); 0 = never").value,
            episodes=p("episodes", 0, min=0, description="episodes to run; 0 = forever").value,
        )
        robot = robot.strip("/") or self.get_namespace().strip("/")
        if not robot:
            raise ParameterError("parameter 'robot' is empty and the node runs in the root namespace: give the robot "
                                 "a name (-p robot:=robot_a) or run it in the robot's namespace (-r __ns:=/robot_a)")
        reward_topic = f"{self.get_namespace().rstrip('/')}/{REWARD_TOPIC}"
        try:
            self.settings = ManagerSettings(robot=robot, reward_topic=reward_topic, **settings)
        except ValueError as exc:
            raise ParameterError(f"episode_manager parameters: {exc}") from None

        self._task_pub = self.create_publisher(Task, TASK_TOPIC, LATCHED)
        self._status_pub = self.create_publisher(EpisodeStatus, EPISODE_TOPIC, LATCHED)
        self._reset_client = self.create_client(ResetScene, RESET_SCENE)
        wall = getattr(self.context, "wall", None)    # the embedded context's (a manual one in tests)
        self.core = EpisodeManager(self.settings, _NodeOutputs(self), wall.time_ns if wall is not None else time.time_ns)

        self.create_subscription(StepReward, REWARD_TOPIC, self._on_reward, COMMANDS)
        self.create_subscription(ActionChunk, ACTION_TOPIC, self._on_action, COMMANDS)
        self.create_subscription(String, SCENE_READY_TOPIC, self._on_scene_ready, LATCHED)
        self.create_service(StartEpisode, "start_episode", self._on_start_episode)
        self.create_service(ResetDone, "reset_done", self._on_reset_done)
        self.create_service(RobotCommand, "pause", lambda q, a: self._command(self.core.pause, q, a))
        self.create_service(RobotCommand, "resume", lambda q, a: self._command(self.core.resume, q, a))
        self.create_service(RobotCommand, "estop", lambda q, a: self._command(self.core.estop, q, a))
        self.create_service(LabelEpisode, "label_episode", self._on_label)
        self.core.begin(self._now())
        self.create_wall_timer(TICK_S, lambda: self.core.tick(self._now()))
        mode = "reset_scene" if self.settings.auto_reset else "a human's reset_done"
        self.get_logger().info(f"episode manager for {robot}: scenes by {mode}, "
                               f"{'auto' if self.settings.auto_start else 'start_episode'} start, "
                               f"max_steps {self.settings.max_steps}, seeds {self.settings.first_seed} + k * "
                               f"{self.settings.seed_stride}")

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    # ---- inputs --------------------------------------------------------------------------------
    def _on_reward(self, msg) -> None:
        self.core.on_reward(msg.episode_id, int(msg.step), bool(msg.success), self._now())

    def _on_action(self, msg) -> None:
        self.core.on_action(msg.episode_id, int(msg.step), msg.policy_version)

    def _on_scene_ready(self, msg) -> None:
        self.core.on_scene_ready(msg.data, self._now())

    def _on_reset_answer(self, token: int, future) -> None:
        try:
            answer = future.result()
        except Exception as exc:  # noqa: BLE001 (the server vanished or raised: the core retries)
            self.core.on_reset_answer(token, False, f"{RESET_SCENE} failed: {exc}", "", "", self._now())
            return
        self.core.on_reset_answer(token, bool(answer.success), answer.message, answer.instruction,
                                  answer.task_family, self._now())

    # ---- services ------------------------------------------------------------------------------
    def _on_start_episode(self, request, response):
        reply = self.core.start_episode(request.robot, request.instruction, request.task_family,
                                        int(request.max_steps), int(request.seed), self._now())
        response.episode_id = reply.episode_id if reply.accepted else ""
        return _answer(response, reply)

    def _on_reset_done(self, request, response):
        return _answer(response, self.core.reset_done(request.robot, request.episode_id, self._now()))

    def _command(self, action, request, response):
        return _answer(response, action(request.robot, request.reason, self._now()))

    def _on_label(self, request, response):
        return _answer(response, self.core.label(request.robot, request.episode_id, int(request.label), self._now()))


class _NodeOutputs:
    """What the core says, as messages and service calls of the node."""

    def __init__(self, node: EpisodeManagerNode) -> None:
        self.node = node

    def publish_task(self, task: TaskInfo) -> None:
        self.node._task_pub.publish(Task(
            header=Header(stamp=Time(task.stamp_ns).to_msg()), robot=task.robot, episode_id=task.episode_id,
            instruction=task.instruction, task_family=task.task_family, embodiment=task.embodiment,
            max_steps=task.max_steps, seed=task.seed))

    def publish_status(self, status: Status) -> None:
        self.node._status_pub.publish(EpisodeStatus(
            header=Header(stamp=Time(status.stamp_ns).to_msg()), robot=status.robot, episode_id=status.episode_id,
            instruction=status.instruction, state=int(status.state), human_label=status.human_label,
            detector_success=status.detector_success, steps=status.steps, policy_version=status.policy_version,
            started=Time(status.started_ns).to_msg(), message=status.message))

    def request_reset(self, request: ResetRequest) -> bool:
        client = self.node._reset_client
        if not client.service_is_ready():
            return False
        future = client.call_async(ResetScene.Request(
            seed=request.seed, task_family=request.task_family, instruction=request.instruction))
        future.add_done_callback(lambda f, token=request.token: self.node._on_reset_answer(token, f))
        return True

    def log(self, level: str, text: str) -> None:
        logger = self.node.get_logger()
        {INFO: logger.info, WARNING: logger.warning, ERROR: logger.error}[level](text)


def _answer(response, reply: Reply):
    response.accepted, response.message = reply.accepted, reply.message
    return response


def main(args=None):
    return run_node(EpisodeManagerNode, args)
