"""Adapter from the efm node API to real rclpy (Humble/Jazzy).

Each efm ``Node`` owns one ``rclpy.node.Node``; names, remaps, QoS, clocks and parameter
descriptors are handed to rclpy so that ``ros2 topic``, ``ros2 param`` and ``ros2 launch`` see a
normal ROS 2 node. Parameter values are still checked by efm's own rules afterwards, so a graph
file is judged the same way on both middlewares.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import rclpy
from rclpy.clock import Clock as RclpyClock, ClockType
from rclpy.context import Context as RclContext
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node as RclpyNode
from rclpy.parameter import Parameter as RclpyParameter
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..clock import Time
from ..embedded.context import CallbackError
from ..errors import ParameterError, did_you_mean
from ..parameters import (BOOL, BOOL_ARRAY, DOUBLE, DOUBLE_ARRAY, INTEGER, INTEGER_ARRAY, STRING,
                          STRING_ARRAY, Parameter, ParameterSpec, coerce)
from ..qos import BEST_EFFORT, TRANSIENT_LOCAL, QoS

_RCLPY_TYPES = {
    BOOL: RclpyParameter.Type.BOOL, INTEGER: RclpyParameter.Type.INTEGER,
    DOUBLE: RclpyParameter.Type.DOUBLE, STRING: RclpyParameter.Type.STRING,
    BOOL_ARRAY: RclpyParameter.Type.BOOL_ARRAY, INTEGER_ARRAY: RclpyParameter.Type.INTEGER_ARRAY,
    DOUBLE_ARRAY: RclpyParameter.Type.DOUBLE_ARRAY, STRING_ARRAY: RclpyParameter.Type.STRING_ARRAY,
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def to_rclpy_qos(qos: QoS) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if qos.reliability == BEST_EFFORT else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.durability == TRANSIENT_LOCAL else DurabilityPolicy.VOLATILE,
    )


class Ros2Clock:
    def __init__(self, node: RclpyNode) -> None:
        self._clock = node.get_clock()
        self._node = node

    @property
    def uses_sim_time(self) -> bool:
        return bool(self._node.get_parameter("use_sim_time").value)

    def now(self) -> Time:
        return Time(self._clock.now().nanoseconds)


class Ros2Context:
    """Nodes on rclpy with one single-threaded executor.

    ``args=None`` uses rclpy's global context (initialised by ``run_node`` from the command line);
    otherwise a private rclpy context is created, which tests use to stay isolated.
    """

    def __init__(self, args: list[str] | None = None, *, use_global: bool = False) -> None:
        if use_global:
            self._rcl_context = rclpy.get_default_context()
            self._owns_context = False
        else:
            self._rcl_context = RclContext()
            rclpy.init(args=args, context=self._rcl_context)
            self._owns_context = True
        self.executor = SingleThreadedExecutor(context=self._rcl_context)
        self.nodes: list[Any] = []
        self.callback_errors: list[CallbackError] = []
        self._shutdown = False

    @property
    def rcl_context(self):
        return self._rcl_context

    def create_node_impl(self, name: str, namespace: str, overrides: dict, remappings: dict):
        impl = Ros2NodeImpl(self, name, namespace, overrides, remappings)
        self.executor.add_node(impl.rclpy_node)
        return impl

    def record_callback_error(self, node_fqn: str, callback: str, exc: BaseException) -> None:
        self.callback_errors.append(CallbackError.from_exception(node_fqn, callback, exc))

    def spin_once(self, timeout_s: float = 0.0) -> bool:
        self.executor.spin_once(timeout_sec=timeout_s)
        return True

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not predicate() and not self._shutdown and rclpy.ok(context=self._rcl_context):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.executor.spin_once(timeout_sec=0.05)
        except (KeyboardInterrupt, ExternalShutdownException):
            self._shutdown = True
        return predicate()

    def spin(self, duration_s: float | None = None) -> None:
        self.spin_until(lambda: False, duration_s)

    def spin_until_future_complete(self, future, timeout_s: float | None = None) -> bool:
        return self.spin_until(future.done, timeout_s)

    def request_shutdown(self) -> None:
        self._shutdown = True

    def is_shutdown(self) -> bool:
        return self._shutdown or not rclpy.ok(context=self._rcl_context)

    def topic_statistics(self) -> list:
        return []  # `ros2 topic hz` is the tool for this on real ROS 2

    def shutdown(self) -> None:
        self._shutdown = True
        for node in list(reversed(self.nodes)):
            node.destroy_node()
        self.executor.shutdown()
        if self._owns_context:
            rclpy.try_shutdown(context=self._rcl_context)


class Ros2NodeImpl:
    def __init__(self, context: Ros2Context, name: str, namespace: str, overrides: dict, remappings: dict) -> None:
        self.context = context
        self._overrides = dict(overrides)
        self._declared: dict[str, ParameterSpec] = {}
        cli_args = ["--ros-args"]
        for source, target in remappings.items():
            cli_args += ["-r", f"{source}:={target}"]
        self.rclpy_node = RclpyNode(
            name, namespace=namespace, context=context.rcl_context,
            cli_args=cli_args if remappings else None,
            automatically_declare_parameters_from_overrides=False)
        if "use_sim_time" in self._overrides:
            self.rclpy_node.set_parameters(
                [RclpyParameter("use_sim_time", value=bool(self._overrides["use_sim_time"]))])
        self.name = self.rclpy_node.get_name()
        self.namespace = self.rclpy_node.get_namespace()
        self.fqn = self.rclpy_node.get_fully_qualified_name()
        self.logger = self.rclpy_node.get_logger()
        self.clock = Ros2Clock(self.rclpy_node)

    def create_publisher(self, msg_type, topic: str, qos: QoS):
        return self.rclpy_node.create_publisher(msg_type, topic, to_rclpy_qos(qos))

    def create_subscription(self, msg_type, topic: str, callback, qos: QoS):
        return self.rclpy_node.create_subscription(msg_type, topic, callback, to_rclpy_qos(qos))

    def create_timer(self, period_s: float, callback):
        return self.rclpy_node.create_timer(period_s, callback)

    def create_wall_timer(self, period_s: float, callback):
        steady = RclpyClock(clock_type=ClockType.STEADY_TIME)
        return self.rclpy_node.create_timer(period_s, callback, clock=steady)

    def create_service(self, srv_type, name: str, callback):
        return self.rclpy_node.create_service(srv_type, name, callback)

    def create_client(self, srv_type, name: str):
        return self.rclpy_node.create_client(srv_type, name)

    def declare_parameter(self, spec: ParameterSpec) -> Parameter:
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        if spec.type == DOUBLE and (spec.min is not None or spec.max is not None):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.min if spec.min is not None else -sys.float_info.max),
                to_value=float(spec.max if spec.max is not None else sys.float_info.max), step=0.0)]
        if spec.type == INTEGER and (spec.min is not None or spec.max is not None):
            descriptor.integer_range = [IntegerRange(
                from_value=int(spec.min if spec.min is not None else _INT64_MIN),
                to_value=int(spec.max if spec.max is not None else _INT64_MAX), step=0)]
        if spec.name in self._overrides:
            initial = coerce(spec, self._overrides[spec.name])
        elif spec.default is not None:
            initial = coerce(spec, spec.default)
        else:
            initial = _RCLPY_TYPES[spec.type]
        try:
            # rclpy applies command-line/launch overrides (--ros-args -p / params files) here
            value = self.rclpy_node.declare_parameter(spec.name, initial, descriptor).value
        except Exception as exc:  # rclpy's InvalidParameter*Exception family
            raise ParameterError(f"parameter '{spec.name}': {exc}") from None
        if value is None:
            raise ParameterError(f"parameter '{spec.name}' ({spec.type}) is required and has no default: set it")
        self._declared[spec.name] = spec
        return Parameter(spec.name, coerce(spec, list(value) if spec.type.endswith("_array") else value), spec.type)

    def get_parameter(self, name: str) -> Parameter:
        if name not in self._declared:
            raise ParameterError(f"parameter '{name}' is not declared" + did_you_mean(name, self._declared))
        spec = self._declared[name]
        value = self.rclpy_node.get_parameter(name).value
        return Parameter(name, list(value) if spec.type.endswith("_array") else value, spec.type)

    def set_parameter(self, name: str, value: Any) -> Parameter:
        spec = self._declared.get(name)
        if spec is None:
            raise ParameterError(f"parameter '{name}' is not declared" + did_you_mean(name, self._declared))
        result = self.rclpy_node.set_parameters([RclpyParameter(name, value=coerce(spec, value))])[0]
        if not result.successful:
            raise ParameterError(f"parameter '{name}': {result.reason}")
        return self.get_parameter(name)

    def check_parameter_overrides(self) -> None:
        for name in self._overrides:
            if name != "use_sim_time" and name not in self._declared:
                raise ParameterError(f"unknown parameter '{name}'" + did_you_mean(name, self._declared))

    def record_callback_error(self, what: str, exc: BaseException) -> None:
        self.context.record_callback_error(self.fqn, what, exc)

    def destroy(self) -> None:
        self.context.executor.remove_node(self.rclpy_node)
        self.rclpy_node.destroy_node()
