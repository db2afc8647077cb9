"""Embedded middleware figures: message throughput, camera-frame delivery cost, 10 Hz timer jitter.

    python bench/embedded_middleware.py [--seconds 3]

Prints medians and percentiles measured in this one run (machines are shared and noisy; compare
figures only within a run). Nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from efm_runtime import COMMANDS, SENSOR_DATA, Node, NodeOptions, QoS, create_context, get_message
from efm_runtime.messages import deserialize, serialize

String = get_message("std_msgs/msg/String")
Image = get_message("sensor_msgs/msg/Image")


class Sink(Node):
    def __init__(self, options=None, msg_type=String, topic="chatter", qos=COMMANDS):
        super().__init__("sink", options)
        self.received = 0
        self.arrivals: list[int] = []
        self.create_subscription(msg_type, topic, self._on, qos)

    def _on(self, msg):
        self.received += 1
        self.arrivals.append(time.perf_counter_ns())


class Source(Node):
    def __init__(self, options=None, msg_type=String, topic="chatter", qos=COMMANDS):
        super().__init__("source", options)
        self.pub = self.create_publisher(msg_type, topic, qos)


def percentiles(values_us: list[float]) -> str:
    q = np.percentile(values_us, [50, 95, 99])
    return f"median {q[0]:8.1f} us   p95 {q[1]:8.1f} us   p99 {q[2]:8.1f} us"


def bench_string_throughput(seconds: float) -> None:
    ctx = create_context("embedded")
    batch, sent = 100, 0
    source = Source(NodeOptions(context=ctx), qos=QoS(depth=batch))
    sink = Sink(NodeOptions(context=ctx), qos=QoS(depth=batch))
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(batch):
            source.pub.publish(String(data="x"))
        sent += batch
        ctx.spin_until(lambda: sink.received == sent, 10.0)
    elapsed = time.perf_counter() - start
    print(f"std_msgs/String publish -> callback: {sent / elapsed:10.0f} msg/s  ({sent} messages)")
    ctx.shutdown()


def bench_image_delivery(samples: int) -> None:
    ctx = create_context("embedded")
    source = Source(NodeOptions(context=ctx), msg_type=Image, topic="image", qos=SENSOR_DATA)
    sinks = [Sink(NodeOptions(name=f"sink{i}", context=ctx), msg_type=Image, topic="image", qos=SENSOR_DATA)
             for i in range(3)]  # policy, reward, bridge
    frame = np.random.default_rng(0).integers(0, 255, 320 * 180 * 3, dtype=np.uint8)
    latencies = []
    for _ in range(samples):
        msg = Image(height=180, width=320, encoding="rgb8", step=960, data=frame)
        t0 = time.perf_counter_ns()
        source.pub.publish(msg)
        ctx.spin_until(lambda: all(s.arrivals for s in sinks), 1.0)
        latencies.append((max(s.arrivals[-1] for s in sinks) - t0) / 1000)
        for s in sinks:
            s.arrivals.clear()
    print(f"320x180 rgb8 Image to 3 subscribers: {percentiles(latencies)}")
    ctx.shutdown()


def bench_cdr(samples: int) -> None:
    frame = np.zeros(320 * 180 * 3, dtype=np.uint8)
    msg = Image(height=180, width=320, encoding="rgb8", step=960, data=frame)
    ser, de = [], []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        data = serialize(msg)
        t1 = time.perf_counter_ns()
        deserialize(data, "sensor_msgs/msg/Image")
        t2 = time.perf_counter_ns()
        ser.append((t1 - t0) / 1000)
        de.append((t2 - t1) / 1000)
    print(f"CDR serialize 320x180 Image:         {percentiles(ser)}")
    print(f"CDR deserialize 320x180 Image:       {percentiles(de)}")


def bench_timer_jitter(seconds: float) -> None:
    ctx = create_context("embedded")
    ticks: list[int] = []

    class Ticker(Node):
        def __init__(self, options=None):
            super().__init__("ticker", options)
            self.create_timer(0.1, lambda: ticks.append(time.monotonic_ns()))

    Ticker(NodeOptions(context=ctx))
    ctx.spin(seconds)
    periods_ms = [(b - a) / 1e6 for a, b in zip(ticks, ticks[1:])]
    errors = [abs(p - 100.0) for p in periods_ms]
    print(f"10 Hz timer over {seconds:.0f} s: {len(ticks)} ticks, period median {statistics.median(periods_ms):.2f} ms, "
          f"|error| p95 {np.percentile(errors, 95):.2f} ms, max {max(errors):.2f} ms")
    ctx.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the timed sections")
    args = parser.parse_args()
    bench_string_throughput(args.seconds)
    bench_image_delivery(500)
    bench_cdr(200)
    bench_timer_jitter(args.seconds)


if __name__ == "__main__":
    main()
