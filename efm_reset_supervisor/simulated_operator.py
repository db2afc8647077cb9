"""A simulated human operator for unattended sim runs: how many robots can one operator keep busy?

The operator serves one robot at a time: it takes the robot that has waited longest in the "needs me"
queue, spends ``reaction_s`` (noticing, walking over, putting the scene back), then, when it knows the true
outcome of the robot's last episode (the simulator's ground truth), labels that episode (wrongly with
probability ``mislabel_rate``), and says reset done. Its decisions come out as plain ``OperatorAction``s
that the supervisor sends through exactly the path a click on the page takes (the fleet's command checks,
then the robot's ``label_episode`` and ``reset_done`` services).

Pure and deterministic for a given seed: no clock, no threads; the supervisor calls :meth:`decide` from
a timer with its node clock.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .fleet import LABEL_FAILURE_ACTION, LABEL_SUCCESS_ACTION, RESET_DONE


@dataclass(frozen=True)
class OperatorSettings:
    reaction_s: float = 5.0       # from taking a robot off the queue to pressing reset done
    mislabel_rate: float = 0.0    # probability that a label is the opposite of the truth
    label_episodes: bool = True   # label each reset robot's last episode when its true outcome is known
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.reaction_s >= 0.0:
            raise ValueError(f"operator reaction_s must be >= 0 seconds, got {self.reaction_s!r}")
        if not 0.0 <= self.mislabel_rate <= 1.0:
            raise ValueError(f"operator mislabel_rate must be within 0..1, got {self.mislabel_rate!r}")


@dataclass(frozen=True)
class OperatorAction:
    robot: str
    action: str           # a fleet action name: reset_done, label_success, label_failure
    episode_id: str = ""


# (robot) -> (last ended episode id, its true outcome or None when unknown)
TruthLookup = Callable[[str], "tuple[str, bool | None]"]


class SimulatedOperator:
    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._robot: str | None = None
        self._done_at = 0.0
        self.resets = 0
        self.labels = 0
        self.mislabels = 0
        self.busy_s = 0.0

    @property
    def busy_with(self) -> str | None:
        return self._robot

    def decide(self, now: float, queue: list[str], truth: TruthLookup) -> list[OperatorAction]:
        """What the operator does at ``now``, given the queue (longest wait first)."""
        actions: list[OperatorAction] = []
        if self._robot is not None:
            if self._robot not in queue:
                self._robot = None            # someone else reset it meanwhile
            elif now >= self._done_at:
                actions = self._finish(self._robot, truth)
                self._robot = None
                return actions                # the next robot is taken on the next call, once the queue shows it
        if self._robot is None and queue:
            self._robot, self._done_at = queue[0], now + self.settings.reaction_s
            self.busy_s += self.settings.reaction_s
        return actions

    def _finish(self, robot: str, truth: TruthLookup) -> list[OperatorAction]:
        actions = []
        episode_id, outcome = truth(robot)
        if self.settings.label_episodes and episode_id and outcome is not None:
            wrong = self._rng.random() < self.settings.mislabel_rate
            said = outcome != wrong
            actions.append(OperatorAction(robot, LABEL_SUCCESS_ACTION if said else LABEL_FAILURE_ACTION, episode_id))
            self.labels += 1
            self.mislabels += int(wrong)
        actions.append(OperatorAction(robot, RESET_DONE))
        self.resets += 1
        return actions
