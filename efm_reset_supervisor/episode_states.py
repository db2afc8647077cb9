"""The per-robot episode state machine: states, events and the table of legal transitions.

Shared by the episode manager (which owns one robot's machine and publishes its state on ``episode``)
and the fleet reset supervisor (which mirrors every robot's state and decides which operator commands
make sense). Pure Python: no ROS, no I/O, no threads.

States are those of ``efm_msgs/msg/EpisodeStatus`` (``EpisodeState.RUNNING == STATE_RUNNING == 2``, ...).
The life of one episode::

    waiting_reset --RESET_DONE--> ready --START--> running --SUCCEED | FAIL | TIME_OUT | ABORT-->
        succeeded | failed | timed_out | aborted --AWAIT_RESET--> waiting_reset

plus two operator states reachable from (almost) anywhere:

- ``paused`` (``PAUSE``) from any state but ``paused`` and ``estopped``; ``RESUME`` returns to the state
  before the pause (a paused running episode resumes running). Nothing else is accepted while paused
  except ``ESTOP``.
- ``estopped`` (``ESTOP``) from every state, ``estopped`` included (pressing the button twice is not an
  error: an e-stop always wins). An episode running (or paused while running) at the e-stop ends there:
  its terminal state is ``estopped`` and :attr:`Outcome.ended_episode` says so. Only an explicit
  ``CLEAR_ESTOP`` leaves ``estopped``, to ``waiting_reset`` (the scene must be reset before anything runs).

API (kept small and stable)::

    m = EpisodeMachine()                   # starts in WAITING_RESET
    out = m.apply(Event.RESET_DONE)        # Outcome(accepted=True, state=READY, previous=WAITING_RESET, ...)
    out = m.apply(Event.RESET_DONE)        # Outcome(accepted=False, reason="reset_done refused in state ready: ...")
    next_state(EpisodeState.READY, Event.START)  # -> RUNNING, or raises IllegalTransition
    allowed_events(EpisodeState.RUNNING)   # the events accepted there, for buttons to enable

:class:`EpisodeMachine` is not thread-safe: a caller that applies events from several threads holds its
own lock around :meth:`EpisodeMachine.apply`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class EpisodeState(enum.IntEnum):
    """One robot's episode state; values equal ``EpisodeStatus.STATE_*``."""
    WAITING_RESET = 0
    READY = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    TIMED_OUT = 5
    ABORTED = 6
    PAUSED = 7
    ESTOPPED = 8

    @property
    def label(self) -> str:
        """Lower-case name as used in messages and on the web page, e.g. ``"waiting_reset"``."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: int | str | EpisodeState) -> EpisodeState:
        """An ``EpisodeStatus.state`` value or a name (``"running"``, ``"RUNNING"``) as a state."""
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(f"unknown episode state {value!r}; expected one of "
                                 f"{', '.join(s.label for s in cls)}") from None
        try:
            return cls(int(value))
        except ValueError:
            raise ValueError(f"unknown episode state value {value!r}; EpisodeStatus.state is 0..{len(cls) - 1}"
                             ) from None


class Event(str, enum.Enum):
    """What happens to a robot's episode; values are the lower-case names used in messages."""
    RESET_DONE = "reset_done"    # the scene is reset (human reset_done, or scene_ready after reset_scene)
    START = "start"              # the episode starts (auto_start, or start_episode)
    SUCCEED = "succeed"          # success (the reward node's detector)
    FAIL = "fail"                # failure
    TIME_OUT = "time_out"        # max_steps reached without success
    ABORT = "abort"              # stopped early: operator, error, lost sensor
    AWAIT_RESET = "await_reset"  # an ended episode hands over to the next scene reset
    PAUSE = "pause"              # operator pause: the robot holds still
    RESUME = "resume"            # operator resume: back to the state before the pause
    ESTOP = "estop"              # emergency stop: always wins
    CLEAR_ESTOP = "clear_estop"  # explicit reset after an e-stop: goes to waiting_reset


S, E = EpisodeState, Event

TERMINAL_STATES = frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.ABORTED})
"""States an episode ends in through the normal life (``estopped`` ends one too, but is not left normally)."""

# The normal life; PAUSE, RESUME and ESTOP are handled by rule in next_state, not listed per state.
TRANSITIONS: dict[tuple[EpisodeState, Event], EpisodeState] = {
    (S.WAITING_RESET, E.RESET_DONE): S.READY,
    (S.READY, E.START): S.RUNNING,
    (S.RUNNING, E.SUCCEED): S.SUCCEEDED,
    (S.RUNNING, E.FAIL): S.FAILED,
    (S.RUNNING, E.TIME_OUT): S.TIMED_OUT,
    (S.RUNNING, E.ABORT): S.ABORTED,
    **{(t, E.AWAIT_RESET): S.WAITING_RESET for t in TERMINAL_STATES},
    (S.ESTOPPED, E.CLEAR_ESTOP): S.WAITING_RESET,
}


