"""What every experiment shares: its directory of resumable arms, progress with time left, and statistics."""
from __future__ import annotations

import csv
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from efm_runtime.errors import EfmUserError

from ..selfimprove.evaluation import wilson_interval

EPISODE_COLUMNS = ("arm", "group", "training_seed", "demos", "practice_episodes", "version", "eval_seed",
                   "instruction", "success", "policy_steps")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ExperimentDir:
    """``OUT/config.json`` (refuses a resume with another configuration), ``OUT/arms/<arm>/``, ``OUT/report/``."""

    def __init__(self, out: str | Path, kind: str, config: dict) -> None:
        self.root = Path(out).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        saved_path = self.root / "config.json"
        wanted = json.loads(json.dumps({"experiment": kind, **config}))
        if saved_path.is_file():
            saved = json.loads(saved_path.read_text())
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            if changed:
                details = ", ".join(f"{k} ({saved.get(k)!r} -> {wanted.get(k)!r})" for k in changed)
                raise EfmUserError(f"{self.root} holds a {saved.get('experiment')} experiment with another "
                                   f"configuration: {details}; use another --out, or the same options to resume it")
        else:
            _write_atomically(saved_path, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
        self.config = wanted
        command = "efm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith("efm") \
            else f"efm experiment {kind}"
        with open(self.root / "commands.txt", "a") as handle:   # every start, so a resume is visible too
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}  {command}\n")

    def arm_dir(self, arm: str) -> Path:
        path = self.root / "arms" / arm
        path.mkdir(parents=True, exist_ok=True)
        return path

    def result(self, arm: str) -> dict | None:
        path = self.root / "arms" / arm / "result.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def finish(self, arm: str, result: dict, episodes: Iterable[dict]) -> dict:
        """The arm's episodes, then its result: an arm with a result.json is complete."""
        directory = self.arm_dir(arm)
        rows = list(episodes)
        with open(directory / "episodes.csv.tmp", "w", newline="") as handle:
            writer = csv.DictWriter(handle, EPISODE_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(directory / "episodes.csv.tmp", directory / "episodes.csv")
        _write_atomically(directory / "result.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
        return result

    def episodes(self) -> list[dict]:
        """Every finished arm's evaluation episodes (the experiment's raw results)."""
        rows = []
        for result in sorted((self.root / "arms").glob("*/result.json")):
            with open(result.parent / "episodes.csv", newline="") as handle:
                rows.extend(csv.DictReader(handle))
        for row in rows:
            row["success"] = int(row["success"])
        return rows

    def start_report(self) -> Path:
        """``OUT/report/`` with ``results.csv``: every evaluation episode of every finished arm."""
        report = self.root / "report"
        report.mkdir(exist_ok=True)
        self.write_results_csv(report / "results.csv")
        return report

    def write_results_csv(self, path: Path) -> None:
        rows = self.episodes()
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, EPISODE_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


class Progress:
    """One line over the whole experiment: arms done, the arm running, and time left, estimated from the
    seconds each kind of arm is expected to take, corrected by how fast the finished ones actually went."""

    def __init__(self, estimates: Sequence[tuple[str, float]], log=print) -> None:
        from tqdm import tqdm

        self.estimates = dict(estimates)
        self.log = log
        self.started = time.monotonic()
        self.spent_estimate = 0.0
        self.bar = tqdm(total=len(self.estimates), desc="arms", unit="arm", dynamic_ncols=True)

    def skip(self, arm: str) -> None:
        """An arm finished by an earlier start."""
        self.estimates.pop(arm, None)
        self.bar.total = len(self.estimates) + self.bar.n
        self.bar.refresh()

    def start(self, arm: str) -> None:
        self.bar.set_postfix_str(f"{arm}, {self.time_left()}", refresh=True)
        self.log(f"arm {arm}: starting ({self.time_left()})")

    def done(self, arm: str, summary: str) -> None:
        self.spent_estimate += self.estimates.pop(arm, 0.0)
        self.bar.update(1)
        self.bar.write(f"arm {arm}: {summary}")

    def time_left(self) -> str:
        remaining = sum(self.estimates.values())
        elapsed = time.monotonic() - self.started
        if self.spent_estimate > 0:        # scale the estimates by how far off they were so far
            remaining *= elapsed / self.spent_estimate
        return f"about {remaining / 60:.0f} min left"

    def close(self) -> None:
        self.bar.close()


# -- statistics ---------------------------------------------------------------------------------------------

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


@dataclass
class ArmSummary:
    """Success of one arm: pooled over every (training seed, scene) with a Wilson interval, and as the mean
    of per-seed rates with a t interval over training seeds (the spread a new training run would show)."""
    episodes: int
    successes: int
    rate: float
    pooled_low: float
    pooled_high: float
    seed_rates: list[float]
    seed_mean: float
    seed_low: float
    seed_high: float


def summarise(rows: Sequence[dict]) -> ArmSummary:
    by_seed: dict[str, list[int]] = {}
    for row in rows:
        by_seed.setdefault(str(row["training_seed"]), []).append(int(row["success"]))
    successes = sum(sum(v) for v in by_seed.values())
    episodes = sum(len(v) for v in by_seed.values())
    low, high = wilson_interval(successes, episodes)
    rates = [sum(v) / len(v) for _, v in sorted(by_seed.items())]
    mean = sum(rates) / len(rates) if rates else 0.0
    if len(rates) > 1:
        sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1))
        half = T95.get(len(rates) - 1, 1.96) * sd / math.sqrt(len(rates))
    else:
        half = float("nan")
    seed_low, seed_high = (half, half) if math.isnan(half) else (max(0.0, mean - half), min(1.0, mean + half))
    return ArmSummary(episodes, successes, successes / episodes if episodes else 0.0, low, high, rates, mean,
                      seed_low, seed_high)


@dataclass
class PairedDifference:
    """a - b in success rate over the scenes both arms were evaluated on, each scene's success averaged over
    training seeds first (the arms share scenes, so pairing by scene removes the scenes' difficulty)."""
    scenes: int
    difference: float
    low: float
    high: float


def paired_difference(a: Sequence[dict], b: Sequence[dict]) -> PairedDifference:
    def per_scene(rows):
        scenes: dict[str, list[int]] = {}
        for row in rows:
            scenes.setdefault(str(row["eval_seed"]), []).append(int(row["success"]))
        return {s: sum(v) / len(v) for s, v in scenes.items()}

    first, second = per_scene(a), per_scene(b)
    shared = sorted(set(first) & set(second))
    if not shared:
        return PairedDifference(0, float("nan"), float("nan"), float("nan"))
    diffs = [first[s] - second[s] for s in shared]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else float("nan")
    half = 1.96 * sd / math.sqrt(len(diffs))
    return PairedDifference(len(shared), mean, mean - half, mean + half)


def percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"
