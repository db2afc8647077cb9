"""The two kinds of arm: Stage 1 alone on N demos, and a whole ``efm self-improve`` run (Stage 1 on N demos,
then practice), both scored on the same held-out scenes by the simulator's ground truth."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..selfimprove.evaluation import EvaluationLog
from ..selfimprove.pipeline import INITIAL_VERSION, SelfImproveRun, link_demo_subset
from ..selfimprove.settings import EVAL_FIRST_SEED, SelfImproveSettings
from .common import ExperimentDir, Progress


def practice_settings(*, episodes_per_update: int, updates: int, **fields) -> SelfImproveSettings:
    """A self-improve run as the experiments make it: an update every ``episodes_per_update`` practice episodes,
    one pass over each update's actions, every version evaluated, practice stopped after ``updates`` updates
    (``practice_episodes`` is then only a bound)."""
    return SelfImproveSettings(episodes_per_update=episodes_per_update, updates=updates, sgd_steps=0,
                               evaluate_every_version=True, practice_episodes=10 * updates * episodes_per_update,
                               **fields)


def stage1_arm(exp: ExperimentDir, arm: str, group: str, settings: SelfImproveSettings, demo_pool: Path,
               eval_workers: int, progress: Progress) -> dict:
    """SFT on the first ``settings.demos`` demos of the pool, export, evaluate greedily on the held-out scenes."""
    from efm_policy.export import export_model
    from efm_policy.manifest import MANIFEST
    from efm_trainer.sft import SFTRun

    done = exp.result(arm)
    if done:
        return done
    progress.start(arm)
    s = settings
    directory = exp.arm_dir(arm)
    data = link_demo_subset(demo_pool, s.demos, directory / "demos")
    # validation only at the end: the arm's figure is its evaluation
    run = SFTRun(s.sft_settings(data, directory / "sft", eval_every=s.sft_steps), log=lambda _m: None)
    if run.step < s.sft_steps:
        run.train()
    model = directory / "model"
    if not (model / MANIFEST).is_file():
        export_model(directory / "sft", model, version=arm, log=lambda _m: None)
    result = evaluation_arm(exp, {"arm": arm, "group": group, "training_seed": s.seed, "demos": s.demos,
                                  "practice_episodes": 0, "version": arm},
                            model, s, EVAL_FIRST_SEED, eval_workers)
    progress.done(arm, f"{result['successes']}/{result['episodes']} on held-out scenes")
    return result


def evaluation_arm(exp: ExperimentDir, fields: dict, model_dir: Path, settings: SelfImproveSettings,
                   first_seed: int, workers: int) -> dict:
    """Evaluate ``model_dir`` greedily on ``settings.eval_episodes`` scenes from ``first_seed`` and finish the
    arm ``fields["arm"]`` with them."""
    from efm_policy.evaluate import evaluate_policy

    s = settings
    results = evaluate_policy(str(model_dir), s.env, s.task, s.eval_episodes, first_seed, greedy=True,
                              max_policy_steps=s.max_steps, log=lambda _m: None, workers=workers)
    result = {**fields, "episodes": len(results), "successes": sum(r.success for r in results)}
    return exp.finish(fields["arm"], result,
                      (episode_row(result, r.seed, r.instruction, r.success, r.policy_steps) for r in results))


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
    store = EvaluationLog(out)
    evaluations, episodes = store.load(), store.episodes()
    results = []
    for group, version in versions.items():
        if version not in evaluations:
            raise RuntimeError(f"{out}: version {version} was not published or not evaluated "
                               f"(evaluated: {', '.join(sorted(evaluations)) or 'none'}); see {out / 'learner.log'}")
        entry = evaluations[version]
        result = {"arm": names[group], "group": group, "training_seed": settings.seed, "demos": settings.demos,
                  "practice_episodes": 0 if version == INITIAL_VERSION else entry.practice_episodes,
                  "version": version, "episodes": entry.episodes, "successes": entry.successes, "run": str(out)}
        rows = (episode_row(result, int(r["seed"]), r["instruction"], int(r["success"]), int(r["policy_steps"]))
                for r in episodes[version])
        results.append(exp.finish(names[group], result, rows))
    summary = ", ".join(f"{r['group']} {r['successes']}/{r['episodes']}" for r in results)
    progress.done(arm, summary)
    return results


def episode_row(result: dict, seed: int, instruction: str, success: bool, steps: int) -> dict:
    return {"arm": result["arm"], "group": result["group"], "training_seed": result["training_seed"],
            "demos": result["demos"], "practice_episodes": result["practice_episodes"], "version": result["version"],
            "eval_seed": seed, "instruction": instruction, "success": int(success), "policy_steps": steps}
