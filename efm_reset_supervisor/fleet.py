"""The fleet core of the reset supervisor: every robot's episode state as its episode manager reports it,
the queue of robots that need a human, the checks on operator commands, and the fleet totals.

Pure Python (no ROS, no I/O); thread-safe, because the operator page, the button box and the node's
executor all use one ``Fleet``. Times are seconds on one clock chosen by the caller (the supervisor node's
clock: sim time under use_sim_time).

Who decides what:
- The episode manager of each robot owns the robot's state machine (``episode_states``); the fleet mirrors
  it from ``EpisodeStatus``. A reported change that the transition table does not allow (a lost message,
  a restarted manager) is logged as illegal and counted, and the mirror follows the robot anyway: the robot
  is the authority on its own state, and showing the operator a state the robot is not in would be worse.
  A report older than the last one (by stamp) is rejected.
- Operator commands (web page, button box, simulated operator) are checked here against the mirrored state
  and the same transition table before any service is called; an illegal one is refused, logged, and
  changes nothing. One command per robot and action is in flight at a time, and a reset already
  acknowledged for the current wait is refused, so a double click never resets twice. An e-stop is never
  refused.
- The "needs me" queue holds the robots in ``waiting_reset`` that a human must reset (not ``auto_reset``),
  oldest wait first.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .episode_states import (
    TERMINAL_STATES,
    EpisodeState,
    Event,
    IllegalTransition,
    next_state,
)

S = EpisodeState

LABEL_NONE, LABEL_SUCCESS, LABEL_FAILURE = 0, 1, 2   # EpisodeStatus.LABEL_*
LABEL_NAMES = {LABEL_NONE: "", LABEL_SUCCESS: "success", LABEL_FAILURE: "failure"}

# Operator actions as the page, the button box and the simulated operator name them.
RESET_DONE, PAUSE, RESUME, ESTOP = "reset_done", "pause", "resume", "estop"
LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION = "label_success", "label_failure"
ACTIONS = (RESET_DONE, PAUSE, RESUME, ESTOP, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION)
ACTION_LABELS = {LABEL_SUCCESS_ACTION: LABEL_SUCCESS, LABEL_FAILURE_ACTION: LABEL_FAILURE}


Log = Callable[[str, str], None]   # (level "info" | "warning", message)


class CommandRefused(Exception):
    """An operator command that makes no sense now; the message says why, for the operator to read."""


@dataclass(frozen=True)
class StatusUpdate:
    """The fields of one ``EpisodeStatus`` the fleet uses, as plain data."""
    state: int
    episode_id: str = ""
    instruction: str = ""
    human_label: int = LABEL_NONE
    detector_success: bool = False
    steps: int = 0
    policy_version: str = ""
    message: str = ""
    stamp_s: float = 0.0


@dataclass
class EpisodeRecord:
    """One ended episode, for the totals and for labelling."""
    robot: str
    episode_id: str
    outcome: EpisodeState
    policy_version: str
    detector_success: bool
    human_label: int
    ended_s: float

    @property
    def success(self) -> bool:
        """The human label when there is one, else what the episode ended as."""
        if self.human_label != LABEL_NONE:
            return self.human_label == LABEL_SUCCESS
        return self.outcome is S.SUCCEEDED

    @property
    def disagrees(self) -> bool:
        """A human label that contradicts the success detector."""
        return self.human_label != LABEL_NONE and (self.human_label == LABEL_SUCCESS) != self.detector_success


@dataclass
class RobotView:
    name: str
    auto_reset: bool
    state: EpisodeState | None = None      # None until the first status arrives
    paused_from: EpisodeState | None = None
    since_s: float = 0.0                      # when the mirror entered `state`
    status: StatusUpdate = field(default_factory=lambda: StatusUpdate(state=0))
    last_seen_s: float | None = None       # any message from the robot
    last_ended: EpisodeRecord | None = None
    steps_to_go: float | None = None       # the reward node's latest reading
    detector_success: bool = False
    time_in_state_s: dict = field(default_factory=dict)   # EpisodeState -> accumulated seconds
    reset_acked_since: float | None = None  # reset_done accepted during the wait that began then
    in_flight: set = field(default_factory=set)
    illegal_reports: int = 0
    thumbnail: bytes = b""
    thumbnail_seq: int = 0
    last_command: str = ""


@dataclass(frozen=True)
class Command:
    """A checked operator command on its way to a robot's service."""
    robot: str
    action: str
    episode_id: str       # for labels: the episode labelled; else the robot's current episode
    source: str


