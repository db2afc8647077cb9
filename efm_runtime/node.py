"""The node API every efm node is written against, shaped like rclpy's ``Node``.

A node subclasses ``Node`` and, in ``__init__``, declares its parameters and creates publishers,
subscriptions, timers and services, exactly as with rclpy. Which middleware carries them is decided
by the context the node is created in: real ROS 2 (rclpy) on a robot, or the embedded middleware
(``efm up``, tests, machines without ROS 2). Node code never imports rclpy.

Two things are added on top of rclpy's behaviour, on both middlewares:
- a callback that raises is logged with the node's name and counted, and the node keeps running;
- an override for a parameter the node never declared is an error (``build_node`` checks it).
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .errors import ParameterError
from .parameters import Parameter, ParameterSpec, infer_type
from .qos import QoS, as_qos


@dataclass
class NodeOptions:
    """How one node instance is started (``efm up`` fills it from the graph YAML)."""
    name: str | None = None           # instance name; the class's default name when None
    namespace: str = "/"              # e.g. "/robot_a"
    parameters: dict[str, Any] = field(default_factory=dict)   # overrides of declared parameters
    remappings: dict[str, str] = field(default_factory=dict)   # "from" -> "to", ROS semantics
    context: Any = None               # EmbeddedContext or Ros2Context; the process default when None


class Node:
    def __init__(self, node_name: str, options: NodeOptions | None = None) -> None:
        from .context import default_context

        options = options or NodeOptions()
        self._context = options.context or default_context()
        self._impl = self._context.create_node_impl(
            options.name or node_name, options.namespace, dict(options.parameters), dict(options.remappings))
        self._context.nodes.append(self)

    # ---- identity, logging, time -----------------------------------------------------------
    def get_name(self) -> str:
        return self._impl.name

    def get_namespace(self) -> str:
        return self._impl.namespace

    def get_fully_qualified_name(self) -> str:
        return self._impl.fqn

    def get_logger(self):
        return self._impl.logger

    def get_clock(self):
        return self._impl.clock

    @property
    def context(self):
        return self._context

    # ---- parameters --------------------------------------------------------------------------
    def declare_parameter(self, name: str, default: Any = None, *, type: str | None = None,
                          description: str = "", min: float | None = None, max: float | None = None,
                          read_only: bool = False) -> Parameter:
        """Declare a parameter; its type comes from ``default`` unless ``type`` is given.

        A parameter with no default must be set by the graph file or the command line.
        """
        try:
            ptype = type or infer_type(name, default)
            spec = ParameterSpec(name, ptype, default, description, min, max, read_only)
            return self._impl.declare_parameter(spec)
        except ParameterError as exc:
            raise ParameterError(f"node {self._impl.fqn}: {exc}") from None

    def get_parameter(self, name: str) -> Parameter:
        return self._impl.get_parameter(name)

    def set_parameter(self, name: str, value: Any) -> Parameter:
        return self._impl.set_parameter(name, value)

    # ---- communication ---------------------------------------------------------------------
    def create_publisher(self, msg_type: Any, topic: str, qos: QoS | int = 10):
        return self._impl.create_publisher(msg_type, topic, as_qos(qos))

    def create_subscription(self, msg_type: Any, topic: str, callback: Callable[[Any], None],
                            qos: QoS | int = 10):
        return self._impl.create_subscription(
            msg_type, topic, self._guard(f"subscription on '{topic}'", callback), as_qos(qos))

    def create_timer(self, period_s: float, callback: Callable[[], None]):
        return self._impl.create_timer(period_s, self._guard(f"timer ({period_s} s)", callback))

    def create_wall_timer(self, period_s: float, callback: Callable[[], None]):
        """A timer on the host's steady clock even when the node uses sim time (e.g. a simulator
        that publishes /clock and so cannot wait on it)."""
        return self._impl.create_wall_timer(period_s, self._guard(f"wall timer ({period_s} s)", callback))

    def create_service(self, srv_type: Any, name: str, callback: Callable[[Any, Any], Any]):
        guarded = self._guard(f"service '{name}'", callback)

        def serve(request, response):
            result = guarded(request, response)
            return response if result is None else result  # a failed handler still answers

        return self._impl.create_service(srv_type, name, serve)

    def create_client(self, srv_type: Any, name: str):
        return self._impl.create_client(srv_type, name)

    def destroy_node(self) -> None:
        """Release every publisher, subscription, timer and service; subclasses extend it."""
        self._impl.destroy()
        if self in self._context.nodes:
            self._context.nodes.remove(self)

    def _guard(self, what: str, callback: Callable) -> Callable:
        def guarded(*args):
            try:
                return callback(*args)
            except Exception as exc:  # isolate: one bad message must not stop a robot's graph
                self._impl.logger.error(f"{what} raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                self._impl.record_callback_error(what, exc)
                return None

        return guarded


NodeT = TypeVar("NodeT", bound=Node)


def build_node(node_class: type[NodeT], options: NodeOptions | None = None) -> NodeT:
    """Construct a node and reject parameter overrides it never declared (typos in graph files)."""
    from .context import default_context

    context = (options.context if options is not None else None) or default_context()
    before = list(context.nodes)
    try:
        node = node_class(options) if options is not None else node_class()
    except BaseException:
        for half_built in [n for n in context.nodes if n not in before]:
            half_built.destroy_node()  # release what its __init__ created before failing
        raise
    try:
        node._impl.check_parameter_overrides()
    except ParameterError as exc:
        fqn = node.get_fully_qualified_name()
        node.destroy_node()
        raise ParameterError(f"node {fqn}: {exc}") from None
    return node
