"""The embedded middleware: every node of a graph in one process, run by one deterministic executor.

Like ROS 2 composition with intra-process messages: a published message object is handed by
reference to every matching subscription (subscribers must not modify what they receive). The
executor is single-threaded and deterministic: each turn it first runs the deliveries, service
requests and responses that were queued before the turn began, in the order they were queued, then
the timers that are due, earliest first (creation order breaks ties). With the same inputs and the
same clock, a graph runs the same way every time.

Other threads (a web server, a serial port reader) may publish or call services at any time; the
work is queued and the executor woken. Time comes from a ``WallSource`` (the host, or a manual clock
in tests) and, for nodes with ``use_sim_time``, from the latest ``/clock`` message.
"""
from __future__ import annotations

import threading
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from ..clock import NS_PER_S, Time, WallSource
from ..errors import MessageError
from ..futures import Future
from ..logging import NodeLogger
from ..messages import message_type_name
from ..qos import QoS, TRANSIENT_LOCAL, compatible
from .entities import Client, Publisher, Service, Subscription, Timer, Topic

CLOCK_TOPIC = "/clock"


class ServiceUnavailable(RuntimeError):
    """A call to a service that no node offers."""


@dataclass(frozen=True)
class CallbackError:
    node: str
    callback: str
    error: str

    @classmethod
    def from_exception(cls, node: str, callback: str, exc: BaseException) -> "CallbackError":
        return cls(node, callback, "".join(traceback.format_exception_only(type(exc), exc)).strip())


@dataclass(frozen=True)
class TopicStats:
    name: str
    type_name: str
    publishers: int
    subscriptions: int
    messages: int
    dropped: int
    rate_hz: float


