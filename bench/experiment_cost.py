"""Where an experiment's wall time went, per arm and per stage, from the files each stage leaves behind.

    python bench/experiment_cost.py runs/experiments/scaling [--cores 2]

Stage boundaries are file modification times (demo links made, Stage 1 checkpoint, export manifest,
evaluation results), so this works on any finished experiment, resumed ones included (a resumed arm's
stage then spans the pause). Inside a self-improve arm, learner updates and evaluations overlap practice;
their own durations come from the learner's metrics.jsonl (update_s) and evaluations.jsonl (wall_s).
Core-hours = wall hours x --cores: the runs keep every core busy, so this is the machine time they cost.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def _span(start: float | None, end: float | None) -> float:
    return max(0.0, end - start) if start is not None and end is not None else 0.0


def stage1_arm(arm: Path) -> dict[str, float]:
    start = _mtime(arm / "demos")
    trained = _mtime(arm / "sft" / "checkpoint.pt")
    exported = _mtime(arm / "model" / "manifest.json")
    done = _mtime(arm / "result.json")
    return {"stage 1 (read demos, features, SFT)": _span(start, trained), "export": _span(trained, exported),
            "evaluation": _span(exported, done)}


def self_improve_arm(arm: Path) -> dict[str, float]:
    run = arm / "run"
    start = _mtime(run / "demos")
    trained = _mtime(run / "sft" / "checkpoint.pt")
    exported = _mtime(run / "models" / "sft-0000" / "manifest.json")
    done = _mtime(run / "evaluations.jsonl")
    updates = sum(json.loads(line).get("update_s", 0.0)
                  for line in (run / "learner" / "metrics.jsonl").read_text().splitlines() if line.strip()) \
        if (run / "learner" / "metrics.jsonl").is_file() else 0.0
    evaluations = sum(json.loads(line).get("wall_s", 0.0)
                      for line in (run / "evaluations.jsonl").read_text().splitlines() if line.strip()) \
        if (run / "evaluations.jsonl").is_file() else 0.0
    stage2 = _span(exported, done)
    return {"stage 1 (read demos, features, SFT)": _span(start, trained), "export": _span(trained, exported),
            "stage 2 (practice, updates, evaluations overlapping)": stage2,
            "  of which learner updates": updates, "  of which evaluations (concurrent)": evaluations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiment directory (with arms/)")
    parser.add_argument("--cores", type=int, default=2, help="cores the runs kept busy")
    args = parser.parse_args()
    arms = sorted(p for p in (Path(args.experiment) / "arms").iterdir() if p.is_dir())
    totals: dict[str, float] = defaultdict(float)
    wall = 0.0
    print(f"{'arm':34s} {'stage':52s} {'seconds':>8s}")
    for arm in arms:
        if (arm / "run").is_dir():
            stages = self_improve_arm(arm)
        elif (arm / "sft").is_dir():
            stages = stage1_arm(arm)
        else:
            continue          # per-version arms of a self-improve run, or evaluation-only arms
        for stage, seconds in stages.items():
            print(f"{arm.name:34s} {stage:52s} {seconds:8.0f}")
            totals[stage] += seconds
            if not stage.startswith("  "):
                wall += seconds
    print()
    for stage, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = f"{100 * seconds / wall:5.1f}%" if wall and not stage.startswith("  ") else "      "
        print(f"{stage:52s} {seconds / 60:7.1f} min {share}")
    print(f"{'total (arms with training)':52s} {wall / 60:7.1f} min = {wall / 3600 * args.cores:.2f} core-hours "
          f"on {args.cores} cores")


if __name__ == "__main__":
    main()