class IllegalTransition(ValueError):
    """An event that the state does not accept; ``reason`` names both and says what would be accepted."""

    def __init__(self, state: EpisodeState, event: Event, reason: str):
        super().__init__(reason)
        self.state, self.event, self.reason = state, event, reason


def _why(state: EpisodeState, event: Event, paused_from: EpisodeState | None) -> str:
    """The reason an event is refused in a state, for an operator to read."""
    head = f"{event.value} refused in state {state.label}"
    if state is S.ESTOPPED:
        return f"{head}: the robot is e-stopped; only an explicit reset (clear_estop) leaves it"
    if state is S.PAUSED:
        if event is E.PAUSE:
            return f"{head}: already paused"
        back = paused_from.label if paused_from is not None else "the previous state"
        return f"{head}: resume first (back to {back}) or e-stop"
    if event is E.RESUME:
        return f"{head}: not paused"
    if event is E.CLEAR_ESTOP:
        return f"{head}: not e-stopped"
    accepted = ", ".join(e.value for e in allowed_events(state, paused_from))
    return f"{head}: accepted there: {accepted}"


def next_state(state: EpisodeState, event: Event, paused_from: EpisodeState | None = None) -> EpisodeState:
    """The state after ``event`` in ``state``; raises :class:`IllegalTransition` if it is not accepted.

    ``paused_from`` is the state before the pause; it is needed (and only used) to resume from ``paused``.
    """
    state, event = S(state), E(event)
    if event is E.ESTOP:
        return S.ESTOPPED
    if event is E.PAUSE and state not in (S.PAUSED, S.ESTOPPED):
        return S.PAUSED
    if event is E.RESUME and state is S.PAUSED:
        if paused_from is None or paused_from in (S.PAUSED, S.ESTOPPED):
            raise IllegalTransition(state, event, f"{event.value} refused in state {state.label}: the state "
                                    f"before the pause is unknown ({paused_from!r})")
        return paused_from
    target = TRANSITIONS.get((state, event))
    if target is None:
        raise IllegalTransition(state, event, _why(state, event, paused_from))
    return target


def is_legal(state: EpisodeState, event: Event, paused_from: EpisodeState | None = None) -> bool:
    """True if ``event`` is accepted in ``state``."""
    try:
        next_state(state, event, paused_from)
    except IllegalTransition:
        return False
    return True


def allowed_events(state: EpisodeState, paused_from: EpisodeState | None = None) -> tuple[Event, ...]:
    """The events accepted in ``state``, in declaration order (e.g. to enable buttons)."""
    out = []
    for event in E:
        # Inlined legality (not is_legal) so that _why -> allowed_events does not recurse.
        if event is E.ESTOP or (event is E.PAUSE and state not in (S.PAUSED, S.ESTOPPED)) \
                or (event is E.RESUME and state is S.PAUSED and paused_from not in (None, S.PAUSED, S.ESTOPPED)) \
                or (state, event) in TRANSITIONS:
            out.append(event)
    return tuple(out)


@dataclass(frozen=True)
class Outcome:
    """The result of :meth:`EpisodeMachine.apply`. A refused event changes nothing."""
    accepted: bool
    event: Event
    previous: EpisodeState          # state before the event
    state: EpisodeState             # state after it (== previous when refused)
    ended_episode: bool = False     # a running episode (also a paused running one) ended with this event
    reason: str = ""                # why it was refused; empty when accepted

    @property
    def changed(self) -> bool:
        return self.state is not self.previous


class EpisodeMachine:
    """One robot's episode state, with the state before a pause remembered for resume."""

    def __init__(self, state: EpisodeState = S.WAITING_RESET):
        state = S(state)
        if state is S.PAUSED:
            raise ValueError("EpisodeMachine cannot start in paused: the state to resume to would be unknown")
        self._state = state
        self._paused_from: EpisodeState | None = None

    @property
    def state(self) -> EpisodeState:
        return self._state

    @property
    def paused_from(self) -> EpisodeState | None:
        """The state a resume returns to; None unless paused."""
        return self._paused_from

    @property
    def episode_running(self) -> bool:
        """True while an episode is in progress: running, or paused while running."""
        return self._state is S.RUNNING or (self._state is S.PAUSED and self._paused_from is S.RUNNING)

    def can(self, event: Event) -> bool:
        return is_legal(self._state, E(event), self._paused_from)

    def allowed(self) -> tuple[Event, ...]:
        return allowed_events(self._state, self._paused_from)

    def apply(self, event: Event) -> Outcome:
        """Apply ``event``: the new state, or a refusal (state unchanged) whose reason names state and event."""
        event = E(event)
        previous = self._state
        try:
            target = next_state(previous, event, self._paused_from)
        except IllegalTransition as exc:
            return Outcome(False, event, previous, previous, reason=exc.reason)
        ended = self.episode_running and (target in TERMINAL_STATES or target is S.ESTOPPED)
        if target is S.PAUSED:
            self._paused_from = previous
        elif previous is S.PAUSED:
            self._paused_from = None
        self._state = target
        return Outcome(True, event, previous, target, ended_episode=ended)
