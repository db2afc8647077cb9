"""Graph files: the one description of a running system, read by ``efm up`` and by ``ros2 launch``.

    description: two robots, each with a talker -> relay -> listener chain
    use_sim_time: false            # default for every node
    robots:                        # each robot is a namespace: /robot_a/...
      robot_a:
        nodes:
          - executable: smoke_talker
            name: talker           # optional; the node's own default name otherwise
            parameters: {rate_hz: 10.0}
            remappings: {chatter: /shared_chatter}
    nodes:                         # nodes outside any robot namespace (learner, supervisor)
      - executable: ...

Many robots running the same nodes can share one list with YAML anchors (``nodes: &arm [...]`` then
``nodes: *arm``). Every mistake is reported with the file, the place in it and, for a misspelt
name, the closest valid one.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import EfmUserError, GraphError, did_you_mean
from .names import normalize_namespace, validate_node_name

TOP_KEYS = ("description", "use_sim_time", "robots", "nodes")
ROBOT_KEYS = ("namespace", "use_sim_time", "nodes")
NODE_KEYS = ("executable", "name", "namespace", "parameters", "remappings", "use_sim_time")


@dataclass(frozen=True)
class NodeSpec:
    executable: str
    name: str | None
    namespace: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    use_sim_time: bool = False
    robot: str | None = None
    where: str = ""  # e.g. "robots.robot_a.nodes[1] (smoke_relay)", for error messages


@dataclass(frozen=True)
class Graph:
    path: str
    description: str
    use_sim_time: bool
    nodes: tuple[NodeSpec, ...]

    @property
    def robots(self) -> list[str]:
        return sorted({n.robot for n in self.nodes if n.robot})


def load_graph(path: str | Path, known_executables: Collection[str] | None = None) -> Graph:
    """Read and check a graph file; ``known_executables`` also checks every node's executable."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GraphError(f"{path}: no such graph file") from None
    except OSError as exc:
        raise GraphError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GraphError(f"{path}: not valid YAML: {exc}") from None
    return parse_graph(data, path, known_executables)


def override_parameters(graph: Graph, assignments: list[str]) -> Graph:
    """``graph`` with ``NODE.PARAM=VALUE`` assignments applied (``efm up -p``), where NODE is a node's
    name or executable (every robot's node of that name) and VALUE is read as YAML (``10``, ``true``,
    ``[top]``, a path)."""
    nodes = list(graph.nodes)
    for assignment in assignments:
        target, equals, text = assignment.partition("=")
        node_name, dot, parameter = target.rpartition(".")
        if not equals or not dot or not node_name or not parameter:
            raise GraphError(f"-p {assignment!r}: expected NODE.PARAM=VALUE, e.g. policy.model_dir=models/lt-v1")
        value = yaml.safe_load(text) if text else ""
        _parameter_value(value, graph.path, f"-p {assignment}")
        matched = [i for i, n in enumerate(nodes) if node_name in (n.name, n.executable)]
        if not matched:
            known = sorted({n.name or n.executable for n in nodes})
            raise GraphError(f"-p {assignment!r}: no node '{node_name}' in {graph.path} (nodes: {', '.join(known)})"
                             + did_you_mean(node_name, known))
        for i in matched:
            nodes[i] = replace(nodes[i], parameters={**nodes[i].parameters, parameter: value})
    return replace(graph, nodes=tuple(nodes))


def parse_graph(data: Any, path: str = "<graph>", known_executables: Collection[str] | None = None) -> Graph:
    top = _mapping(data, path, "the file", TOP_KEYS)
    description = _typed(top.get("description", ""), str, path, "description")
    default_sim = _typed(top.get("use_sim_time", False), bool, path, "use_sim_time")
    specs: list[NodeSpec] = []

    robots = _mapping(top.get("robots") or {}, path, "robots", None)
    for robot, body in robots.items():
        where = f"robots.{robot}"
        body = _mapping(body or {}, path, where, ROBOT_KEYS)
        namespace = _namespace(body.get("namespace", "/" + str(robot)), path, f"{where}.namespace")
        robot_sim = _typed(body.get("use_sim_time", default_sim), bool, path, f"{where}.use_sim_time")
        nodes = _typed(body.get("nodes") or [], list, path, f"{where}.nodes")
        for i, node in enumerate(nodes):
            specs.append(_node(node, path, f"{where}.nodes[{i}]", namespace, robot_sim, str(robot),
                               known_executables))

    for i, node in enumerate(_typed(top.get("nodes") or [], list, path, "nodes")):
        specs.append(_node(node, path, f"nodes[{i}]", "/", default_sim, None, known_executables))

    if not specs:
        raise GraphError(f"{path}: the graph has no nodes; add them under robots.<name>.nodes or nodes")
    _check_unique(specs, path)
    return Graph(path, description, default_sim, tuple(specs))


