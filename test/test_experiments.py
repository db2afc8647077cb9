"""efm experiment: statistics, resumable arms, and the scaling experiment end to end with a tiny model."""
from __future__ import annotations

import dataclasses
import json

import pytest

from efm_runtime.errors import EfmUserError
from efm_trainer.experiments.common import ExperimentDir, Progress, paired_difference, summarise


def rows(arm, seed, successes):
    return [{"arm": arm, "group": arm, "training_seed": seed, "eval_seed": 1000001 + i, "success": s}
            for i, s in enumerate(successes)]


def test_summary_pools_episodes_and_spreads_over_seeds():
    data = rows("a", 0, [1, 1, 0, 0]) + rows("a", 1, [1, 0, 0, 0]) + rows("a", 2, [1, 1, 1, 0])
    s = summarise(data)
    assert (s.episodes, s.successes) == (12, 6) and s.rate == 0.5
    assert s.pooled_low < 0.5 < s.pooled_high
    assert s.seed_rates == [0.5, 0.25, 0.75] and s.seed_mean == pytest.approx(0.5)
    # t(2) = 4.303, sd 0.25, n 3: half width 0.621, clipped to [0, 1]
    assert (s.seed_low, s.seed_high) == (0.0, 1.0)
    one_seed = summarise(rows("a", 0, [1, 0]))
    assert one_seed.seed_low != one_seed.seed_low       # no spread from one seed: NaN, not a fake interval


def test_paired_difference_pairs_by_scene():
    a = rows("a", 0, [1, 1, 1, 0]) + rows("a", 1, [1, 1, 0, 0])
    b = rows("b", 0, [1, 0, 0, 0])
    d = paired_difference(a, b)
    # per scene: a = 1, 1, .5, 0; b = 1, 0, 0, 0; differences 0, 1, .5, 0
    assert d.scenes == 4 and d.difference == pytest.approx(0.375)
    assert d.low < 0.375 < d.high


def test_experiment_dir_resumes_only_with_the_same_configuration(tmp_path):
    exp = ExperimentDir(tmp_path, "scaling", {"unit": 100, "seeds": 3})
    assert exp.result("arm-a") is None
    exp.finish("arm-a", {"successes": 1}, rows("arm-a", 0, [1, 0]))
    again = ExperimentDir(tmp_path, "scaling", {"unit": 100, "seeds": 3})
    assert again.result("arm-a") == {"successes": 1}
    assert [r["success"] for r in again.episodes()] == [1, 0]
    with pytest.raises(EfmUserError, match=r"unit \(100 -> 50\)"):
        ExperimentDir(tmp_path, "scaling", {"unit": 50, "seeds": 3})
    assert len((tmp_path / "commands.txt").read_text().splitlines()) == 2


def test_scaling_refuses_multiples_below_two_naming_the_option():
    from efm_trainer.experiments.scaling import ScalingConfig

    with pytest.raises(EfmUserError, match="--multiples 1 8: each must be 2 or more"):
        ScalingConfig(multiples=(1, 8))


def test_time_left_follows_the_estimates_and_skips_finished_arms():
    progress = Progress([("a", 60.0), ("b", 120.0), ("c", 60.0)], log=lambda _m: None)
    assert progress.time_left() == "about 4 min left"
    progress.skip("c")
    assert progress.time_left() == "about 3 min left"
    progress.close()


