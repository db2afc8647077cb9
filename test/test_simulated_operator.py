"""The simulated operator: one robot at a time, oldest first, after its reaction time; labels from the truth."""
import pytest

from efm_reset_supervisor.simulated_operator import (
    OperatorAction,
    OperatorSettings,
    SimulatedOperator,
)


def truth(outcomes):
    return lambda robot: (f"{robot}-ep", outcomes.get(robot))


def test_takes_the_oldest_and_acts_after_its_reaction_time():
    op = SimulatedOperator(OperatorSettings(reaction_s=5.0))
    known = truth({"a": True, "b": False})
    assert op.decide(0.0, ["b", "a"], known) == [] and op.busy_with == "b"
    assert op.decide(4.9, ["b", "a"], known) == []
    assert op.decide(5.0, ["b", "a"], known) == [OperatorAction("b", "label_failure", "b-ep"),
                                                  OperatorAction("b", "reset_done")]
    assert op.busy_with is None                        # serial: the next robot only once the queue shows it
    assert op.decide(5.1, ["a"], known) == [] and op.busy_with == "a"
    assert op.decide(10.1, ["a"], known) == [OperatorAction("a", "label_success", "a-ep"),
                                              OperatorAction("a", "reset_done")]
    assert op.resets == 2 and op.labels == 2


def test_drops_a_robot_someone_else_reset_and_skips_labels_without_truth():
    op = SimulatedOperator(OperatorSettings(reaction_s=1.0))
    op.decide(0.0, ["a", "b"], truth({}))
    assert op.decide(0.5, ["b"], truth({})) == [] and op.busy_with == "b"
    assert op.decide(1.5, ["b"], truth({})) == [OperatorAction("b", "reset_done")]


def test_mislabel_rate_flips_that_share_of_labels_deterministically():
    settings = OperatorSettings(reaction_s=0.0, mislabel_rate=0.25, seed=3)
    runs = []
    for _ in range(2):
        op = SimulatedOperator(settings)
        labels = []
        for t in range(400):
            labels += [a.action for a in op.decide(float(t), ["a"], truth({"a": True})) if a.action != "reset_done"]
        runs.append(labels)
        assert op.mislabels == labels.count("label_failure")
        assert 0.15 < op.mislabels / op.labels < 0.35
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kw, why", [({"reaction_s": -1.0}, "reaction_s"), ({"mislabel_rate": 1.5}, "mislabel_rate")])
def test_bad_settings_are_refused(kw, why):
    with pytest.raises(ValueError, match=why):
        OperatorSettings(**kw)
