"""``main()`` of every node executable: start one node, spin, shut down cleanly on Ctrl-C."""
from __future__ import annotations

import signal
import sys

from .backend import EMBEDDED, middleware
from .errors import EfmUserError
from .node import NodeOptions, build_node


def run_node(node_class, args: list[str] | None = None) -> int:
    argv = list(sys.argv if args is None else args)
    try:
        if middleware() == EMBEDDED:
            return _run_embedded(node_class, argv)
        return _run_ros2(node_class, argv)
    except EfmUserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_ros2(node_class, argv: list[str]) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from .ros2.context import Ros2Context

    rclpy.init(args=argv)
    context = Ros2Context(use_global=True)
    node = None
    try:
        node = build_node(node_class, NodeOptions(context=context))
        context.executor.spin()  # the context's executor already owns the node
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _run_embedded(node_class, argv: list[str]) -> int:
    from .embedded import EmbeddedContext
    from .ros_args import parse_ros_args

    default_name = getattr(node_class, "default_name", node_class.__name__.lower())
    ros_args = parse_ros_args(argv, default_name)
    context = EmbeddedContext()
    options = NodeOptions(namespace=ros_args.remappings.get("__ns", "/"), parameters=ros_args.parameters,
                          remappings=ros_args.remappings, context=context)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: context.request_shutdown())
    node = build_node(node_class, options)
    node.get_logger().info(
        "running alone on the embedded middleware (no rclpy, or EFM_MIDDLEWARE=embedded): other processes "
        "cannot see its topics; use `efm up GRAPH.yaml` to run a whole graph in one process")
    try:
        context.spin()
    finally:
        context.shutdown()
    return 1 if context.callback_errors else 0
