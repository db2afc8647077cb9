"""One node's handle on the embedded middleware: names, parameters, clock and its entities."""
from __future__ import annotations

from typing import Any, Callable

from ..clock import Clock
from ..logging import NodeLogger
from ..names import expand_name, normalize_namespace, resolve_name, validate_node_name
from ..parameters import BOOL, Parameter, ParameterSpec, ParameterStore
from ..qos import QoS
from .context import EmbeddedContext
from .entities import Client


class EmbeddedNodeImpl:
    def __init__(self, context: EmbeddedContext, name: str, namespace: str,
                 overrides: dict[str, Any], remappings: dict[str, str]) -> None:
        self.context = context
        self.name = validate_node_name(remappings.get("__node", name))
        self.namespace = normalize_namespace(remappings.get("__ns", namespace))
        self.fqn = expand_name(self.name, self.name, self.namespace)
        self.remappings = {k: v for k, v in remappings.items() if not k.startswith("__")}
        self.parameters = ParameterStore(overrides)
        use_sim_time = self.parameters.declare(ParameterSpec(
            "use_sim_time", BOOL, False, "follow /clock instead of the wall clock")).value
        self.clock = Clock(context.wall, (lambda: context.sim_time_ns) if use_sim_time else None)
        self.logger = NodeLogger(self.fqn.strip("/").replace("/", "."))
        self._entities: list[Any] = []

    def resolve(self, name: str) -> str:
        return resolve_name(name, self.name, self.namespace, self.remappings)

    def _keep(self, entity):
        self._entities.append(entity)
        return entity

    def create_publisher(self, msg_type: Any, topic: str, qos: QoS):
        return self._keep(self.context.add_publisher(self, self.resolve(topic), msg_type, qos))

    def create_subscription(self, msg_type: Any, topic: str, callback: Callable, qos: QoS):
        return self._keep(self.context.add_subscription(self, self.resolve(topic), msg_type, qos, callback))

    def create_timer(self, period_s: float, callback: Callable):
        return self._keep(self.context.add_timer(self, period_s, callback, self.clock.uses_sim_time))

    def create_wall_timer(self, period_s: float, callback: Callable):
        return self._keep(self.context.add_timer(self, period_s, callback, sim_time=False))

    def create_service(self, srv_type: Any, name: str, callback: Callable):
        return self._keep(self.context.add_service(self, self.resolve(name), srv_type, callback))

    def create_client(self, srv_type: Any, name: str):
        return self._keep(Client(self, self.resolve(name), srv_type))

    def declare_parameter(self, spec: ParameterSpec) -> Parameter:
        return self.parameters.declare(spec)

    def get_parameter(self, name: str) -> Parameter:
        return self.parameters.get(name)

    def set_parameter(self, name: str, value: Any) -> Parameter:
        return self.parameters.set(name, value)

    def check_parameter_overrides(self) -> None:
        self.parameters.check_overrides_used()

    def record_callback_error(self, what: str, exc: BaseException) -> None:
        self.context.record_callback_error(self.fqn, what, exc)

    def destroy(self) -> None:
        for entity in reversed(self._entities):
            entity.destroy()
        self._entities.clear()
