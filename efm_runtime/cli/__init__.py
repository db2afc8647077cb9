"""The ``efm`` command. Each subcommand lives in its own module with a ``register(subparsers)``.

Later capabilities add their module to ``SUBCOMMANDS``; a module imports its heavy dependencies
(torch, mujoco) inside its handler so that ``efm --help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import EfmUserError

SUBCOMMANDS = (
    "efm_runtime.cli.up",
    "efm_runtime.cli.nodes",
    "efm_sim.cli",
    "efm_trainer.dataset_cli",
    "efm_trainer.train_cli",
    "efm_trainer.learner_cli",
    "efm_policy.cli",
    "efm_trainer.selfimprove.cli",
    "efm_trainer.experiments.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efm",
        description="Self-improving embodied foundation models on ROS 2: run node graphs, simulate, "
                    "train and deploy policies. Every subcommand has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"efm {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except EfmUserError as exc:
        print(f"efm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("efm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `efm dataset info | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("efm")
    except PackageNotFoundError:
        return "unknown (not installed)"
