"""efm self-improve: settings, the robots' graphs, evaluation bookkeeping and the report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from efm_runtime.errors import EfmUserError
from efm_trainer.selfimprove.evaluation import EvaluationLog, VersionEvaluation, wilson_interval
from efm_trainer.selfimprove.report import write_report
from efm_trainer.selfimprove.robots import robot_graph, write_fleet
from efm_trainer.selfimprove.settings import (EVAL_FIRST_SEED, PRACTICE_FIRST_SEED, PRACTICE_SEED_STRIDE, QUICK,
                                              SelfImproveSettings)


def test_wilson_interval_is_sane_at_the_edges_and_contains_the_rate():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2          # 0/20 is not "certainly 0%"
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and 0.8 < low < 0.9
    low, high = wilson_interval(10, 50)
    assert low < 0.2 < high and high - low < 0.25
    assert wilson_interval(10, 50) == pytest.approx((0.1124, 0.3304), abs=1e-3)  # textbook value


def test_settings_refuse_nonsense_naming_the_option():
    with pytest.raises(EfmUserError, match="--robots must be at least 1"):
        SelfImproveSettings(robots=0)
    with pytest.raises(EfmUserError, match="--gamma"):
        SelfImproveSettings(gamma=1.5)
    quick = SelfImproveSettings(**QUICK)
    assert quick.quick and quick.practice_episodes < SelfImproveSettings().practice_episodes


def test_seed_ranges_of_demos_practice_and_evaluation_never_meet():
    settings = SelfImproveSettings(robots=16)
    practice = [(PRACTICE_FIRST_SEED + i * PRACTICE_SEED_STRIDE, PRACTICE_FIRST_SEED + (i + 1) * PRACTICE_SEED_STRIDE)
                for i in range(settings.robots)]
    assert settings.demos < EVAL_FIRST_SEED
    assert EVAL_FIRST_SEED + settings.eval_episodes < practice[0][0]


def test_each_robot_graph_is_a_valid_graph_with_the_stage2_nodes(tmp_path):
    from efm_runtime.graph import parse_graph
    from efm_runtime.registry import node_entry_points

    settings = SelfImproveSettings(out=str(tmp_path / "run"), robots=2)
    robots = write_fleet(settings, tmp_path / "models" / "sft-0000", "http://127.0.0.1:9", tmp_path / "token",
                         ["top"])
    assert [r.name for r in robots] == ["robot_1", "robot_2"]
    graphs = [yaml.safe_load(r.graph_path.read_text()) for r in robots]
    known = node_entry_points()
    for robot, data in zip(robots, graphs):
        graph = parse_graph(data, str(robot.graph_path), known_executables=known)
        assert graph.use_sim_time and graph.robots == [robot.name]
        assert {n.executable for n in graph.nodes} == {"sim", "policy", "reward", "episode_manager", "trainer_bridge"}
    seeds = [next(n for n in g["robots"][r.name]["nodes"] if n["executable"] == "episode_manager")
             ["parameters"]["first_seed"] for g, r in zip(graphs, robots)]
    assert seeds == [PRACTICE_FIRST_SEED, PRACTICE_FIRST_SEED + PRACTICE_SEED_STRIDE]


def test_robots_practise_with_sampling_and_the_frozen_reward_model(tmp_path):
    settings = SelfImproveSettings(temperature=0.7, success_threshold=3.5, success_streak=2)
    model = tmp_path / "sft-0000"
    graph = robot_graph(settings, "robot_1", 0, model, "http://127.0.0.1:9", tmp_path / "t", tmp_path / "r", ["top"])
    nodes = {n["executable"]: n["parameters"] for n in graph["robots"]["robot_1"]["nodes"]}
    assert nodes["policy"]["greedy"] is False and nodes["policy"]["temperature"] == 0.7
    assert nodes["reward"]["model_dir"] == str(model) == nodes["policy"]["model_dir"]
    assert nodes["reward"]["success_threshold"] == 3.5 and nodes["reward"]["success_streak"] == 2
    assert nodes["trainer_bridge"]["learner_url"].startswith("http://127.0.0.1:")


def _evaluation(version, successes, episodes, practice):
    low, high = wilson_interval(successes, episodes)
    return VersionEvaluation(version, episodes, successes, successes / episodes, low, high, EVAL_FIRST_SEED,
                             practice, 1.0)


def test_evaluations_survive_a_restart_and_count_once(tmp_path):
    from efm_policy.evaluate import EpisodeResult

    store = EvaluationLog(tmp_path)
    store.append(_evaluation("sft-0000", 2, 4, 0), [EpisodeResult(s, "push", s % 2 == 0, 10, 3.0) for s in range(4)])
    store.append(_evaluation("rl-0001", 3, 4, 8), [EpisodeResult(s, "push", s != 0, 10, 3.0) for s in range(4)])
    loaded = EvaluationLog(tmp_path).load()
    assert sorted(loaded) == ["rl-0001", "sft-0000"] and loaded["rl-0001"].practice_episodes == 8
    rows = (tmp_path / "evaluations.csv").read_text().splitlines()
    assert len(rows) == 1 + 8 and rows[0].startswith("version,seed")


def test_report_has_the_before_after_figures_a_table_row_per_version_and_a_plot(tmp_path):
    settings = SelfImproveSettings(out=str(tmp_path), eval_episodes=20)
    evaluations = {e.version: e for e in (_evaluation("sft-0000", 4, 20, 0), _evaluation("rl-0001", 7, 20, 12),
                                          _evaluation("rl-0002", 6, 20, 25))}
    status = {"episodes_total": 30, "learner_step": 64, "episodes_per_version": {"sft-0000": 12, "rl-0001": 13,
                                                                                 "rl-0002": 5},
              "success_rate_per_version": {"sft-0000": 0.25, "rl-0001": 0.4}}
    report = write_report(settings, evaluations, status, {"wall_s": 600, "command": "efm self-improve --quick"},
                          tmp_path / "report")
    text = report.read_text()
    assert "before Stage 2 (sft-0000): 20% (4/20" in text
    assert "best version by held-out success: rl-0001: 35% (7/20" in text
    assert "after Stage 2 (last evaluated, rl-0002): 30%" in text
    table = [line for line in text.splitlines() if line.startswith("| rl-") or line.startswith("| sft-")]
    assert [line.split("|")[1].strip() for line in table] == ["sft-0000", "rl-0001", "rl-0002"]
    assert "| rl-0001 | 12 | 35% (7/20) |" in text and "| 40% |" in text
    assert (tmp_path / "report" / "success_vs_practice.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["best"]["version"] == "rl-0001" and summary["before"]["success_rate"] == 0.2


def test_a_resumed_run_refuses_other_stage1_settings(tmp_path):
    from efm_trainer.selfimprove.pipeline import SelfImproveRun

    SelfImproveRun(SelfImproveSettings(out=str(tmp_path), demos=100))
    SelfImproveRun(SelfImproveSettings(out=str(tmp_path), demos=100, robots=2))  # Stage 2 may change
    with pytest.raises(EfmUserError, match=r"demos \(100 -> 200\)"):
        SelfImproveRun(SelfImproveSettings(out=str(tmp_path), demos=200))
    assert Path(tmp_path / "settings.json").is_file()


def test_quick_run_goes_from_demos_to_a_report_with_a_tiny_model(tmp_path, monkeypatch):
    """The whole main job, shrunk: demos, SFT, export, a learner process, one robot process practising, an
    update that publishes rl-0001, ground-truth evaluation of both versions, and the report."""
    from efm_runtime.cli import build_parser
    from efm_trainer.selfimprove.cli import settings_from_args
    from efm_trainer.selfimprove.pipeline import SelfImproveRun

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args([
        "self-improve", "--env", "language_table", "--quick", "--out", "run", "--cache", str(tmp_path / "cache"),
        "--demos", "3", "--sft-steps", "2", "--robots", "1", "--practice-episodes", "2", "--max-steps", "4",
        "--steps-per-update", "4", "--eval-episodes", "2",
        "--success-threshold", "0.001"])  # a detector that never fires: episodes run to max_steps
    settings = settings_from_args(args)
    assert settings.quick and settings.vision_blocks == 5
    # tiny model: small images, a narrow trunk, single-sample minibatches
    settings.image_size, settings.d_model, settings.layers = (32, 48), 32, 1
    settings.sft_batch_size, settings.sgd_steps, settings.rl_batch_size = 4, 1, 4
    logs: list[str] = []
    report = SelfImproveRun(settings, log=logs.append).run()

    out = tmp_path / "run"
    assert report == out / "report" / "report.md"
    text = report.read_text()
    evaluated = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith(("| sft-", "| rl-"))]
    assert evaluated[:2] == ["sft-0000", "rl-0001"]
    assert (out / "report" / "success_vs_practice.png").is_file()
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["status"]["episodes_total"] >= 2 and summary["status"]["learner_step"] >= 1
    assert summary["before"]["episodes"] == 2
    rows = (out / "evaluations.csv").read_text().splitlines()
    assert len(rows) >= 1 + 2 * 2 and {r.split(",")[1] for r in rows[1:]} == {"1000001", "1000002"}
    uploaded = list((out / "robots" / "robot_1" / "spool" / ".uploaded").iterdir())
    assert len(uploaded) >= 2
    assert any("robots: 1 started" in line for line in logs)
    # evaluation in worker processes gives the same episodes as in one process
    from efm_policy.evaluate import evaluate_policy

    def outcomes(workers):
        results = evaluate_policy(str(out / "models" / "sft-0000"), "language_table", "separate", episodes=3,
                                  max_policy_steps=4, log=lambda _m: None, workers=workers)
        return [(r.seed, r.instruction, r.success, r.policy_steps) for r in results]

    assert outcomes(2) == outcomes(1)


@pytest.mark.parametrize("every_version", [False, True])
def test_a_busy_evaluator_takes_the_newest_version_and_skips_older_ones(tmp_path, monkeypatch, every_version):
    """... unless told to evaluate every version (experiments), which it then does oldest first."""
    import threading

    import efm_policy.evaluate as evaluate
    from efm_policy.evaluate import EpisodeResult
    from efm_trainer.selfimprove.evaluation import Evaluator

    release = threading.Event()
    evaluated = []

    def fake_evaluate(model_dir, env, task, episodes, first_seed, greedy, max_policy_steps, log, on_episode, workers):
        evaluated.append(Path(model_dir).name)
        if len(evaluated) == 1:
            release.wait(30)      # the first evaluation is slow: three versions arrive meanwhile
        results = [EpisodeResult(first_seed + i, "push", i < len(evaluated), 5, 1.0) for i in range(episodes)]
        for r in results:
            on_episode(r)
        return results

    monkeypatch.setattr(evaluate, "evaluate_policy", fake_evaluate)
    done = []
    evaluator = Evaluator(EvaluationLog(tmp_path), "toy", "", 4, EVAL_FIRST_SEED, 10, on_result=done.append,
                          every_version=every_version)
    evaluator.submit("sft-0000", tmp_path / "sft-0000", 0)
    while not evaluated:
        threading.Event().wait(0.01)
    for n, practice in ((1, 10), (2, 20), (3, 30)):
        evaluator.submit(f"rl-000{n}", tmp_path / f"rl-000{n}", practice)
    evaluator.submit("sft-0000", tmp_path / "sft-0000", 0)      # evaluated or running: never twice
    release.set()
    assert evaluator.wait(30)
    if every_version:
        assert evaluated == ["sft-0000", "rl-0001", "rl-0002", "rl-0003"] and not evaluator.skipped
        assert sorted(EvaluationLog(tmp_path).load()) == ["rl-0001", "rl-0002", "rl-0003", "sft-0000"]
        return
    assert evaluated == ["sft-0000", "rl-0003"]
    assert evaluator.skipped == ["rl-0001", "rl-0002"]
    assert [e.version for e in done] == ["sft-0000", "rl-0003"] and done[1].successes == 2
    assert sorted(EvaluationLog(tmp_path).load()) == ["rl-0003", "sft-0000"]
