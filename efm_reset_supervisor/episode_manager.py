"""One robot's episode manager, free of any middleware: when episodes start and end, and what to say.

:class:`EpisodeManager` owns the robot's :class:`~efm_reset_supervisor.episode_states.EpisodeMachine` and
is told everything that happens (the node turns messages and service calls into these method calls,
each with the node clock's ``now_ns``, sim time under use_sim_time). It decides

- the scene reset: with ``auto_reset`` it asks for one (:meth:`Outputs.request_reset`, seeds
  ``first_seed``, ``first_seed + seed_stride``, ...; a refused or unavailable ``reset_scene`` is tried
  again) and the scene is ready once the reset was answered *and* ``scene_ready`` came after the request
  with the answer's instruction (in either order). Without ``auto_reset`` a human says so (``reset_done``).
  A human ``reset_done`` is accepted in ``auto_reset`` mode too (e.g. when the scripted reset fails);
- the start: at once with ``auto_start``, else on ``start_episode``. The instruction comes from the
  ``start_episode`` request, else the reset's answer, else the ``instructions`` list (entry
  ``seed % len``, so robots of one fleet with distinct seeds start on distinct instructions);
- the end: success at the StepReward whose ``success`` is true (``end_on_success``), time-out at the
  StepReward whose ``step`` reaches ``max_steps`` (d of the observation after the last action, so every
  action has its reward); with ``end_on_success`` off an episode runs to ``max_steps`` and ends as
  succeeded if the detector fired at any step. An episode with no StepReward for ``reward_timeout_s``
  (node clock) while running is aborted with a message naming the reward topic. Rewards and actions of
  other episodes (late ones of the last) and rewards while paused are ignored;
- operator commands (pause, resume, estop, label) and their refusals: an illegal request changes
  nothing and is answered with the state machine's reason. ``reset_done`` while e-stopped is the explicit
  reset that clears the e-stop (to ``waiting_reset``; without ``auto_reset`` the scene counts as reset by
  the same press, so one press makes the robot ready again).

Every state change is published (:meth:`Outputs.publish_status`); an ended episode is published in its
terminal state and then in ``waiting_reset`` (same episode id). A human label re-publishes the terminal
status with ``human_label`` set, then the current status again so the latched ``episode`` topic still
shows the robot's present state. Labels are refused while an episode runs.

Thread-safe: every public method holds one lock; outputs are called under it.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from .episode_states import EpisodeMachine, EpisodeState, Event

NS_PER_S = 1_000_000_000
INFO, WARNING, ERROR = "info", "warning", "error"
LABEL_NONE, LABEL_SUCCESS, LABEL_FAILURE = 0, 1, 2      # EpisodeStatus.LABEL_*
LABEL_NAMES = {LABEL_SUCCESS: "success", LABEL_FAILURE: "failure"}
RETRY_TICKS = 10          # a refused scene reset is asked again after this many ticks (the node ticks at 10 Hz)
HISTORY = 1000            # ended episodes kept for labels


@dataclass(frozen=True)
class ManagerSettings:
    """What the node's parameters say; checked on construction."""
    robot: str                              # robot name (namespace without the leading slash)
    embodiment: str = ""                    # written into each Task
    task_family: str = ""                   # task family of every scene reset and Task; empty = any
    max_steps: int = 200                    # policy steps of an episode before its time-out
    auto_reset: bool = True                 # call reset_scene (sim, scripted reset) instead of waiting for a human
    auto_start: bool = True                 # start as soon as the scene is ready
    first_seed: int = 1                     # seed of the first scene reset
    seed_stride: int = 1                    # seeds go first_seed, first_seed + stride, ...
    instructions: tuple[str, ...] = ()      # used when the reset does not supply an instruction
    end_on_success: bool = True             # end an episode at its first detected success
    reward_timeout_s: float = 10.0          # abort a running episode without StepReward this long; 0 = never
    episodes: int = 0                       # episodes to run; 0 = forever
    reward_topic: str = "reward"            # named in the abort message

    def __post_init__(self) -> None:
        if not self.robot:
            raise ValueError("robot must be a non-empty name (the robot's namespace, e.g. 'robot_a')")
        for name in ("max_steps", "seed_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("first_seed", "episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.reward_timeout_s >= 0:
            raise ValueError(f"reward_timeout_s must be >= 0 (0 = never), got {self.reward_timeout_s!r}")
        object.__setattr__(self, "instructions", tuple(i.strip() for i in self.instructions if i.strip()))
        if not self.auto_reset and self.auto_start and not self.instructions:
            raise ValueError("instructions is empty and auto_reset is false: nothing would supply the instruction "
                             "of an auto-started episode; set instructions, or auto_start false and give the "
                             "instruction with start_episode")

    def seed(self, index: int) -> int:
        """Seed of the ``index``-th scene reset (0-based)."""
        return self.first_seed + index * self.seed_stride

    def instruction_for(self, seed: int) -> str:
        return self.instructions[seed % len(self.instructions)] if self.instructions else ""


@dataclass(frozen=True)
class TaskInfo:
    """What goes into efm_msgs/Task."""
    stamp_ns: int
    robot: str
    episode_id: str
    instruction: str
    task_family: str
    embodiment: str
    max_steps: int
    seed: int


@dataclass(frozen=True)
class Status:
    """What goes into efm_msgs/EpisodeStatus."""
    stamp_ns: int
    robot: str
    episode_id: str
    instruction: str
    state: EpisodeState
    human_label: int = LABEL_NONE
    detector_success: bool = False
    steps: int = 0
    policy_version: str = ""
    started_ns: int = 0
    message: str = ""


@dataclass(frozen=True)
class ResetRequest:
    """A reset_scene call; ``token`` names it in the answer (an answer to an abandoned request is ignored)."""
    token: int
    seed: int
    task_family: str
    instruction: str


@dataclass(frozen=True)
class Reply:
    """A service answer."""
    accepted: bool
    message: str
    episode_id: str = ""


class Outputs(Protocol):
    def publish_task(self, task: TaskInfo) -> None: ...

    def publish_status(self, status: Status) -> None: ...

    def request_reset(self, request: ResetRequest) -> bool:
        """Send the reset_scene call; False if the service is not available (asked again next tick)."""

    def log(self, level: str, text: str) -> None: ...


@dataclass
class _Episode:
    """The current (or last) episode, as EpisodeStatus reports it."""
    episode_id: str = ""
    instruction: str = ""
    task_family: str = ""
    seed: int = 0
    max_steps: int = 0
    started_ns: int = 0
    steps: int = 0
    policy_version: str = ""
    detector_success: bool = False
    human_label: int = LABEL_NONE


@dataclass
class _Reset:
    """A scene reset in progress (auto_reset)."""
    request: ResetRequest
    answered: bool = False
    instruction: str = ""
    task_family: str = ""
    answered_instruction: str = ""           # as the server said it: empty matches any scene_ready
    ready_instruction: str | None = None   # scene_ready seen after the request

    def ready(self) -> bool:
        return self.answered and self.ready_instruction is not None and \
            (not self.answered_instruction or self.ready_instruction == self.answered_instruction)


@dataclass(frozen=True)
class _Scene:
    """A reset scene waiting for its episode."""
    instruction: str
    task_family: str
    seed: int


@dataclass
class _Counts:
    ended: int = 0
    succeeded: int = 0
    outcomes: dict = field(default_factory=dict)


def episode_id_for(robot: str, utc_ns: int, counter: int) -> str:
    """``<robot>-<UTC yyyymmddThhmmss>-<counter:05d>``, unique across robots and restarts (the contract)."""
    stamp = datetime.fromtimestamp(utc_ns / NS_PER_S, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{robot.replace('/', '_')}-{stamp}-{counter:05d}"


class EpisodeManager:
    """The decisions of one robot's episode manager; see the module docstring."""

    def __init__(self, settings: ManagerSettings, outputs: Outputs, utc_ns: Callable[[], int]) -> None:
        self.settings, self._out, self._utc_ns = settings, outputs, utc_ns
        self._lock = threading.RLock()
        self._machine = EpisodeMachine()
        self._episode = _Episode()
        self._reset: _Reset | None = None
        self._scene: _Scene | None = None
        self._resets_done = 0          # answered scene resets: the next seed's index
        self._started = 0              # episodes started: the id counter
        self._tokens = 0
        self._retry_in = 0             # ticks until a refused reset is asked again
        self._said_unavailable = False
        self._last_reward_ns = 0
        self._history: OrderedDict[str, Status] = OrderedDict()
        self._counts = _Counts()
        self._said_done = False

    # ---- what others read ----------------------------------------------------------------------
    @property
    def state(self) -> EpisodeState:
        return self._machine.state

    @property
    def episode_id(self) -> str:
        return self._episode.episode_id

    @property
    def ended(self) -> int:
        return self._counts.ended

    @property
    def succeeded(self) -> int:
        return self._counts.succeeded

    @property
    def done(self) -> bool:
        """The ``episodes`` limit is reached: no further resets or starts."""
        return 0 < self.settings.episodes <= self._counts.ended

    # ---- inputs --------------------------------------------------------------------------------
    def begin(self, now_ns: int) -> None:
        """Publish the first status and, with auto_reset, ask for the first scene."""
        with self._lock:
            self._publish(now_ns, self._waiting_message())
            self._advance(now_ns)

    def tick(self, now_ns: int) -> None:
        """Periodic (10 Hz): the reward watchdog, retries of the scene reset."""
        with self._lock:
            s = self.settings
            if self._machine.state is EpisodeState.RUNNING and s.reward_timeout_s > 0 \
                    and now_ns - self._last_reward_ns > s.reward_timeout_s * NS_PER_S:
                self._end(Event.ABORT, now_ns, self._episode.steps,
                          f"no StepReward on {s.reward_topic} for {s.reward_timeout_s:g} s while running: "
                          f"is the reward node running? (reward_timeout_s)", WARNING)
            if self._retry_in > 0:
                self._retry_in -= 1
            self._advance(now_ns)

    def on_reset_answer(self, token: int, success: bool, message: str, instruction: str, task_family: str,
                        now_ns: int) -> None:
        """The reset_scene answer (``success`` False also for a call that failed, with the error as message)."""
        with self._lock:
            reset = self._reset
            if reset is None or reset.request.token != token:
                return                  # abandoned (e-stop, a human reset_done): its scene is not awaited
            if not success:
                self._reset = None
                self._retry_in = RETRY_TICKS
                self._out.log(ERROR, f"scene reset (seed {reset.request.seed}) refused: {message or 'no reason'}; "
                                     f"asking again in {RETRY_TICKS / 10:g} s (or press reset done)")
                return
            reset.answered, reset.answered_instruction = True, instruction
            reset.instruction = instruction or reset.request.instruction
            reset.task_family = task_family or reset.request.task_family
            self._resets_done += 1
            self._advance(now_ns)

    def on_scene_ready(self, instruction: str, now_ns: int) -> None:
        with self._lock:
            if self._reset is not None:     # one from before the request (latched) says nothing about it
                self._reset.ready_instruction = instruction
                self._advance(now_ns)

    def on_action(self, episode_id: str, step: int, policy_version: str) -> None:
        with self._lock:
            if self._machine.episode_running and episode_id == self._episode.episode_id:
                self._episode.steps = max(self._episode.steps, int(step) + 1)
                self._episode.policy_version = policy_version or self._episode.policy_version

    def on_reward(self, episode_id: str, step: int, success: bool, now_ns: int) -> None:
        with self._lock:
            if self._machine.state is not EpisodeState.RUNNING or episode_id != self._episode.episode_id:
                return
            self._last_reward_ns = now_ns
            step, episode = int(step), self._episode
            if success and not episode.detector_success:
                episode.detector_success = True
                if self.settings.end_on_success:
                    self._end(Event.SUCCEED, now_ns, step, f"success detected at step {step}")
                    return
            if step >= episode.max_steps:
                if episode.detector_success:
                    self._end(Event.SUCCEED, now_ns, step, f"max_steps {episode.max_steps} reached; success "
                                                           f"was detected (end_on_success is false)")
                else:
                    self._end(Event.TIME_OUT, now_ns, step, f"max_steps {episode.max_steps} reached")

    # ---- services ------------------------------------------------------------------------------
    def reset_done(self, robot: str, episode_id: str, now_ns: int) -> Reply:
        with self._lock:
            refused = self._wrong_robot(robot)
            if refused is None and episode_id and episode_id != self._episode.episode_id:
                refused = Reply(False, f"reset_done for episode {episode_id!r}, but this robot's episode is "
                                       f"{self._episode.episode_id or '(none yet)'!r}; send an empty episode_id "
                                       f"for the current one")
            if refused is not None:
                return refused
            if self._machine.state is EpisodeState.ESTOPPED:
                self._apply(Event.CLEAR_ESTOP, now_ns, "e-stop cleared by reset_done")
                if self.settings.auto_reset:
                    self._advance(now_ns)
                    return Reply(True, "e-stop cleared; resetting the scene", self._episode.episode_id)
            outcome = self._machine.apply(Event.RESET_DONE)
            if not outcome.accepted:
                return Reply(False, outcome.reason, self._episode.episode_id)
            self._scene = self._scene_from_human()
            self._publish(now_ns, self._ready_message())
            self._advance(now_ns)
            state = self._machine.state
            started = f" (episode {self._episode.episode_id})" if state is EpisodeState.RUNNING else ""
            return Reply(True, f"scene reset; now {state.label}{started}", self._episode.episode_id)

    def start_episode(self, robot: str, instruction: str, task_family: str, max_steps: int, seed: int,
                      now_ns: int) -> Reply:
        with self._lock:
            refused = self._wrong_robot(robot) or self._done_refusal("start_episode")
            if refused is not None:
                return refused
            if not self._machine.can(Event.START):
                return Reply(False, self._machine.apply(Event.START).reason)
            scene = self._scene or _Scene("", self.settings.task_family, 0)
            instruction = instruction.strip() or scene.instruction
            if not instruction:
                return Reply(False, "start_episode without an instruction, and neither the scene reset nor the "
                                    "instructions parameter supplied one: give the instruction in the request")
            episode_id = self._start(now_ns, instruction, task_family or scene.task_family,
                                     int(max_steps) or self.settings.max_steps, int(seed) or scene.seed)
            return Reply(True, f"episode {episode_id} started", episode_id)

    def pause(self, robot: str, reason: str, now_ns: int) -> Reply:
        with self._lock:
            refused = self._wrong_robot(robot)
            if refused is not None:
                return refused
            outcome = self._apply(Event.PAUSE, now_ns, f"paused: {reason}" if reason else "paused")
            return Reply(outcome.accepted, outcome.reason or f"paused (was {outcome.previous.label})")

    def resume(self, robot: str, reason: str, now_ns: int) -> Reply:
        with self._lock:
            refused = self._wrong_robot(robot)
            if refused is not None:
                return refused
            back_to = self._machine.paused_from
            message = self._waiting_message() if back_to is EpisodeState.WAITING_RESET else \
                self._ready_message() if back_to is EpisodeState.READY else (f"resumed: {reason}" if reason else "resumed")
            outcome = self._apply(Event.RESUME, now_ns, message)
            if not outcome.accepted:
                return Reply(False, outcome.reason)
            self._last_reward_ns = now_ns          # the watchdog counts from the resume
            self._advance(now_ns)
            return Reply(True, f"resumed ({outcome.state.label})")

    def estop(self, robot: str, reason: str, now_ns: int) -> Reply:
        """Always accepted (an e-stop always wins); a running episode ends as e-stopped."""
        with self._lock:
            refused = self._wrong_robot(robot)
            if refused is not None:
                return refused
            message = f"e-stop: {reason}" if reason else "e-stop"
            self._reset, self._scene = None, None   # whatever was being prepared is not trusted after an e-stop
            outcome = self._machine.apply(Event.ESTOP)
            if outcome.ended_episode:
                self._record_end(now_ns, EpisodeState.ESTOPPED, self._episode.steps, message, WARNING)
            elif outcome.changed:
                self._publish(now_ns, message)
                self._out.log(WARNING, f"{message} ({outcome.previous.label}); reset_done clears it")
            return Reply(True, f"{message}; reset_done clears it")

    def label(self, robot: str, episode_id: str, label: int, now_ns: int) -> Reply:
        with self._lock:
            refused = self._wrong_robot(robot)
            if refused is not None:
                return refused
            if label not in LABEL_NAMES:
                return Reply(False, f"label {label} is not LABEL_SUCCESS (1) or LABEL_FAILURE (2)")
            if self._machine.episode_running:
                return Reply(False, f"episode {self._episode.episode_id} is still running "
                                    f"({self._machine.state.label}); label it after it ends")
            episode_id = episode_id or self._episode.episode_id
            if not episode_id:
                return Reply(False, "no episode has ended on this robot yet")
            if episode_id not in self._history:
                return Reply(False, f"unknown episode {episode_id!r}: not one of the last {len(self._history)} "
                                    f"episodes of robot {self.settings.robot!r} "
                                    f"(last: {next(reversed(self._history), '(none)')!r})")
            ended = self._history[episode_id]     # as it ended: a second label replaces the first
            self._out.publish_status(replace(ended, stamp_ns=now_ns, human_label=label,
                                             message=f"{ended.message}; labelled {LABEL_NAMES[label]} by a human"))
            if episode_id == self._episode.episode_id:
                self._episode.human_label = label
            self._publish(now_ns, self._current_message())
            self._out.log(INFO, f"episode {episode_id} labelled {LABEL_NAMES[label]} by a human "
                                f"(it ended {ended.state.label}, detector success {ended.detector_success})")
            return Reply(True, f"episode {episode_id} labelled {LABEL_NAMES[label]}", episode_id)

    # ---- decisions -----------------------------------------------------------------------------
    def _advance(self, now_ns: int) -> None:
        """Do what the state calls for next: ask for a scene, take a ready one, start an episode."""
        state, s = self._machine.state, self.settings
        if self.done:
            if not self._said_done:
                self._said_done = True
                self._out.log(INFO, f"all {s.episodes} episodes done; success {self._counts.succeeded}/"
                                    f"{self._counts.ended}")
            return
        if state is EpisodeState.WAITING_RESET and s.auto_reset:
            reset = self._reset
            if reset is None:
                if self._retry_in <= 0:
                    self._request_reset()
            elif reset.ready():
                self._reset = None
                self._scene = _Scene(reset.instruction, reset.task_family, reset.request.seed)
                self._machine.apply(Event.RESET_DONE)
                self._publish(now_ns, self._ready_message())
                state = self._machine.state
        if state is EpisodeState.READY and s.auto_start and self._scene is not None and self._scene.instruction:
            scene = self._scene
            self._start(now_ns, scene.instruction, scene.task_family, s.max_steps, scene.seed)

    def _request_reset(self) -> None:
        s = self.settings
        seed = s.seed(self._resets_done)
        self._tokens += 1
        request = ResetRequest(self._tokens, seed, s.task_family, s.instruction_for(seed))
        if not self._out.request_reset(request):
            if not self._said_unavailable:
                self._said_unavailable = True
                self._out.log(WARNING, "reset_scene is not available (is the simulator or the robot driver "
                                       "running?); asking again every tick")
            return
        if self._said_unavailable:
            self._said_unavailable = False
            self._out.log(INFO, "reset_scene is available")
        self._reset = _Reset(request)

    def _scene_from_human(self) -> _Scene:
        """The scene a human (or an overridden auto reset) says is reset."""
        reset, self._reset = self._reset, None
        if reset is not None and reset.answered:
            return _Scene(reset.instruction, reset.task_family, reset.request.seed)
        index = self._resets_done
        self._resets_done += 1
        return _Scene(self.settings.instruction_for(self.settings.seed(index)), self.settings.task_family, 0)

    def _start(self, now_ns: int, instruction: str, task_family: str, max_steps: int, seed: int) -> str:
        s = self.settings
        self._started += 1
        episode_id = episode_id_for(s.robot, self._utc_ns(), self._started)
        self._episode = _Episode(episode_id, instruction, task_family, seed, max_steps, started_ns=now_ns)
        self._scene = None
        self._machine.apply(Event.START)
        self._last_reward_ns = now_ns
        self._out.publish_task(TaskInfo(now_ns, s.robot, episode_id, instruction, task_family, s.embodiment,
                                        max_steps, seed))
        self._publish(now_ns, "running")
        self._out.log(INFO, f"episode {episode_id} started: {instruction!r} (seed {seed}, max_steps {max_steps})")
        return episode_id

    def _end(self, event: Event, now_ns: int, steps: int, message: str, level: str = INFO) -> None:
        outcome = self._machine.apply(event)
        assert outcome.accepted, outcome.reason     # callers check the state first
        self._record_end(now_ns, outcome.state, steps, message, level)
        self._apply(Event.AWAIT_RESET, now_ns, self._waiting_message())
        self._advance(now_ns)

    def _record_end(self, now_ns: int, state: EpisodeState, steps: int, message: str, level: str) -> None:
        """Publish, remember and log an ended episode (the machine is already in ``state``)."""
        self._episode.steps = steps
        counts = self._counts
        counts.ended += 1
        counts.succeeded += state is EpisodeState.SUCCEEDED
        counts.outcomes[state.label] = counts.outcomes.get(state.label, 0) + 1
        status = self._status(now_ns, message, state)
        self._history[status.episode_id] = status
        while len(self._history) > HISTORY:
            self._history.popitem(last=False)
        self._out.publish_status(status)
        self._out.log(level, f"episode {status.episode_id} {state.label} after {steps} steps "
                             f"({status.policy_version or 'no policy version'}): {message}; "
                             f"success {counts.succeeded}/{counts.ended}")

    def _apply(self, event: Event, now_ns: int, message: str):
        outcome = self._machine.apply(event)
        if outcome.accepted:
            self._publish(now_ns, message)
        return outcome

    # ---- what to say ---------------------------------------------------------------------------
    def _status(self, now_ns: int, message: str, state: EpisodeState | None = None) -> Status:
        e = self._episode
        return Status(now_ns, self.settings.robot, e.episode_id, e.instruction,
                      self._machine.state if state is None else state, e.human_label, e.detector_success, e.steps,
                      e.policy_version, e.started_ns, message)

    def _publish(self, now_ns: int, message: str) -> None:
        self._out.publish_status(self._status(now_ns, message))

    def _waiting_message(self) -> str:
        if self.done:
            return f"all {self.settings.episodes} episodes done"
        if self.settings.auto_reset:
            return f"resetting the scene (seed {self.settings.seed(self._resets_done)})"
        return "waiting for a human to reset the scene (reset_done)"

    def _ready_message(self) -> str:
        scene = self._scene
        what = f"scene ready for {scene.instruction!r}" if scene and scene.instruction else "scene ready"
        if self.settings.auto_start and scene and scene.instruction and not self.done:
            return what
        return f"{what}; waiting for start_episode"

    def _current_message(self) -> str:
        state = self._machine.state
        if state is EpisodeState.WAITING_RESET:
            return self._waiting_message()
        if state is EpisodeState.READY:
            return self._ready_message()
        return state.label

    def _wrong_robot(self, robot: str) -> Reply | None:
        if robot and robot.strip("/") != self.settings.robot:
            return Reply(False, f"request for robot {robot!r} reached robot {self.settings.robot!r}'s episode "
                                f"manager; call the service in that robot's namespace")
        return None

    def _done_refusal(self, what: str) -> Reply | None:
        if self.done:
            return Reply(False, f"{what} refused: all {self.settings.episodes} episodes are done (parameter "
                                f"'episodes'); restart with a larger value or 0 (forever)")
        return None
