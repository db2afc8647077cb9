"""Policy node: runs the exported policy at a fixed rate on the newest camera frames and proprio.

While an episode runs (from ``task`` to a terminal ``episode`` status, at most the task's ``max_steps``
chunks) a timer at ``rate_hz`` on the node clock (sim time under use_sim_time) takes the newest frames
of each camera the model needs (its ``history`` newest, oldest first) and the newest proprio, refuses
an observation with an input older than ``max_observation_age_s`` (said once per episode) or an input
that was refused on arrival (wrong image encoding or size, NaN proprio), and publishes one ActionChunk.
The decisions live in :mod:`efm_policy.policy_loop`; this file only turns messages into plain data and back.

One chunk per observation: an observation (named by its newest frame's stamp) is answered at most once
per episode. A tick that finds the newest observation already answered (or incomplete, below) publishes
nothing and leaves a credit: the frame or proprio that completes the next observation spends it, and
the chunk is published from that callback at once (same checks), not at the next tick. In real time a
tick that fires just before a frame thus acts when the frame arrives instead of answering the old frame
again, never more than one chunk per tick. A lock-step simulator (use_sim_time) advances /clock, which
fires the tick, and only then publishes the next observation and waits for the chunk stamped with it:
each observation is answered as soon as it is in, so the simulation runs as fast as inference allows
(the episode's first observation, published when the task comes and before /clock moves, is answered
at once without a tick). That needs ``rate_hz`` at least the simulator's policy rate (one tick per
simulated step). No chunk follows the task's ``max_steps``-th: the episode manager ends the episode on
the next observation, and a lock-step simulator must not execute one more step for it.

``synchronized_inputs`` (default: the value of use_sim_time): every input of one observation carries
the same stamp, as the simulator publishes them. An observation is then complete, and acted on, only
when every camera the model uses and the proprio have arrived with the newest frame's stamp, all since
the episode started (the simulator stamps a new scene's first observation like the last one it showed
before the reset). Set it false for sim time with independently stamped sensors (a warning says so
when three ticks in a row find no complete observation). Without it (real time) inputs are taken as
they are, as asynchronous drivers stamp them.

ActionChunk fields: header.stamp = stamp of the newest frame the chunk answers (as the message
defines it; the lock-step simulator matches it to the observation it published), ``step`` counts
chunks within the episode, values clamped to the tokenizer's [low, high], ``latency_ms`` = node
clock at publish minus that frame stamp (observation-to-action latency), ``inference_ms`` = model time.

Model hot-swap: a ``policy_version`` message or a ``load_policy`` call is checked at once (manifest
present, its sha256 equal to ``manifest_sha256`` when given, version and embodiment as named) and then
loaded on a background thread, which verifies every file's sha256 and opens ONNX Runtime; the timer
keeps ticking with the old model meanwhile. The new model becomes active when it is loaded if no
episode runs, else when the next episode starts (``at_episode_boundary: false``: at once), so every
chunk of an episode carries one policy_version. Any failure keeps the running model and is logged as
an error. The ``load_policy`` reply comes before the load finishes: accepted=True means "checked,
loading started" (its message says so, and when it will become active); a failure found later is in
the log only.

Topics (robot namespace):
  subscribes camera/<name>/image_raw  sensor_msgs/Image rgb8, sensor-data QoS (each camera the model uses)
             effector | joint_states  geometry_msgs/PointStamped | sensor_msgs/JointState (proprio_topic)
             task                     efm_msgs/Task: starts an episode (episode_id, instruction)
             episode                  efm_msgs/EpisodeStatus: a terminal state ends it, PAUSED holds
             policy_version           efm_msgs/PolicyVersion (latched): hot-swap to this model
  publishes  action                   efm_msgs/ActionChunk, reliable
  service    load_policy              efm_msgs/srv/LoadPolicy
Parameters: model_dir (""; empty: idle until a model arrives), embodiment ("": the first model's),
  rate_hz (10.0), max_observation_age_s (0.2), temperature (1.0), greedy (false), seed (0),
  proprio_topic ("effector" or "joint_states"), synchronized_inputs (use_sim_time).
Run: ``ros2 run efm policy --ros-args -p model_dir:=/models/sft-0001`` or, with the simulator,
``efm up config/sim_language_table_policy.yaml``.
"""
from __future__ import annotations

from collections.abc import Callable

from efm_runtime import (COMMANDS, LATCHED, SENSOR_DATA, Node, NodeOptions, ParameterError, Time, get_message,
                         get_service, run_node)

