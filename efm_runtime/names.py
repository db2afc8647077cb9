"""ROS 2 name resolution: relative, absolute and private (``~``) names, namespaces and remaps.

Follows the rules of rcl so that a graph behaves the same on the embedded middleware and on ROS 2:
``chatter`` in namespace ``/robot_a`` is ``/robot_a/chatter``; ``~/debug`` of node ``policy`` is
``/robot_a/policy/debug``; a remap ``from:=to`` matches when the fully-qualified ``from`` (expanded in
the node's namespace) equals the fully-qualified name being resolved.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import RosNameError

_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalize_namespace(namespace: str | None) -> str:
    """``None``/``""`` -> ``"/"``; ``robot_a`` -> ``/robot_a``; checks every token."""
    if not namespace or namespace == "/":
        return "/"
    ns = namespace if namespace.startswith("/") else "/" + namespace
    ns = ns.rstrip("/")
    for token in ns.split("/")[1:]:
        if not _TOKEN.match(token):
            raise RosNameError(
                f"invalid namespace {namespace!r}: each part must start with a letter or '_' and "
                "contain only letters, digits and '_'"
            )
    return ns


def validate_node_name(name: str) -> str:
    if not _TOKEN.match(name or ""):
        raise RosNameError(
            f"invalid node name {name!r}: use letters, digits and '_', starting with a letter or '_'"
        )
    return name


def expand_name(name: str, node_name: str, namespace: str) -> str:
    """Fully-qualified form of a topic or service name as seen by ``node_name`` in ``namespace``."""
    if not name:
        raise RosNameError("empty topic or service name")
    namespace = normalize_namespace(namespace)
    if name.startswith("~"):
        rest = name[1:]
        if rest and not rest.startswith("/"):
            raise RosNameError(f"invalid private name {name!r}: use '~/name'")
        node_fqn = _join(namespace, node_name)
        expanded = node_fqn + rest
    elif name.startswith("/"):
        expanded = name
    else:
        expanded = _join(namespace, name)
    if expanded != "/" and expanded.endswith("/"):
        raise RosNameError(f"invalid name {name!r}: must not end with '/'")
    for token in expanded.split("/")[1:]:
        if not _TOKEN.match(token):
            raise RosNameError(
                f"invalid name {name!r}: each part must start with a letter or '_' and contain "
                "only letters, digits and '_'"
            )
    return expanded


def resolve_name(
    name: str, node_name: str, namespace: str, remappings: Mapping[str, str] | None = None
) -> str:
    """Expand ``name`` and apply the first matching remap rule, as rcl does."""
    fqn = expand_name(name, node_name, namespace)
    for source, target in (remappings or {}).items():
        if source.startswith("__"):  # __node, __ns: node-level rules, not topic rules
            continue
        if expand_name(source, node_name, namespace) == fqn:
            return expand_name(target, node_name, namespace)
    return fqn


def _join(namespace: str, name: str) -> str:
    return "/" + name if namespace == "/" else f"{namespace}/{name}"
