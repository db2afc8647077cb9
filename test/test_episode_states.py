"""The episode state machine: every (state, event) pair, legal or not, against one explicit table."""
from __future__ import annotations

import itertools

import pytest

from efm_reset_supervisor.episode_states import (TERMINAL_STATES, EpisodeMachine, IllegalTransition, allowed_events,
                                                 is_legal, next_state)
from efm_reset_supervisor.episode_states import EpisodeState as S
from efm_reset_supervisor.episode_states import Event as E
from efm_runtime import get_message

# The whole table, written out by hand (not derived from the module): (state, event) -> new state.
# Paused rows use paused_from=RUNNING; resume from other pre-pause states is tested separately.
LEGAL = {
    (S.WAITING_RESET, E.RESET_DONE): S.READY,
    (S.READY, E.START): S.RUNNING,
    (S.RUNNING, E.SUCCEED): S.SUCCEEDED,
    (S.RUNNING, E.FAIL): S.FAILED,
    (S.RUNNING, E.TIME_OUT): S.TIMED_OUT,
    (S.RUNNING, E.ABORT): S.ABORTED,
    (S.SUCCEEDED, E.AWAIT_RESET): S.WAITING_RESET,
    (S.FAILED, E.AWAIT_RESET): S.WAITING_RESET,
    (S.TIMED_OUT, E.AWAIT_RESET): S.WAITING_RESET,
    (S.ABORTED, E.AWAIT_RESET): S.WAITING_RESET,
    (S.PAUSED, E.RESUME): S.RUNNING,
    (S.ESTOPPED, E.CLEAR_ESTOP): S.WAITING_RESET,
    **{(s, E.PAUSE): S.PAUSED for s in S if s not in (S.PAUSED, S.ESTOPPED)},
    **{(s, E.ESTOP): S.ESTOPPED for s in S},
}
ALL_PAIRS = list(itertools.product(S, E))
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in LEGAL]


def test_states_equal_the_message_constants():
    status = get_message("efm_msgs/msg/EpisodeStatus")
    constants = {name[len("STATE_"):]: getattr(status, name) for name in dir(status) if name.startswith("STATE_")}
    assert {s.name: int(s) for s in S} == constants
    assert S.parse("waiting_reset") is S.WAITING_RESET and S.parse(2) is S.RUNNING
    assert S.RUNNING.label == "running"
    with pytest.raises(ValueError, match="unknown episode state 'runing'"):
        S.parse("runing")
    with pytest.raises(ValueError, match="0..8"):
        S.parse(9)


def test_table_covers_every_pair():
    assert len(LEGAL) + len(ILLEGAL) == len(S) * len(E)
    assert len(ILLEGAL) > len(LEGAL)


@pytest.mark.parametrize("state,event", list(LEGAL), ids=lambda v: v.name if hasattr(v, "name") else str(v))
def test_legal_transition(state, event):
    paused_from = S.RUNNING if state is S.PAUSED else None
    assert next_state(state, event, paused_from) is LEGAL[state, event]
    assert is_legal(state, event, paused_from)
    assert event in allowed_events(state, paused_from)


@pytest.mark.parametrize("state,event", ILLEGAL, ids=lambda v: v.name if hasattr(v, "name") else str(v))
def test_illegal_transition_names_state_and_event(state, event):
    paused_from = S.RUNNING if state is S.PAUSED else None
    with pytest.raises(IllegalTransition) as info:
        next_state(state, event, paused_from)
    assert info.value.state is state and info.value.event is event
    assert f"{event.value} refused in state {state.label}" in str(info.value)
    assert not is_legal(state, event, paused_from)
    assert event not in allowed_events(state, paused_from)
    # The machine refuses it too, without changing anything.
    m = _machine_in(state)
    out = m.apply(event)
    assert not out.accepted and out.state is state and out.previous is state and not out.changed
    assert out.reason == str(info.value)
    assert m.state is state


