"""Embedded middleware specifics: executor order, queue depth, wall timers on a manual clock, QoS."""
import threading

import pytest

from efm_runtime import COMMANDS, LATCHED, SENSOR_DATA, MessageError, Node, NodeOptions, QoS, build_node, get_message
from efm_runtime.embedded import ServiceUnavailable

String = get_message("std_msgs/msg/String")
Image = get_message("sensor_msgs/msg/Image")
ResetDone = __import__("efm_runtime").get_service("efm_msgs/srv/ResetDone")


class Recorder(Node):
    """Subscribes ``topic`` with the given QoS and records what arrives."""

    def __init__(self, options=None, qos=COMMANDS, topic="chatter", log=None):
        super().__init__("recorder", options)
        self.heard = []
        self._log = log
        self.create_subscription(String, topic, self._on, qos)

    def _on(self, msg):
        self.heard.append(msg.data)
        if self._log is not None:
            self._log.append((self.get_fully_qualified_name(), msg.data))


class Publisher(Node):
    def __init__(self, options=None, qos=COMMANDS, topic="chatter"):
        super().__init__("publisher", options)
        self.pub = self.create_publisher(String, topic, qos)


def opts(ctx, **kw):
    return NodeOptions(context=ctx, **kw)


def test_queue_depth_keeps_newest_and_counts_drops(embedded):
    pub = Publisher(opts(embedded))
    deep = Recorder(opts(embedded, name="deep"), qos=QoS(depth=10))
    shallow = Recorder(opts(embedded, name="shallow"), qos=QoS(depth=2))
    for i in range(5):  # all published before the executor runs: the shallow queue overflows
        pub.pub.publish(String(data=str(i)))
    embedded.spin_until(lambda: len(deep.heard) == 5, 1.0)
    assert deep.heard == ["0", "1", "2", "3", "4"]
    assert shallow.heard == ["3", "4"]
    stats = {t.name: t for t in embedded.topic_statistics()}
    assert stats["/chatter"].messages == 5 and stats["/chatter"].dropped == 3


def test_wall_timer_fires_at_its_period_on_manual_clock(embedded):
    ticks = []

    class Ticker(Node):
        def __init__(self, options=None):
            super().__init__("ticker", options)
            self.create_timer(0.1, lambda: ticks.append(embedded.wall.monotonic_ns()))

    Ticker(opts(embedded))
    embedded.spin(1.0)
    assert len(ticks) == 10
    assert [b - a for a, b in zip(ticks, ticks[1:])] == [100_000_000] * 9


def test_slow_timer_skips_missed_periods_like_rcl(embedded):
    ticks = []

    class Slow(Node):
        def __init__(self, options=None):
            super().__init__("slow", options)
            self.create_timer(0.1, self.tick)

        def tick(self):
            ticks.append(embedded.wall.monotonic_ns())
            embedded.wall.advance(0.25)  # the callback overruns 2.5 periods

    Slow(opts(embedded))
    embedded.spin(1.0)
    # Like rcl: a late timer fires once as soon as it can and missed periods are not replayed in a
    # burst (5 calls, not 10 plus a catch-up burst), each call 0.25 s after the previous one ended.
    assert [t // 1_000_000 for t in ticks] == [100, 350, 600, 850, 1100]


def test_execution_order_is_deterministic(embedded):
    def run_once(ctx):
        log = []
        pubs = [Publisher(opts(ctx, name=f"p{i}", namespace="/r")) for i in range(2)]
        for i in range(3):
            Recorder(opts(ctx, name=f"r{i}", namespace="/r"), log=log)
        for i in range(4):
            pubs[i % 2].pub.publish(String(data=f"m{i}"))
        ctx.spin_until(lambda: len(log) == 12, 1.0)
        return log

    from efm_runtime import create_context
    from efm_runtime.clock import ManualWallSource

    first = run_once(embedded)
    second_ctx = create_context("embedded", wall=ManualWallSource())
    assert run_once(second_ctx) == first
    assert first[:3] == [("/r/r0", "m0"), ("/r/r1", "m0"), ("/r/r2", "m0")]
    second_ctx.shutdown()


def test_best_effort_publisher_never_reaches_reliable_subscription(embedded):
    pub = Publisher(opts(embedded), qos=SENSOR_DATA)
    reliable = Recorder(opts(embedded, name="reliable"), qos=COMMANDS)
    best_effort = Recorder(opts(embedded, name="best_effort"), qos=SENSOR_DATA)
    pub.pub.publish(String(data="frame"))
    embedded.spin_until(lambda: best_effort.heard, 1.0)
    assert best_effort.heard == ["frame"] and reliable.heard == []


def test_transient_local_reaches_late_subscriber(embedded):
    pub = Publisher(opts(embedded), qos=LATCHED, topic="policy_version")
    pub.pub.publish(String(data="v1"))
    pub.pub.publish(String(data="v2"))
    late = Recorder(opts(embedded), qos=LATCHED, topic="policy_version")
    embedded.spin_until(lambda: late.heard, 1.0)
    assert late.heard == ["v2"]


def test_one_message_type_per_topic(embedded):
    Publisher(opts(embedded))

    class WrongType(Node):
        def __init__(self, options=None):
            super().__init__("wrong", options)
            self.create_subscription(Image, "chatter", lambda m: None, SENSOR_DATA)

    with pytest.raises(MessageError, match="/chatter carries std_msgs/msg/String"):
        WrongType(opts(embedded))


def test_publishing_wrong_message_type_is_rejected(embedded):
    pub = Publisher(opts(embedded))
    with pytest.raises(MessageError, match="std_msgs/msg/String"):
        pub.pub.publish(Image())


def test_publish_from_another_thread_wakes_executor(embedded):
    from efm_runtime import create_context

    ctx = create_context("embedded")  # real wall clock: the thread must wake a sleeping executor
    pub = Publisher(opts(ctx))
    rec = Recorder(opts(ctx))
    thread = threading.Thread(target=lambda: pub.pub.publish(String(data="from thread")))
    thread.start()
    assert ctx.spin_until(lambda: rec.heard == ["from thread"], 10.0)
    thread.join()
    ctx.shutdown()


def test_call_to_missing_service_fails_with_a_clear_error(embedded):
    node = build_node(Publisher, opts(embedded, namespace="/robot_a"))
    future = node.create_client(ResetDone, "reset_done").call_async(ResetDone.Request(robot="robot_a"))
    embedded.spin_until_future_complete(future, 1.0)
    with pytest.raises(ServiceUnavailable, match="/robot_a/reset_done"):
        future.result()


def test_shutdown_from_a_callback_stops_spin(embedded):
    class Stopper(Node):
        def __init__(self, options=None):
            super().__init__("stopper", options)
            self.create_timer(0.5, embedded.request_shutdown)

    Stopper(opts(embedded))
    embedded.spin(100.0)
    assert embedded.wall.monotonic_ns() == 500_000_000


def test_wall_timer_runs_on_the_host_clock_under_sim_time(embedded):
    ticks = []

    class Driver(Node):
        def __init__(self, options=None):
            super().__init__("driver", options)
            self.create_wall_timer(0.1, lambda: ticks.append(embedded.wall.monotonic_ns()))

    Driver(opts(embedded, parameters={"use_sim_time": True}))  # no /clock is ever published
    embedded.spin(0.5)
    assert len(ticks) == 5
