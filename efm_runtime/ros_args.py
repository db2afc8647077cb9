"""The ``--ros-args`` part of a node's command line, for nodes started alone on the embedded middleware.

Understands what launch files and users pass most: ``-p name:=value``, ``-r from:=to`` (including
``__ns`` and ``__node``) and ``--params-file FILE`` in the ROS 2 parameter file format. Under real
ROS 2, rclpy parses these itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import EfmUserError


@dataclass
class RosArgs:
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    params_files: list[str] = field(default_factory=list)


def parse_ros_args(argv: list[str], node_name: str) -> RosArgs:
    """Parse everything after ``--ros-args`` (up to a lone ``--``); ignores the rest of argv."""
    out = RosArgs()
    if "--ros-args" not in argv:
        return out
    args = argv[argv.index("--ros-args") + 1:]
    i = 0
    while i < len(args):
        flag = args[i]
        if flag == "--":
            break
        if flag in ("-p", "--param", "-r", "--remap", "--params-file"):
            if i + 1 >= len(args):
                raise EfmUserError(f"--ros-args: {flag} needs a value")
            value = args[i + 1]
            if flag in ("-p", "--param"):
                name, raw = _split_assignment(flag, value)
                out.parameters[name] = yaml.safe_load(raw) if raw else ""
            elif flag in ("-r", "--remap"):
                source, target = _split_assignment(flag, value)
                out.remappings[source.split(":", 1)[-1]] = target  # "node:from:=to" narrows to one node
            else:
                out.params_files.append(value)
                out.parameters = {**parameters_from_file(value, node_name), **out.parameters}
            i += 2
        else:
            raise EfmUserError(f"--ros-args: unsupported argument {flag!r} (supported: -p, -r, --params-file)")
    return out


def parameters_from_file(path: str, node_name: str) -> dict[str, Any]:
    """Parameters for ``node_name`` from a ROS 2 params file (``/**`` wildcard and exact names)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise EfmUserError(f"cannot read params file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise EfmUserError(f"params file {path} is not valid YAML: {exc}") from None
    merged: dict[str, Any] = {}
    for key, section in data.items():
        names = {key, key.lstrip("/"), key.rsplit("/", 1)[-1]}
        if key in ("/**", "**") or node_name in names:
            merged.update((section or {}).get("ros__parameters", {}))
    return merged


def _split_assignment(flag: str, text: str) -> tuple[str, str]:
    if ":=" not in text:
        raise EfmUserError(f"--ros-args {flag} {text!r}: expected NAME:=VALUE")
    name, value = text.split(":=", 1)
    return name, value
