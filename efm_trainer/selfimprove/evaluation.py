"""Ground-truth evaluation of policy versions on held-out seeds, in a background thread.

Each version is evaluated once, greedily, on the same seeds (``EVAL_FIRST_SEED..``), which no demo and no
practice episode uses. The learner can publish versions faster than they are evaluated: when the evaluator
is free it takes the newest version waiting and skips the older ones, so the figures keep up with the run
and the last version is always evaluated. Results are appended to ``evaluations.jsonl`` (one line per version) and
``evaluations.csv`` (one line per episode), so a resumed run does not evaluate a version twice.
"""
from __future__ import annotations

import csv
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a success rate; sane at 0/n and n/n, unlike the normal approximation."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class VersionEvaluation:
    version: str
    episodes: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    first_seed: int
    practice_episodes: int      # practice episodes the learner had received when it made this version
    wall_s: float


class EvaluationLog:
    """The run's evaluations on disk (append-only, read back on resume)."""

    def __init__(self, out_dir: Path) -> None:
        self.summary_path = out_dir / "evaluations.jsonl"
        self.episodes_path = out_dir / "evaluations.csv"

    def load(self) -> dict[str, VersionEvaluation]:
        if not self.summary_path.is_file():
            return {}
        found = {}
        for line in self.summary_path.read_text().splitlines():
            if line.strip():
                entry = VersionEvaluation(**json.loads(line))
                found[entry.version] = entry
        return found

    def episodes(self) -> dict[str, list[dict]]:
        """Each version's evaluation episodes, as ``evaluations.csv`` rows (strings)."""
        found: dict[str, list[dict]] = {}
        if self.episodes_path.is_file():
            with open(self.episodes_path, newline="") as handle:
                for row in csv.DictReader(handle):
                    found.setdefault(row["version"], []).append(row)
        return found

    def append(self, evaluation: VersionEvaluation, episodes: list) -> None:
        new_csv = not self.episodes_path.is_file()
        with open(self.episodes_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new_csv:
                writer.writerow(["version", "seed", "instruction", "success", "policy_steps", "mean_inference_ms"])
            for r in episodes:
                writer.writerow([evaluation.version, r.seed, r.instruction, int(r.success), r.policy_steps,
                                 f"{r.mean_inference_ms:.2f}"])
        with open(self.summary_path, "a") as handle:  # last: a version counts as evaluated once both are in
            handle.write(json.dumps(asdict(evaluation), sort_keys=True) + "\n")


class Evaluator:
    """Evaluates versions handed to :meth:`submit`, one at a time, in a daemon thread."""

    def __init__(self, log_store: EvaluationLog, env: str, task: str, episodes: int, first_seed: int,
                 max_steps: int, on_result: Callable[[VersionEvaluation], None],
                 on_progress: Callable[[str, int, int], None] = lambda version, done, total: None,
                 workers: int = 1, every_version: bool = False) -> None:
        self.store, self.env, self.task = log_store, env, task
        self.episodes, self.first_seed, self.max_steps = episodes, first_seed, max_steps
        self.on_result, self.on_progress = on_result, on_progress
        self.workers = workers
        self.every_version = every_version      # experiments: evaluate all, oldest first, never skip
        self.results = log_store.load()
        self._pending: dict[str, tuple[Path, int]] = {}   # version -> (model dir, practice episodes before it)
        self._busy_with: str | None = None
        self._wake = threading.Condition()
        self.skipped: list[str] = []
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="evaluator", daemon=True)
        self._thread.start()

    def submit(self, version: str, model_dir: Path, practice_episodes: int) -> None:
        with self._wake:
            if version in self.results or version in self._pending or version in self.skipped \
                    or version == self._busy_with:
                return
            self._pending[version] = (model_dir, practice_episodes)
            self._wake.notify()

    def wait(self, timeout_s: float | None = None) -> bool:
        """True when nothing is waiting or being evaluated."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (self._pending or self._busy_with) and self.error is None:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return not (self._pending or self._busy_with)

    def _next(self) -> tuple[str, Path, int]:
        with self._wake:
            while not self._pending:
                self._wake.wait()
            if self.every_version:
                version = min(self._pending, key=lambda v: (self._pending[v][1], v))
                model_dir, practice = self._pending.pop(version)
            else:
                version = max(self._pending, key=lambda v: (self._pending[v][1], v))
                model_dir, practice = self._pending.pop(version)
                self.skipped += sorted(self._pending)
                self._pending.clear()
            self._busy_with = version
            return version, model_dir, practice

    def _run(self) -> None:
        from efm_policy.evaluate import evaluate_policy

        while True:
            version, model_dir, practice = self._next()
            start = time.monotonic()
            done: list = []

            def progress(result, version=version, done=done) -> None:
                done.append(result)
                self.on_progress(version, len(done), self.episodes)

            try:
                results = evaluate_policy(
                    str(model_dir), self.env, self.task, episodes=self.episodes, first_seed=self.first_seed,
                    greedy=True, max_policy_steps=self.max_steps, log=lambda _m: None, on_episode=progress,
                    workers=self.workers)
            except Exception as exc:  # reported by the run; the robots keep practising meanwhile
                self.error = f"evaluating {version} ({model_dir}) failed: {type(exc).__name__}: {exc}"
                self._busy_with = None
                continue
            successes = sum(r.success for r in results)
            low, high = wilson_interval(successes, len(results))
            evaluation = VersionEvaluation(version, len(results), successes, successes / len(results), low, high,
                                           self.first_seed, practice, time.monotonic() - start)
            self.store.append(evaluation, results)
            self.results[version] = evaluation
            self._busy_with = None
            self.on_result(evaluation)
