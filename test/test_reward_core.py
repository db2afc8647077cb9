"""The reward/success core on constructed d sequences: rewards, streak, success, late frames, calibration."""
import pytest

from efm_reward.core import WARNING, DetectorSettings, RewardTracker, calibrate_threshold

PERIOD_NS = 100_000_000  # 10 Hz


def run(ds, s=1.0, k=2, stamps=None, ages_ns=None, log=None):
    """Feed one episode of d values; frames are one period apart unless ``stamps`` (in periods) says not."""
    tracker = RewardTracker(DetectorSettings(success_threshold=s, success_streak=k), log or (lambda *_: None))
    tracker.start_episode("e1")
    stamps = stamps if stamps is not None else list(range(len(ds)))
    ages_ns = ages_ns or [0] * len(ds)
    return tracker, [tracker.step(d, n * PERIOD_NS, n * PERIOD_NS + age) for d, n, age in zip(ds, stamps, ages_ns)]


def test_reward_is_the_drop_in_steps_to_go_and_zero_at_the_first_step():
    _, results = run([10.0, 8.0, 8.5, 5.0])
    assert [r.step for r in results] == [0, 1, 2, 3]
    assert [r.reward for r in results] == [0.0, 2.0, -0.5, 3.5]
    assert [r.steps_to_go for r in results] == [10.0, 8.0, 8.5, 5.0]
    assert not any(r.frame_late for r in results) and all(r.episode_id == "e1" for r in results)


def test_success_needs_k_consecutive_steps_at_or_below_s():
    _, results = run([5.0, 1.0, 3.0, 1.0, 0.5, 1.0, 4.0], s=1.0, k=3)
    assert [r.success_streak for r in results] == [0, 1, 0, 1, 2, 3, 0]
    assert [r.success for r in results] == [False] * 5 + [True, False]
    assert all(r.success_threshold == 1.0 for r in results)


def test_a_dropped_frame_gives_no_reward_spike_and_rebases():
    # frame 3 was dropped: frame 4 comes two periods after frame 2
    _, results = run([10.0, 9.0, 8.0, 2.0, 1.5], stamps=[0, 1, 2, 4, 5], k=5)
    assert [r.frame_late for r in results] == [False, False, False, True, False]
    assert [r.reward for r in results] == [0.0, 1.0, 1.0, 0.0, 0.5]  # 1.5 measured against the late 2.0
    assert "dropped" in results[3].late_reason
    # the rewards sum to the total drop less the unattributable jump across the gap: no double count
    assert sum(r.reward for r in results) == pytest.approx((10.0 - 1.5) - (8.0 - 2.0))


def test_a_gap_of_up_to_one_and_a_half_periods_is_on_time():
    _, results = run([3.0, 2.0], stamps=[0, 1.5])
    assert not results[1].frame_late and results[1].reward == 1.0


def test_an_old_frame_is_late_with_zero_reward():
    _, results = run([10.0, 9.0, 4.0, 3.0], ages_ns=[0, 0, 300_000_000, 0], k=5)
    assert [r.frame_late for r in results] == [False, False, True, False]
    assert [r.reward for r in results] == [0.0, 1.0, 0.0, 1.0]
    assert "old" in results[2].late_reason


def test_late_steps_still_count_in_the_streak():
    _, results = run([5.0, 0.5, 0.4, 0.3], stamps=[0, 1, 3, 4], s=1.0, k=3)
    assert results[2].frame_late and [r.success_streak for r in results] == [0, 1, 2, 3]
    assert results[3].success


def test_first_frame_success_is_warned_once_and_counted():
    logs = []
    tracker, results = run([0.5, 0.4, 0.3], s=1.0, k=1, log=lambda level, text: logs.append((level, text)))
    assert results[0].success  # reported, not suppressed
    assert tracker.first_frame_successes == 1
    warnings = [text for level, text in logs if level == WARNING]
    assert len(warnings) == 1 and "s = 1" in warnings[0] and "d = 0.50" in warnings[0]
    tracker.start_episode("e2")
    tracker.step(5.0, 10 * PERIOD_NS, 10 * PERIOD_NS)
    tracker.step(0.5, 11 * PERIOD_NS, 11 * PERIOD_NS)   # success later in the episode is no warning
    assert tracker.first_frame_successes == 1 and len(logs) == 1


