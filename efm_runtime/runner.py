"""Bring a graph up on the embedded middleware, run it, and summarise what flowed."""
from __future__ import annotations

from dataclasses import dataclass

from .embedded import CallbackError, EmbeddedContext, TopicStats
from .errors import EfmUserError, GraphError
from .graph import Graph
from .node import Node, NodeOptions, build_node
from .registry import load_node_class


@dataclass
class RunSummary:
    duration_s: float
    topics: list[TopicStats]
    callback_errors: list[CallbackError]


def bring_up(graph: Graph, context: EmbeddedContext) -> list[Node]:
    """Construct every node of ``graph`` in ``context``; the first bad node aborts with a GraphError."""
    nodes: list[Node] = []
    try:
        for spec in graph.nodes:
            node_class = load_node_class(spec.executable)
            options = NodeOptions(
                name=spec.name, namespace=spec.namespace,
                parameters={**spec.parameters, "use_sim_time": spec.use_sim_time},
                remappings=spec.remappings, context=context)
            try:
                nodes.append(build_node(node_class, options))
            except EfmUserError as exc:
                raise GraphError(f"{graph.path}: {spec.where}: {exc}") from None
    except BaseException:
        for node in reversed(nodes):
            node.destroy_node()
        raise
    return nodes


def run(context: EmbeddedContext, duration_s: float | None) -> RunSummary:
    """Spin until ``duration_s`` passes or shutdown is requested (Ctrl-C)."""
    start = context.wall.monotonic_ns()
    context.spin(duration_s)
    elapsed = (context.wall.monotonic_ns() - start) / 1e9
    return RunSummary(elapsed, context.topic_statistics(), list(context.callback_errors))


def format_topic_table(topics: list[TopicStats]) -> str:
    header = ("topic", "type", "pubs", "subs", "messages", "rate_hz", "dropped")
    rows = [(t.name, t.type_name, str(t.publishers), str(t.subscriptions), str(t.messages),
             f"{t.rate_hz:.1f}", str(t.dropped)) for t in topics]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4, 5, 6}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
