"""Trainer bridge upload speed on loopback: episode tar + sha256 + PUT to a real uvicorn server.

    python bench/bridge_upload.py                        # 4 episodes x 5 repeats, 200 frames of 320x180
    python bench/bridge_upload.py --frames 600 --cameras 2 --repeats 3

Episodes are recorded through the bridge's recording core (JPEG quality 90) from synthetic scenes
(smooth background, moving blocks: JPEG sizes like the simulator's, unlike noise), then uploaded one
by one by the bridge's Uploader to the tests' fake learner (FastAPI + uvicorn on 127.0.0.1, which reads
the body, checks its sha256 and opens the tar). Each upload is timed from tar to acknowledgement; the
episode is put back in the queue for the next repeat and the learner forgets it. Prints median and p90
MB/s and ms per episode over all uploads; nothing passes or fails.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))

from bridge_fakes import (ActionChunk, EpisodeStatus, FakeLearner, Header, Image, StepReward, Task,  # noqa: E402
                          stamp)
from efm_trainer.recording import EpisodeRecording  # noqa: E402
from efm_trainer.spool import UPLOADED, Spool  # noqa: E402
from efm_trainer.uploader import ACCEPTED, LearnerClient, RetrySettings, Uploader  # noqa: E402

SPEC = {"embodiment": "language_table", "tokenizers": {}, "input_spec": {}}


def scene(step: int, height: int, width: int, camera: int) -> np.ndarray:
    """A smooth table with two blocks that move a little every step."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([90 + 40 * x / width, 80 + 30 * y / height, np.full_like(x, 70.0)], -1)
    for k, color in enumerate(((200, 40, 40), (40, 60, 200))):
        cx = int(width * (0.3 + 0.4 * k) + 20 * np.sin(step / 15 + k + camera))
        cy = int(height * 0.5 + 15 * np.cos(step / 20 + k))
        image[max(0, cy - 12):cy + 12, max(0, cx - 12):cx + 12] = color
    return image.astype(np.uint8)


def record(spool_dir: Path, episode_id: str, frames: int, cameras: int, height: int, width: int) -> None:
    recording = EpisodeRecording(spool_dir, robot="bench")
    recording.on_task(Task(header=Header(stamp=stamp(0)), robot="bench", episode_id=episode_id,
                           instruction="push the red block to the blue block", embodiment="language_table"))
    for step in range(frames):
        for camera in range(cameras):
            pixels = scene(step, height, width, camera)
            recording.on_image(f"cam{camera}", Image(header=Header(stamp=stamp(step)), height=height, width=width,
                                                     encoding="rgb8", step=width * 3, data=pixels.reshape(-1)))
        recording.on_action(ActionChunk(header=Header(stamp=stamp(step)), episode_id=episode_id, step=step,
                                        horizon=1, action_dim=2, values=np.zeros(2, np.float32),
                                        tokens=np.zeros(2, np.uint16), policy_version="sft-0000"))
        recording.on_reward(StepReward(header=Header(stamp=stamp(step)), episode_id=episode_id, step=step,
                                       reward_model_version="sft-0000"))
    recording.on_episode(EpisodeStatus(header=Header(stamp=stamp(frames)), robot="bench", episode_id=episode_id,
                                       state=EpisodeStatus.STATE_SUCCEEDED, steps=frames))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeLearner(spec=SPEC) as learner:
        spool_dir = Path(tmp) / "spool"
        for i in range(args.episodes):
            record(spool_dir, f"bench-{i:03d}", args.frames, args.cameras, args.height, args.width)
        spool = Spool(spool_dir)
        sizes = [sum(f.stat().st_size for f in p.iterdir()) for p in spool.pending()]
        uploader = Uploader(spool, LearnerClient(learner.url, learner.token), SPEC, "bench",
                            RetrySettings(initial_s=0.01, max_s=0.1), rng=random.Random(0))
        assert uploader.step() is None and not uploader.stopped  # spec check; warm the connection
        for path in (spool_dir / UPLOADED).iterdir():
            os.rename(path, spool_dir / path.name)
        learner.reset(spec=SPEC)
        rates, times = [], []
        for _ in range(args.repeats):
            for path in spool.pending():
                start = time.perf_counter()
                outcome = uploader.upload(path)
                seconds = time.perf_counter() - start
                if outcome != ACCEPTED:
                    raise SystemExit(f"upload of {path.name} answered {outcome}: {uploader.stats}")
                size = len(learner.bodies[path.name])
                rates.append(size / seconds / 1e6)
                times.append(seconds * 1e3)
                os.rename(spool_dir / UPLOADED / path.name, path)
            learner.reset(spec=SPEC)
        print(f"episode: {args.frames} frames x {args.cameras} camera(s) of {args.width}x{args.height}, JPEG q90: "
              f"{statistics.median(sizes) / 1e6:.2f} MB on disk (median of {len(sizes)})")
        print(f"upload to uvicorn on 127.0.0.1 ({len(rates)} uploads): median {statistics.median(rates):.0f} MB/s, "
              f"p90 {_p(rates, 10):.0f} MB/s (slowest 10%); {statistics.median(times):.1f} ms per episode median, "
              f"p90 {_p(times, 90):.1f} ms")


def _p(values, percent):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(percent / 100 * (len(ordered) - 1))))]


if __name__ == "__main__":
    main()
