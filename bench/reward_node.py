"""The reward node's evaluations per second and per-frame latency on CPU with ONNX Runtime.

    python bench/reward_node.py [--frames 300] [--model-dir DIR]

One embedded graph in lock-step sim time: a feeder publishes /clock and one synchronized observation
(a 180x320 rgb8 frame, as the LanguageTable sim sends, and the effector) and runs the executor until
the reward node has published that frame's StepReward, then the next. Per-frame latency is the wall
time from publishing the observation to receiving its StepReward: image conversion, resize, the ONNX
reward graph, the reward/success core and the publish; the graph alone is printed too. Always the tiny
test model (test/tiny_model.py, 32x48 input); also the model in --model-dir when given (e.g. a real
`small` export such as /work/models/lt_b32). ONNX Runtime threads follow EFM_ORT_THREADS. Figures are
from this run on this machine; nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from efm_runtime import COMMANDS, SENSOR_DATA, Node, NodeOptions, Time, build_node, create_context, get_message

Image = get_message("sensor_msgs/msg/Image")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Point = get_message("geometry_msgs/msg/Point")
Header = get_message("std_msgs/msg/Header")
Clock = get_message("rosgraph_msgs/msg/Clock")
StepReward = get_message("efm_msgs/msg/StepReward")
Task = get_message("efm_msgs/msg/Task")

NS = "/bench"
FRAME = (180, 320)
PERIOD_NS = 100_000_000


class Feeder(Node):
    def __init__(self, options=None):
        super().__init__("feeder", options)
        self.clock = self.create_publisher(Clock, "/clock", COMMANDS)
        self.image = self.create_publisher(Image, "camera/top/image_raw", SENSOR_DATA)
        self.effector = self.create_publisher(PointStamped, "effector", SENSOR_DATA)
        self.task = self.create_publisher(Task, "task", COMMANDS)
        self.rewards = []
        self.create_subscription(StepReward, "reward", self.rewards.append, COMMANDS)

    def observe(self, now_ns: int, pixels: np.ndarray) -> None:
        stamp = Time(now_ns).to_msg()
        self.clock.publish(Clock(clock=stamp))
        self.image.publish(Image(header=Header(stamp=stamp), height=FRAME[0], width=FRAME[1], encoding="rgb8",
                                 step=FRAME[1] * 3, data=pixels))
        self.effector.publish(PointStamped(header=Header(stamp=stamp), point=Point(x=0.3, y=-0.2, z=0.0)))


def stats(values, unit="ms") -> str:
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:7.2f} {unit}   p99 {p99:7.2f} {unit}   max {np.max(values):7.2f} {unit}"


def drain(ctx) -> None:
    while ctx.spin_once(0.0):
        pass


def run(model_dir: Path, frames: int, label: str) -> None:
    from efm_reward.node import RewardNode

    ctx = create_context("embedded")
    try:
        feeder = Feeder(NodeOptions(namespace=NS, context=ctx, parameters={"use_sim_time": True}))
        node = build_node(RewardNode, NodeOptions(namespace=NS, context=ctx, parameters={
            "use_sim_time": True, "model_dir": str(model_dir), "proprio_topic": "effector"}))
        if node.model is None:
            raise SystemExit(f"{model_dir}: the reward node could not load it (see the log above)")
        model = node.model
        instruction = next(iter(model.embed._cache))
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (*FRAME, 3), dtype=np.uint8).reshape(-1) for _ in range(8)]
        feeder.task.publish(Task(episode_id="bench", instruction=instruction))
        drain(ctx)
        latency, inference = [], []
        warmup = 10
        started = None
        for i in range(frames + warmup):
            if i == warmup:
                started = time.perf_counter()
            before = time.perf_counter()
            feeder.observe((i + 1) * PERIOD_NS, images[i % len(images)])
            drain(ctx)
            if len(feeder.rewards) != i + 1:
                raise SystemExit(f"frame {i}: no StepReward came back (callback errors: {ctx.callback_errors})")
            if i >= warmup:
                latency.append((time.perf_counter() - before) * 1e3)
                inference.append(node.last_inference_ms)
        elapsed = time.perf_counter() - started
    finally:
        ctx.shutdown()
    config = model.config
    print(f"reward node, embedded middleware, lock-step sim time: {label}")
    print(f"  model            {model.version}: {config.backbone}, {len(config.cameras)} camera x {config.history} "
          f"frames at {config.image_size[0]}x{config.image_size[1]} (frames sent {FRAME[0]}x{FRAME[1]})")
    print(f"  provider         {model.provider}")
    print(f"  evaluations      {frames} in {elapsed:.2f} s: {frames / elapsed:.1f} frames/s (after {warmup} warm-up)")
    print(f"  per frame        {stats(latency)}   (observation published -> StepReward received)")
    print(f"  reward graph     {stats(inference)}   (RewardRuntime.steps_to_go alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="measured evaluations per model")
    parser.add_argument("--model-dir", default="", help="also measure this exported model (e.g. a `small` export)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
    from tiny_model import tiny_model_dir

    with tempfile.TemporaryDirectory(prefix="efm-bench-reward-") as tmp:
        run(tiny_model_dir(Path(tmp), name="tiny"), args.frames, "tiny test model")
    if args.model_dir:
        run(Path(args.model_dir), args.frames, str(args.model_dir))


if __name__ == "__main__":
    main()
