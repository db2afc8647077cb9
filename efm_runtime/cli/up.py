"""``efm up GRAPH.yaml``: run a whole graph in this process on the embedded middleware."""
from __future__ import annotations

import argparse
import signal
import sys

HELP = "run a graph file (robots, nodes, parameters) in one process on the embedded middleware"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "up", help=HELP, description=HELP + ". The same file drives `ros2 launch efm graph.launch.py "
        "graph:=FILE` on a ROS 2 machine. On exit a table shows every topic's message count and rate.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("graph", help="graph YAML file, e.g. config/smoke.yaml")
    parser.add_argument("--duration", type=_positive_seconds, default=None, metavar="S",
                        help="stop after S seconds of wall time (default: run until Ctrl-C)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="set a node parameter (NODE: the node's name or executable, in every robot; "
                             "VALUE: YAML), e.g. -p policy.model_dir=models/lt-v1; repeatable")
    parser.add_argument("--check", action="store_true",
                        help="only validate the file and construct its nodes, then exit")
    parser.set_defaults(handler=run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--duration must be > 0, got {text}")
    return value


def run(args) -> int:
    from ..embedded import EmbeddedContext
    from ..graph import load_graph, override_parameters
    from ..registry import node_entry_points
    from ..runner import bring_up, format_topic_table, run as run_context

    graph = override_parameters(load_graph(args.graph, known_executables=node_entry_points()), args.param)
    context = EmbeddedContext()
    nodes = bring_up(graph, context)
    robots = ", ".join(graph.robots) or "none"
    print(f"efm up: {args.graph}: {len(nodes)} nodes, robots: {robots}", file=sys.stderr)
    if args.check:
        context.shutdown()
        print("efm up: graph is valid", file=sys.stderr)
        return 0

    previous = {sig: signal.signal(sig, lambda *_: context.request_shutdown())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run_context(context, args.duration)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        context.shutdown()

    print(f"\nran {summary.duration_s:.1f} s (wall clock)\n")
    print(format_topic_table(summary.topics))
    if summary.callback_errors:
        print(f"\n{len(summary.callback_errors)} callback error(s):", file=sys.stderr)
        for err in summary.callback_errors[:20]:
            print(f"  {err.node}: {err.callback}: {err.error}", file=sys.stderr)
        return 1
    return 0
