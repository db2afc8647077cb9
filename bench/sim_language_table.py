"""LanguageTable (MuJoCo) figures: control steps/s without and with the 180x320 camera image, and
scripted-oracle episodes/min and success rates.

    MUJOCO_GL=egl python bench/sim_language_table.py [--repeats 3] [--steps 300] [--episodes 20]

Prints medians over the repeats, measured in this one run (machines are shared and noisy; compare
figures only within a run). Nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from efm_sim.language_table import LanguageTableEnv, LanguageTableOracle
from efm_sim.language_table.oracle import run_episode


def steps_per_s(env: LanguageTableEnv, steps: int, render: bool, seed: int) -> float:
    env.reset(seed, render=render)
    actions = np.random.default_rng(seed).uniform(-0.05, 0.05, size=(steps, 2))
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
        env.observe(render=render)
    return steps / (time.perf_counter() - t0)


def oracle_run(env: LanguageTableEnv, family: str, episodes: int, noise: float, first_seed: int):
    oracle = LanguageTableOracle(env, noise=noise, seed=first_seed)
    t0 = time.perf_counter()
    results = [run_episode(env, oracle, first_seed + i, family) for i in range(episodes)]
    dt = time.perf_counter() - t0
    return episodes / dt * 60, sum(ok for ok, _ in results) / episodes, statistics.mean(n for _, n in results)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="control steps per steps/s repeat")
    ap.add_argument("--episodes", type=int, default=20, help="oracle episodes per family, noise and repeat")
    ap.add_argument("--block-set", default="BLOCK_8")
    args = ap.parse_args(argv)

    env = LanguageTableEnv(args.block_set)
    try:
        print(f"LanguageTable {args.block_set}: median of {args.repeats} repeats")
        for render in (False, True):
            rates = [steps_per_s(env, args.steps, render, seed) for seed in range(args.repeats)]
            label = "with 180x320 image" if render else "no rendering      "
            print(f"  steps/s {label}: {statistics.median(rates):8.1f}  "
                  f"(min {min(rates):.1f}, max {max(rates):.1f}; step + observe)")
        for family in env.task_names:
            for noise in (0.0, 0.5):
                runs = [oracle_run(env, family, args.episodes, noise, 1000 * r) for r in range(args.repeats)]
                per_min = statistics.median(r[0] for r in runs)
                success = statistics.mean(r[1] for r in runs)
                steps = statistics.mean(r[2] for r in runs)
                print(f"  oracle {family:24s} noise {noise:.1f}: {per_min:7.1f} episodes/min (no rendering), "
                      f"success {success:5.1%} over {args.episodes * args.repeats} episodes, "
                      f"mean {steps:5.1f} steps")
    finally:
        env.close()


if __name__ == "__main__":
    main()
