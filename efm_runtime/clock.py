"""Time for nodes: wall clock, or simulated time driven by ``/clock`` when ``use_sim_time`` is set.

``Time`` counts integer nanoseconds like rclpy's. A ``WallSource`` supplies the host's clocks and the
executor's waits; tests swap in ``ManualWallSource`` so that "ten timer periods in one second" is
checked exactly, without sleeping and without timing asserts.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import total_ordering

NS_PER_S = 1_000_000_000


@total_ordering
@dataclass(frozen=True)
class Time:
    nanoseconds: int = 0

    @classmethod
    def from_seconds(cls, seconds: float) -> "Time":
        return cls(int(round(seconds * NS_PER_S)))

    @classmethod
    def from_msg(cls, msg) -> "Time":
        return cls(int(msg.sec) * NS_PER_S + int(msg.nanosec))

    def seconds_nanoseconds(self) -> tuple[int, int]:
        return divmod(self.nanoseconds, NS_PER_S)

    def to_msg(self):
        from .messages import get_message

        sec, nanosec = self.seconds_nanoseconds()
        return get_message("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)

    @property
    def seconds(self) -> float:
        return self.nanoseconds / NS_PER_S

    def __lt__(self, other: "Time") -> bool:
        return self.nanoseconds < other.nanoseconds


class WallSource:
    """The host's clocks: epoch time for stamps, monotonic time for scheduling."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wait(self, condition: threading.Condition, timeout_s: float | None) -> None:
        """Block on ``condition`` (held by the caller) until notified or ``timeout_s`` passes."""
        condition.wait(timeout_s)


class ManualWallSource(WallSource):
    """A wall clock that moves only when waited on: waiting ``t`` seconds advances it by ``t``."""

    def __init__(self, start_ns: int = 1_700_000_000 * NS_PER_S) -> None:
        self._epoch_ns = start_ns
        self._mono_ns = 0

    def time_ns(self) -> int:
        return self._epoch_ns + self._mono_ns

    def monotonic_ns(self) -> int:
        return self._mono_ns

    def advance(self, seconds: float) -> None:
        self._mono_ns += int(round(seconds * NS_PER_S))

    def wait(self, condition: threading.Condition, timeout_s: float | None) -> None:
        if timeout_s is None:
            raise RuntimeError("ManualWallSource cannot wait forever: nothing else would move time")
        self.advance(timeout_s)


class Clock:
    """A node's clock: system time, or the latest ``/clock`` value when it uses sim time."""

    def __init__(self, wall: WallSource, sim_time_ns=None) -> None:
        self._wall = wall
        self._sim_time_ns = sim_time_ns  # callable returning the latest /clock in ns, or None

    @property
    def uses_sim_time(self) -> bool:
        return self._sim_time_ns is not None

    def now(self) -> Time:
        if self._sim_time_ns is not None:
            return Time(self._sim_time_ns())
        return Time(self._wall.time_ns())
