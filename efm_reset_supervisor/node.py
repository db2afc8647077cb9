"""Reset supervisor: one operator oversees many practising robots (queue, web page, button box, overrides).

One node per fleet, in the global namespace. It mirrors every robot's episode state (fleet core:
:mod:`efm_reset_supervisor.fleet`), serves the operator page, reads an optional USB button box, and sends
the operator's commands to the robots' episode managers. It never runs episodes itself.

Topics (for each robot R in ``robots``):
  subscribes /R/episode                 efm_msgs/EpisodeStatus, latched (transient-local): the robot's state
             /R/reward                  efm_msgs/StepReward: the success detector's reading
             /R/camera/<camera>/image_raw sensor_msgs/Image, sensor-data QoS: a thumbnail every
                                          1/thumbnail_hz s (JPEG, thumbnail_width px wide); also the
                                          heartbeat that keeps a robot from being shown as stale
             /R/sim/ground_truth_success std_msgs/Bool, only with simulated_operator: the truth it labels with
  calls      /R/reset_done (efm_msgs/srv/ResetDone), /R/pause, /R/resume, /R/estop (efm_msgs/srv/RobotCommand),
             /R/label_episode (efm_msgs/srv/LabelEpisode)
Parameters: robots (names, required), auto_reset_robots (robots whose scene resets itself: never queued),
  camera ("top"), thumbnail_hz (1.0), thumbnail_width (160), stale_after_s (5.0), command_timeout_s (3.0),
  web_host ("127.0.0.1"), web_port (8080; 0 = any free port; -1 = no page), token ("": a random one,
  printed in the page URL at start), serial_port ("": no button box), serial_baud (9600),
  simulated_operator (false), operator_reaction_s (5.0), operator_mislabel_rate (0.0),
  operator_labels (true), operator_seed (0).
Run: ``ros2 run efm reset_supervisor --ros-args -p robots:="[lt_1, lt_2]"`` or ``efm up config/fleet_sim.yaml``;
the page's URL (with its token) is logged at start.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable

from efm_runtime import (
    COMMANDS,
    SENSOR_DATA,
    Node,
    NodeOptions,
    ParameterError,
    QoS,
    Time,
    get_message,
    get_service,
    run_node,
)

from .button_box import ButtonBoxLink, answer_line
from .console import Console
from .fleet import (
    ACTION_LABELS,
    ESTOP,
    PAUSE,
    RESET_DONE,
    RESUME,
    Command,
    Fleet,
    StatusUpdate,
)
from .simulated_operator import OperatorSettings, SimulatedOperator
from .thumbnails import thumbnail_jpeg

EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
StepReward = get_message("efm_msgs/msg/StepReward")
Image = get_message("sensor_msgs/msg/Image")
Bool = get_message("std_msgs/msg/Bool")
ResetDone = get_service("efm_msgs/srv/ResetDone")
RobotCommand = get_service("efm_msgs/srv/RobotCommand")
LabelEpisode = get_service("efm_msgs/srv/LabelEpisode")
ResetScene = get_service("efm_msgs/srv/ResetScene")
StartEpisode = get_service("efm_msgs/srv/StartEpisode")

SERVICES = {RESET_DONE: (ResetDone, "reset_done"), PAUSE: (RobotCommand, "pause"),
            RESUME: (RobotCommand, "resume"), ESTOP: (RobotCommand, "estop"),
            "label": (LabelEpisode, "label_episode")}
OPERATOR_PERIOD_S = 0.1
# Latched like the manager's publisher (a late supervisor still gets each robot's state), but deep: a manager
# publishes several statuses in one callback (waiting_reset -> ready -> running) and each one counts.
EPISODE_QOS = QoS(depth=50, reliability="reliable", durability="transient_local")


class ResetSupervisor(Node):
    default_name = "reset_supervisor"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        p = self.declare_parameter
        robots = p("robots", [], type="string_array", description="robot names (namespaces without '/')").value
        auto = p("auto_reset_robots", [], type="string_array",
                 description="robots whose scene resets itself (sim, scripted reset): never in the human queue").value
        self._sim_hands = set(p("sim_hands_robots", [], type="string_array",
                                description="simulated robots that stand for human-reset ones: reset done first "
                                            "re-randomises the sim scene (reset_scene), then calls reset_done and "
                                            "start_episode with the scene's instruction (their episode managers: "
                                            "auto_reset false, auto_start false)").value)
        camera = p("camera", "top", description="camera whose frames become the tiles' thumbnails").value
        thumb_hz = p("thumbnail_hz", 1.0, min=0.01, max=30.0, description="thumbnails per second per robot").value
        self._thumb_width = p("thumbnail_width", 160, min=16, max=1920, description="thumbnail width, px").value
        stale_s = p("stale_after_s", 5.0, min=0.1, description="no message for this long: shown as stale").value
        timeout_s = p("command_timeout_s", 3.0, min=0.1, description="wait for a robot's answer").value
        host = p("web_host", "127.0.0.1", description="address of the operator page; 0.0.0.0 opens it to "
                                                      "the network (mind the token)").value
        port = p("web_port", 8080, min=-1, max=65535, description="port of the page; 0 any free; -1 none").value
        token = p("token", "", description="page token; empty: a random one, shown in the logged URL").value
        serial_port = p("serial_port", "", description="button box serial port; empty: none").value
        baud = p("serial_baud", 9600, min=300, max=4_000_000, description="button box baud rate").value
        simulated = p("simulated_operator", False, description="a simulated human works the queue").value
        settings = OperatorSettings(
            reaction_s=p("operator_reaction_s", 5.0, min=0.0, description="simulated operator's time per "
                                                                          "reset").value,
            mislabel_rate=p("operator_mislabel_rate", 0.0, min=0.0, max=1.0,
                            description="probability a simulated label is wrong").value,
            label_episodes=p("operator_labels", True, description="simulated operator labels each "
                                                                  "episode with the sim's truth").value,
            seed=p("operator_seed", 0, min=0, description="seed of the simulated operator's mislabels").value)
        if not robots:
            raise ParameterError("parameter 'robots' is empty: list the robot names (namespaces), e.g. [lt_1, lt_2]")
        try:
            self.fleet = Fleet(list(robots), set(auto), start_s=self._now(), stale_after_s=stale_s, log=self._log)
        except ValueError as exc:
            raise ParameterError(f"parameters 'robots'/'auto_reset_robots': {exc}") from None
        self.console = Console(self.fleet, self._send, self._now, timeout_s=timeout_s)
        self._thumb_period_s = 1.0 / thumb_hz
        self._thumb_due: dict[str, float] = {}
        self._truth: dict[str, tuple[str, bool | None]] = {}   # robot -> (episode id, latest ground truth)
        self._clients = {(r, key): self.create_client(srv, f"/{r}/{name}")
                         for r in robots for key, (srv, name) in SERVICES.items()}
        for robot in self._sim_hands & set(robots):
            self._clients[(robot, "reset_scene")] = self.create_client(ResetScene, f"/{robot}/reset_scene")
            self._clients[(robot, "start_episode")] = self.create_client(StartEpisode, f"/{robot}/start_episode")
        for robot in robots:
            self.create_subscription(EpisodeStatus, f"/{robot}/episode", self._on_status(robot), EPISODE_QOS)
            self.create_subscription(StepReward, f"/{robot}/reward", self._on_reward(robot), COMMANDS)
            self.create_subscription(Image, f"/{robot}/camera/{camera}/image_raw", self._on_image(robot), SENSOR_DATA)
        self.operator = None
        if simulated:
            self.operator = SimulatedOperator(settings)
            for robot in robots:
                self.create_subscription(Bool, f"/{robot}/sim/ground_truth_success", self._on_truth(robot), COMMANDS)
            self.create_timer(OPERATOR_PERIOD_S, self._operator_tick)
        self.web = self.button_box = None
        self._token = token or secrets.token_urlsafe(16)
        if port >= 0:
            self._start_web(host, port)
        if serial_port:
            self._start_button_box(serial_port, baud)
        self._queue_length = -1
        self.create_timer(0.5, self._watch_queue)

    def _start_web(self, host: str, port: int) -> None:
        from .web import WebServer, build_app

        try:
            self.web = WebServer(build_app(self.console, self._token), host, port).start()
        except OSError as exc:
            raise ParameterError(f"parameter 'web_port': {exc}") from None
        self.get_logger().info(f"operator page: {self.web.url(self._token)}")

    def _start_button_box(self, port: str, baud: int) -> None:
        self.button_box = ButtonBoxLink(port, lambda line: answer_line(line, self.console), baud=baud, log=self._log)
        self.button_box.on_connect = lambda: self.button_box.send(f"QUEUE {len(self.fleet.queue())}")
        self.button_box.start()

    # ---- plumbing ------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _log(self, level: str, message: str) -> None:
        logger = self.get_logger()
        (logger.warning if level == "warning" else logger.info)(message)

    def _send(self, command: Command, done: Callable[[bool, str], None]) -> None:
        """Call the robot's service for ``command``; ``done(accepted, message)`` gets its answer."""
        label = ACTION_LABELS.get(command.action)
        srv, _ = SERVICES["label" if label else command.action]
        client = self._clients[(command.robot, "label" if label else command.action)]
        request = srv.Request(robot=command.robot)
        if label:
            request.episode_id, request.label = command.episode_id, label
        elif command.action == RESET_DONE:
            request.episode_id = command.episode_id
        else:
            request.reason = f"operator ({command.source})"
        if command.action == RESET_DONE and command.robot in self._sim_hands:
            self._sim_hands_reset(command, request, done)
            return
        self._call(client, request, lambda response: done(bool(response.accepted), response.message), done)

    def _call(self, client, request, on_response: Callable, done: Callable[[bool, str], None]) -> None:
        if not client.service_is_ready():
            done(False, f"{client.srv_name} is not offered: is the robot's episode manager (or sim) running?")
            return

        def answered(future) -> None:
            try:
                response = future.result()
            except Exception as exc:  # noqa: BLE001 -- the server failed or vanished: nothing happened
                done(False, f"{client.srv_name} failed: {exc}")
                return
            on_response(response)

        client.call_async(request).add_done_callback(answered)

    def _sim_hands_reset(self, command: Command, request, done: Callable[[bool, str], None]) -> None:
        """What a human's hands do to a real scene, done to the simulated one: re-randomise it, then say so."""
        robot = command.robot

        def scene_reset(answer) -> None:
            if not answer.success:
                done(False, f"reset_scene refused: {answer.message}")
                return
            self._call(self._clients[(robot, RESET_DONE)], request, lambda reply: reset_done(reply, answer), done)

        def reset_done(reply, scene) -> None:
            if not reply.accepted:
                done(False, reply.message)
                return
            start = StartEpisode.Request(robot=robot, instruction=scene.instruction, task_family=scene.task_family)
            self._call(self._clients[(robot, "start_episode")], start,
                       lambda started: done(bool(started.accepted), f"{reply.message}; {started.message}"), done)

        self._call(self._clients[(robot, "reset_scene")], ResetScene.Request(), scene_reset, done)

    # ---- subscriptions -------------------------------------------------------------------------
    def _on_status(self, robot: str):
        def callback(msg) -> None:
            update = StatusUpdate(
                state=int(msg.state), episode_id=msg.episode_id, instruction=msg.instruction,
                human_label=int(msg.human_label), detector_success=bool(msg.detector_success), steps=int(msg.steps),
                policy_version=msg.policy_version, message=msg.message,
                stamp_s=Time.from_msg(msg.header.stamp).nanoseconds / 1e9)
            try:
                self.fleet.on_status(robot, update, self._now())
            except ValueError as exc:  # a state value outside EpisodeStatus.STATE_*
                self.get_logger().warning(f"{robot}: status refused: {exc}", throttle_duration_sec=10.0)
        return callback

    def _on_reward(self, robot: str):
        def callback(msg) -> None:
            self.fleet.on_reward(robot, msg.episode_id, float(msg.steps_to_go), bool(msg.success), self._now())
        return callback

    def _on_image(self, robot: str):
        def callback(msg) -> None:
            now = self._now()
            if now < self._thumb_due.get(robot, float("-inf")):
                self.fleet.touch(robot, now)
                return
            self._thumb_due[robot] = now + self._thumb_period_s
            try:
                jpeg = thumbnail_jpeg(msg, self._thumb_width)
            except ValueError as exc:
                self.get_logger().warning(f"{robot}: no thumbnail: {exc}", throttle_duration_sec=30.0)
                self.fleet.touch(robot, now)
                return
            self.fleet.set_thumbnail(robot, jpeg, now)
        return callback

    def _on_truth(self, robot: str):
        def callback(msg) -> None:
            self._truth[robot] = (self.fleet.current_episode(robot), bool(msg.data))
        return callback

    # ---- timers --------------------------------------------------------------------------------
    def _operator_tick(self) -> None:
        for action in self.operator.decide(self._now(), self.fleet.queue(), self._last_truth):
            result = self.console.command(action.robot, action.action, action.episode_id, source="simulated operator",
                                          wait=False)
            if not result.accepted:
                self.get_logger().warning(f"simulated operator: {action.robot} {action.action}: {result.message}")

    def _last_truth(self, robot: str) -> tuple[str, bool | None]:
        """The robot's last ended episode and the simulator's last word on it."""
        last = next((r for r in reversed(self.fleet.episodes()) if r.robot == robot), None)
        if last is None:
            return "", None
        episode, truth = self._truth.get(robot, ("", None))
        return last.episode_id, truth if episode == last.episode_id else None

    def _watch_queue(self) -> None:
        length = len(self.fleet.queue())
        if length != self._queue_length:
            self._queue_length = length
            if self.button_box is not None:
                self.button_box.send(f"QUEUE {length}")

    def destroy_node(self) -> None:
        if getattr(self, "button_box", None) is not None:
            self.button_box.stop()
        if getattr(self, "web", None) is not None:
            self.web.stop()
        super().destroy_node()


def main(args=None):
    return run_node(ResetSupervisor, args)
