"""The self-improvement run, stage by stage; every stage resumes from what is already on disk.

    OUT/settings.json       what was asked (a resumed run must not change Stage 1)
    OUT/sft/                Stage 1 run (efm train sft)          OUT/models/sft-0000/  its export
    OUT/learner/            the learner's directory (episodes, checkpoints, versions)
    OUT/robots/<robot>/     graph.yaml, log.txt, spool/, models/ of each simulated robot
    OUT/evaluations.*       ground-truth evaluation of every version (jsonl per version, csv per episode)
    OUT/report/             report.md, success_vs_practice.png, summary.json
"""
from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from efm_runtime.errors import EfmUserError

from .evaluation import EvaluationLog, Evaluator, VersionEvaluation
from .learner_process import LearnerProcess, free_port
from .report import write_report
from .robots import write_fleet
from .settings import EVAL_FIRST_SEED, SelfImproveSettings

STAGE1_FIELDS = ("env", "task", "demos", "demo_noise", "sft_steps", "sft_batch_size", "sft_lr", "action_bins",
                 "vision_blocks", "image_size", "backbone", "d_model", "layers", "seed")
INITIAL_VERSION = "sft-0000"


class SelfImproveRun:
    def __init__(self, settings: SelfImproveSettings, log: Callable[[str], None] = print) -> None:
        self.settings, self.log = settings, log
        self.out = settings.out_dir
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_resume()
        settings.save(self.out / "settings.json")
        self.started = time.monotonic()
        self._robots_paused = False
        self._updates_published = 0
        self.facts: dict = {"command": "efm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
                            if sys.argv and sys.argv[0].endswith("efm") else "efm self-improve"}

    def _check_resume(self) -> None:
        saved_path = self.out / "settings.json"
        if not saved_path.is_file():
            return
        saved = json.loads(saved_path.read_text())
        changed = [f"{name} ({saved.get(name)!r} -> {getattr(self.settings, name)!r})" for name in STAGE1_FIELDS
                   if name in saved and _plain(saved[name]) != _plain(getattr(self.settings, name))]
        if changed:
            raise EfmUserError(f"{self.out} holds a run with other Stage 1 settings: {', '.join(changed)}; "
                               "use another --out, or the same settings to continue it")

    # -- Stage 1 -------------------------------------------------------------------------------
    def demos(self) -> Path:
        from efm_sim.demos import record_demos
        from tqdm import tqdm

        s = self.settings
        directory = s.demo_dir()
        # the recorder's line per saved episode would bury the progress bar; warnings still show
        logging.getLogger("efm.node.demo").setLevel(logging.WARNING)
        bar = tqdm(total=s.demos, desc="oracle demos", unit="ep", leave=False)
        summary = record_demos(s.env, s.task, s.demos, str(directory), noise=s.demo_noise, workers=s.demo_workers,
                               progress=lambda c: bar.update(c["recorded"] + c["skipped"] - bar.n))
        bar.close()
        self.log(f"demos: {s.demos} in {directory} ({summary['skipped']} cached, {summary['recorded']} recorded)")
        self.facts["demos"] = s.demos
        # the cache may hold more demos (a larger run recorded them): Stage 1 sees the first --demos of them
        return link_demo_subset(directory, s.demos, self.out / "demos")

    def stage1(self, demo_dir: Path) -> Path:
        from efm_trainer.sft import SFTRun

        s = self.settings
        run = SFTRun(s.sft_settings(demo_dir, self.out / "sft"), log=self.log)
        if run.step < s.sft_steps:
            metrics = run.train()
            self.log("Stage 1 done: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                                                  if isinstance(v, float)))
        return self.out / "sft"

    def export(self, run_dir: Path) -> Path:
        from efm_policy.export import export_model
        from efm_policy.manifest import MANIFEST

        model_dir = self.out / "models" / INITIAL_VERSION
        if not (model_dir / MANIFEST).is_file():
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            export_model(run_dir, model_dir, version=INITIAL_VERSION, log=self.log)
        return model_dir

    def calibrate_success(self, run_dir: Path, demo_dir: Path) -> float:
        """s for the success detector: the threshold whose first firing (k consecutive steps at or under
        s) falls on the successful last state of the most held-out demos, and before it on the fewest."""
        from efm_reward.core import calibrate_threshold
        from efm_trainer.value_eval import predict_held_out

        s = self.settings
        if s.success_threshold > 0:
            return s.success_threshold
        cache = self.out / "success_threshold.json"
        if cache.is_file():
            return float(json.loads(cache.read_text())["success_threshold"])
        data, chosen, index, predicted, truth, _ = predict_held_out(run_dir, [str(demo_dir)], max_episodes=10 ** 6)
        rows = data.episode_ids[index]
        sequences = [predicted[rows == e] for e in chosen]
        flags = [truth[rows == e] == 0 for e in chosen]
        try:  # a detector that fires early cuts practice short: prefer precision, then recall
            result = calibrate_threshold(sequences, flags, streak=s.success_streak,
                                         min_precision=s.min_detector_precision)
        except ValueError:
            self.log(f"warning: no success threshold reaches precision {s.min_detector_precision} on held-out "
                     "demos; taking the best F1 instead")
            result = calibrate_threshold(sequences, flags, streak=s.success_streak)
        threshold = float(result.threshold)
        cache.write_text(json.dumps({"success_threshold": threshold, "precision": result.precision,
                                     "recall": result.recall, "held_out_episodes": len(chosen)}, indent=2) + "\n")
        self.log(f"success detector: s = {threshold:.2f} steps (precision {result.precision:.2f}, recall "
                 f"{result.recall:.2f} on {len(chosen)} held-out demos), k = {s.success_streak}")
        return threshold

    # -- Stage 2 -------------------------------------------------------------------------------
    def stage2(self, run_dir: Path, model_dir: Path) -> dict:
        from efm_trainer.learner_service import load_or_create_token

        s = self.settings
        port = s.port or free_port()
        url = f"http://127.0.0.1:{port}"
        learner_dir = self.out / "learner"
        # the learner's own token file (created owner-only on the first start), read by the robots' bridges too
        token, token_file = load_or_create_token(None, learner_dir)
        learner = LearnerProcess(
            ["learner", "serve", "--run", str(run_dir), "--dir", str(learner_dir), "--initial-model", str(model_dir),
             "--host", "127.0.0.1", "--port", str(port), "--token-file", str(token_file),
             "--steps-per-update", str(s.steps_per_update), "--sgd-steps", str(s.sgd_steps),
             "--batch-size", str(s.rl_batch_size), "--gamma", str(s.gamma), "--seed", str(s.seed),
             "--episodes-per-update", str(s.episodes_per_update)]
            + (["--lr", str(s.rl_lr)] if s.rl_lr > 0 else []),
            url, token, self.out / "learner.log")
        self.log(f"learner: starting on {url} (log: {learner.log_path})")
        learner.start()
        try:
            return self._with_learner(learner, url, token_file, learner_dir, model_dir)
        finally:
            learner.stop()

    def _with_learner(self, learner, url: str, token_file: Path, learner_dir: Path, model_dir: Path) -> dict:
        from efm_policy.manifest import read_manifest

        s = self.settings
        cameras = list(read_manifest(model_dir).config.cameras)
        robots = write_fleet(s, model_dir, url, token_file, cameras)
        display = ProgressDisplay(s.practice_episodes)
        evaluator = Evaluator(EvaluationLog(self.out), s.env, s.task, s.eval_episodes, EVAL_FIRST_SEED, s.max_steps,
                              on_result=lambda e: self._on_evaluation(learner, e, display),
                              on_progress=display.evaluating, workers=s.eval_workers,
                              every_version=s.evaluate_every_version)
        evaluator.submit(INITIAL_VERSION, model_dir, 0)
        for robot in robots:
            robot.start()
        self.log(f"robots: {len(robots)} started ({', '.join(r.name for r in robots)}; logs in "
                 f"{self.out / 'robots'}/<robot>/log.txt)")
        status: dict = {}
        try:
            stopped_because, status = self._practise(learner, robots, evaluator, display, learner_dir)
        finally:
            for robot in robots:
                robot.stop()
            display.close()
        self.facts["stopped_because"] = stopped_because
        self._await_update(learner)
        # the newest version and the versions nobody evaluated yet get their ground-truth figure
        status = self._submit_new_versions(learner, evaluator, learner_dir, status)
        self.log("evaluating the last versions on held-out scenes ...")
        evaluator.wait()
        if evaluator.error:
            self.log(f"warning: {evaluator.error}")
        if evaluator.skipped:
            self.facts["versions_skipped"] = ", ".join(evaluator.skipped) + \
                " (published while the evaluator was busy; it took newer ones)"
        try:
            status = learner.status()
        except Exception:  # the learner died: the report still has every evaluation
            pass
        return status

    def _practise(self, learner, robots, evaluator, display, learner_dir) -> tuple[str, dict]:
        s = self.settings
        status: dict = {}
        while True:
            time.sleep(1.0)
            if evaluator.error:
                self.log(f"warning: {evaluator.error}")
                evaluator.error = None
            if not learner.running:
                raise EfmUserError(f"the learner stopped (exit code {learner.returncode}); "
                                   f"its log ends with:\n{learner.log_tail()}")
            dead = [r for r in robots if not r.running]
            if dead:
                raise EfmUserError(f"robot {dead[0].name} stopped (exit code {dead[0].returncode}); "
                                   f"its log ({dead[0].log_path}) ends with:\n{dead[0].log_tail()}")
            try:
                status = self._submit_new_versions(learner, evaluator, learner_dir, status)
            except Exception as exc:  # a slow answer during an export: try again next second
                display.note(f"learner status unavailable ({type(exc).__name__})")
                continue
            if s.pause_robots_during_updates:
                self._pause_during_update(robots, bool(status.get("updating")), display)
            display.update(status)
            if status.get("episodes_total", 0) >= s.practice_episodes:
                return f"{s.practice_episodes} practice episodes reached", status
            if s.updates and self._updates_published >= s.updates:
                return f"{s.updates} updates published", status
            if s.max_wall_s and time.monotonic() - self.started > s.max_wall_s:
                return f"wall-time limit of {s.max_wall_s:.0f} s reached", status

    def _pause_during_update(self, robots, updating: bool, display) -> None:
        if updating == self._robots_paused:
            return
        for robot in robots:
            robot.pause() if updating else robot.resume()
        self._robots_paused = updating
        display.paused = updating

    def _await_update(self, learner, timeout_s: float = 900.0) -> None:
        """An update that started on the last practice episodes is finished and published, not thrown away."""
        deadline = time.monotonic() + timeout_s
        announced = False
        while learner.running and time.monotonic() < deadline:
            try:
                if not learner.status().get("updating"):
                    return
            except Exception:  # busy exporting: ask again
                pass
            if not announced:
                self.log("waiting for the learner to finish its update on the last practice episodes ...")
                announced = True
            time.sleep(1.0)

    def _submit_new_versions(self, learner, evaluator, learner_dir, status) -> dict:
        status = learner.status() if learner.running else status
        listing = learner.versions() if learner.running else {"versions": []}
        self._updates_published = max(self._updates_published, len(listing.get("versions", [])) - 1)
        collected = status.get("episodes_per_version", {})
        practice_before = 0
        for entry in listing.get("versions", []):  # in learner order
            version = entry["version"]
            model = learner_dir / "versions" / version
            evaluator.submit(version, model, practice_before)
            practice_before += int(collected.get(version, 0))
        return status

    def _on_evaluation(self, learner, evaluation: VersionEvaluation, display) -> None:
        display.note(f"{evaluation.version}: held-out success {100 * evaluation.success_rate:.0f}% "
                     f"({evaluation.successes}/{evaluation.episodes}) after {evaluation.practice_episodes} "
                     f"practice episodes")
        try:  # the learner keeps the best version by these figures (rollback target)
            learner.post_evaluation(evaluation.version, evaluation.episodes, evaluation.successes,
                                           evaluation.first_seed)
        except Exception as exc:
            display.note(f"could not post the evaluation of {evaluation.version} to the learner: {exc}")

    # -- all of it -----------------------------------------------------------------------------
    def run(self) -> Path:
        demo_dir = self.demos()
        run_dir = self.stage1(demo_dir)
        model_dir = self.export(run_dir)
        self.settings.success_threshold = self.calibrate_success(run_dir, demo_dir)
        status = self.stage2(run_dir, model_dir)
        self.facts["wall_s"] = time.monotonic() - self.started
        evaluations = EvaluationLog(self.out).load()
        report = write_report(self.settings, evaluations, status, self.facts, self.out / "report")
        return report


def link_demo_subset(pool: Path, count: int, out: Path) -> Path:
    """``out`` holding links to the first ``count`` episodes of ``pool`` (seed order), rebuilt each time so it
    always matches ``count``; nested subsets of one pool are what the scaling experiment compares."""
    from efm_trainer.episodes import episode_dirs

    episodes = episode_dirs(pool)[:count]
    if len(episodes) < count:
        raise EfmUserError(f"{pool} holds {len(episodes)} episodes, {count} are needed")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        stale.unlink()
    for episode in episodes:
        (out / episode.name).symlink_to(episode.resolve(), target_is_directory=True)
    return out


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


class ProgressDisplay:
    """One live line: versions, practice episodes against the budget, detector success, evaluations."""

    def __init__(self, total_episodes: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total_episodes, desc="practice", unit="ep", dynamic_ncols=True)
        self._evaluating = ""
        self.paused = False

    def update(self, status: dict) -> None:
        done = min(int(status.get("episodes_total", 0)), self._bar.total)
        self._bar.update(done - self._bar.n)
        current = status.get("current", "?")
        rates = status.get("success_rate_per_version", {})
        rate = rates.get(current)
        parts = [f"version {current}", f"learner step {status.get('learner_step', 0)}"]
        if rate is not None:
            parts.append(f"detector success {100 * rate:.0f}%")
        if status.get("updating"):
            parts.append("updating (robots paused)" if self.paused else "updating")
        if self._evaluating:
            parts.append(self._evaluating)
        self._bar.set_postfix_str(", ".join(parts), refresh=True)

    def evaluating(self, version: str, done: int, total: int) -> None:
        self._evaluating = "" if done >= total else f"evaluating {version} {done}/{total}"

    def note(self, text: str) -> None:
        self._bar.write(f"[{time.strftime('%H:%M:%S')}] {text}")

    def close(self) -> None:
        self._bar.close()

