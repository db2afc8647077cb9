"""Demo recording and dataset reading speed, and episode size on disk.

    python bench/demo_recording.py --env language_table --episodes 10
    python bench/demo_recording.py --env aloha --task transfer_cube --episodes 4

Records episodes with the scripted oracle through the sim node and episode recorder (the path
`efm demos` takes), then reads them back as training would (decoding every JPEG frame). Prints
figures from this one run; nothing passes or fails.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from efm_sim.demos import record_demos  # noqa: E402
from efm_trainer.episodes import episode_dirs, read_episode, summarize_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="language_table")
    parser.add_argument("--task", default="")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = record_demos(args.env, args.task, args.episodes, out, workers=args.workers)
        record_s = time.perf_counter() - start
        dataset = summarize_dataset(out)
        steps = sum(int(e["steps"]) for e in dataset.episodes)
        print(f"{args.env} {args.task or 'any task'}: {summary['recorded']} episodes, {steps} policy steps, "
              f"oracle success {summary['succeeded'] / summary['recorded']:.0%}")
        print(f"recording: {summary['recorded'] / record_s * 60:.1f} episodes/min, "
              f"{steps / record_s:.1f} policy steps/s ({args.workers} worker(s))")
        print(f"size: {dataset.size_bytes / 1e6 / len(dataset.episodes):.2f} MB/episode, "
              f"{dataset.size_bytes / steps / 1e3:.1f} kB/policy step")

        start = time.perf_counter()
        frames = 0
        for path in episode_dirs(out):
            episode = read_episode(path)
            for camera in episode.cameras:
                frames += sum(1 for _ in episode.images(camera))
        read_s = time.perf_counter() - start
        print(f"reading for training: {frames / read_s:.0f} frames/s decoded ({frames} frames, "
              f"{len(episode_dirs(out)) / read_s:.1f} episodes/s)")


if __name__ == "__main__":
    main()
