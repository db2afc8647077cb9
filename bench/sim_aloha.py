"""Aloha (MuJoCo, gym-aloha's scenes) figures: control steps/s without rendering, render time and the
10 Hz policy loop's real-time factor per camera count and render quality, and scripted-oracle
episodes/min and success rates.

    MUJOCO_GL=egl python bench/sim_aloha.py [--repeats 3] [--steps 250] [--episodes 30,20] [--noise 0,0.5]
        [--size 240x320]

Prints medians over the repeats, measured in this one run (machines are shared and noisy; compare
figures only within a run). Oracle episodes run the full 80 policy steps (400 control steps) without
rendering; "success" is the state at the end, "ever" counts episodes that succeeded at some policy step
(gym-aloha ends an episode at its first reward 4). Nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from efm_sim.aloha.env import AlohaEnv, start_action
from efm_sim.aloha.scripted import make_aloha_oracle

CAMERA_SETS = (("top",), ("top", "angle"), ("top", "angle", "left_wrist", "right_wrist"))


def steps_per_s(env: AlohaEnv, task: str, steps: int, seed: int) -> float:
    """Control steps per second without rendering: step() and a proprio read."""
    env.reset(seed, env.sample_task(np.random.default_rng(seed), task), render=False)
    actions = np.random.default_rng(seed).normal(start_action(), 0.05, size=(steps, 14))
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
        env.observe(render=False)
    return steps / (time.perf_counter() - t0)


def policy_loop(env: AlohaEnv, policy_steps: int, seed: int) -> tuple[float, float]:
    """The 10 Hz loop: 5 control steps then one observation with every camera. Returns (median ms per
    observation, control steps/s)."""
    env.reset(seed, env.sample_task(np.random.default_rng(seed), "transfer_cube"))
    actions = np.random.default_rng(seed).normal(start_action(), 0.05, size=(policy_steps, env.chunk_size, 14))
    render_s = []
    t0 = time.perf_counter()
    for chunk in actions:
        for a in chunk:
            env.step(a)
        t1 = time.perf_counter()
        env.observe(render=True)
        render_s.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    return statistics.median(render_s) * 1000, policy_steps * env.chunk_size / total


def oracle_run(env: AlohaEnv, task: str, episodes: int, noise: float, first_seed: int):
    """(episodes/min, success at the end, success at some policy step) over seeds first_seed.."""
    oracle = make_aloha_oracle(env, noise=noise, seed=first_seed)
    final = ever = 0
    t0 = time.perf_counter()
    for seed in range(first_seed, first_seed + episodes):
        env.reset(seed, env.sample_task(np.random.default_rng(seed), task), render=False)
        oracle.reset()
        hit = False
        for _ in range(env.max_policy_steps):
            for action in oracle.act():
                env.step(action)
            hit = hit or env.is_success()
        final += env.is_success()
        ever += hit
    dt = time.perf_counter() - t0
    return episodes / dt * 60, final / episodes, ever / episodes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=250, help="control steps per steps/s repeat")
    ap.add_argument("--episodes", default="30,20", help="oracle episodes for transfer_cube,insertion")
    ap.add_argument("--noise", default="0,0.5", help="oracle noise levels, comma separated")
    ap.add_argument("--size", default="240x320", help="image height x width")
    args = ap.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    episodes = dict(zip(("transfer_cube", "insertion"), (int(v) for v in args.episodes.split(","))))
    noises = [float(v) for v in args.noise.split(",")]

    print(f"Aloha, {height}x{width} images: medians of {args.repeats} repeats")
    env = AlohaEnv(image_size=(height, width), cameras=("top",))
    try:
        for task in env.task_names:
            rates = [steps_per_s(env, task, args.steps, seed) for seed in range(args.repeats)]
            print(f"  {task:13s} control steps/s, no rendering: {statistics.median(rates):8.1f}  "
                  f"(min {min(rates):.1f}, max {max(rates):.1f}; {args.steps} steps of step + proprio)")
    finally:
        env.close()
    runs = [(cams, "fast") for cams in CAMERA_SETS] + [(CAMERA_SETS[1], "flat"), (CAMERA_SETS[1], "asset")]
    for cameras, quality in runs:
        env = AlohaEnv(image_size=(height, width), cameras=cameras, render_quality=quality)
        try:
            results = [policy_loop(env, args.steps // env.chunk_size, s) for s in range(args.repeats)]
            ms, rate = statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)
            print(f"  {len(cameras)} camera(s) {'+'.join(cameras):34s} {quality:5s}: {ms:6.1f} ms per observation; "
                  f"10 Hz loop (5 steps + render) {rate:6.1f} control steps/s = {rate / env.control_hz:4.2f}x real time")
        finally:
            env.close()

    env = AlohaEnv(image_size=(height, width), cameras=("top",))
    try:
        for task in env.task_names:
            for noise in noises:
                per_min, final, ever = oracle_run(env, task, episodes[task], noise, 0)
                print(f"  oracle {task:13s} noise {noise:.1f}: {per_min:6.1f} episodes/min (no rendering, "
                      f"400 control steps), success {final:6.1%} at the end, {ever:6.1%} ever, "
                      f"over seeds 0..{episodes[task] - 1}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