def test_scaling_runs_every_arm_writes_its_report_and_resumes_without_redoing(tmp_path, monkeypatch):
    """unit 10, 2x only, one seed, a tiny model: demos, the self-improve arm (sft-0000, rl-0001, rl-0002),
    the Stage 1 arm on 20 demos, the report; a second start finds every arm done."""
    pytest.importorskip("torch")
    from efm_trainer.experiments import scaling

    original = scaling.ScalingConfig.base_settings

    def tiny(self, seed):
        return dataclasses.replace(original(self, seed), image_size=(32, 48), d_model=32, layers=1, vision_blocks=5,
                                   sft_batch_size=4, sgd_steps=1, rl_batch_size=4, success_threshold=0.001)

    monkeypatch.setattr(scaling.ScalingConfig, "base_settings", tiny)
    config = scaling.ScalingConfig(unit=10, multiples=(2,), seeds=1, eval_episodes=2, eval_workers=1, max_steps=4,
                                   sft_steps=2, robots=1, cache=str(tmp_path / "cache"))
    logs: list[str] = []
    report = scaling.run_scaling(config, tmp_path / "exp", log=logs.append)
    text = report.read_text()
    for group in ("1x", "1x + 10%", "1x + 20%", "2x"):
        assert f"| {group} |" in text and f"| {group} | - |" not in text
    assert "| 1x + 10% - 2x |" in text
    results = (tmp_path / "exp" / "report" / "results.csv").read_text().splitlines()
    assert len(results) == 1 + 4 * 2
    improved = json.loads((tmp_path / "exp" / "arms" / "self-improve-seed0-rl-0001" / "result.json").read_text())
    assert improved["practice_episodes"] >= 1 and improved["demos"] == 10
    assert json.loads((tmp_path / "exp" / "arms" / "stage1-2x-seed0" / "result.json").read_text())["demos"] == 20
    assert (tmp_path / "exp" / "report" / "success_vs_episodes.png").is_file()

    logs.clear()
    scaling.run_scaling(config, tmp_path / "exp", log=logs.append)
    assert not any("starting" in line for line in logs)


def test_overoptimisation_evaluates_every_version_twice_and_judges_the_rules(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from efm_trainer.experiments import overoptimisation

    original = overoptimisation.OveroptimisationConfig.settings

    def tiny(self):
        return dataclasses.replace(original(self), image_size=(32, 48), d_model=32, layers=1, vision_blocks=5,
                                   sft_batch_size=4, sgd_steps=1, rl_batch_size=4, success_threshold=0.001)

    monkeypatch.setattr(overoptimisation.OveroptimisationConfig, "settings", tiny)
    config = overoptimisation.OveroptimisationConfig(demos=10, sft_steps=2, episodes_per_update=1, updates=2,
                                                     eval_episodes=2, eval_workers=1, max_steps=4, robots=1,
                                                     cache=str(tmp_path / "cache"))
    text = overoptimisation.run_overoptimisation(config, tmp_path / "exp", log=lambda _m: None).read_text()
    table = [line for line in text.splitlines() if line.startswith(("| sft-0000", "| rl-000"))]
    assert [line.split("|")[1].strip() for line in table] == ["sft-0000", "rl-0001", "rl-0002"]
    # the simulator's truth travels with each practice episode: 'truth on practice' is measured
    assert all(line.split("|")[7].strip() != "n/a" for line in table[:2])
    for rule in ("ground_truth_eval", "detector", "labels", "false_alarm_stop"):
        assert f"| {rule} |" in text
    seeds = {line.split(",")[6] for line in (tmp_path / "exp" / "report" / "results.csv").read_text().splitlines()[1:]}
    assert seeds == {"1000001", "1000002", "1100001", "1100002"}
    assert (tmp_path / "exp" / "report" / "detector_vs_truth.png").is_file()


def test_pretraining_compares_small_and_scratch_through_the_same_pipeline(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from efm_trainer.experiments import pretraining

    original = pretraining.PretrainingConfig.settings

    def tiny(self, backbone, seed):
        return dataclasses.replace(original(self, backbone, seed), image_size=(32, 48), d_model=32, layers=1,
                                   sft_batch_size=4, sgd_steps=1, rl_batch_size=4, success_threshold=0.001)

    monkeypatch.setattr(pretraining.PretrainingConfig, "settings", tiny)
    config = pretraining.PretrainingConfig(demos=10, sft_steps=2, eval_episodes=2, eval_workers=1, max_steps=4,
                                           robots=1, cache=str(tmp_path / "cache"))
    text = pretraining.run_pretraining(config, tmp_path / "exp", log=lambda _m: None).read_text()
    for backbone in ("small", "scratch"):
        for stage in ("Stage 1", "+ 10%", "+ 20%"):
            assert f"| {backbone} {stage} | " in text and f"| {backbone} {stage} | not run" not in text
        settings = json.loads((tmp_path / "exp" / "arms" / f"{backbone}-seed0" / "run" / "settings.json").read_text())
        assert settings["backbone"] == backbone and settings["image_size"] == [32, 48]
    assert "| small Stage 1 - scratch Stage 1 |" in text
    assert text.count("| small-seed0 |") + text.count("| scratch-seed0 |") == 2     # reward model rows
