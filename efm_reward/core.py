"""Reward and success from the frozen steps-to-go model, free of any middleware (no ROS, no torch).

:class:`RewardTracker` turns the model's d(o_t, g) at each evaluated policy step into what
efm_msgs/StepReward carries: ``steps_to_go`` = d, ``reward`` r_t = d(o_{t-1}, g) - d(o_t, g) (0 at
step 0), ``success_streak`` (consecutive steps up to and including this one with d <= s) and
``success`` (streak >= k; it is the detector's verdict at this step, so it drops again if d rises),
for s = ``success_threshold`` and k = ``success_streak``.

Late and dropped frames never make a reward spike. An evaluated frame is *late* when it comes more
than 1.5 policy periods after the previous evaluated frame (a frame in between was dropped, or the
episode was paused) or when it is older than ``max_observation_age_s`` on the node clock. A late
step is published with ``frame_late`` true and reward 0, and the tracker re-bases: the next reward
is taken against this step's d. The d change across the gap is thus credited to no action, so the
rewards of an episode sum to d(o_0) - d(o_T) minus the jumps at late steps, and never count one
jump twice. The streak still counts a late step (its d is a real reading of the scene).

A detector that fires on an episode's first frame (d(o_0) <= s: the scene looks solved before the
robot moved) says more about s than about the robot: the tracker warns once per episode, naming s
and d, and counts such episodes in ``first_frame_successes``.

:func:`calibrate_threshold` picks s from held-out episodes with ground-truth success per step.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

NS_PER_S = 1_000_000_000
LATE_GAP_PERIODS = 1.5     # a gap above this many policy periods means a frame was dropped
INFO, WARNING, ERROR = "info", "warning", "error"

Log = Callable[[str, str], None]


@dataclass(frozen=True)
class DetectorSettings:
    """How rewards and success are computed; the node fills it from its parameters."""
    success_threshold: float            # s: success when d <= s ...
    success_streak: int = 1             # k: ... for this many consecutive evaluated steps
    rate_hz: float = 10.0               # policy rate: one evaluated frame per period
    max_observation_age_s: float = 0.2  # an older frame (node clock) is late

    def __post_init__(self) -> None:
        if not math.isfinite(self.success_threshold):
            raise ValueError(f"success_threshold must be a finite number of steps, got {self.success_threshold!r}")
        if self.success_streak < 1:
            raise ValueError(f"success_streak must be >= 1, got {self.success_streak!r}")
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"rate_hz must be a positive number, got {self.rate_hz!r}")
        if not self.max_observation_age_s > 0:
            raise ValueError(f"max_observation_age_s must be > 0, got {self.max_observation_age_s!r}")

    @property
    def max_gap_ns(self) -> int:
        return int(LATE_GAP_PERIODS * NS_PER_S / self.rate_hz)

    @property
    def max_age_ns(self) -> int:
        return int(self.max_observation_age_s * NS_PER_S)


@dataclass(frozen=True)
class StepResult:
    """One evaluated step: the fields of efm_msgs/StepReward but the header and model version."""
    episode_id: str
    step: int
    stamp_ns: int             # the frame's stamp (StepReward.header.stamp)
    steps_to_go: float
    reward: float
    success: bool
    success_threshold: float
    success_streak: int
    frame_late: bool
    late_reason: str = ""     # why frame_late, for logs; empty when on time


@dataclass
class _Episode:
    episode_id: str
    steps: int = 0
    previous_d: float | None = None
    previous_stamp_ns: int | None = None
    streak: int = 0


class RewardTracker:
    """Rewards, streak and success of the running episode (see the module doc). One thread."""

    def __init__(self, settings: DetectorSettings, log: Log = lambda level, text: None) -> None:
        self.settings = settings
        self._log = log
        self._episode: _Episode | None = None
        self.first_frame_successes = 0   # episodes whose first frame already had d <= s

    @property
    def episode_id(self) -> str:
        return self._episode.episode_id if self._episode is not None else ""

    @property
    def steps(self) -> int:
        return self._episode.steps if self._episode is not None else 0

    def start_episode(self, episode_id: str) -> None:
        """A new task: step 0 comes next, with no reward and no streak."""
        self._episode = _Episode(episode_id)

    def end_episode(self, episode_id: str) -> bool:
        """Stop tracking ``episode_id``; False when it is not the running episode."""
        if self._episode is None or self._episode.episode_id != episode_id:
            return False
        self._episode = None
        return True

    def step(self, steps_to_go: float, stamp_ns: int, now_ns: int, oldest_input_ns: int | None = None) -> StepResult:
        """Account one evaluated frame: d = ``steps_to_go`` of the frame stamped ``stamp_ns``, at node
        time ``now_ns``; its age is taken from ``oldest_input_ns`` (default: the frame's stamp)."""
        episode = self._episode
        if episode is None:
            raise RuntimeError("no episode is running: call start_episode when the task arrives")
        d = float(steps_to_go)
        if not math.isfinite(d):
            raise ValueError(f"the reward model gave d = {steps_to_go!r} for the frame at "
                             f"{stamp_ns / NS_PER_S:.3f} s; not publishing a reward for it")
        if episode.previous_stamp_ns is not None and stamp_ns <= episode.previous_stamp_ns:
            raise ValueError(f"frame at {stamp_ns / NS_PER_S:.3f} s is not newer than the last evaluated one "
                             f"({episode.previous_stamp_ns / NS_PER_S:.3f} s); each frame is evaluated once")
        late_reason = self._late_reason(episode, stamp_ns, now_ns, stamp_ns if oldest_input_ns is None else oldest_input_ns)
        reward = 0.0 if late_reason or episode.previous_d is None else episode.previous_d - d
        s, k = self.settings.success_threshold, self.settings.success_streak
        episode.streak = episode.streak + 1 if d <= s else 0
        success = episode.streak >= k
        if episode.steps == 0 and d <= s:
            self.first_frame_successes += 1
            self._log(WARNING, f"episode {episode.episode_id}: the first frame already has d = {d:.2f} <= "
                               f"success_threshold s = {s:g} steps: s is likely too high for this task "
                               "(calibrate it with efm_reward.core.calibrate_threshold)")
        result = StepResult(episode.episode_id, episode.steps, stamp_ns, d, reward, success, s, episode.streak,
                            bool(late_reason), late_reason)
        episode.steps += 1
        episode.previous_d, episode.previous_stamp_ns = d, stamp_ns  # re-based on late steps too
        return result

    def _late_reason(self, episode: _Episode, stamp_ns: int, now_ns: int, oldest_ns: int) -> str:
        reasons = []
        if episode.previous_stamp_ns is not None and stamp_ns - episode.previous_stamp_ns > self.settings.max_gap_ns:
            gap_s = (stamp_ns - episode.previous_stamp_ns) / NS_PER_S
            reasons.append(f"{gap_s:.3f} s after the previous evaluated frame (more than {LATE_GAP_PERIODS:g} "
                           f"periods at {self.settings.rate_hz:g} Hz: a frame was dropped)")
        if now_ns - oldest_ns > self.settings.max_age_ns:
            reasons.append(f"{(now_ns - oldest_ns) / NS_PER_S:.3f} s old (limit {self.settings.max_observation_age_s:g} s)")
        return "; ".join(reasons)


# ---- choosing s ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """The detector's episode-level quality at ``threshold`` on the calibration episodes.

    The detector ends an episode the first time it fires, so an episode counts as a true positive
    when that first firing lands on a step whose ground truth is success, a false positive when it
    lands on any other step (too early, or after the success was undone), and a miss when an episode
    that reached success somewhere never got a true positive."""
    threshold: float
    streak: int
    precision: float           # true positives / episodes where the detector fired (1.0 when it never fired)
    recall: float              # true positives / episodes with a ground-truth success
    f1: float
    true_positives: int
    false_positives: int
    successful_episodes: int
    episodes: int


def _first_firing(d: Sequence[float], k: int) -> list[tuple[float, int]]:
    """(threshold from which the detector fires first at step t, t), highest threshold first.

    With window maxima m_t = max(d[t-k+1..t]), a threshold s fires first at the earliest t with
    m_t <= s; as s grows that step moves earlier only at the running minima of m."""
    records: list[tuple[float, int]] = []
    best = math.inf
    for t in range(k - 1, len(d)):
        window = max(d[t - k + 1:t + 1])
        if window < best:
            best = window
            records.append((window, t))
    return records[::-1]


def calibrate_threshold(steps_to_go: Sequence[Sequence[float]], success: Sequence[Sequence[bool]],
                        streak: int = 1, min_precision: float | None = None) -> Calibration:
    """Choose s from held-out episodes: ``steps_to_go[e][t]`` is the frozen model's d at step t of
    episode e and ``success[e][t]`` the ground truth there. Every threshold at which some episode's
    outcome changes is tried; the one with the best F1 wins (ties: higher precision, then smaller s).
    With ``min_precision``, the highest recall among thresholds that reach that precision wins
    instead (ties: smaller s); ValueError when none does."""
    if streak < 1:
        raise ValueError(f"streak must be >= 1, got {streak!r}")
    if len(steps_to_go) != len(success) or not steps_to_go:
        raise ValueError(f"need the same number of episodes of d and of success flags, at least one; "
                         f"got {len(steps_to_go)} and {len(success)}")
    events: list[tuple[float, int, int]] = []   # (threshold, episode, step it first fires at)
    for e, (d, truth) in enumerate(zip(steps_to_go, success)):
        if len(d) != len(truth):
            raise ValueError(f"episode {e}: {len(d)} values of d but {len(truth)} success flags")
        if not all(math.isfinite(float(v)) for v in d):
            raise ValueError(f"episode {e}: d has non-finite values")
        events.extend((s, e, t) for s, t in _first_firing([float(v) for v in d], streak))
    if not events:
        raise ValueError(f"every episode is shorter than the streak {streak}: the detector can never fire")
    successful = sum(1 for truth in success if any(truth))
    events.sort(key=lambda event: event[0])
    outcome: dict[int, bool] = {}   # episode -> its first firing is on a true success step
    candidates = []
    for i, (s, e, t) in enumerate(events):
        outcome[e] = bool(success[e][t])
        if i + 1 < len(events) and events[i + 1][0] == s:
            continue  # take every event at this exact threshold before scoring it
        tp = sum(outcome.values())
        candidates.append(_score(s, streak, tp, len(outcome) - tp, successful, len(steps_to_go)))
    if min_precision is not None:
        passing = [c for c in candidates if c.precision >= min_precision]
        if not passing:
            best = max(c.precision for c in candidates)
            raise ValueError(f"no threshold reaches precision {min_precision:g} (best {best:.3f}); "
                             "lower min_precision or raise the streak")
        return max(passing, key=lambda c: (c.recall, -c.threshold))
    return max(candidates, key=lambda c: (c.f1, c.precision, -c.threshold))


def _score(threshold: float, streak: int, tp: int, fp: int, successful: int, episodes: int) -> Calibration:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / successful if successful else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Calibration(threshold, streak, precision, recall, f1, tp, fp, successful, episodes)
