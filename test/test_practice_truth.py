"""Practice-episode truth and version-selection rules for the over-optimisation experiment."""
import json
import random

import pytest

from efm_runtime import Time, get_message
from efm_trainer.episodes import EpisodeWriter
from efm_trainer.experiments import practice_truth as pt
from efm_trainer.experiments.practice_truth import EpisodeTruth

StepReward = get_message("efm_msgs/msg/StepReward")
Bool = get_message("std_msgs/msg/Bool")
Header = get_message("std_msgs/msg/Header")
STEP_NS = 100_000_000


def write_episode(out, episode_id, version, steps_to_go, truth=None, detector=False, human_label="none"):
    """A practice episode as the learner stores it: the bag (/reward, optionally the truth topic) and its record."""
    episodes = out / "learner" / "episodes"
    writer = EpisodeWriter(episodes, episode_id, {"episode_id": episode_id, "policy_version": version})
    for t, d in enumerate(steps_to_go):
        ns = (t + 1) * STEP_NS
        reward = 0.0 if t == 0 else steps_to_go[t - 1] - d
        writer.write("/reward", StepReward(header=Header(stamp=Time(ns).to_msg()), episode_id=episode_id, step=t,
                                           steps_to_go=d, reward=reward), ns)
        if truth is not None:
            writer.write(pt.TRUTH_TOPIC, Bool(data=truth[t]), ns)
    writer.close()
    record = {"episode_id": episode_id, "policy_version": version, "detector_success": detector,
              "human_label": human_label, "outcome": "succeeded" if detector else "timed_out",
              "steps": len(steps_to_go), "trainable": True, "received": "2026-01-01T00:00:00+0000"}
    (episodes / f"{episode_id}.json").write_text(json.dumps(record))


def truth(episode_id, version, detector, success, human_label="none"):
    return EpisodeTruth(episode_id, version, detector, success, steps=10, return_sum=1.0, d_first=10.0,
                        d_last=2.0, received="", human_label=human_label)


def test_truth_comes_from_the_bool_topic_unknown_without_it_and_a_bad_bag_is_skipped(tmp_path):
    write_episode(tmp_path, "ep-win", "sft-0000", [9.0, 5.0, 1.0], truth=[False, True, False], detector=True)
    write_episode(tmp_path, "ep-lose", "sft-0000", [9.0, 8.0, 8.5], truth=[False, False, False])
    write_episode(tmp_path, "ep-old", "sft-0000", [7.0, 6.0])          # recorded before the truth topic existed
    episodes_dir = tmp_path / "learner" / "episodes"
    (episodes_dir / "ep-broken.json").write_text(json.dumps({"episode_id": "ep-broken"}))  # no bag, no fields
    (episodes_dir / "ep-cut").mkdir()
    (episodes_dir / "ep-cut.json").write_text((episodes_dir / "ep-lose.json").read_text().replace("ep-lose", "ep-cut"))
    skipped = []
    found = {e.episode_id: e for e in pt.read_practice(tmp_path, on_skip=lambda path, why: skipped.append(path.name))}
    assert sorted(found) == ["ep-lose", "ep-old", "ep-win"]
    assert sorted(skipped) == ["ep-broken.json", "ep-cut.json"]
    assert (found["ep-win"].truth_success, found["ep-lose"].truth_success, found["ep-old"].truth_success) == \
        (True, False, None)
    win = found["ep-win"]
    assert win.detector_success and (win.d_first, win.d_last, win.steps) == (9.0, 1.0, 3)
    assert win.return_sum == pytest.approx(8.0)                     # (9 - 5) + (5 - 1): rewards telescope
    assert found["ep-lose"].return_sum == pytest.approx(0.5)


def test_precision_and_recall_against_truth_leave_unknown_episodes_out():
    cases = [(True, True)] * 2 + [(True, False)] + [(False, True)] * 3 + [(False, False)] * 4
    episodes = [truth(f"e{i}", "v1", d, s) for i, (d, s) in enumerate(cases)]
    episodes += [truth("unknown-1", "v1", True, None), truth("unknown-2", "v1", False, None)]
    [s] = pt.version_signals(episodes, versions=["v1"], labels={})
    assert (s.practice_episodes, s.truth_known, s.truth_unknown) == (12, 10, 2)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 5)
    assert s.truth_rate == pytest.approx(5 / 10) and s.detector_rate == pytest.approx(4 / 12)
    [none] = pt.version_signals([truth("x", "v1", False, False)], versions=["v1"], labels={})
    assert none.precision is None and none.recall is None         # no detector success, no true success