def _node(data: Any, path: str, where: str, namespace: str, use_sim_time: bool, robot: str | None,
          known_executables: Collection[str] | None) -> NodeSpec:
    body = _mapping(data, path, where, NODE_KEYS)
    if "executable" not in body:
        raise GraphError(f"{path}: {where}: missing 'executable' (the node to run, e.g. smoke_talker)")
    executable = _typed(body["executable"], str, path, f"{where}.executable")
    where = f"{where} ({executable})"
    if known_executables is not None and executable not in known_executables:
        raise GraphError(f"{path}: {where}: unknown node executable '{executable}'"
                         + did_you_mean(executable, known_executables))
    name = body.get("name")
    if name is not None:
        name = _typed(name, str, path, f"{where}.name")
        try:
            validate_node_name(name)
        except EfmUserError as exc:
            raise GraphError(f"{path}: {where}.name: {exc}") from None
    if "namespace" in body:
        if robot is not None:
            raise GraphError(f"{path}: {where}: 'namespace' is set by the robot; remove it from the node "
                             "or move the node to the top-level 'nodes' list")
        namespace = _namespace(body["namespace"], path, f"{where}.namespace")
    parameters = _mapping(body.get("parameters") or {}, path, f"{where}.parameters", None)
    for key, value in parameters.items():
        _parameter_value(value, path, f"{where}.parameters.{key}")
    remappings = _mapping(body.get("remappings") or {}, path, f"{where}.remappings", None)
    for key, value in remappings.items():
        _typed(value, str, path, f"{where}.remappings.{key}")
    return NodeSpec(
        executable=executable, name=name, namespace=namespace,
        parameters={str(k): v for k, v in parameters.items()},
        remappings={str(k): str(v) for k, v in remappings.items()},
        use_sim_time=_typed(body.get("use_sim_time", use_sim_time), bool, path, f"{where}.use_sim_time"),
        robot=robot, where=where)


def _mapping(value: Any, path: str, where: str, allowed: tuple[str, ...] | None) -> dict:
    if not isinstance(value, dict):
        raise GraphError(f"{path}: {where}: expected a mapping (key: value), got {_kind(value)}")
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise GraphError(f"{path}: {where}: unknown key '{key}'" + did_you_mean(str(key), allowed))
    return value


def _typed(value: Any, kind: type, path: str, where: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise GraphError(f"{path}: {where}: expected {_NAMES[kind]}, got {_kind(value)}")
    return value


def _parameter_value(value: Any, path: str, where: str) -> None:
    scalars = (bool, int, float, str)
    if isinstance(value, scalars) or (isinstance(value, list) and all(isinstance(v, scalars) for v in value)):
        return
    raise GraphError(f"{path}: {where}: a parameter must be a bool, number, string or a list of them, "
                     f"got {_kind(value)}")


def _namespace(value: Any, path: str, where: str) -> str:
    try:
        return normalize_namespace(_typed(value, str, path, where))
    except EfmUserError as exc:
        raise GraphError(f"{path}: {where}: {exc}") from None


def _check_unique(specs: list[NodeSpec], path: str) -> None:
    seen: dict[tuple[str, str], NodeSpec] = {}
    for spec in specs:
        key = (spec.namespace, spec.name or spec.executable)
        if key in seen:
            raise GraphError(f"{path}: {spec.where}: a node named '{key[1]}' already runs in namespace "
                             f"{key[0]} ({seen[key].where}); give one of them another 'name'")
        seen[key] = spec


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


_NAMES = {str: "a string", bool: "true or false", list: "a list", dict: "a mapping"}
