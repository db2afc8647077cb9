"""Pick the success threshold s for an exported model from recorded held-out episodes.

    python bench/reward_calibration.py MODEL_DIR DATASET_DIR [--run RUN_DIR] [--successes 40] [--failures 20]

Runs the frozen reward graph (ONNX Runtime, as the reward node does: one frame per policy step, the
previous evaluated frame as history) along recorded episodes the model was not trained on (those
outside RUN_DIR/split.json's training list), takes the ground truth per step from each episode's
outcome (a succeeded episode succeeds at its last frame, the recorder stops there; a timed-out one never
does) and prints :func:`efm_reward.core.calibrate_threshold` for streaks 1, 2 and 3. Recorded demos stop
at the first success frame, so a streak above 1 can only fire on the frames before it: on such data the
streak-1 figure is the meaningful one (on a robot success persists and a streak only delays the verdict).
Nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from efm_policy.runtime import RewardRuntime
from efm_reward.core import calibrate_threshold
from efm_trainer.episodes import episode_dirs, read_episode, read_metadata


def held_out(dataset: Path, run: Path | None, successes: int, failures: int) -> list[Path]:
    trained = set()
    if run is not None and (run / "split.json").is_file():
        trained = set(json.loads((run / "split.json").read_text())["train"])
    chosen: dict[bool, list[Path]] = {True: [], False: []}
    for path in episode_dirs(dataset):
        if path.name in trained:
            continue
        succeeded = read_metadata(path).get("outcome") == "succeeded"
        if len(chosen[succeeded]) < (successes if succeeded else failures):
            chosen[succeeded].append(path)
    return chosen[True] + chosen[False]


def steps_to_go_along(model: RewardRuntime, path: Path) -> tuple[list[float], list[bool]]:
    episode = read_episode(path)
    camera = model.config.cameras[0]
    frames = [frame for _, frame in episode.images(camera)]
    proprio = [[m.point.x, m.point.y] if hasattr(m, "point") else list(m.position)
               for _, m in episode.topic("/effector") or episode.topic("/joint_states")]
    instruction = episode.metadata["instruction"]
    d, history = [], []
    for frame, state in zip(frames, proprio):
        window = (history + [frame])[-model.config.history:]
        d.append(model.steps_to_go({camera: window}, state, instruction)[0])
        history = window
    succeeded = episode.metadata.get("outcome") == "succeeded"
    return d, [succeeded and t == len(d) - 1 for t in range(len(d))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("dataset")
    parser.add_argument("--run", default="", help="training run whose split.json names the trained episodes")
    parser.add_argument("--successes", type=int, default=40, help="held-out succeeded episodes to use")
    parser.add_argument("--failures", type=int, default=20, help="held-out timed-out episodes to use")
    args = parser.parse_args()
    model = RewardRuntime(args.model_dir, log=lambda _: None)
    if len(model.config.cameras) != 1:
        raise SystemExit(f"{args.model_dir}: this script handles one camera, the model has {model.config.cameras}")
    paths = held_out(Path(args.dataset), Path(args.run) if args.run else None, args.successes, args.failures)
    started = time.perf_counter()
    runs = [steps_to_go_along(model, p) for p in paths]
    frames = sum(len(d) for d, _ in runs)
    print(f"{model.version}: {len(runs)} held-out episodes ({sum(any(t) for _, t in runs)} succeeded), "
          f"{frames} frames in {time.perf_counter() - started:.0f} s")
    ds, truth = [d for d, _ in runs], [t for _, t in runs]
    final = [d[-1] for d, t in runs if any(t)]
    lowest_failed = [min(d) for d, t in runs if not any(t)]
    print(f"  d at the success frame   median {np.median(final):.2f}, max {np.max(final):.2f}" if final else "")
    if lowest_failed:
        print(f"  lowest d of failed ones  median {np.median(lowest_failed):.2f}, min {np.min(lowest_failed):.2f}")
    for k in (1, 2, 3):
        c = calibrate_threshold(ds, truth, streak=k)
        print(f"  streak {k}: best s = {c.threshold:.2f}  precision {c.precision:.2f}  recall {c.recall:.2f}  "
              f"(TP {c.true_positives}, FP {c.false_positives}, successes {c.successful_episodes})")


if __name__ == "__main__":
    main()
