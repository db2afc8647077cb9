"""Quality of service, the subset the suite uses, with the same meaning as in ROS 2.

``depth`` bounds every subscription's queue (keep-last: the oldest message is dropped when a new
one arrives and the queue is full). ``best_effort`` publishers never reach ``reliable``
subscriptions (incompatible, exactly as in DDS), so a graph that only works in simulation because
the middleware was lenient cannot happen. ``transient_local`` keeps the last ``depth`` messages for
late subscribers (latched topics, e.g. the active policy version).
"""
from __future__ import annotations

from dataclasses import dataclass

RELIABLE = "reliable"
BEST_EFFORT = "best_effort"
VOLATILE = "volatile"
TRANSIENT_LOCAL = "transient_local"


@dataclass(frozen=True)
class QoS:
    depth: int = 10
    reliability: str = RELIABLE
    durability: str = VOLATILE

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"QoS depth must be an integer >= 1, got {self.depth!r}")
        if self.reliability not in (RELIABLE, BEST_EFFORT):
            raise ValueError(f"QoS reliability must be {RELIABLE!r} or {BEST_EFFORT!r}, got {self.reliability!r}")
        if self.durability not in (VOLATILE, TRANSIENT_LOCAL):
            raise ValueError(f"QoS durability must be {VOLATILE!r} or {TRANSIENT_LOCAL!r}, got {self.durability!r}")


def as_qos(qos: QoS | int) -> QoS:
    """Accept an int like rclpy does: a reliable, volatile profile of that depth."""
    return QoS(depth=qos) if isinstance(qos, int) else qos


def compatible(publisher: QoS, subscription: QoS) -> bool:
    """DDS request/offer rule: a subscription may not ask for more than the publisher offers."""
    if subscription.reliability == RELIABLE and publisher.reliability == BEST_EFFORT:
        return False
    if subscription.durability == TRANSIENT_LOCAL and publisher.durability == VOLATILE:
        return False
    return True


# Camera frames and other high-rate sensor streams: newest data matters, stale data does not.
SENSOR_DATA = QoS(depth=5, reliability=BEST_EFFORT)
# Commands, task assignments, episode status: every message counts.
COMMANDS = QoS(depth=10, reliability=RELIABLE)
# State that a late joiner must still see (active policy version, last episode status).
LATCHED = QoS(depth=1, reliability=RELIABLE, durability=TRANSIENT_LOCAL)
