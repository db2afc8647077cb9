"""Simulated robot node: the hardware's topic contract, backed by a MuJoCo environment.

Topics, in the robot's namespace:
  publishes  camera/<name>/image_raw  sensor_msgs/Image (rgb8), sensor-data QoS, at the policy rate
             effector                 geometry_msgs/PointStamped (LanguageTable) or
             joint_states             sensor_msgs/JointState (Aloha)
             /clock                   rosgraph_msgs/Clock, every control step, when use_sim_time
             scene_ready              std_msgs/String (latched): the instruction the reset scene suits
             sim/ground_truth_success std_msgs/Bool: simulation only, for evaluation (hardware has none)
             action                   efm_msgs/ActionChunk, only with driver=oracle (a scripted
                                      demonstrator in the loop, as a teleop leader arm on hardware)
  subscribes action (ActionChunk, driver=topic), task (efm_msgs/Task), episode (efm_msgs/EpisodeStatus)
  service    reset_scene (efm_msgs/ResetScene): answers at once; the scene is ready after reset_delay_s

Timing: without sim time the sim runs in real time: a wall timer executes one action per control step
(LanguageTable 10 Hz, Aloha 50 Hz: a 5-action chunk per 10 Hz policy step). With use_sim_time it runs
lock-step: it publishes an observation, waits for the action stamped with that observation (at most
lock_step_timeout_s of wall time, then holds still), executes the chunk, advances /clock and publishes the
next observation, so practice runs as fast as the nodes keep up. Between episodes the clock runs in real
time while the world stays frozen, so an episode depends only on its seed and its actions.

Run: ``ros2 run efm sim --ros-args -p env:=language_table`` or, in a graph, ``efm up config/sim_*.yaml``.
"""
from __future__ import annotations

import time

from efm_runtime import (COMMANDS, LATCHED, SENSOR_DATA, Node, NodeOptions, ParameterError, Time, get_message,
                         get_service, run_node)

from .registry import check_task_name, make_env, make_oracle
from .robot import SimRobot

Image = get_message("sensor_msgs/msg/Image")
JointState = get_message("sensor_msgs/msg/JointState")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Point = get_message("geometry_msgs/msg/Point")
Header = get_message("std_msgs/msg/Header")
String = get_message("std_msgs/msg/String")
Bool = get_message("std_msgs/msg/Bool")
Clock = get_message("rosgraph_msgs/msg/Clock")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
ResetScene = get_service("efm_msgs/srv/ResetScene")

TERMINAL_STATES = {EpisodeStatus.STATE_SUCCEEDED, EpisodeStatus.STATE_FAILED, EpisodeStatus.STATE_TIMED_OUT,
                   EpisodeStatus.STATE_ABORTED, EpisodeStatus.STATE_ESTOPPED}


