"""``efm demos``: record scripted-oracle demonstration datasets in simulation."""
from __future__ import annotations

import argparse
import sys
import time

HELP = "record oracle demonstrations in simulation, one rosbag2/MCAP episode per seed"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demos", help=HELP, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=HELP + ". The oracle drives the simulated robot through the same topics as a policy; "
                    "re-running the same command skips finished episodes.")
    parser.add_argument("--env", required=True, help="language_table or aloha")
    parser.add_argument("--task", default="", help="task family (e.g. block2block, transfer_cube); empty = any")
    parser.add_argument("--episodes", type=int, required=True, help="number of episodes (seeds) to record")
    parser.add_argument("--out", required=True, help="dataset directory")
    parser.add_argument("--noise", type=float, default=0.0, help="oracle suboptimality in [0, 1]")
    parser.add_argument("--workers", type=int, default=1, help="parallel simulator processes")
    parser.add_argument("--first-seed", type=int, default=1, help="seed of the first episode")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from efm_runtime.errors import EfmUserError

    from .demos import pending_seeds, record_demos
    from .registry import check_task_name, make_env

    if args.episodes < 1:
        raise EfmUserError(f"--episodes must be >= 1, got {args.episodes}")
    if args.workers < 1:
        raise EfmUserError(f"--workers must be >= 1, got {args.workers}")
    if not 0.0 <= args.noise <= 1.0:
        raise EfmUserError(f"--noise must be within [0, 1], got {args.noise}")
    if args.first_seed < 1:
        raise EfmUserError("--first-seed must be >= 1 (seed 0 means 'any' to a scene reset)")
    env = make_env(args.env)  # an unknown name raises with the closest valid one
    check_task_name(env, args.task or None)
    env.close()

    from tqdm import tqdm

    seeds = range(args.first_seed, args.first_seed + args.episodes)
    already = args.episodes - len(pending_seeds(args.env, args.task, seeds, args.out))
    start = time.monotonic()
    bar = tqdm(total=args.episodes, initial=already, unit="ep", desc=f"{args.env} demos", file=sys.stderr)

    def progress(summary):
        done = summary["recorded"]
        bar.update(1)
        bar.set_postfix(success=f"{summary['succeeded'] / done:.0%}",
                        eps_per_s=f"{done / (time.monotonic() - start):.2f}")

    summary = record_demos(args.env, args.task, args.episodes, args.out, args.noise, args.workers,
                           args.first_seed, progress)
    bar.close()
    rate = summary["succeeded"] / summary["recorded"] if summary["recorded"] else float("nan")
    print(f"recorded {summary['recorded']} episodes ({summary['skipped']} already there), "
          f"oracle success {rate:.0%}, in {time.monotonic() - start:.1f} s -> {args.out}")
    return 0