from .manifest import ModelDirError
from .policy_loop import ERROR, INFO, WARNING, LoopSettings, ModelRequest, PolicyLoop, check_model_dir, load_model
from .preprocess import proprio_from_message, rgb8_image

Image = get_message("sensor_msgs/msg/Image")
JointState = get_message("sensor_msgs/msg/JointState")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Header = get_message("std_msgs/msg/Header")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
PolicyVersion = get_message("efm_msgs/msg/PolicyVersion")
LoadPolicy = get_service("efm_msgs/srv/LoadPolicy")

ACTION_TOPIC = "action"
TASK_TOPIC = "task"
EPISODE_TOPIC = "episode"
VERSION_TOPIC = "policy_version"
LOAD_SERVICE = "load_policy"
PROPRIO_TYPES = {"effector": PointStamped, "joint_states": JointState}
TERMINAL_STATES = {
    EpisodeStatus.STATE_SUCCEEDED: "succeeded", EpisodeStatus.STATE_FAILED: "failed",
    EpisodeStatus.STATE_TIMED_OUT: "timed out", EpisodeStatus.STATE_ABORTED: "aborted",
    EpisodeStatus.STATE_ESTOPPED: "e-stopped",
}


class PolicyNode(Node):
    default_name = "policy"

    def __init__(self, options: NodeOptions | None = None, *,
                 load: Callable[[ModelRequest, str], object] | None = None) -> None:
        """``load(request, expected_embodiment)`` replaces the ONNX loader (tests make it wait on an event)."""
        super().__init__(self.default_name, options)
        model_dir = self.declare_parameter("model_dir", "", description="exported model directory; empty: idle "
                                           "until policy_version or load_policy brings one").value
        embodiment = self.declare_parameter("embodiment", "", description="embodiment this robot is; models for "
                                            "another are refused (empty: the first model's)").value
        rate_hz = self.declare_parameter("rate_hz", 10.0, min=0.1, max=1000.0, description="control rate").value
        max_age = self.declare_parameter("max_observation_age_s", 0.2, min=0.001, max=60.0,
                                         description="refuse to act on inputs older than this (node clock)").value
        temperature = self.declare_parameter("temperature", 1.0, min=1e-3, max=100.0,
                                             description="sampling temperature of the action tokens").value
        greedy = self.declare_parameter("greedy", False, description="argmax tokens instead of sampling").value
        seed = self.declare_parameter("seed", 0, min=0, description="seed of the token sampler").value
        self._proprio_topic = self.declare_parameter("proprio_topic", "effector",
                                                     description="effector or joint_states").value
        synchronized = self.declare_parameter(
            "synchronized_inputs", bool(self.get_parameter("use_sim_time").value),
            description="every input of an observation carries one stamp (the lock-step simulator): act only "
                        "when all have arrived with the newest frame's stamp (default: use_sim_time)").value
        if self._proprio_topic not in PROPRIO_TYPES:
            raise ParameterError(f"parameter 'proprio_topic' must be one of {sorted(PROPRIO_TYPES)}, "
                                 f"got {self._proprio_topic!r}")

        self.loop = PolicyLoop(
            LoopSettings(rate_hz=rate_hz, max_observation_age_s=max_age, temperature=temperature, greedy=greedy,
                         seed=seed, synchronized_inputs=synchronized),
            load=load or self._load_onnx, check=check_model_dir, log=self._log,
            expected_embodiment=embodiment, proprio_label=self._proprio_topic)
        if model_dir:
            try:
                self.loop.load_now(ModelRequest(model_dir, source="parameter model_dir"))
            except (ModelDirError, OSError) as exc:
                self.loop.close()
                raise ParameterError(f"parameter 'model_dir': {exc}") from None
        else:
            self.get_logger().info("no model_dir: idle until a policy_version message or a load_policy call "
                                   "brings a model")

        self._cameras: set[str] = set()
        self._action_pub = self.create_publisher(ActionChunk, ACTION_TOPIC, COMMANDS)
        self.create_subscription(PROPRIO_TYPES[self._proprio_topic], self._proprio_topic, self._on_proprio, SENSOR_DATA)
        self.create_subscription(Task, TASK_TOPIC, self._on_task, COMMANDS)
        self.create_subscription(EpisodeStatus, EPISODE_TOPIC, self._on_episode, COMMANDS)
        self.create_subscription(PolicyVersion, VERSION_TOPIC, self._on_policy_version, LATCHED)
        self.create_service(LoadPolicy, LOAD_SERVICE, self._on_load_policy)
        self._subscribe_cameras()
        self._timer = self.create_timer(1.0 / rate_hz, self._tick)

    # ---- model loading -------------------------------------------------------------------------
    def _load_onnx(self, request: ModelRequest, embodiment: str):
        return load_model(request, embodiment, log=self.get_logger().info)

    def _on_policy_version(self, msg) -> None:
        self.loop.request_model(ModelRequest(
            msg.model_dir, version=msg.version, manifest_sha256=msg.manifest_sha256,
            at_episode_boundary=bool(msg.at_episode_boundary), embodiment=msg.embodiment,
            source=f"topic {VERSION_TOPIC}"))
        self._subscribe_cameras()

    def _on_load_policy(self, request, response):
        response.accepted, response.message = self.loop.request_model(ModelRequest(
            request.model_dir, version=request.version, manifest_sha256=request.manifest_sha256,
            at_episode_boundary=bool(request.at_episode_boundary), source=f"service {LOAD_SERVICE}"))
        response.active_version = self.loop.active_version
        self._subscribe_cameras()
        return response

    def wait_for_loads(self, timeout_s: float | None = None) -> bool:
        """Block until background loads finish; the next tick or episode event takes their result."""
        return self.loop.wait_for_loads(timeout_s)

    @property
    def active_version(self) -> str:
        return self.loop.active_version

    # ---- inputs --------------------------------------------------------------------------------
    def _subscribe_cameras(self) -> None:
        for camera in self.loop.cameras():
            if camera not in self._cameras:
                self._cameras.add(camera)
                self.create_subscription(Image, f"camera/{camera}/image_raw",
                                         lambda msg, c=camera: self._on_image(c, msg), SENSOR_DATA)

    def _on_image(self, camera: str, msg) -> None:
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        try:
            self.loop.add_frame(camera, stamp_ns, rgb8_image(msg, "the policy"))
        except ValueError as exc:
            self.loop.reject_frame(camera, stamp_ns, str(exc))
        self._observation_arrived()

    def _on_proprio(self, msg) -> None:
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        try:
            self.loop.set_proprio(stamp_ns, proprio_from_message(msg).tolist())
        except ValueError as exc:
            self.loop.reject_proprio(stamp_ns, str(exc))
        self._observation_arrived()

    def _observation_arrived(self) -> None:
        """The input may complete an observation that a tick is waiting for: act on it now."""
        tick = self.loop.observation_arrived(self.get_clock().now().nanoseconds)
        self._subscribe_cameras()  # it takes finished loads, which may bring a model with other cameras
        self._publish(tick)

    def _on_task(self, msg) -> None:
        self.loop.start_episode(msg.episode_id, msg.instruction, int(msg.max_steps),
                                self.get_clock().now().nanoseconds)
        self._subscribe_cameras()

    def _on_episode(self, msg) -> None:
        if msg.state in TERMINAL_STATES:
            self.loop.end_episode(msg.episode_id, TERMINAL_STATES[msg.state])
            self._subscribe_cameras()
        elif msg.state in (EpisodeStatus.STATE_PAUSED, EpisodeStatus.STATE_RUNNING):
            self.loop.set_paused(msg.episode_id, msg.state == EpisodeStatus.STATE_PAUSED)

    # ---- the control tick ----------------------------------------------------------------------
    def _tick(self) -> None:
        tick = self.loop.tick(self.get_clock().now().nanoseconds)
        self._subscribe_cameras()
        self._publish(tick)

    def _publish(self, tick) -> None:
        chunk = tick.chunk if tick is not None else None
        if chunk is None:
            return
        now = self.get_clock().now()
        self._action_pub.publish(ActionChunk(
            header=Header(stamp=Time(chunk.observation_stamp_ns).to_msg()), episode_id=chunk.episode_id,
            step=chunk.step, horizon=chunk.horizon, action_dim=chunk.action_dim, values=chunk.values,
            tokens=chunk.tokens, log_prob=chunk.log_prob, policy_version=chunk.policy_version,
            inference_ms=chunk.inference_ms,
            latency_ms=(now.nanoseconds - chunk.observation_stamp_ns) / 1e6))

    def _log(self, level: str, text: str) -> None:
        logger = self.get_logger()
        {INFO: logger.info, WARNING: logger.warning, ERROR: logger.error}[level](text)

    def destroy_node(self) -> None:
        if getattr(self, "loop", None) is not None:  # absent when __init__ failed early
            self.loop.close()
        super().destroy_node()


def main(args=None):
    return run_node(PolicyNode, args)
