"""Inference latency of the exported `small` policy with ONNX Runtime: single-step and chunked.

    python bench/policy_inference.py [--iterations 200] [--model-dir DIR ...] [--providers CUDAExecutionProvider]

Without --model-dir it exports two freshly initialised `small` policies (weights do not change the
cost): LanguageTable-shaped (1 camera 96x160, 2 frames, a single 2-D action per step) and
Aloha-shaped (2 cameras, 2 frames, a chunk of 5 x 14-D actions: 70 tokens in one pass). For each it
times the whole `PolicyRuntime.act` call (fitting camera frames, the graph, sampling) and the reward
graph, and prints p50/p99 and the execution provider. Figures are from this run on this machine;
nothing passes or fails.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

LAYOUTS = {
    "single (LanguageTable: 1 camera, 2-D action)": dict(embodiment="language_table", cameras=("top",),
                                                         proprio_dim=2, horizon=1, action_dim=2, frame=(180, 320)),
    "chunked (Aloha: 2 cameras, 5 x 14-D chunk)": dict(embodiment="aloha", cameras=("top", "left_wrist"),
                                                       proprio_dim=14, horizon=5, action_dim=14, frame=(240, 320)),
}


def export_untrained(out: Path, embodiment, cameras, proprio_dim, horizon, action_dim) -> Path:
    from efm_policy.config import PolicyConfig
    from efm_policy.export import export_model
    from efm_policy.model import save_untrained_checkpoint
    from efm_policy.tokenizers import ActionTokenizer, StepsToGoTokenizer, Tokenizers

    config = PolicyConfig(embodiment=embodiment, cameras=cameras, proprio_dim=proprio_dim, backbone="small",
                          image_size=(96, 160))
    tokenizers = Tokenizers(ActionTokenizer([-1.0] * action_dim, [1.0] * action_dim, horizon=horizon),
                            StepsToGoTokenizer())
    run = save_untrained_checkpoint(out / f"{embodiment}-run", config, tokenizers,
                                    instructions=["push the red moon to the blue cube"])
    return export_model(run, out / embodiment, text_encoder=False, log=lambda _: None).directory


def percentiles(samples_ms: list[float]) -> str:
    p50, p99 = np.percentile(samples_ms, [50, 99])
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  mean {np.mean(samples_ms):6.2f} ms"


def time_model(model_dir: Path, iterations: int, providers, frame_size: tuple[int, int] = (180, 320)) -> None:
    from efm_policy.runtime import PolicyRuntime, RewardRuntime

    said = []
    policy = PolicyRuntime(model_dir, providers=providers, log=said.append)
    reward = RewardRuntime(model_dir, providers=providers, log=said.append)
    config = policy.config
    rng = np.random.default_rng(0)
    instruction = next(iter(policy.embed._cache))
    frames = {c: [rng.integers(0, 256, (*frame_size, 3), dtype=np.uint8)
                  for _ in range(config.history)] for c in config.cameras}
    proprio = np.zeros(config.proprio_dim)
    for _ in range(10):                                       # warm-up (allocations, provider set-up)
        policy.act(frames, proprio, instruction)
    whole, graph, rewards = [], [], []
    for _ in range(iterations):
        started = time.perf_counter()
        sample = policy.act(frames, proprio, instruction, rng=rng)
        whole.append((time.perf_counter() - started) * 1e3)
        graph.append(sample.inference_ms)
        started = time.perf_counter()
        reward.steps_to_go(frames, proprio, instruction)
        rewards.append((time.perf_counter() - started) * 1e3)
    tokens = policy.manifest.tokenizers.action.tokens_per_chunk
    print(f"  provider       {policy.provider}")
    print(f"  input          {len(config.cameras)} camera(s) x {config.history} frames at "
          f"{config.image_size[0]}x{config.image_size[1]}, {tokens} action tokens per call")
    print(f"  policy graph   {percentiles(graph)}")
    print(f"  act() total    {percentiles(whole)}   (resize + graph + sampling)")
    print(f"  reward graph   {percentiles(rewards)}")
    print(f"  10 Hz budget   {np.percentile(whole, 99) / 100:.0%} of the 100 ms period at p99")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--model-dir", nargs="*", default=[], help="exported model directories to time instead")
    parser.add_argument("--providers", nargs="*", default=None, help="execution providers (default: best available)")
    args = parser.parse_args()
    import onnxruntime as ort
    print(f"onnxruntime {ort.__version__}, available providers: {', '.join(ort.get_available_providers())}")
    with tempfile.TemporaryDirectory() as scratch:
        targets = [(str(d), Path(d), (180, 320)) for d in args.model_dir]
        if not targets:
            for name, layout in LAYOUTS.items():
                layout = dict(layout)
                frame = layout.pop("frame")
                targets.append((name, export_untrained(Path(scratch), **layout), frame))
        for name, directory, frame in targets:
            print(f"\n{name}")
            time_model(directory, args.iterations, args.providers, frame)


if __name__ == "__main__":
    main()