def _accumulate(view: RobotView, now: float) -> None:
    if view.state is not None:
        view.time_in_state_s[view.state] = view.time_in_state_s.get(view.state, 0.0) + max(0.0, now - view.since_s)
    view.since_s = now


def _reported_event(previous: EpisodeState, new: EpisodeState, paused_from) -> Event | None:
    """The event of the transition table that takes ``previous`` to ``new``, or None if none does."""
    for event in Event:
        try:
            if next_state(previous, event, paused_from) is new:
                return event
        except IllegalTransition:
            continue
    return None


class Fleet:
    def __init__(self, robots: list[str], auto_reset: set[str] | frozenset = frozenset(), *, start_s: float = 0.0,
                 stale_after_s: float = 5.0, log: Log | None = None) -> None:
        if not robots:
            raise ValueError("a fleet needs at least one robot; list them in the supervisor's 'robots' parameter")
        unknown = set(auto_reset) - set(robots)
        if unknown:
            raise ValueError(f"auto_reset robots {sorted(unknown)} are not in the fleet's robots {list(robots)}")
        if len(set(robots)) != len(robots):
            raise ValueError(f"robot names must be unique, got {list(robots)}")
        self._lock = threading.RLock()
        self._robots = {name: RobotView(name, name in auto_reset, since_s=start_s) for name in robots}
        self._order = list(robots)
        self._episodes: dict[str, EpisodeRecord] = {}
        self._start_s = start_s
        self.stale_after_s = stale_after_s
        self._log = log or (lambda level, message: None)
        self.version = 0          # bumps on every change the page shows; live updates watch it
        self.changed = threading.Condition(self._lock)

    def log(self, level: str, message: str) -> None:
        self._log(level, message)

    # ---- inputs from the robots ------------------------------------------------------------
    @property
    def robots(self) -> list[str]:
        return list(self._order)

    def _view(self, robot: str) -> RobotView:
        view = self._robots.get(robot)
        if view is None:
            raise KeyError(f"unknown robot {robot!r}; the fleet has {', '.join(self._order)}")
        return view

    def _bump(self) -> None:
        self.version += 1
        self.changed.notify_all()

    def touch(self, robot: str, now: float) -> None:
        """Any message from ``robot`` proves it is alive."""
        with self._lock:
            view = self._view(robot)
            was_stale = self._stale(view, now)
            view.last_seen_s = now
            if was_stale:
                self._bump()

    def on_status(self, robot: str, update: StatusUpdate, now: float) -> bool:
        """Mirror one EpisodeStatus; False if it was rejected (older than the last one)."""
        with self._lock:
            view = self._view(robot)
            view.last_seen_s = now
            new = S.parse(update.state)
            if view.state is not None and update.stamp_s < view.status.stamp_s:
                self._log("warning", f"{robot}: status {new.label} stamped {update.stamp_s:.3f} is older than the "
                                     f"last one ({view.status.stamp_s:.3f}); ignored")
                return False
            record = self._episodes.get(update.episode_id) if update.episode_id else None
            if record is not None and new is record.outcome and new is not view.state:
                # The manager re-publishes an ended episode's status when it is labelled, after it moved on.
                self._record_label(record, update)
                self._bump()
                return True
            if view.state is not None and new is not view.state:
                event = _reported_event(view.state, new, view.paused_from)
                if event is None:
                    view.illegal_reports += 1
                    self._log("warning", f"{robot}: reported {view.state.label} -> {new.label}, which the episode "
                                         f"state machine does not allow; following the robot")
            ends_episode = new in TERMINAL_STATES or (new is S.ESTOPPED and self._episode_running(view))
            if new is not view.state:
                _accumulate(view, now)
                view.paused_from = view.state if new is S.PAUSED else None
                view.reset_acked_since = None
                view.state = new
            view.status = update
            if ends_episode and update.episode_id:
                self._record_end(view, update, new, now)
            elif record is not None:
                self._record_label(record, update)
            self._bump()
            return True

    @staticmethod
    def _episode_running(view: RobotView) -> bool:
        return view.state is S.RUNNING or (view.state is S.PAUSED and view.paused_from is S.RUNNING)

    def _record_end(self, view: RobotView, update: StatusUpdate, outcome: EpisodeState, now: float) -> None:
        record = self._episodes.get(update.episode_id)
        if record is None:
            record = EpisodeRecord(view.name, update.episode_id, outcome, update.policy_version,
                                   update.detector_success or view.detector_success, update.human_label, now)
            self._episodes[update.episode_id] = record
            view.detector_success, view.steps_to_go = False, None
        else:
            self._record_label(record, update)
        view.last_ended = record

    @staticmethod
    def _record_label(record: EpisodeRecord, update: StatusUpdate) -> None:
        if update.human_label != LABEL_NONE:
            record.human_label = update.human_label

    def on_reward(self, robot: str, episode_id: str, steps_to_go: float, success: bool, now: float) -> None:
        """The success detector's reading for the running episode."""
        with self._lock:
            view = self._view(robot)
            view.last_seen_s = now
            if episode_id and view.status.episode_id and episode_id != view.status.episode_id:
                return  # a late reward of an earlier episode
            value = float(steps_to_go)
            view.steps_to_go = value if math.isfinite(value) else None  # NaN: no estimate (and no JSON for it)
            view.detector_success = view.detector_success or bool(success)
            self._bump()

    def set_thumbnail(self, robot: str, jpeg: bytes, now: float) -> None:
        with self._lock:
            view = self._view(robot)
            view.last_seen_s = now
            view.thumbnail, view.thumbnail_seq = jpeg, view.thumbnail_seq + 1
            self._bump()

    def current_episode(self, robot: str) -> str:
        with self._lock:
            return self._view(robot).status.episode_id

    def thumbnail(self, robot: str) -> bytes:
        with self._lock:
            return self._view(robot).thumbnail

    # ---- operator commands ---------------------------------------------------------------------
    def begin_command(self, robot: str, action: str, episode_id: str = "", source: str = "operator") -> Command:
        """Check a command against the mirrored state and mark it in flight; raises CommandRefused."""
        with self._lock:
            if action not in ACTIONS:
                raise CommandRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
            try:
                view = self._view(robot)
            except KeyError as exc:
                raise CommandRefused(str(exc.args[0])) from None
            if action in view.in_flight:
                raise CommandRefused(f"{robot}: {action} already sent, waiting for the robot's answer")
            if action != ESTOP:
                target = self._check(view, action, episode_id)
            else:
                target = view.status.episode_id
            view.in_flight.add(action)
            view.last_command = f"{action} ({source})"
            self._log("info", f"{robot}: {action} from {source}")
            self._bump()
            return Command(robot, action, target, source)

    def _check(self, view: RobotView, action: str, episode_id: str) -> str:
        state = view.state
        if state is None:
            raise CommandRefused(f"{view.name}: no status from the robot yet; is its episode manager running?")
        if action in ACTION_LABELS:
            if self._episode_running(view):  # the manager refuses it too: labels are for ended episodes
                raise CommandRefused(f"{view.name}: an episode is running; label the last one after it ends")
            record = self._episodes.get(episode_id) if episode_id else view.last_ended
            if record is None or record.robot != view.name:
                what = f"episode {episode_id!r}" if episode_id else "an ended episode"
                raise CommandRefused(f"{view.name}: no {what} to label")
            return record.episode_id
        if episode_id and episode_id != view.status.episode_id:
            raise CommandRefused(f"{view.name}: {action} was meant for episode {episode_id}, but the robot is on "
                                 f"{view.status.episode_id or 'no episode'} now; look again")
        if action == RESET_DONE:
            if state is S.ESTOPPED:
                return view.status.episode_id  # after an e-stop, the human's reset clears it
            if state is not S.WAITING_RESET:
                raise CommandRefused(f"{view.name}: reset_done refused in state {state.label}: it is not waiting "
                                     f"for a reset")
            if view.reset_acked_since == view.since_s:
                raise CommandRefused(f"{view.name}: reset already done; the robot is getting ready")
            return view.status.episode_id
        event = Event.PAUSE if action == PAUSE else Event.RESUME
        if state is S.PAUSED and event is Event.RESUME:
            return view.status.episode_id  # the mirror may not know the state before the pause; the robot does
        try:
            next_state(state, event, view.paused_from)
        except IllegalTransition as exc:
            raise CommandRefused(f"{view.name}: {exc.reason}") from None
        return view.status.episode_id

    def finish_command(self, command: Command, accepted: bool, message: str) -> None:
        """The robot's answer to a command from :meth:`begin_command`."""
        with self._lock:
            view = self._view(command.robot)
            view.in_flight.discard(command.action)
            if accepted and command.action == RESET_DONE and view.state is S.WAITING_RESET:
                view.reset_acked_since = view.since_s
            verdict = "accepted" if accepted else "refused"
            view.last_command = f"{command.action} {verdict}: {message}" if message else f"{command.action} {verdict}"
            self._log("info" if accepted else "warning", f"{command.robot}: {command.action} {verdict}: {message}")
            self._bump()

    # ---- views ---------------------------------------------------------------------------------
    def _stale(self, view: RobotView, now: float) -> bool:
        seen = view.last_seen_s if view.last_seen_s is not None else self._start_s
        return now - seen > self.stale_after_s

    def queue(self) -> list[str]:
        """Robots waiting for a human reset, longest wait first; a reset already acknowledged leaves it."""
        with self._lock:
            waiting = [v for v in self._robots.values() if v.state is S.WAITING_RESET and not v.auto_reset
                       and v.reset_acked_since != v.since_s]
            return [v.name for v in sorted(waiting, key=lambda v: (v.since_s, self._order.index(v.name)))]

    def episodes(self) -> list[EpisodeRecord]:
        with self._lock:
            return list(self._episodes.values())

    def time_in_state(self, robot: str, now: float) -> dict[str, float]:
        """Seconds the robot spent in each state (``"unknown"`` before its first status), up to ``now``."""
        with self._lock:
            view = self._view(robot)
            out = {state.label: s for state, s in view.time_in_state_s.items()}
            current = view.state.label if view.state is not None else "unknown"
            out[current] = out.get(current, 0.0) + max(0.0, now - view.since_s)
            return out

    def totals(self, now: float) -> dict:
        """Fleet totals: episodes per hour, success rate by policy version, waits for a human, disagreement."""
        with self._lock:
            elapsed = max(now - self._start_s, 1e-9)
            records = list(self._episodes.values())
            by_version: dict[str, dict] = {}
            for r in records:
                entry = by_version.setdefault(r.policy_version or "unknown", {"episodes": 0, "successes": 0})
                entry["episodes"] += 1
                entry["successes"] += int(r.success)
            for entry in by_version.values():
                entry["success_rate"] = entry["successes"] / entry["episodes"]
            labelled = [r for r in records if r.human_label != LABEL_NONE]
            disagreements = sum(r.disagrees for r in labelled)
            humans = [name for name in self._order if not self._robots[name].auto_reset]
            waiting = {name: self.time_in_state(name, now).get("waiting_reset", 0.0) for name in humans}
            running = {name: self.time_in_state(name, now).get("running", 0.0) for name in self._order}
            return {
                "elapsed_s": elapsed,
                "episodes": len(records),
                "episodes_per_hour": len(records) * 3600.0 / elapsed,
                "success_rate_by_policy": by_version,
                "waiting_for_human_s": sum(waiting.values()),
                "waiting_for_human_s_per_robot": waiting,
                "utilisation_per_robot": {name: s / elapsed for name, s in running.items()},
                "labelled": len(labelled),
                "disagreements": disagreements,
                "disagreement_rate": disagreements / len(labelled) if labelled else None,
                "illegal_reports": sum(v.illegal_reports for v in self._robots.values()),
            }

    def snapshot(self, now: float) -> dict:
        """Everything the operator page shows, as JSON-able data."""
        with self._lock:
            queue = self.queue()
            tiles = []
            for name in self._order:
                view = self._robots[name]
                status = view.status
                last = view.last_ended
                state = view.state
                tiles.append({
                    "robot": name,
                    "state": state.label if state is not None else "unknown",
                    "time_in_state_s": max(0.0, now - view.since_s),
                    "stale": self._stale(view, now),
                    "auto_reset": view.auto_reset,
                    "queue_position": queue.index(name) + 1 if name in queue else None,
                    "episode_id": status.episode_id,
                    "instruction": status.instruction,
                    "steps": status.steps,
                    "policy_version": status.policy_version,
                    "message": status.message,
                    "detector": {"steps_to_go": view.steps_to_go, "success": view.detector_success},
                    "last_episode": None if last is None else {
                        "episode_id": last.episode_id, "outcome": last.outcome.label,
                        "detector_success": last.detector_success, "label": LABEL_NAMES[last.human_label]},
                    "thumbnail_seq": view.thumbnail_seq,
                    "in_flight": sorted(view.in_flight),
                    "last_command": view.last_command,
                    "actions": self._enabled_actions(view),
                })
            return {"now_s": now, "version": self.version, "queue": queue, "robots": tiles,
                    "totals": self.totals(now)}

    def _enabled_actions(self, view: RobotView) -> list[str]:
        enabled = [ESTOP]
        for action in (RESET_DONE, PAUSE, RESUME, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION):
            try:
                self._check(view, action, "")
            except CommandRefused:
                continue
            enabled.append(action)
        return enabled