@pytest.mark.parametrize("before", [s for s in S if s not in (S.PAUSED, S.ESTOPPED)])
def test_resume_returns_to_the_state_before_the_pause(before):
    m = _machine_in(before)
    assert m.apply(E.PAUSE).state is S.PAUSED and m.paused_from is before
    assert not m.apply(E.PAUSE).accepted          # a second pause is refused, the memory kept
    assert m.paused_from is before
    out = m.apply(E.RESUME)
    assert out.accepted and out.state is before and m.paused_from is None and not out.ended_episode


def test_resume_without_a_known_previous_state_is_refused():
    with pytest.raises(IllegalTransition, match="before the pause is unknown"):
        next_state(S.PAUSED, E.RESUME, None)
    with pytest.raises(ValueError, match="cannot start in paused"):
        EpisodeMachine(S.PAUSED)


def test_estop_ends_a_running_or_paused_running_episode_and_needs_an_explicit_reset():
    m = _machine_in(S.RUNNING)
    out = m.apply(E.ESTOP)
    assert out.accepted and out.ended_episode and m.state is S.ESTOPPED
    assert m.apply(E.ESTOP).accepted                      # pressing twice is fine, nothing ends twice
    for event in (E.RESUME, E.RESET_DONE, E.START, E.AWAIT_RESET, E.PAUSE):
        out = m.apply(event)
        assert not out.accepted and "only an explicit reset (clear_estop)" in out.reason
    assert m.apply(E.CLEAR_ESTOP).state is S.WAITING_RESET

    m = _machine_in(S.RUNNING)
    m.apply(E.PAUSE)
    assert m.episode_running
    out = m.apply(E.ESTOP)
    assert out.ended_episode and m.state is S.ESTOPPED and m.paused_from is None and not m.episode_running


@pytest.mark.parametrize("state", [s for s in S if s not in (S.RUNNING, S.PAUSED)])
def test_estop_outside_an_episode_ends_nothing(state):
    m = _machine_in(state)
    assert not m.apply(E.ESTOP).ended_episode
    if state is not S.ESTOPPED:     # paused outside an episode: still nothing to end
        m = _machine_in(state)
        m.apply(E.PAUSE)
        assert not m.episode_running and not m.apply(E.ESTOP).ended_episode


@pytest.mark.parametrize("event", [E.SUCCEED, E.FAIL, E.TIME_OUT, E.ABORT])
def test_a_full_episode(event):
    m = EpisodeMachine()
    steps = [E.RESET_DONE, E.START, event, E.AWAIT_RESET]
    outs = [m.apply(e) for e in steps]
    assert all(o.accepted for o in outs)
    assert [o.ended_episode for o in outs] == [False, False, True, False]
    assert outs[2].state in TERMINAL_STATES and m.state is S.WAITING_RESET


def test_refusal_says_what_is_accepted():
    out = EpisodeMachine().apply(E.START)
    assert out.reason == "start refused in state waiting_reset: accepted there: reset_done, pause, estop"
    m = _machine_in(S.RUNNING)
    m.apply(E.PAUSE)
    assert "resume first (back to running)" in m.apply(E.SUCCEED).reason
    assert EpisodeMachine().apply(E.RESUME).reason.endswith("not paused")


def _machine_in(state: S) -> EpisodeMachine:
    """A machine brought to ``state`` through legal events only (paused: from running)."""
    m = EpisodeMachine()
    path = {
        S.WAITING_RESET: [], S.READY: [E.RESET_DONE], S.RUNNING: [E.RESET_DONE, E.START],
        S.SUCCEEDED: [E.RESET_DONE, E.START, E.SUCCEED], S.FAILED: [E.RESET_DONE, E.START, E.FAIL],
        S.TIMED_OUT: [E.RESET_DONE, E.START, E.TIME_OUT], S.ABORTED: [E.RESET_DONE, E.START, E.ABORT],
        S.PAUSED: [E.RESET_DONE, E.START, E.PAUSE], S.ESTOPPED: [E.ESTOP],
    }[state]
    for event in path:
        assert m.apply(event).accepted
    assert m.state is state
    return m