class SimNode(Node):
    default_name = "sim"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        env_name = self.declare_parameter("env", "language_table", description="language_table or aloha").value
        task_family = self.declare_parameter("task", "", description="task family of scene resets; empty = any").value
        self._driver = self.declare_parameter("driver", "topic", description="topic (policy) or oracle (scripted demos)").value
        noise = self.declare_parameter("oracle_noise", 0.0, min=0.0, max=1.0, description="oracle suboptimality").value
        seed = self.declare_parameter("seed", 0, min=0, description="first scene seed").value
        self._reset_delay_s = self.declare_parameter("reset_delay_s", 0.0, min=0.0,
                                                     description="time a scene reset takes (a human on hardware)").value
        self._timeout_s = self.declare_parameter("lock_step_timeout_s", 1.0, min=0.001,
                                                 description="wall time to wait for an action in lock-step").value
        if self._driver not in ("topic", "oracle"):
            raise ParameterError(f"parameter 'driver' must be 'topic' or 'oracle', got {self._driver!r}")
        self._lock_step = self.get_parameter("use_sim_time").value

        cameras = self.declare_parameter("cameras", [], type="string_array",
                                         description="cameras to publish; empty = the environment's defaults").value
        env = make_env(env_name, cameras=cameras)
        check_task_name(env, task_family or None)
        self._task_family = task_family
        oracle = make_oracle(env, noise, seed) if self._driver == "oracle" else None
        self.robot = SimRobot(env, oracle, seed)
        self.env = env

        self._image_pubs = {c: self.create_publisher(Image, f"camera/{c}/image_raw", SENSOR_DATA) for c in env.camera_names}
        self._proprio_pub = self.create_publisher(
            PointStamped if env.proprio_topic == "effector" else JointState, env.proprio_topic, SENSOR_DATA)
        self._clock_pub = self.create_publisher(Clock, "/clock", COMMANDS) if self._lock_step else None
        self._ready_pub = self.create_publisher(String, "scene_ready", LATCHED)
        self._truth_pub = self.create_publisher(Bool, "sim/ground_truth_success", COMMANDS)
        self._action_pub = self.create_publisher(ActionChunk, "action", COMMANDS) if oracle else None
        if oracle is None:
            self.create_subscription(ActionChunk, "action", self._on_action, COMMANDS)
        self.create_subscription(Task, "task", self._on_task, COMMANDS)
        self.create_subscription(EpisodeStatus, "episode", self._on_episode, COMMANDS)
        self.create_service(ResetScene, "reset_scene", self._on_reset_scene)

        self._ready_at_ns: int | None = None     # pending scene reset finishes at this sim time
        self._pending_instruction = ""
        self._observation_stamp_ns = 0
        self._waiting_since = time.monotonic()
        policy_period = 1.0 / env.policy_hz
        if self._lock_step:
            self._idle_timer = self.create_wall_timer(policy_period, self._idle_tick)
            self._timeout_timer = self.create_wall_timer(self._timeout_s, self._timeout_tick)
            self._oracle_pump = self.create_wall_timer(0.0, self._oracle_tick)
            self._oracle_pump.cancel()
        else:
            self._control_count = 0
            self.create_wall_timer(1.0 / env.control_hz, self._realtime_tick)
        self._publish_observation()
        self.get_logger().info(f"{env.name} ready: cameras {', '.join(env.camera_names)}, driver {self._driver}, "
                               f"{'lock-step sim time' if self._lock_step else 'real time'}")

    # ---- stepping ------------------------------------------------------------------------------
    def _advance_policy_step(self) -> None:
        """Execute one policy period of queued actions (lock-step), then observe."""
        for _ in range(self.env.chunk_size):
            self.robot.control_step()
            self._publish_clock()
        self.robot.count_policy_step()
        self._finish_pending_reset()
        self._publish_observation()

    def _realtime_tick(self) -> None:
        if self._control_count % self.env.chunk_size == 0:
            if self._control_count:
                self.robot.count_policy_step()
            self._finish_pending_reset()
            self._publish_observation()
            if self._driver == "oracle" and self._episode_running():
                self._publish_oracle_chunk()
        self.robot.control_step()
        self._control_count += 1

    def _idle_tick(self) -> None:
        if not self._episode_running():
            self.robot.idle_policy_step()
            self._publish_clock()
            self._finish_pending_reset()
            self._publish_observation()

    def _oracle_tick(self) -> None:
        if not self._episode_running():
            self._oracle_pump.cancel()
            return
        self._publish_oracle_chunk()
        self._advance_policy_step()

    def _timeout_tick(self) -> None:
        if self._driver == "topic" and self._episode_running() and \
                time.monotonic() - self._waiting_since >= self._timeout_s:
            self.get_logger().warning(f"no action within {self._timeout_s} s; holding still",
                                      throttle_duration_sec=5.0)
            self._advance_policy_step()

    def _episode_running(self) -> bool:
        return self.robot.episode is not None and self._ready_at_ns is None

    # ---- callbacks -----------------------------------------------------------------------------
    def _on_action(self, msg) -> None:
        error = self.robot.accept_chunk(msg.values, int(msg.horizon), int(msg.action_dim))
        if error:
            self.get_logger().error(f"action refused, holding still: {error}", throttle_duration_sec=1.0)
            return
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        if self._lock_step and self._episode_running() and stamp_ns == self._observation_stamp_ns:
            self._advance_policy_step()

    def _on_task(self, msg) -> None:
        warning = self.robot.start_episode(msg.episode_id, msg.instruction)
        if warning:
            self.get_logger().warning(warning)
        self._publish_observation()  # the episode's first frame: the one its first action answers
        if self._lock_step and self._driver == "oracle":
            self._oracle_pump.reset()

    def _on_episode(self, msg) -> None:
        if msg.state in TERMINAL_STATES:
            self.robot.end_episode(msg.episode_id)

    def _on_reset_scene(self, request, response):
        if self._ready_at_ns is not None:
            response.success, response.message = False, "a scene reset is already in progress"
            return response
        task = self.robot.reset_scene(int(request.seed), request.task_family or self._task_family)
        self._ready_at_ns = self.robot.sim_time_ns + int(self._reset_delay_s * 1e9)
        self._pending_instruction = task.instruction
        response.success, response.instruction, response.task_family = True, task.instruction, task.family
        response.message = f"scene reset; ready in {self._reset_delay_s:.1f} s"
        self._finish_pending_reset()
        return response

    def _finish_pending_reset(self) -> None:
        if self._ready_at_ns is not None and self.robot.sim_time_ns >= self._ready_at_ns:
            self._ready_at_ns = None
            self._ready_pub.publish(String(data=self._pending_instruction))

    # ---- publishing ----------------------------------------------------------------------------
    def _stamp(self):
        if self._lock_step:
            return Time(self.robot.sim_time_ns).to_msg()
        return self.get_clock().now().to_msg()

    def _publish_clock(self) -> None:
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=Time(self.robot.sim_time_ns).to_msg()))

    def _publish_observation(self) -> None:
        stamp = self._stamp()
        self._observation_stamp_ns = Time.from_msg(stamp).nanoseconds
        self._waiting_since = time.monotonic()
        observation = self.env.observe(render=True)
        for camera, frame in observation.images.items():
            height, width = frame.shape[:2]
            self._image_pubs[camera].publish(Image(
                header=Header(stamp=stamp, frame_id=f"{camera}_camera"), height=height, width=width,
                encoding="rgb8", is_bigendian=0, step=width * 3, data=frame.tobytes()))
        proprio = [float(v) for v in observation.proprio]
        header = Header(stamp=stamp, frame_id="world")
        if self.env.proprio_topic == "effector":
            self._proprio_pub.publish(PointStamped(header=header, point=Point(x=proprio[0], y=proprio[1], z=0.0)))
        else:
            self._proprio_pub.publish(JointState(header=header, name=list(self.env.proprio_names), position=proprio))
        if self._episode_running():
            self._truth_pub.publish(Bool(data=bool(self.env.is_success())))

    def _publish_oracle_chunk(self) -> None:
        chunk = self.robot.oracle_chunk()
        episode = self.robot.episode
        self._action_pub.publish(ActionChunk(
            header=Header(stamp=Time(self._observation_stamp_ns).to_msg()), episode_id=episode.episode_id,
            step=episode.policy_steps, horizon=chunk.shape[0], action_dim=chunk.shape[1],
            values=[float(v) for v in chunk.ravel()], policy_version="oracle"))

    def destroy_node(self) -> None:
        super().destroy_node()
        if getattr(self, "env", None) is not None:  # absent when __init__ failed early
            self.env.close()


def main(args=None):
    return run_node(SimNode, args)
