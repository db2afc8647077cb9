"""Reward node: the frozen steps-to-go model's reward and success for every policy step of an episode.

From a ``task`` (goal g = Task.instruction; each Task starts a new episode at step 0) until a terminal
``episode`` status, the node evaluates d(o_t, g) with the frozen Stage 1 reward graph (``reward.onnx``
of ``model_dir``, run by ONNX Runtime) on one observation per policy step and publishes one StepReward
for it: ``step`` counts evaluated frames since the task, ``header.stamp`` is the frame's stamp,
``reward`` = d(o_{t-1}, g) - d(o_t, g) (0 at step 0; 0 and ``frame_late`` for a frame that came after a
gap of more than 1.5 periods or is older than ``max_observation_age_s``), ``success`` when d <=
``success_threshold`` held for ``success_streak`` steps, ``reward_model_version`` = the manifest's
version. The rules live in :mod:`efm_reward.core`; the learner pays action t with StepReward t+1.

When it evaluates: with ``synchronized_inputs`` (default: use_sim_time; the lock-step simulator stamps
every input of an observation alike and each observation is one policy step) every new observation,
as soon as all its cameras and the proprio are in; otherwise (real time) a timer at ``rate_hz`` takes
the newest observation, if it was not evaluated yet. While the episode is paused nothing is evaluated.

The reward model is frozen for Stage 2: it is loaded once at start-up and never swapped. A model that
cannot be loaded (no model_dir, a missing or corrupt file, another embodiment) is an error in the log,
said again at every task; the node keeps running and publishes nothing. A refused input (not rgb8, an
image whose size and data disagree, NaN or wrong-length proprio) or an observation the model refuses
(an instruction it cannot embed) is logged as an error and nothing is published for that frame.

``first_frame_successes`` counts episodes whose first frame already had d <= s (a warning says it too):
a sign that s is miscalibrated (see ``efm_reward.core.calibrate_threshold``).

Topics (robot namespace):
  subscribes camera/<name>/image_raw  sensor_msgs/Image rgb8, sensor-data QoS (each camera of the model)
             effector | joint_states  geometry_msgs/PointStamped | sensor_msgs/JointState (proprio_topic)
             task                     efm_msgs/Task: starts an episode (episode_id, instruction = goal)
             episode                  efm_msgs/EpisodeStatus: a terminal state ends it, PAUSED holds
  publishes  reward                   efm_msgs/StepReward, reliable, one per evaluated step
Parameters: model_dir (the frozen Stage 1 export), embodiment ("": the model's), success_threshold (2.0
  policy steps), success_streak (3), rate_hz (10.0), max_observation_age_s (0.2), proprio_topic
  ("effector" or "joint_states"), synchronized_inputs (use_sim_time).
Run: ``ros2 run efm reward --ros-args -p model_dir:=/models/sft-0000 -p success_threshold:=2.0`` or, in a
graph, an entry ``- executable: reward`` with those parameters (``efm up config/....yaml``).
"""
from __future__ import annotations

import time


from efm_policy.preprocess import proprio_from_message, rgb8_image
from efm_runtime import COMMANDS, SENSOR_DATA, Node, NodeOptions, ParameterError, Time, get_message, run_node

from .core import ERROR, INFO, WARNING, DetectorSettings, RewardTracker
from .observations import Observations, Ready, Refused

Image = get_message("sensor_msgs/msg/Image")
JointState = get_message("sensor_msgs/msg/JointState")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Header = get_message("std_msgs/msg/Header")
StepReward = get_message("efm_msgs/msg/StepReward")
Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")

REWARD_TOPIC = "reward"
TASK_TOPIC = "task"
EPISODE_TOPIC = "episode"
PROPRIO_TYPES = {"effector": PointStamped, "joint_states": JointState}
TERMINAL_STATES = {EpisodeStatus.STATE_SUCCEEDED, EpisodeStatus.STATE_FAILED, EpisodeStatus.STATE_TIMED_OUT,
                   EpisodeStatus.STATE_ABORTED, EpisodeStatus.STATE_ESTOPPED}
REPEAT_S = 5.0   # a repeated error or late-frame warning is said again at most this often


