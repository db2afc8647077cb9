"""Practice episodes against the simulator's ground truth: is the success detector being gamed, and when to stop?

Reads a finished ``efm self-improve`` run directory OUT (see efm_trainer/selfimprove/pipeline.py):

    OUT/learner/episodes/<id>.json   the learner's record of each practice episode (policy_version,
                                     detector_success, human_label, received...)
    OUT/learner/episodes/<id>/       its bag; only ``/reward`` (efm_msgs/StepReward) and
                                     ``/sim/ground_truth_success`` (std_msgs/Bool, True once the simulator
                                     says the task is achieved) are read
    OUT/evaluations.jsonl            held-out ground-truth evaluation per version
    OUT/learner/versions.json        published versions, in order

and turns them into per-version signals (:func:`version_signals`) and version-selection rules
(:data:`RULES`) the over-optimisation experiment compares with :func:`judge`. Runs recorded before the
ground-truth topic existed give ``truth_success=None``: those episodes are counted, never guessed.

Pure Python + numpy; no torch, no plotting.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from efm_trainer.episodes import read_episode
from efm_trainer.recording import GROUND_TRUTH_TOPIC as TRUTH_TOPIC
from efm_trainer.selfimprove.evaluation import wilson_interval

REWARD_TOPIC = "/reward"
MIN_LABELS = 3          # fewer labels than this say too little about a version to rank it
STOP_Z = 1.64           # one-sided 95%: a rise this many standard errors above the baseline stops the run
log = logging.getLogger(__name__)


@dataclass
class EpisodeTruth:
    """One practice episode: what the detector said, what the simulator knew, what the reward model paid."""
    episode_id: str
    policy_version: str             # "a,b" when the policy hot-swapped mid-episode: belongs to no one version
    detector_success: bool          # the success detector (d <= s for k steps) ended it
    truth_success: bool | None      # any /sim/ground_truth_success True; None when the bag has no such topic
    steps: int
    return_sum: float               # sum of StepReward.reward
    d_first: float | None           # steps_to_go of the first / last StepReward (None without any)
    d_last: float | None
    received: str
    human_label: str = "none"       # the learner record's label: none | success | failure


def read_practice(out_dir: str | Path,
                  on_skip: Callable[[Path, str], None] | None = None) -> list[EpisodeTruth]:
    """Every practice episode of a run, oldest first. An episode whose record or bag cannot be read is left out
    and ``on_skip(path, why)`` told (default: a logged warning), so one bad upload never sinks the analysis."""
    episodes_dir = Path(out_dir) / "learner" / "episodes"
    if not episodes_dir.is_dir():
        raise FileNotFoundError(f"{episodes_dir} does not exist: give the --out directory of a finished "
                                "`efm self-improve` run")
    skip = on_skip or (lambda path, why: log.warning("practice episode %s skipped: %s", path, why))
    found = []
    for record_path in sorted(episodes_dir.glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
            found.append(_episode_truth(record, episodes_dir / record_path.stem))
        except (ValueError, KeyError, TypeError) as exc:   # read_episode raises ValueError naming the bag
            skip(record_path, str(exc))
    return sorted(found, key=lambda e: (e.received, e.episode_id))


def _episode_truth(record: dict, bag: Path) -> EpisodeTruth:
    episode = read_episode(bag, topics={REWARD_TOPIC, TRUTH_TOPIC})
    rewards = [msg for _, msg in episode.topic(REWARD_TOPIC)]
    truth = None
    if TRUTH_TOPIC in episode.messages:
        truth = any(bool(msg.data) for _, msg in episode.topic(TRUTH_TOPIC))
    return EpisodeTruth(
        episode_id=str(record["episode_id"]), policy_version=str(record["policy_version"]),
        detector_success=bool(record["detector_success"]), truth_success=truth, steps=int(record["steps"]),
        return_sum=float(sum(float(m.reward) for m in rewards)),
        d_first=float(rewards[0].steps_to_go) if rewards else None,
        d_last=float(rewards[-1].steps_to_go) if rewards else None,
        received=str(record.get("received", "")), human_label=str(record.get("human_label", "none")))


def _label_hash(episode_id: str) -> int:
    # sha256, not hash(): Python salts str hashes per process, and the subset must be the same in every run
    return int.from_bytes(hashlib.sha256(episode_id.encode()).digest()[:8], "big")


def simulated_labels(episodes: Iterable[EpisodeTruth], every: int = 4) -> dict[str, bool]:
    """The operator's occasional label: episode id -> success, for a fixed 1-in-``every`` subset of episodes.

    The subset is chosen by a hash of the episode id, not by position, so it does not depend on upload order
    and cannot line up with a version's first or last episodes. A chosen episode takes the learner record's
    ``human_label`` when it has one (on hardware the operator's label buttons on the reset supervisor page set
    EpisodeStatus.human_label, which the learner stores); otherwise, in simulation, the ground truth, which is
    what an attentive operator would have pressed. A chosen episode with neither stays unlabelled. Episodes
    outside the subset are never labelled, even when their record has a label: the experiment asks what a
    rare label buys, so ``every=1`` is the way to use them all.
    """
    if every < 1:
        raise ValueError(f"label every={every!r}: use 1 (label every episode) or more")
    labels = {}
    for e in episodes:
        if _label_hash(e.episode_id) % every:
            continue
        if e.human_label in ("success", "failure"):
            labels[e.episode_id] = e.human_label == "success"
        elif e.truth_success is not None:
            labels[e.episode_id] = e.truth_success
    return labels


@dataclass
class VersionSignals:
    """What each kind of observer knows about one policy version; rates are None where nothing was measured."""
    version: str
    practice_episodes: int = 0          # episodes this version collected (hot-swapped ones excluded)
    detector_successes: int = 0
    detector_rate: float | None = None
    truth_known: int = 0                # episodes with a ground-truth topic
    truth_unknown: int = 0
    truth_successes: int = 0
    truth_rate: float | None = None     # ground-truth success on practice
    precision: float | None = None      # P(truth | detector success), over episodes with known truth
    recall: float | None = None         # P(detector success | truth)
    labels: int = 0                     # labelled episodes (see simulated_labels)
    label_successes: int = 0
    label_rate: float | None = None
    label_ci_low: float | None = None   # Wilson 95% interval of label_rate
    label_ci_high: float | None = None
    disagreements: int = 0              # labelled episodes where detector and label differ
    disagreement_rate: float | None = None
    false_alarms: int = 0               # labelled episodes the detector called a success and the label a failure
    false_alarm_rate: float | None = None
    corrected_rate: float | None = None  # detector_rate minus the detector's bias measured on the labelled ones
    mean_return: float | None = None
    mean_d_last: float | None = None
    eval_rate: float | None = None      # held-out ground-truth evaluation (evaluations.jsonl)
    eval_ci_low: float | None = None
    eval_ci_high: float | None = None
    eval_episodes: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def version_signals(episodes: Sequence[EpisodeTruth], evaluations: Iterable = (), label_every: int = 4,
                    versions: Sequence[str] | None = None,
                    labels: dict[str, bool] | None = None) -> list[VersionSignals]:
    """Signals of every version, in publication order.

    ``evaluations``: VersionEvaluation objects or their dicts (evaluations.jsonl lines). ``versions``: the
    publication order (versions.json); without it, versions are ordered by the practice episodes their
    evaluation followed, then by name number. ``labels``: episode id -> label, default
    ``simulated_labels(episodes, label_every)``.
    """
    evals = {str(e["version"]): e for e in (_as_dict(e) for e in evaluations)}
    labels = simulated_labels(episodes, label_every) if labels is None else labels
    by_version: dict[str, list[EpisodeTruth]] = {}
    for e in episodes:
        by_version.setdefault(e.policy_version, []).append(e)
    if versions is None:
        versions = _infer_order(set(evals) | {v for v in by_version if "," not in v}, evals)
    return [_signals(v, by_version.get(v, []), labels, evals.get(v)) for v in versions]


def _as_dict(evaluation) -> dict:
    return evaluation if isinstance(evaluation, dict) else asdict(evaluation)


def _infer_order(names: set[str], evals: dict[str, dict]) -> list[str]:
    def key(name: str):
        digits = "".join(ch for ch in name.rsplit("-", 1)[-1] if ch.isdigit())
        return (evals.get(name, {}).get("practice_episodes", math.inf), int(digits) if digits else 0, name)
    return sorted(names, key=key)


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _signals(version: str, episodes: list[EpisodeTruth], labels: dict[str, bool], evaluation) -> VersionSignals:
    s = VersionSignals(version, practice_episodes=len(episodes))
    s.detector_successes = sum(e.detector_success for e in episodes)
    s.detector_rate = _rate(s.detector_successes, len(episodes))
    known = [e for e in episodes if e.truth_success is not None]
    s.truth_known, s.truth_unknown = len(known), len(episodes) - len(known)
    s.truth_successes = sum(e.truth_success for e in known)
    s.truth_rate = _rate(s.truth_successes, len(known))
    true_positives = sum(e.detector_success and e.truth_success for e in known)
    s.precision = _rate(true_positives, sum(e.detector_success for e in known))
    s.recall = _rate(true_positives, s.truth_successes)
    labelled = [(e, labels[e.episode_id]) for e in episodes if e.episode_id in labels]
    s.labels = len(labelled)
    s.label_successes = sum(label for _, label in labelled)
    s.label_rate = _rate(s.label_successes, s.labels)
    if s.labels:
        s.label_ci_low, s.label_ci_high = wilson_interval(s.label_successes, s.labels)
        s.disagreements = sum(e.detector_success != label for e, label in labelled)
        s.false_alarms = sum(e.detector_success and not label for e, label in labelled)
        s.disagreement_rate = s.disagreements / s.labels
        s.false_alarm_rate = s.false_alarms / s.labels
        labelled_detector = sum(e.detector_success for e, _ in labelled) / s.labels
        s.corrected_rate = min(1.0, max(0.0, s.detector_rate - (labelled_detector - s.label_rate)))
    if episodes:
        s.mean_return = float(np.mean([e.return_sum for e in episodes]))
        d_last = [e.d_last for e in episodes if e.d_last is not None]
        s.mean_d_last = float(np.mean(d_last)) if d_last else None
    if evaluation is not None:
        s.eval_rate = float(evaluation["success_rate"])
        s.eval_ci_low, s.eval_ci_high = float(evaluation["ci_low"]), float(evaluation["ci_high"])
        s.eval_episodes = int(evaluation["episodes"])
    return s


def read_evaluations(out_dir: str | Path) -> list[dict]:
    """OUT/evaluations.jsonl as dicts ([] before the first evaluation)."""
    path = Path(out_dir) / "evaluations.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_versions(out_dir: str | Path) -> list[str] | None:
    """Published version names in order, from OUT/learner/versions.json (None when absent)."""
    path = Path(out_dir) / "learner" / "versions.json"
    if not path.is_file():
        return None
    return [str(entry["version"]) for entry in json.loads(path.read_text())]


def run_signals(out_dir: str | Path, label_every: int = 4,
                on_skip: Callable[[Path, str], None] | None = None) -> list[VersionSignals]:
    """:func:`version_signals` of a run directory: read_practice + evaluations + versions in one call."""
    return version_signals(read_practice(out_dir, on_skip), read_evaluations(out_dir), label_every,
                           versions=read_versions(out_dir))


# -- selection rules: (signals in version order) -> chosen version, or None when nothing qualifies ----------

def _highest(signals: Sequence[VersionSignals], value: Callable[[VersionSignals], float | None]) -> str | None:
    best = None
    for s in signals:   # strictly greater: ties go to the earlier version, the fewer updates past a peak
        v = value(s)
        if v is not None and (best is None or v > best[0]):
            best = (v, s.version)
    return best[1] if best else None


def pick_ground_truth_eval(signals: Sequence[VersionSignals]) -> str | None:
    """Highest held-out ground-truth evaluation (the learner's `best`; needs a simulator or an evaluation crew)."""
    return _highest(signals, lambda s: s.eval_rate)


def pick_detector(signals: Sequence[VersionSignals]) -> str | None:
    """Highest detector success rate on practice (the naive signal: needs nothing but the reward model)."""
    return _highest(signals, lambda s: s.detector_rate)


def pick_labels(signals: Sequence[VersionSignals], min_labels: int = MIN_LABELS) -> str | None:
    """Highest label-estimated success on practice (needs only occasional human labels)."""
    return _highest(signals, lambda s: s.label_rate if s.labels >= min_labels else None)


def pick_corrected_detector(signals: Sequence[VersionSignals], min_labels: int = MIN_LABELS) -> str | None:
    """Highest detector rate after subtracting the detector's bias measured on the labelled episodes."""
    return _highest(signals, lambda s: s.corrected_rate if s.labels >= min_labels else None)


def stopping_point(signals: Sequence[VersionSignals], min_labels: int = MIN_LABELS,
                   z: float = STOP_Z) -> str | None:
    """The first version whose false-alarm share rises significantly above the earlier versions' (None: never).

    False-alarm share = labelled episodes the detector called a success and the label a failure, over labelled
    episodes. The baseline is all earlier versions with at least ``min_labels`` labels, pooled; the rise must
    exceed ``z`` standard errors of the two-proportion difference (pooled share). Versions with fewer labels are
    not tested and do not join the baseline.
    """
    base_alarms = base_labels = 0
    for s in signals:
        if s.labels < min_labels:
            continue
        if base_labels:
            pooled = (base_alarms + s.false_alarms) / (base_labels + s.labels)
            noise = z * math.sqrt(pooled * (1 - pooled) * (1 / base_labels + 1 / s.labels))
            if s.false_alarms / s.labels - base_alarms / base_labels > noise:
                return s.version
        base_alarms += s.false_alarms
        base_labels += s.labels
    return None


def pick_false_alarm_stop(signals: Sequence[VersionSignals], min_labels: int = MIN_LABELS,
                          z: float = STOP_Z) -> str | None:
    """Stop when labels catch the detector crying success more often than before; keep the best version before.

    Over-optimisation in the paper's sense is the policy learning what the frozen steps-to-go model rewards
    rather than the task: the detector fires on episodes a human would call failures. That shows, without any
    ground truth, as a rise in the share of labelled episodes that are detector-success/label-failure
    (:func:`stopping_point`). The false-alarm share is used rather than total disagreement because misses
    (truth success the detector did not see) grow with honest improvement when the detector has a steady miss
    rate; false alarms shrink with it (fewer failures to mistake), so only gaming makes them grow.

    The run stops at the first version whose share rises by more than its binomial noise over all earlier
    versions pooled (pooling, rather than the best version so far, keeps the baseline from being a lucky low
    draw, which would make false stops likelier the longer a run goes). The version kept is the one before the
    stop (with at least ``min_labels`` labels) with the highest ``corrected_rate``: the detector's rate on all
    of its practice episodes, about ``label_every`` times as many as the labels, minus the detector's bias
    measured on the labelled ones, so a version already drifting just before the stop is not rewarded for it.
    Never stopping means choosing among all versions the same way.
    """
    stop = stopping_point(signals, min_labels, z)
    names = [s.version for s in signals]
    before = list(signals[:names.index(stop)]) if stop else list(signals)
    return pick_corrected_detector(before, min_labels)


RULES: dict[str, Callable[[Sequence[VersionSignals]], str | None]] = {
    "ground_truth_eval": pick_ground_truth_eval,
    "detector": pick_detector,
    "labels": pick_labels,
    "corrected_detector": pick_corrected_detector,
    "false_alarm_stop": pick_false_alarm_stop,
}


def rule_summary(name: str) -> str:
    """The one-line description of a rule in :data:`RULES`."""
    if name not in RULES:
        raise KeyError(f"no selection rule {name!r}; known: {', '.join(RULES)}")
    return (RULES[name].__doc__ or "").strip().splitlines()[0]


@dataclass
class Judgement:
    chosen: str | None
    chosen_truth: float | None
    best: str | None
    best_truth: float | None
    regret: float | None            # best_truth - chosen_truth

    def describe(self, rule: str) -> str:
        if self.chosen is None:
            return f"rule {rule} picked no version"
        return (f"rule {rule} picked {self.chosen} (truth {_pct(self.chosen_truth)}), the best was {self.best} "
                f"(truth {_pct(self.best_truth)}), regret {_points(self.regret)}")


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{100 * value:.1f}%"


def _points(value: float | None) -> str:
    return "unknown" if value is None else f"{100 * value:.1f} points"


TRUTH_KEYS = tuple(f.name for f in fields(VersionSignals) if f.name.endswith("_rate"))


def judge(signals: Sequence[VersionSignals], chosen: str | None, truth_key: str = "eval_rate") -> Judgement:
    """How good the chosen version is by ``truth_key`` (eval_rate: held-out; truth_rate: ground truth on
    practice), against the best version by the same measure (ties to the earlier version)."""
    if truth_key not in TRUTH_KEYS:
        raise ValueError(f"truth_key {truth_key!r}: use one of {', '.join(TRUTH_KEYS)}")
    truth = {s.version: getattr(s, truth_key) for s in signals}
    if chosen is not None and chosen not in truth:
        raise ValueError(f"chosen version {chosen!r} is not among the signals' versions ({', '.join(truth)})")
    best = _highest(signals, lambda s: getattr(s, truth_key))
    chosen_truth = truth.get(chosen) if chosen is not None else None
    best_truth = truth.get(best) if best is not None else None
    regret = best_truth - chosen_truth if best_truth is not None and chosen_truth is not None else None
    return Judgement(chosen, chosen_truth, best, best_truth, regret)