class EmbeddedContext:
    """One graph's topics, services, nodes and the executor that runs them."""

    def __init__(self, wall: WallSource | None = None) -> None:
        self.wall = wall or WallSource()
        self.nodes: list[Any] = []
        self.callback_errors: list[CallbackError] = []
        self._topics: dict[str, Topic] = {}
        self._services: dict[str, Service] = {}
        self._timers: list[Timer] = []
        self._timer_order = 0
        self._ready: deque[Callable[[], None]] = deque()
        self._wakeup = threading.Condition()
        self._shutdown = threading.Event()
        self._sim_time_ns = 0
        self._spun_ns = 0
        self._log = NodeLogger("efm.embedded")

    # ---- graph bookkeeping -------------------------------------------------------------------
    def _topic(self, name: str, type_name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = Topic(name, type_name)
        elif topic.type_name != type_name:
            raise MessageError(
                f"topic {name} carries {topic.type_name}, but a {type_name} publisher or subscription "
                "was created on it: use one message type per topic (check remaps and topic names)")
        return topic

    def add_publisher(self, node, name: str, msg_type: Any, qos: QoS) -> Publisher:
        topic = self._topic(name, message_type_name(msg_type))
        publisher = Publisher(node, topic, qos)
        if qos.durability == TRANSIENT_LOCAL and topic.latched.maxlen < qos.depth:
            topic.latched = deque(topic.latched, maxlen=qos.depth)
        for sub in topic.subscriptions:
            self._warn_if_incompatible(publisher.qos, sub.qos, name)
        topic.publishers.append(publisher)
        return publisher

    def add_subscription(self, node, name: str, msg_type: Any, qos: QoS, callback) -> Subscription:
        topic = self._topic(name, message_type_name(msg_type))
        sub = Subscription(node, topic, qos, callback)
        for pub in topic.publishers:
            self._warn_if_incompatible(pub.qos, qos, name)
        topic.subscriptions.append(sub)
        if qos.durability == TRANSIENT_LOCAL:
            latched_ok = any(p.qos.durability == TRANSIENT_LOCAL for p in topic.publishers)
            for msg in topic.latched if latched_ok else ():
                self._queue_delivery(sub, msg)
        return sub

    def _warn_if_incompatible(self, pub_qos: QoS, sub_qos: QoS, name: str) -> None:
        if not compatible(pub_qos, sub_qos):
            self._log.warning(
                f"incompatible QoS on {name}: publisher offers {pub_qos.reliability}/{pub_qos.durability}, "
                f"subscription requests {sub_qos.reliability}/{sub_qos.durability}; no messages will pass "
                "(the same happens on a real DDS network)")

    def remove_publisher(self, publisher: Publisher, topic: Topic) -> None:
        if publisher in topic.publishers:
            topic.publishers.remove(publisher)

    def remove_subscription(self, sub: Subscription, topic: Topic) -> None:
        if sub in topic.subscriptions:
            topic.subscriptions.remove(sub)
        sub.queue.clear()

    def add_timer(self, node, period_s: float, callback, sim_time: bool) -> Timer:
        if period_s < 0:
            raise ValueError(f"timer period must be >= 0 s, got {period_s}")
        self._timer_order += 1
        timer = Timer(node, int(round(period_s * NS_PER_S)), callback, sim_time,
                      self._sim_time_ns if sim_time else self.wall.monotonic_ns(), self._timer_order)
        self._timers.append(timer)
        self._wake()
        return timer

    def remove_timer(self, timer: Timer) -> None:
        if timer in self._timers:
            self._timers.remove(timer)

    def timer_now_ns(self, timer: Timer) -> int:
        return self._sim_time_ns if timer.sim_time else self.wall.monotonic_ns()

    def add_service(self, node, name: str, srv_type: Any, callback) -> Service:
        if name in self._services:
            raise MessageError(f"service {name} is already offered by {self._services[name].node.fqn}")
        service = self._services[name] = Service(node, name, srv_type, callback)
        return service

    def remove_service(self, service: Service) -> None:
        if self._services.get(service.name) is service:
            del self._services[service.name]

    def find_service(self, name: str) -> Service | None:
        return self._services.get(name)

    # ---- message flow ------------------------------------------------------------------------
    def deliver(self, publisher: Publisher, topic: Topic, msg: Any) -> None:
        topic.message_count += 1
        if publisher.qos.durability == TRANSIENT_LOCAL:
            topic.latched.append(msg)
        if topic.name == CLOCK_TOPIC:
            self._sim_time_ns = Time.from_msg(msg.clock).nanoseconds
        for sub in list(topic.subscriptions):
            if compatible(publisher.qos, sub.qos):
                self._queue_delivery(sub, msg)
        self._wake()

    def _queue_delivery(self, sub: Subscription, msg: Any) -> None:
        sub.enqueue(msg)
        self._ready.append(sub.take_and_run)

    def call_service(self, client: Client, request: Any) -> Future:
        future = Future()
        future._schedule = self.call_soon

        def serve() -> None:
            service = self.find_service(client.name)
            if service is None:
                future.set_exception(ServiceUnavailable(
                    f"no node offers service {client.name} (called by {client.node.fqn})"))
                return
            try:
                response = service.callback(request, service.srv_type.Response())
            except Exception as exc:  # the service's node already logged it; the caller learns too
                future.set_exception(exc)
                return
            future.set_result(response)

        self.call_soon(serve)
        return future

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the executor thread at its next turn (safe from any thread)."""
        self._ready.append(fn)
        self._wake()

    def _wake(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    # ---- executor ----------------------------------------------------------------------------
    def spin_once(self, timeout_s: float = 0.0) -> bool:
        """One executor turn; waits up to ``timeout_s`` when there was nothing to do. True if work ran."""
        worked = self._run_ready()
        worked = self._run_due_timers() or worked
        if not worked and timeout_s > 0 and not self._shutdown.is_set():
            self._wait(timeout_s)
        return worked

    def spin(self, duration_s: float | None = None) -> None:
        """Run until ``shutdown()`` (from a callback, another thread or a signal) or ``duration_s``."""
        self.spin_until(lambda: False, duration_s)

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float | None = None) -> bool:
        start = self.wall.monotonic_ns()
        deadline = None if timeout_s is None else start + int(timeout_s * NS_PER_S)
        try:
            while not predicate() and not self._shutdown.is_set():
                if deadline is None:
                    self.spin_once(timeout_s=3600.0)
                    continue
                left = (deadline - self.wall.monotonic_ns()) / NS_PER_S
                if left <= 0:
                    self.spin_once(0.0)  # work due exactly at the deadline still runs
                    break
                self.spin_once(timeout_s=left)
        finally:
            self._spun_ns += self.wall.monotonic_ns() - start
        return predicate()

    def spin_until_future_complete(self, future: Future, timeout_s: float | None = None) -> bool:
        return self.spin_until(future.done, timeout_s)

    def _run_ready(self) -> bool:
        count = len(self._ready)  # work queued during this turn waits for the next one
        for _ in range(count):
            self._ready.popleft()()
        return count > 0

    def _run_due_timers(self) -> bool:
        now_wall, now_sim = self.wall.monotonic_ns(), self._sim_time_ns
        due = [t for t in self._timers
               if not t.canceled and t.next_due_ns <= (now_sim if t.sim_time else now_wall)]
        due.sort(key=lambda t: (t.next_due_ns, t.order))
        for timer in due:
            if timer.canceled:
                continue
            timer.reschedule(now_sim if timer.sim_time else now_wall)
            timer.fire_count += 1
            timer.callback()
        return bool(due)

    def _wait(self, timeout_s: float) -> None:
        wall_timers = [t.next_due_ns for t in self._timers if not t.canceled and not t.sim_time]
        if wall_timers:
            until_timer = max(0, min(wall_timers) - self.wall.monotonic_ns()) / NS_PER_S
            timeout_s = min(timeout_s, until_timer)
        with self._wakeup:
            if self._ready or self._shutdown.is_set() or timeout_s <= 0:
                return
            self.wall.wait(self._wakeup, timeout_s)

    # ---- errors, statistics, shutdown --------------------------------------------------------
    def record_callback_error(self, node_fqn: str, callback: str, exc: BaseException) -> None:
        self.callback_errors.append(CallbackError.from_exception(node_fqn, callback, exc))

    def topic_statistics(self) -> list[TopicStats]:
        seconds = self._spun_ns / NS_PER_S
        return [
            TopicStats(t.name, t.type_name, len(t.publishers), len(t.subscriptions), t.message_count,
                       t.dropped_count, t.message_count / seconds if seconds > 0 else 0.0)
            for t in sorted(self._topics.values(), key=lambda t: t.name)
        ]

    @property
    def sim_time_ns(self) -> int:
        return self._sim_time_ns

    def request_shutdown(self) -> None:
        """Ask the executor to stop at its next turn; safe from signal handlers and other threads."""
        self._shutdown.set()
        self._wake()

    def is_shutdown(self) -> bool:
        return self._shutdown.is_set()

    def shutdown(self) -> None:
        self.request_shutdown()
        for node in list(reversed(self.nodes)):
            node.destroy_node()

    def __enter__(self) -> "EmbeddedContext":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def create_node_impl(self, name: str, namespace: str, overrides: dict, remappings: dict):
        from .node import EmbeddedNodeImpl

        return EmbeddedNodeImpl(self, name, namespace, overrides, remappings)
