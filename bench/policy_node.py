"""The policy node in real (wall) time at 10 Hz: achieved rate, tick jitter, inference and latency.

    python bench/policy_node.py [--seconds 60] [--model-dir DIR] [--camera-phase-ms 50]

One embedded graph: a synthetic camera + effector publisher at 10 Hz (180x320 rgb8 frames, as the
LanguageTable sim sends) and the policy node on the wall clock, acting in one long episode. Without
--model-dir it exports a freshly initialised `small` policy (EfficientNet-Lite0 + MiniLM table, 96x160,
LanguageTable-shaped; untrained weights cost the same as trained ones).

Observation-to-action latency (ActionChunk.latency_ms) = age of the newest frame when acting begins +
the work of acting (image conversion, resize, ONNX Runtime, sampling, publish). The policy acts on a
tick, or, when the tick found that frame already answered, as soon as the next frame arrives, so the
camera's phase against the timer (nothing synchronises them, as on a robot) mostly stops adding to
the latency. Both parts are printed. Figures are from
this run on this machine; nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from efm_runtime import COMMANDS, SENSOR_DATA, Node, NodeOptions, build_node, create_context, get_message

Image = get_message("sensor_msgs/msg/Image")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Point = get_message("geometry_msgs/msg/Point")
Header = get_message("std_msgs/msg/Header")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
Task = get_message("efm_msgs/msg/Task")

NS = "/bench"
INSTRUCTION = "push the red moon to the blue cube"
FRAME = (180, 320)


def export_small(out: Path) -> Path:
    """A freshly initialised `small` LanguageTable policy, exported like `efm export` does."""
    import torch

    from efm_policy.config import PolicyConfig
    from efm_policy.export import export_model
    from efm_policy.model import save_untrained_checkpoint
    from efm_policy.tokenizers import ActionTokenizer, StepsToGoTokenizer, Tokenizers

    torch.manual_seed(0)
    config = PolicyConfig(embodiment="language_table", cameras=("top",), proprio_dim=2, backbone="small",
                          image_size=(96, 160))
    tokenizers = Tokenizers(ActionTokenizer([-0.1, -0.1], [0.1, 0.1], horizon=1), StepsToGoTokenizer())
    run = save_untrained_checkpoint(out / "run", config, tokenizers, instructions=[INSTRUCTION])
    return export_model(run, out / "model", version="bench-small", text_encoder=False, log=lambda _: None).directory


class Camera(Node):
    """Publishes a camera frame and the effector at ``rate_hz``, stamped with the node clock."""

    def __init__(self, options=None, rate_hz: float = 10.0):
        super().__init__("camera", options)
        rng = np.random.default_rng(0)
        self._frames = [rng.integers(0, 256, (*FRAME, 3), dtype=np.uint8).reshape(-1) for _ in range(8)]
        self._count = 0
        self._image = self.create_publisher(Image, "camera/top/image_raw", SENSOR_DATA)
        self._effector = self.create_publisher(PointStamped, "effector", SENSOR_DATA)
        self.create_timer(1.0 / rate_hz, self._publish)

    def _publish(self):
        header = Header(stamp=self.get_clock().now().to_msg())
        self._image.publish(Image(header=header, height=FRAME[0], width=FRAME[1], encoding="rgb8",
                                  step=FRAME[1] * 3, data=self._frames[self._count % len(self._frames)]))
        self._effector.publish(PointStamped(header=header, point=Point(x=0.3, y=-0.2, z=0.0)))
        self._count += 1


class Sink(Node):
    def __init__(self, options=None):
        super().__init__("sink", options)
        self.chunks = []
        self.task = self.create_publisher(Task, "task", COMMANDS)
        self.create_subscription(ActionChunk, "action", self.chunks.append, COMMANDS)


def build_policy_class():
    from efm_policy.node import PolicyNode

    class TimedPolicyNode(PolicyNode):
        """The policy node, recording when each tick started, and the work and chunk of every callback
        that published one: a tick, or a frame completing an observation a tick was waiting for."""

        def __init__(self, options=None):
            super().__init__(options)
            self.ticks: list[int] = []                          # monotonic ns at each tick's start
            self.acts: list[tuple[int, int, object]] = []       # (start, end, chunk) of callbacks that acted
            self.sent: list = []
            publish = self._action_pub.publish

            def publish_and_keep(msg):
                self.sent.append(msg)
                publish(msg)

            self._action_pub.publish = publish_and_keep

        def _timed(self, callback) -> int:
            started, before = time.monotonic_ns(), len(self.sent)
            callback()
            if len(self.sent) > before:
                self.acts.append((started, time.monotonic_ns(), self.sent[-1]))
            return started

        def _tick(self):
            self.ticks.append(self._timed(super()._tick))

        def _observation_arrived(self):
            self._timed(super()._observation_arrived)

    return TimedPolicyNode


def stats(values, unit="ms") -> str:
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:7.2f} {unit}   p99 {p99:7.2f} {unit}   max {np.max(values):7.2f} {unit}"


def run(model_dir: Path, seconds: float, rate_hz: float, phase_ms: float) -> None:
    ctx = create_context("embedded")
    try:
        policy = build_node(build_policy_class(), NodeOptions(namespace=NS, context=ctx, parameters={
            "model_dir": str(model_dir), "rate_hz": rate_hz, "proprio_topic": "effector"}))
        sink = Sink(NodeOptions(namespace=NS, context=ctx))
        ctx.spin(phase_ms / 1e3)        # the camera's phase against the policy timer
        Camera(NodeOptions(namespace=NS, context=ctx), rate_hz)
        model = policy.loop.active_model
        instruction = INSTRUCTION if INSTRUCTION in model.embed._cache else next(iter(model.embed._cache))
        sink.task.publish(Task(episode_id="bench", instruction=instruction))
        ctx.spin(1.0)                   # warm-up: first frames, first inferences
        warm_ticks, warm_acts = len(policy.ticks), len(policy.acts)
        started = time.monotonic()
        ctx.spin(seconds)
        elapsed = time.monotonic() - started
        ticks, acts = policy.ticks[warm_ticks:], policy.acts[warm_acts:]
        errors = list(ctx.callback_errors)
    finally:
        ctx.shutdown()

    period_ms = 1e3 / rate_hz
    intervals = np.diff(np.array(ticks, dtype=np.int64)) / 1e6
    acted = [(end - start, chunk) for start, end, chunk in acts]
    work = np.array([w for w, _ in acted]) / 1e6
    latency = np.array([c.latency_ms for _, c in acted])
    inference = np.array([c.inference_ms for _, c in acted])
    frame_age = latency - work  # latency minus the callback's own work: how old the frame was when acting began
    config = model.config
    print(f"policy node, embedded middleware, wall clock, {rate_hz:g} Hz for {elapsed:.1f} s (after 1 s warm-up)")
    print(f"  model            {model.version}: {config.backbone}, {len(config.cameras)} camera x {config.history} "
          f"frames at {config.image_size[0]}x{config.image_size[1]} (frames sent {FRAME[0]}x{FRAME[1]})")
    print(f"  provider         {model.provider}")
    print(f"  ticks            {len(ticks)} ({len(ticks) / elapsed:.2f} Hz); chunks published {len(acted)} "
          f"({len(acted) / elapsed:.2f} Hz)")
    print(f"  tick period      {stats(intervals)}   (target {period_ms:.1f} ms)")
    print(f"  period jitter    {stats(np.abs(intervals - period_ms))}")
    print(f"  work per chunk   {stats(work)}   (resize + ONNX Runtime + sampling + publish)")
    print(f"  inference        {stats(inference)}   (ActionChunk.inference_ms: the graph alone)")
    print(f"  obs->action      {stats(latency)}   (ActionChunk.latency_ms)")
    print(f"    frame age      {stats(frame_age)}   (camera phase {phase_ms:g} ms against the timer)")
    print(f"  budget           work p99 is {np.percentile(work, 99) / period_ms:.0%} of the {period_ms:.0f} ms period")
    if errors:
        print(f"  callback errors  {len(errors)}: {errors[0]}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured wall-clock seconds")
    parser.add_argument("--model-dir", default="", help="exported model directory (default: export `small`)")
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--camera-phase-ms", type=float, default=50.0,
                        help="how long after the policy timer the camera timer starts")
    args = parser.parse_args()
    if args.model_dir:
        run(Path(args.model_dir), args.seconds, args.rate_hz, args.camera_phase_ms)
        return
    with tempfile.TemporaryDirectory(prefix="efm-bench-policy-") as tmp:
        started = time.perf_counter()
        model_dir = export_small(Path(tmp))
        print(f"exported an untrained `small` policy in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        run(model_dir, args.seconds, args.rate_hz, args.camera_phase_ms)


if __name__ == "__main__":
    main()
