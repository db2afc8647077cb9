"""Publishers, subscriptions, timers, services and clients of the embedded middleware.

They hold no scheduling logic of their own: publishing hands the message to the context, which
queues one delivery per matching subscription; the executor in ``context.py`` runs them.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..futures import Future
from ..messages import message_type_name, validate_message
from ..qos import QoS

if TYPE_CHECKING:
    from .context import EmbeddedContext
    from .node import EmbeddedNodeImpl


@dataclass
class Topic:
    name: str
    type_name: str
    publishers: list["Publisher"] = field(default_factory=list)
    subscriptions: list["Subscription"] = field(default_factory=list)
    message_count: int = 0
    dropped_count: int = 0
    latched: deque = field(default_factory=lambda: deque(maxlen=1))


class Publisher:
    def __init__(self, node: "EmbeddedNodeImpl", topic: Topic, qos: QoS) -> None:
        self._node, self._topic, self.qos = node, topic, qos
        self._destroyed = False

    @property
    def topic_name(self) -> str:
        return self._topic.name

    def publish(self, msg: Any) -> None:
        if self._destroyed:
            raise RuntimeError(f"publisher on {self._topic.name} was destroyed")
        validate_message(msg, self._topic.type_name)
        self._node.context.deliver(self, self._topic, msg)

    def get_subscription_count(self) -> int:
        return len(self._topic.subscriptions)

    def destroy(self) -> None:
        self._destroyed = True
        self._node.context.remove_publisher(self, self._topic)


class Subscription:
    def __init__(self, node: "EmbeddedNodeImpl", topic: Topic, qos: QoS, callback: Callable[[Any], None]) -> None:
        self.node, self._topic, self.qos, self.callback = node, topic, qos, callback
        # Keep-last queue: when full, the oldest message is dropped, as with a ROS 2 history depth.
        self.queue: deque = deque(maxlen=qos.depth)
        self.dropped = 0

    @property
    def topic_name(self) -> str:
        return self._topic.name

    def enqueue(self, msg: Any) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
            self._topic.dropped_count += 1
        self.queue.append(msg)

    def take_and_run(self) -> None:
        if self.queue:
            self.callback(self.queue.popleft())

    def destroy(self) -> None:
        self.node.context.remove_subscription(self, self._topic)


class Timer:
    def __init__(self, node: "EmbeddedNodeImpl", period_ns: int, callback: Callable[[], None],
                 sim_time: bool, now_ns: int, order: int) -> None:
        self.node, self.period_ns, self.callback = node, period_ns, callback
        self.sim_time = sim_time
        self.next_due_ns = now_ns + period_ns
        self.order = order  # creation order breaks ties between timers due at the same instant
        self.canceled = False
        self.fire_count = 0

    @property
    def timer_period_ns(self) -> int:
        return self.period_ns

    def is_canceled(self) -> bool:
        return self.canceled

    def cancel(self) -> None:
        self.canceled = True

    def reset(self) -> None:
        self.canceled = False
        self.next_due_ns = self.node.context.timer_now_ns(self) + self.period_ns

    def reschedule(self, now_ns: int) -> None:
        """Next due time after firing; missed periods are skipped, not replayed (as rcl does)."""
        if self.period_ns == 0:
            self.next_due_ns = now_ns
            return
        self.next_due_ns += self.period_ns
        if self.next_due_ns <= now_ns:
            self.next_due_ns += ((now_ns - self.next_due_ns) // self.period_ns + 1) * self.period_ns

    def destroy(self) -> None:
        self.cancel()
        self.node.context.remove_timer(self)


class Service:
    def __init__(self, node: "EmbeddedNodeImpl", name: str, srv_type: Any, callback: Callable[[Any, Any], Any]) -> None:
        self.node, self.name, self.srv_type, self.callback = node, name, srv_type, callback

    @property
    def service_name(self) -> str:
        return self.name

    def destroy(self) -> None:
        self.node.context.remove_service(self)


class Client:
    def __init__(self, node: "EmbeddedNodeImpl", name: str, srv_type: Any) -> None:
        self.node, self.name, self.srv_type = node, name, srv_type

    @property
    def srv_name(self) -> str:
        return self.name

    def service_is_ready(self) -> bool:
        return self.node.context.find_service(self.name) is not None

    def wait_for_service(self, timeout_sec: float | None = None) -> bool:
        return self.node.context.spin_until(self.service_is_ready, timeout_sec)

    def call_async(self, request: Any) -> Future:
        validate_message(request, message_type_name(self.srv_type.Request))
        return self.node.context.call_service(self, request)

    def destroy(self) -> None:
        pass