def test_the_label_subset_depends_on_the_ids_not_their_order_and_real_labels_win():
    episodes = [truth(f"robot_1-{i:05d}", "v1", False, i % 3 == 0) for i in range(400)]
    labels = pt.simulated_labels(episodes, every=4)
    shuffled = episodes[:]
    random.Random(1).shuffle(shuffled)
    assert pt.simulated_labels(shuffled, every=4) == labels
    assert 60 < len(labels) < 140                                   # about 1 in 4, not the first 100
    assert set(labels) != {e.episode_id for e in episodes[:len(labels)]}
    assert all(labels[e.episode_id] == e.truth_success for e in episodes if e.episode_id in labels)
    inside = next(e for e in episodes if e.episode_id in labels and e.truth_success)
    outside = next(e for e in episodes if e.episode_id not in labels)
    relabelled = [truth(e.episode_id, "v1", False, e.truth_success,
                        human_label="failure" if e in (inside, outside) else "none") for e in episodes]
    relabelled.append(truth("no-truth", "v1", False, None))
    rare = pt.simulated_labels(relabelled, every=4)
    assert rare[inside.episode_id] is False and outside.episode_id not in rare   # the operator's word, when asked
    assert pt.simulated_labels(relabelled, every=1)[outside.episode_id] is False
    assert "no-truth" not in pt.simulated_labels(relabelled, every=1)
    # pinned: a salted hash() would pass within one process and pick another subset in the next
    assert sorted(i for i in labels if i < "robot_1-00016") == ["robot_1-00010", "robot_1-00011", "robot_1-00014"]
    with pytest.raises(ValueError, match="every=0"):
        pt.simulated_labels(episodes, every=0)


def version_episodes(version, n, true_share, false_alarm_share, miss_share=0.0):
    """``n`` episodes of which the first true_share are true successes (the detector misses miss_share of all
    episodes among them) and the next false_alarm_share are failures the detector calls successes."""
    wins, alarms, misses = round(n * true_share), round(n * false_alarm_share), round(n * miss_share)
    return [truth(f"{version}-{i:03d}", version, detector=misses <= i < wins + alarms, success=i < wins)
            for i in range(n)]


def every_fourth(episodes):
    return {e.episode_id: e.truth_success for e in episodes if int(e.episode_id.rsplit("-", 1)[1]) % 4 == 0}


def evaluations(rates):
    return [{"version": v, "success_rate": r, "ci_low": r - 0.1, "ci_high": r + 0.1, "episodes": 50}
            for v, r in rates.items()]


def test_over_optimisation_fools_the_detector_rule_not_the_labels_nor_the_stop():
    # truth peaks at v2 while the detector keeps climbing: v3 and v4 learned to trigger it without the task
    plan = {"v0": (0.3, 0.0), "v1": (0.5, 0.0), "v2": (0.6, 0.0), "v3": (0.4, 0.3), "v4": (0.2, 0.7)}
    episodes = [e for v, (win, alarm) in plan.items() for e in version_episodes(v, 40, win, alarm)]
    signals = pt.version_signals(episodes, evaluations({v: win for v, (win, _) in plan.items()}),
                                 versions=list(plan), labels=every_fourth(episodes))
    assert [s.detector_rate for s in signals] == pytest.approx([0.3, 0.5, 0.6, 0.7, 0.9])
    assert [s.label_rate for s in signals] == pytest.approx([0.3, 0.5, 0.6, 0.4, 0.2])
    assert [s.precision for s in signals][2:] == pytest.approx([1.0, 16 / 28, 8 / 36])
    assert [s.false_alarm_rate for s in signals] == pytest.approx([0, 0, 0, 0.3, 0.7])
    assert [s.corrected_rate for s in signals] == pytest.approx([0.3, 0.5, 0.6, 0.4, 0.2])
    chosen = {name: rule(signals) for name, rule in pt.RULES.items()}
    assert chosen == {"ground_truth_eval": "v2", "detector": "v4", "labels": "v2", "corrected_detector": "v2",
                      "false_alarm_stop": "v2"}
    assert pt.stopping_point(signals) == "v3"
    verdict = pt.judge(signals, chosen["detector"])
    assert (verdict.best, verdict.regret) == ("v2", pytest.approx(0.4))
    assert verdict.describe("detector") == \
        "rule detector picked v4 (truth 20.0%), the best was v2 (truth 60.0%), regret 40.0 points"
    assert pt.judge(signals, "v2", truth_key="truth_rate").regret == 0


