"""The two kinds of arm: Stage 1 alone on N demos, and a whole ``efm self-improve`` run (Stage 1 on N demos,
then practice), both scored on the same held-out scenes by the simulator's ground truth."""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

from ..selfimprove.pipeline import INITIAL_VERSION, SelfImproveRun, link_demo_subset
from ..selfimprove.settings import EVAL_FIRST_SEED, SelfImproveSettings
from .common import ExperimentDir, Progress


def stage1_arm(exp: ExperimentDir, arm: str, group: str, settings: SelfImproveSettings, demo_pool: Path,
               eval_workers: int, progress: Progress) -> dict:
    """SFT on the first ``settings.demos`` demos of the pool, export, evaluate greedily on the held-out scenes."""
    from efm_policy.evaluate import evaluate_policy
    from efm_policy.export import export_model
    from efm_policy.manifest import MANIFEST
    from efm_trainer.sft import SFTRun, SFTSettings

    done = exp.result(arm)
    if done:
        return done
    progress.start(arm)
    s = settings
    directory = exp.arm_dir(arm)
    data = link_demo_subset(demo_pool, s.demos, directory / "demos")
    run = SFTRun(SFTSettings(data=[str(data)], out=str(directory / "sft"), max_steps=s.sft_steps,
                             batch_size=s.sft_batch_size, lr=s.sft_lr, action_bins=s.action_bins,
                             vision_blocks=s.vision_blocks, image_size=s.image_size, backbone=s.backbone,
                             d_model=s.d_model, layers=s.layers, seed=s.seed, feature_cache=str(s.feature_cache()),
                             eval_every=s.sft_steps, checkpoint_every=max(100, s.sft_steps // 4)),
                 log=lambda _m: None)
    if run.step < s.sft_steps:
        run.train()
    model = directory / "model"
    if not (model / MANIFEST).is_file():
        export_model(directory / "sft", model, version=arm, log=lambda _m: None)
    results = evaluate_policy(str(model), s.env, s.task, s.eval_episodes, EVAL_FIRST_SEED, greedy=True,
                              max_policy_steps=s.max_steps, log=lambda _m: None, workers=eval_workers)
    successes = sum(r.success for r in results)
    result = {"arm": arm, "group": group, "training_seed": s.seed, "demos": s.demos, "practice_episodes": 0,
              "version": arm, "episodes": len(results), "successes": successes}
    exp.finish(arm, result, (_row(result, r.seed, r.instruction, r.success, r.policy_steps) for r in results))
    progress.done(arm, f"{successes}/{len(results)} on held-out scenes")
    return result


def self_improve_arm(exp: ExperimentDir, arm: str, settings: SelfImproveSettings,
                     versions: dict[str, str], progress: Progress) -> list[dict]:
    """One ``efm self-improve`` run in ``arms/<arm>/run``; ``versions`` maps the groups the experiment compares
    to the version each one is (e.g. {"1x": "sft-0000", "1x + 10%": "rl-0001"}). Each group becomes an arm of
    its own (``<arm>-<version>``) with the practice episodes spent before that version was published."""
    names = {group: f"{arm}-{version}" for group, version in versions.items()}
    done = [exp.result(name) for name in names.values()]
    if all(done):
        progress.skip(arm)
        return done
    progress.start(arm)
    run_settings = dataclasses.replace(settings, out=str(exp.arm_dir(arm) / "run"))
    # the nodes' info lines would interleave with the experiment's progress line; their warnings still show
    efm_log = logging.getLogger("efm")
    level = efm_log.level
    efm_log.setLevel(logging.WARNING)
    try:
        SelfImproveRun(run_settings, log=lambda m: progress.bar.write(f"  {arm}: {m}")).run()
    finally:
        efm_log.setLevel(level)
    out = run_settings.out_dir
    evaluations = {}
    for line in (out / "evaluations.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            evaluations[entry["version"]] = entry
    episodes: dict[str, list[dict]] = {}
    with open(out / "evaluations.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            episodes.setdefault(row["version"], []).append(row)
    results = []
    for group, version in versions.items():
        if version not in evaluations:
            raise RuntimeError(f"{out}: version {version} was not published or not evaluated "
                               f"(evaluated: {', '.join(sorted(evaluations)) or 'none'}); see {out / 'learner.log'}")
        entry = evaluations[version]
        result = {"arm": names[group], "group": group, "training_seed": settings.seed, "demos": settings.demos,
                  "practice_episodes": 0 if version == INITIAL_VERSION else int(entry["practice_episodes"]),
                  "version": version, "episodes": entry["episodes"], "successes": entry["successes"],
                  "run": str(out)}
        rows = (_row(result, int(r["seed"]), r["instruction"], int(r["success"]), int(r["policy_steps"]))
                for r in episodes[version])
        results.append(exp.finish(names[group], result, rows))
    summary = ", ".join(f"{r['group']} {r['successes']}/{r['episodes']}" for r in results)
    progress.done(arm, summary)
    return results


def _row(result: dict, seed: int, instruction: str, success: bool, steps: int) -> dict:
    return {"arm": result["arm"], "group": result["group"], "training_seed": result["training_seed"],
            "demos": result["demos"], "practice_episodes": result["practice_episodes"], "version": result["version"],
            "eval_seed": seed, "instruction": instruction, "success": int(success), "policy_steps": steps}
