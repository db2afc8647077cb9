"""The reset supervisor's fleet core: mirrored transitions, operator command checks, the queue, labels, totals."""
import itertools

import pytest

from efm_reset_supervisor.episode_states import (
    EpisodeState,
    Event,
    IllegalTransition,
    next_state,
)
from efm_reset_supervisor.fleet import (
    ESTOP,
    LABEL_FAILURE,
    LABEL_FAILURE_ACTION,
    LABEL_SUCCESS,
    LABEL_SUCCESS_ACTION,
    PAUSE,
    RESET_DONE,
    RESUME,
    CommandRefused,
    Fleet,
    StatusUpdate,
)

S = EpisodeState
ALL_STATES = [s for s in S if s is not S.PAUSED]  # paused is entered only through a pause, tested below


def status(state, episode="e1", stamp=None, **kw):
    return StatusUpdate(state=int(state), episode_id=episode, stamp_s=0.0 if stamp is None else stamp, **kw)


def fleet_in(state, robots=("a",), **kw):
    logs = []
    fleet = Fleet(list(robots), log=lambda level, msg: logs.append((level, msg)), **kw)
    fleet.on_status("a", status(state), 0.0)
    return fleet, logs


def _reaches(state, event, target, paused_from=None):
    try:
        return next_state(state, event, paused_from) is target
    except IllegalTransition:
        return False


@pytest.mark.parametrize("before, after", [(a, b) for a, b in itertools.product(S, S) if a is not b])
def test_every_reported_transition_is_checked_against_the_table(before, after):
    """Every pair of states: legal iff an event of the table leads there (paused: paused from running)."""
    logs = []
    fleet = Fleet(["a"], log=lambda level, msg: logs.append(msg))
    fleet.on_status("a", status(S.RUNNING if before is S.PAUSED else before), 0.0)
    if before is S.PAUSED:
        fleet.on_status("a", status(S.PAUSED), 0.0)
    paused_from = S.RUNNING if before is S.PAUSED else None
    legal = any(_reaches(before, e, after, paused_from) for e in Event)
    fleet.on_status("a", status(after), 1.0)
    assert fleet.snapshot(1.0)["robots"][0]["state"] == after.label  # the robot is the authority on its state
    assert fleet.totals(1.0)["illegal_reports"] == (0 if legal else 1)
    assert any("does not allow" in m for m in logs) == (not legal)


def test_the_table_has_legal_and_illegal_reports():
    assert _reaches(S.WAITING_RESET, Event.RESET_DONE, S.READY)
    assert not any(_reaches(S.WAITING_RESET, e, S.RUNNING) for e in Event)


# What an operator may command in each state (e-stop: always).
EXPECTED_ACTIONS = {
    S.WAITING_RESET: {RESET_DONE, PAUSE, ESTOP},
    S.READY: {PAUSE, ESTOP},
    S.RUNNING: {PAUSE, ESTOP},
    S.SUCCEEDED: {PAUSE, ESTOP, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION},
    S.FAILED: {PAUSE, ESTOP, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION},
    S.TIMED_OUT: {PAUSE, ESTOP, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION},
    S.ABORTED: {PAUSE, ESTOP, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION},
    # the human's reset clears an e-stop; the running episode it ended can be labelled
    S.ESTOPPED: {RESET_DONE, ESTOP, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION},
}


@pytest.mark.parametrize("state", ALL_STATES)
def test_operator_commands_allowed_in_each_state_and_refusals_change_nothing(state):
    fleet, _ = fleet_in(S.RUNNING)
    fleet.on_status("a", status(state), 1.0)
    tile = fleet.snapshot(1.0)["robots"][0]
    assert set(tile["actions"]) == EXPECTED_ACTIONS[state]
    for action in {RESET_DONE, PAUSE, RESUME, LABEL_SUCCESS_ACTION, LABEL_FAILURE_ACTION} - EXPECTED_ACTIONS[state]:
        before = fleet.version
        with pytest.raises(CommandRefused, match="a"):
            fleet.begin_command("a", action)
        assert fleet.version == before


def test_pause_then_resume_and_estop_wins_everywhere():
    fleet, _ = fleet_in(S.RUNNING)
    fleet.on_status("a", status(S.PAUSED), 1.0)
    tile = fleet.snapshot(1.0)["robots"][0]
    assert set(tile["actions"]) == {RESUME, ESTOP}
    fleet.on_status("a", status(S.RUNNING), 2.0)
    assert fleet.totals(2.0)["illegal_reports"] == 0  # resume back to running is legal
    for state in S:
        fleet.on_status("a", status(state), 3.0)
        command = fleet.begin_command("a", ESTOP)   # never refused, not even twice in a row
        fleet.finish_command(command, True, "")


def test_double_click_resets_once():
    fleet, _ = fleet_in(S.WAITING_RESET)
    first = fleet.begin_command("a", RESET_DONE)
    with pytest.raises(CommandRefused, match="already sent"):
        fleet.begin_command("a", RESET_DONE)
    fleet.finish_command(first, True, "ready")
    with pytest.raises(CommandRefused, match="already done"):  # before the READY status arrives
        fleet.begin_command("a", RESET_DONE)
    assert fleet.queue() == []
    fleet.on_status("a", status(S.READY), 1.0)


def test_a_refused_reset_can_be_retried():
    fleet, _ = fleet_in(S.WAITING_RESET)
    fleet.finish_command(fleet.begin_command("a", RESET_DONE), False, "manager busy")
    fleet.begin_command("a", RESET_DONE)