def test_after_the_stop_even_a_lucky_label_draw_does_not_win():
    def version(name, alarms, corrected):
        return pt.VersionSignals(name, practice_episodes=40, labels=10, false_alarms=alarms,
                                 false_alarm_rate=alarms / 10, corrected_rate=corrected, label_rate=corrected)
    signals = [version("v0", 0, 0.3), version("v1", 0, 0.5), version("v2", 1, 0.6), version("v3", 4, 0.4),
               version("v4", 6, 0.8)]                            # v4: 8 of its 10 labels happen to be successes
    assert pt.stopping_point(signals) == "v3"
    assert (pt.RULES["corrected_detector"](signals), pt.RULES["labels"](signals)) == ("v4", "v4")
    assert pt.RULES["false_alarm_stop"](signals) == "v2"


def test_honest_improvement_with_a_steady_miss_rate_does_not_stop_the_run():
    # the detector misses a tenth of all episodes throughout: disagreement grows with success, false alarms do not
    plan = {"v0": 0.3, "v1": 0.5, "v2": 0.7}
    episodes = [e for v, win in plan.items() for e in version_episodes(v, 40, win, 0.0, miss_share=0.1)]
    signals = pt.version_signals(episodes, versions=list(plan), labels=every_fourth(episodes))
    assert pt.stopping_point(signals) is None
    assert [pt.RULES[name](signals) for name in ("detector", "labels", "false_alarm_stop")] == ["v2"] * 3
    assert pt.RULES["ground_truth_eval"](signals) is None           # nothing evaluated, nothing to pick


def test_label_rules_skip_versions_with_too_few_labels_and_ties_go_to_the_earlier_version():
    episodes = version_episodes("v0", 12, 0.5, 0.0) + version_episodes("v1", 4, 1.0, 0.0) + \
        version_episodes("v2", 12, 0.5, 0.0)
    signals = pt.version_signals(episodes, versions=["v0", "v1", "v2"], labels=every_fourth(episodes))
    assert [s.labels for s in signals] == [3, 1, 3] and signals[1].label_rate == 1.0
    assert pt.RULES["labels"](signals) == "v0"
    assert signals[0].label_ci_low < signals[0].label_rate < signals[0].label_ci_high


def test_run_signals_orders_versions_by_the_learner_and_judge_refuses_unknown_names(tmp_path):
    write_episode(tmp_path, "a-1", "sft-0000", [9.0, 3.0], truth=[False, True], detector=True)
    write_episode(tmp_path, "a-2", "rl-0001", [9.0, 8.0], truth=[False, False], detector=True)
    (tmp_path / "learner" / "versions.json").write_text(json.dumps([{"version": "sft-0000"},
                                                                    {"version": "rl-0001"}]))
    (tmp_path / "evaluations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in
                                                        evaluations({"rl-0001": 0.5, "sft-0000": 0.25})))
    signals = pt.run_signals(tmp_path, label_every=1)
    assert [(s.version, s.eval_rate, s.precision, s.labels) for s in signals] == \
        [("sft-0000", 0.25, 1.0, 1), ("rl-0001", 0.5, 0.0, 1)]
    assert pt.RULES["ground_truth_eval"](signals) == "rl-0001"
    with pytest.raises(ValueError, match="rl-0099"):
        pt.judge(signals, "rl-0099")
    with pytest.raises(ValueError, match="truth_key 'success'"):
        pt.judge(signals, "rl-0001", truth_key="success")
    assert all(pt.rule_summary(name) for name in pt.RULES)
