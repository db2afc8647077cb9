"""Which observation the reward node evaluates next, and the frames the model sees for it (no ROS, no torch).

:class:`Observations` keeps the newest input of each camera and of the proprio, and hands out each
observation (named by its newest frame's stamp) at most once per episode:

- with ``synchronized`` (the lock-step simulator stamps every input of one observation alike) only
  once every camera and the proprio carry the newest frame's stamp and arrived after the task (a
  simulator stamps a new scene's first observation like the last frame before it);
- without it (real time, drivers stamp independently) whenever every input has arrived at least once.

An observation with a refused input (wrong encoding, inconsistent size, NaN or wrong-length proprio)
comes back as :class:`Refused` and counts as handled, so it is reported once, not at every tick.

The model's history frames are the frames of the previous *evaluated* steps of the episode, oldest
first, as training built them from one frame per policy step; at step 0 the first frame stands in for
the missing ones (``efm_policy.preprocess.stack_views`` repeats it), exactly as in training.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from efm_policy.preprocess import Arrival, not_synchronized


@dataclass(frozen=True)
class Ready:
    """An observation to evaluate."""
    stamp_ns: int                       # its newest frame's stamp
    oldest_ns: int                      # its oldest input's stamp (how old it is)
    frames: dict[str, list[np.ndarray]]  # camera -> frames, oldest first, at most ``history``
    proprio: list[float]


@dataclass(frozen=True)
class Refused:
    """An observation that must not be evaluated, and why."""
    stamp_ns: int
    problem: str


class Observations:
    def __init__(self, cameras: Sequence[str], history: int, proprio_dim: int, synchronized: bool,
                 proprio_label: str = "proprio") -> None:
        self.cameras, self.history, self.proprio_dim = list(cameras), int(history), int(proprio_dim)
        self.synchronized, self.proprio_label = synchronized, proprio_label
        self._frames: dict[str, np.ndarray] = {}
        self._inputs: dict[str, Arrival] = {}       # topic label -> newest arrival
        self._proprio: list[float] = []
        self._seq = 0
        self._first_seq = 0
        self._handled_ns: int | None = None        # newest observation stamp handed out this episode
        self._history: dict[str, deque] = {c: deque(maxlen=max(self.history - 1, 0)) for c in self.cameras}

    def start_episode(self) -> None:
        """A new task: no observation handed out yet, no history; synchronized inputs must be newer."""
        self._first_seq, self._handled_ns = self._seq, None
        for frames in self._history.values():
            frames.clear()

    def add_frame(self, camera: str, stamp_ns: int, image: np.ndarray) -> None:
        self._frames[camera] = image
        self._inputs[camera] = self._arrival(stamp_ns)

    def reject_frame(self, camera: str, stamp_ns: int, problem: str) -> None:
        self._inputs[camera] = self._arrival(stamp_ns, problem)

    def set_proprio(self, stamp_ns: int, values: Sequence[float]) -> None:
        self._proprio = [float(v) for v in values]
        problem = ""
        if len(self._proprio) != self.proprio_dim:
            problem = f"{len(self._proprio)} values, the reward model takes {self.proprio_dim}"
        elif not all(math.isfinite(v) for v in self._proprio):
            problem = f"non-finite values {self._proprio}"
        self._inputs[self.proprio_label] = self._arrival(stamp_ns, problem)

    def reject_proprio(self, stamp_ns: int, problem: str) -> None:
        self._inputs[self.proprio_label] = self._arrival(stamp_ns, problem)

    def _arrival(self, stamp_ns: int, problem: str = "") -> Arrival:
        self._seq += 1
        return Arrival(stamp_ns, self._seq, problem)

    def next(self) -> Ready | Refused | None:
        """The newest observation if it is complete and not yet handed out this episode, else None."""
        labels = [*self.cameras, self.proprio_label]
        if any(label not in self._inputs for label in labels):
            return None
        stamp = max(self._inputs[c].stamp_ns for c in self.cameras)
        if self._handled_ns is not None and stamp <= self._handled_ns:
            return None
        if self.synchronized and not_synchronized([(label, self._inputs[label]) for label in labels], stamp,
                                                  self._first_seq):
            return None
        self._handled_ns = stamp
        problems = [f"{self._topic(label)}: {self._inputs[label].problem}" for label in labels
                    if self._inputs[label].problem]
        if problems:
            return Refused(stamp, "; ".join(problems))
        frames = {c: [*self._history[c], self._frames[c]] for c in self.cameras}
        return Ready(stamp, min(self._inputs[label].stamp_ns for label in labels), frames, list(self._proprio))

    def evaluated(self, ready: Ready) -> None:
        """``ready`` was evaluated: its frames join the history of the following steps."""
        for camera in self.cameras:
            self._history[camera].append(ready.frames[camera][-1])

    def _topic(self, label: str) -> str:
        return label if label == self.proprio_label else f"camera/{label}/image_raw"