def test_a_new_episode_starts_from_step_zero_without_reward():
    tracker, _ = run([5.0, 4.0])
    tracker.start_episode("e2")
    result = tracker.step(1.0, 50 * PERIOD_NS, 50 * PERIOD_NS)
    assert (result.episode_id, result.step, result.reward, result.frame_late) == ("e2", 0, 0.0, False)
    assert not tracker.end_episode("e1") and tracker.end_episode("e2") and tracker.episode_id == ""


def test_bad_steps_are_refused_with_the_reason():
    tracker, _ = run([5.0])
    with pytest.raises(ValueError, match="d = nan"):
        tracker.step(float("nan"), PERIOD_NS, PERIOD_NS)
    with pytest.raises(ValueError, match="not newer"):
        tracker.step(4.0, 0, 0)
    tracker.end_episode("e1")
    with pytest.raises(RuntimeError, match="no episode"):
        tracker.step(4.0, 2 * PERIOD_NS, 2 * PERIOD_NS)


@pytest.mark.parametrize("field, value, match", [
    ("success_streak", 0, "success_streak"), ("success_threshold", float("nan"), "success_threshold"),
    ("rate_hz", 0.0, "rate_hz"), ("max_observation_age_s", 0.0, "max_observation_age_s")])
def test_settings_name_the_bad_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        DetectorSettings(**{"success_threshold": 1.0, field: value})


# ---- calibrate_threshold -----------------------------------------------------------------------
def test_calibration_separates_successful_from_failed_episodes():
    d = [[9, 6, 3, 1.0, 0.8],      # succeeds at the last two steps
         [9, 7, 5, 4.0, 3.5],      # fails, gets close
         [8, 5, 2, 0.5, 0.2]]      # succeeds at the last two steps
    truth = [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    best = calibrate_threshold(d, truth, streak=1)
    assert best.threshold == 0.8    # the smallest s that still catches both successes at a success step
    assert (best.precision, best.recall, best.true_positives, best.false_positives) == (1.0, 1.0, 2, 0)
    assert (best.successful_episodes, best.episodes) == (2, 3)


def test_min_precision_trades_recall_for_precision():
    d = [[2.0, 0.5], [2.0, 1.5], [2.0, 1.0]]
    truth = [[0, 1], [0, 1], [0, 0]]   # the third episode fails but its d dips to 1.0
    best = calibrate_threshold(d, truth)
    assert best.threshold == 1.5 and (best.true_positives, best.false_positives) == (2, 1)
    assert best.recall == 1.0 and best.precision == pytest.approx(2 / 3)
    strict = calibrate_threshold(d, truth, min_precision=0.9)
    assert strict.threshold == 0.5 and (strict.precision, strict.recall) == (1.0, 0.5)


def test_the_streak_ignores_a_single_low_reading():
    d = [[5.0, 0.5, 5.0, 0.6, 0.6, 0.6]]   # one noisy dip at step 1, real success from step 3
    truth = [[0, 0, 0, 1, 1, 1]]
    assert calibrate_threshold(d, truth, streak=1).true_positives == 0  # every s fires on the dip first
    best = calibrate_threshold(d, truth, streak=3)
    assert best.threshold == pytest.approx(0.6) and (best.precision, best.recall) == (1.0, 1.0)


def test_min_precision_that_cannot_be_met_is_an_error():
    with pytest.raises(ValueError, match="precision 0.9"):
        calibrate_threshold([[1.0, 1.0]], [[0, 0]], min_precision=0.9)


def test_calibration_inputs_are_checked():
    with pytest.raises(ValueError, match="episode 0: 2 values of d but 1 success flags"):
        calibrate_threshold([[1.0, 2.0]], [[0]])
    with pytest.raises(ValueError, match="same number of episodes"):
        calibrate_threshold([[1.0]], [])
    with pytest.raises(ValueError, match="shorter than the streak 3"):
        calibrate_threshold([[1.0, 2.0]], [[0, 1]], streak=3)