def load_reward_model(model_dir: str, embodiment: str, log):
    """The frozen reward graph of ``model_dir`` (every file's sha256 checked); raises naming the problem."""
    from efm_policy.manifest import ModelDirError
    from efm_policy.runtime import RewardRuntime

    if not model_dir:
        raise ModelDirError("parameter model_dir is empty: set it to the frozen Stage 1 export (efm export)")
    return RewardRuntime(model_dir, expected_embodiment=embodiment or None, log=log)


class RewardNode(Node):
    default_name = "reward"

    def __init__(self, options: NodeOptions | None = None, *, load=load_reward_model) -> None:
        """``load(model_dir, embodiment, log)`` replaces the ONNX loader (tests, benchmarks)."""
        super().__init__(self.default_name, options)
        model_dir = self.declare_parameter("model_dir", "", description="the frozen Stage 1 export whose "
                                           "reward.onnx gives d(o, g); loaded once, never swapped").value
        embodiment = self.declare_parameter("embodiment", "", description="embodiment this robot is; a model "
                                            "for another is refused (empty: the model's)").value
        threshold = self.declare_parameter("success_threshold", 2.0, min=0.0, max=10000.0,
                                           description="s: success when d <= s (policy steps)").value
        streak = self.declare_parameter("success_streak", 3, min=1, max=1000,
                                        description="k: ... for k consecutive evaluated steps").value
        rate_hz = self.declare_parameter("rate_hz", 10.0, min=0.1, max=1000.0,
                                         description="policy rate: one evaluation per period").value
        max_age = self.declare_parameter("max_observation_age_s", 0.2, min=0.001, max=60.0,
                                         description="an older frame is published late, with reward 0").value
        self._proprio_topic = self.declare_parameter("proprio_topic", "effector",
                                                     description="effector or joint_states").value
        synchronized = self.declare_parameter(
            "synchronized_inputs", bool(self.get_parameter("use_sim_time").value),
            description="every input of an observation carries one stamp (the lock-step simulator): evaluate "
                        "each observation once all its inputs are in (default: use_sim_time)").value
        if self._proprio_topic not in PROPRIO_TYPES:
            raise ParameterError(f"parameter 'proprio_topic' must be one of {sorted(PROPRIO_TYPES)}, "
                                 f"got {self._proprio_topic!r}")
        try:
            settings = DetectorSettings(threshold, streak, rate_hz, max_age)
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        self.tracker = RewardTracker(settings, log=self._log)

        self.model, self._model_error = None, ""
        try:
            self.model = load(model_dir, embodiment, self.get_logger().info)
        except Exception as exc:  # ModelDirError, OSError, ONNX Runtime: keep running, say why at every task
            self._model_error = f"no reward model, publishing no rewards: {exc}"
            self.get_logger().error(self._model_error)
        self.observations = None
        if self.model is not None:
            config = self.model.config
            self.observations = Observations(config.cameras, config.history, config.proprio_dim, synchronized,
                                             self._proprio_topic)
            self.get_logger().info(f"reward model {self.model.version}: cameras {', '.join(config.cameras)}, "
                                   f"s = {threshold:g} steps for {streak} steps, "
                                   f"{'every synchronized observation' if synchronized else f'{rate_hz:g} Hz'}")

        self._instruction = ""
        self._paused = False
        self.published = 0
        self.last_inference_ms = 0.0
        self._pub = self.create_publisher(StepReward, REWARD_TOPIC, COMMANDS)
        self.create_subscription(Task, TASK_TOPIC, self._on_task, COMMANDS)
        self.create_subscription(EpisodeStatus, EPISODE_TOPIC, self._on_episode, COMMANDS)
        if self.observations is not None:
            self.create_subscription(PROPRIO_TYPES[self._proprio_topic], self._proprio_topic, self._on_proprio,
                                     SENSOR_DATA)
            for camera in self.model.config.cameras:
                self.create_subscription(Image, f"camera/{camera}/image_raw",
                                         lambda msg, c=camera: self._on_image(c, msg), SENSOR_DATA)
            if not synchronized:
                self.create_timer(1.0 / rate_hz, self._evaluate)

    @property
    def first_frame_successes(self) -> int:
        """Episodes whose first frame already had d <= success_threshold (a miscalibrated s)."""
        return self.tracker.first_frame_successes

    @property
    def reward_model_version(self) -> str:
        return self.model.version if self.model is not None else ""

    # ---- episodes ------------------------------------------------------------------------------
    def _on_task(self, msg) -> None:
        if self._model_error:
            self.get_logger().error(f"episode {msg.episode_id}: {self._model_error}")
            return
        if self.tracker.episode_id:
            self._finish(f"replaced by task {msg.episode_id}")
        self.tracker.start_episode(msg.episode_id)
        self.observations.start_episode()
        self._instruction, self._paused = msg.instruction, False
        self._evaluate_synchronized()   # its first observation may already be in

    def _on_episode(self, msg) -> None:
        if msg.episode_id != self.tracker.episode_id:
            return
        if msg.state in TERMINAL_STATES:
            self._finish("ended")
        elif msg.state in (EpisodeStatus.STATE_PAUSED, EpisodeStatus.STATE_RUNNING):
            self._paused = msg.state == EpisodeStatus.STATE_PAUSED

    def _finish(self, how: str) -> None:
        episode_id, steps = self.tracker.episode_id, self.tracker.steps
        self.tracker.end_episode(episode_id)
        self.get_logger().info(f"episode {episode_id} {how}: {steps} rewards published")

    # ---- inputs --------------------------------------------------------------------------------
    def _on_image(self, camera: str, msg) -> None:
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        try:
            self.observations.add_frame(camera, stamp_ns, rgb8_image(msg, "the reward model"))
        except ValueError as exc:
            self.observations.reject_frame(camera, stamp_ns, str(exc))
        self._evaluate_synchronized()

    def _on_proprio(self, msg) -> None:
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        try:
            self.observations.set_proprio(stamp_ns, proprio_from_message(msg).tolist())
        except ValueError as exc:
            self.observations.reject_proprio(stamp_ns, str(exc))
        self._evaluate_synchronized()

    def _evaluate_synchronized(self) -> None:
        if self.observations.synchronized:
            self._evaluate()

    # ---- evaluation ----------------------------------------------------------------------------
    def _evaluate(self) -> None:
        """Evaluate the newest observation if there is a new one to evaluate; publish its StepReward."""
        if not self.tracker.episode_id or self._paused:
            return
        observation = self.observations.next()
        if observation is None:
            return
        if isinstance(observation, Refused):
            self.get_logger().error(f"not evaluating the frame at {observation.stamp_ns / 1e9:.3f} s: "
                                    f"{observation.problem}", throttle_duration_sec=REPEAT_S)
            return
        try:
            d = self._steps_to_go(observation)
            result = self.tracker.step(d, observation.stamp_ns, self.get_clock().now().nanoseconds,
                                       observation.oldest_ns)
        except ValueError as exc:  # ObservationError (an instruction it cannot embed), non-finite d
            self.get_logger().error(f"{self.reward_model_version} refused the frame at "
                                    f"{observation.stamp_ns / 1e9:.3f} s: {exc}", throttle_duration_sec=REPEAT_S)
            return
        self.observations.evaluated(observation)
        if result.frame_late:
            self.get_logger().warning(f"episode {result.episode_id} step {result.step}: frame late, reward 0: "
                                      f"{result.late_reason}", throttle_duration_sec=REPEAT_S)
        self._pub.publish(StepReward(
            header=Header(stamp=Time(result.stamp_ns).to_msg()), episode_id=result.episode_id, step=result.step,
            steps_to_go=result.steps_to_go, reward=result.reward, success=result.success,
            success_threshold=result.success_threshold, success_streak=result.success_streak,
            frame_late=result.frame_late, reward_model_version=self.reward_model_version))
        self.published += 1

    def _steps_to_go(self, observation: Ready) -> float:
        started = time.perf_counter()
        d, _ = self.model.steps_to_go(observation.frames, observation.proprio, self._instruction)
        self.last_inference_ms = (time.perf_counter() - started) * 1e3
        return d

    def _log(self, level: str, text: str) -> None:
        logger = self.get_logger()
        {INFO: logger.info, WARNING: logger.warning, ERROR: logger.error}[level](text)


def main(args=None):
    return run_node(RewardNode, args)
