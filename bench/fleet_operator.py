"""How many practising robots can one operator keep busy? The simulated operator works the fleet's queue.

Runs config/fleet_sim.yaml's robots (sim LanguageTable, oracle driver, ground-truth rewards, episode managers)
with every robot needing a human reset, and the reset supervisor's simulated operator at each reaction time,
on the embedded middleware with a manual wall clock: virtual time moves as fast as the CPU renders, so a
20 s reaction costs no real 20 s. Prints, per fleet size and reaction time, each robot's utilisation (share of
time running an episode), its mean idle time waiting for a human, episodes per hour and "robots kept busy"
(the sum of utilisations). Figures, never pass/fail.

  python bench/fleet_operator.py --robots 1 2 4 --reaction 5 20 --minutes 10
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from efm_runtime import NodeOptions, build_node, create_context  # noqa: E402
from efm_runtime.clock import ManualWallSource  # noqa: E402
from efm_reset_supervisor.episode_manager_node import EpisodeManagerNode  # noqa: E402
from efm_reset_supervisor.ground_truth_reward import GroundTruthReward  # noqa: E402
from efm_reset_supervisor.node import ResetSupervisor  # noqa: E402
from efm_sim.node import SimNode  # noqa: E402


def run(robots: int, reaction_s: float, minutes: float, max_steps: int, noise: float) -> dict:
    ctx = create_context("embedded", wall=ManualWallSource())
    names = [f"lt_{i + 1}" for i in range(robots)]
    try:
        for i, name in enumerate(names):
            ns = NodeOptions(namespace=f"/{name}", context=ctx)
            build_node(SimNode, NodeOptions(namespace=ns.namespace, context=ctx, parameters={
                "env": "language_table", "task": "block2block", "driver": "oracle", "oracle_noise": noise,
                "seed": i, "reset_delay_s": 0.0}))
            build_node(GroundTruthReward, NodeOptions(namespace=ns.namespace, context=ctx))
            build_node(EpisodeManagerNode, NodeOptions(namespace=ns.namespace, context=ctx, parameters={
                "embodiment": "language_table", "task_family": "block2block", "max_steps": max_steps,
                "auto_reset": False, "auto_start": False, "first_seed": 1 + i, "seed_stride": robots}))
        sup = build_node(ResetSupervisor, NodeOptions(context=ctx, parameters={
            "robots": names, "sim_hands_robots": names, "web_port": -1, "simulated_operator": True,
            "operator_reaction_s": reaction_s, "thumbnail_hz": 0.2, "stale_after_s": 60.0}))
        start = time.monotonic()
        ctx.spin(minutes * 60.0)
        wall_s = time.monotonic() - start
        totals = sup.console.snapshot()["totals"]
    finally:
        ctx.shutdown()
    util = totals["utilisation_per_robot"]
    waits = totals["waiting_for_human_s_per_robot"]
    episodes = max(totals["episodes"], 1)
    return {"robots": robots, "reaction_s": reaction_s, "busy": sum(util.values()),
            "util_mean": sum(util.values()) / robots, "idle_wait_s_per_robot": sum(waits.values()) / robots,
            "wait_per_episode_s": sum(waits.values()) / episodes, "episodes_per_hour": totals["episodes_per_hour"],
            "episodes": totals["episodes"], "operator_busy": sup.operator.busy_s / (minutes * 60.0), "wall_s": wall_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--reaction", type=float, nargs="+", default=[5.0, 20.0])
    parser.add_argument("--minutes", type=float, default=10.0, help="virtual minutes per run")
    parser.add_argument("--max-steps", type=int, default=80, help="episode limit, policy steps (10 Hz)")
    parser.add_argument("--noise", type=float, default=0.3, help="oracle noise (some episodes fail)")
    args = parser.parse_args()
    print(f"{'robots':>6} {'react_s':>7} {'kept busy':>9} {'util/robot':>10} {'wait/robot':>10} "
          f"{'wait/episode':>12} {'ep/hour':>8} {'operator busy':>13} {'wall_s':>7}")
    for reaction in args.reaction:
        for robots in args.robots:
            r = run(robots, reaction, args.minutes, args.max_steps, args.noise)
            print(f"{r['robots']:>6} {r['reaction_s']:>7.0f} {r['busy']:>9.2f} {r['util_mean']:>10.0%} "
                  f"{r['idle_wait_s_per_robot']:>9.0f}s {r['wait_per_episode_s']:>11.1f}s "
                  f"{r['episodes_per_hour']:>8.0f} {min(r['operator_busy'], 1.0):>13.0%} {r['wall_s']:>7.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