def test_command_for_an_episode_the_robot_left_is_refused():
    fleet, _ = fleet_in(S.WAITING_RESET)
    with pytest.raises(CommandRefused, match="look again"):
        fleet.begin_command("a", RESET_DONE, episode_id="e0")
    with pytest.raises(CommandRefused, match="unknown robot"):
        fleet.begin_command("zz", RESET_DONE)
    with pytest.raises(CommandRefused, match="unknown action"):
        fleet.begin_command("a", "reboot")


def test_queue_is_ordered_by_wait_and_skips_auto_reset_robots():
    fleet = Fleet(["a", "b", "c", "sim"], auto_reset={"sim"})
    for t, robot in [(0.0, "sim"), (1.0, "c"), (2.0, "a"), (3.0, "b")]:
        fleet.on_status(robot, status(S.RUNNING), t)
        fleet.on_status(robot, status(S.SUCCEEDED, stamp=1.0), t)
        fleet.on_status(robot, status(S.WAITING_RESET, stamp=2.0), t)
    assert fleet.queue() == ["c", "a", "b"]
    fleet.on_status("c", status(S.READY, stamp=3.0), 4.0)
    assert fleet.queue() == ["a", "b"]
    tiles = {t["robot"]: t for t in fleet.snapshot(5.0)["robots"]}
    assert tiles["a"]["queue_position"] == 1 and tiles["sim"]["queue_position"] is None


def test_older_status_is_rejected():
    fleet, _ = fleet_in(S.RUNNING)
    fleet.on_status("a", status(S.SUCCEEDED, stamp=5.0), 1.0)
    assert fleet.on_status("a", status(S.RUNNING, stamp=4.0), 2.0) is False
    assert fleet.snapshot(2.0)["robots"][0]["state"] == "succeeded"


def test_label_flow_and_disagreement_rate():
    fleet = Fleet(["a"])
    fleet.on_status("a", status(S.RUNNING, "e1", policy_version="sft-0000"), 0.0)
    fleet.on_reward("a", "e1", 2.0, True, 1.0)
    assert fleet.snapshot(1.0)["robots"][0]["detector"] == {"steps_to_go": 2.0, "success": True}
    fleet.on_status("a", status(S.SUCCEEDED, "e1", 1.0, detector_success=True, policy_version="sft-0000"), 1.0)
    fleet.on_status("a", status(S.WAITING_RESET, "e1", 2.0), 1.0)
    command = fleet.begin_command("a", LABEL_FAILURE_ACTION)
    assert command.episode_id == "e1"
    fleet.finish_command(command, True, "labelled")
    # the manager re-publishes the ended episode with its label while the robot waits for a reset
    fleet.on_status("a", status(S.SUCCEEDED, "e1", 3.0, detector_success=True, human_label=LABEL_FAILURE,
                                policy_version="sft-0000"), 2.0)
    tile = fleet.snapshot(2.0)["robots"][0]
    assert tile["state"] == "waiting_reset" and tile["last_episode"]["label"] == "failure"
    totals = fleet.totals(3600.0)
    assert totals["disagreement_rate"] == 1.0 and totals["labelled"] == 1
    assert totals["success_rate_by_policy"]["sft-0000"] == {"episodes": 1, "successes": 0, "success_rate": 0.0}
    assert totals["episodes_per_hour"] == pytest.approx(1.0)
    with pytest.raises(CommandRefused, match="no episode 'e9' to label"):
        fleet.begin_command("a", LABEL_SUCCESS_ACTION, episode_id="e9")


def test_agreeing_label_is_no_disagreement():
    fleet = Fleet(["a"])
    fleet.on_status("a", status(S.RUNNING, "e1"), 0.0)
    fleet.on_status("a", status(S.TIMED_OUT, "e1", 1.0, human_label=LABEL_FAILURE), 1.0)
    assert fleet.totals(2.0)["disagreement_rate"] == 0.0
    fleet.on_status("a", status(S.TIMED_OUT, "e1", 2.0, human_label=LABEL_SUCCESS), 1.0)
    assert fleet.totals(2.0)["disagreement_rate"] == 1.0  # the detector never fired, the human says success


def test_estop_while_waiting_is_shown_and_ends_no_episode():
    fleet = Fleet(["a"])
    fleet.on_status("a", status(S.RUNNING, "e1"), 0.0)
    fleet.on_status("a", status(S.SUCCEEDED, "e1", 1.0), 1.0)
    fleet.on_status("a", status(S.WAITING_RESET, "e1", 2.0), 2.0)
    fleet.on_status("a", status(S.ESTOPPED, "e1", 3.0), 3.0)
    assert fleet.snapshot(3.0)["robots"][0]["state"] == "estopped"
    assert [r.outcome for r in fleet.episodes()] == [S.SUCCEEDED]


def test_waiting_time_and_staleness():
    fleet = Fleet(["a", "b"], auto_reset={"b"}, stale_after_s=5.0)
    fleet.on_status("a", status(S.WAITING_RESET), 0.0)
    fleet.on_status("a", status(S.READY, stamp=1.0), 10.0)
    fleet.on_status("a", status(S.RUNNING, stamp=2.0), 10.0)
    totals = fleet.totals(20.0)
    assert totals["waiting_for_human_s_per_robot"] == {"a": 10.0}
    assert totals["utilisation_per_robot"]["a"] == pytest.approx(0.5)
    tiles = {t["robot"]: t for t in fleet.snapshot(20.0)["robots"]}
    assert tiles["a"]["stale"] and tiles["b"]["stale"] and tiles["b"]["state"] == "unknown"
    fleet.touch("a", 19.0)
    assert not fleet.snapshot(20.0)["robots"][0]["stale"]


def test_bad_fleet_configuration_is_refused():
    with pytest.raises(ValueError, match="at least one robot"):
        Fleet([])
    with pytest.raises(ValueError, match="not in the fleet"):
        Fleet(["a"], auto_reset={"b"})
