"""``efm nodes``: the node executables this installation offers."""
from __future__ import annotations

import sys

HELP = "list the node executables that graph files and launch files can name"


def register(subparsers) -> None:
    parser = subparsers.add_parser("nodes", help=HELP, description=HELP + ".")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..registry import node_entry_points

    eps = node_entry_points()
    width = max(map(len, eps))
    for name in sorted(eps):
        doc = sys.modules[eps[name].load().__module__].__doc__ or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else ""
        print(f"{name.ljust(width)}  {summary}")
    return 0
