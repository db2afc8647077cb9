"""Node executables by name, from the ``efm.nodes`` entry points that setup.py declares.

The same name is the console script (``ros2 run efm smoke_talker``), the ``executable`` of a graph
file and of a launch_ros ``Node``.
"""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from .errors import EfmUserError, GraphError, did_you_mean

GROUP = "efm.nodes"


def node_entry_points() -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if not found:
        raise EfmUserError("no efm nodes are installed: run `pip install -e .` in the efm checkout "
                           "(or `colcon build` under ROS 2) so the node entry points exist")
    return found


def load_node_class(executable: str):
    from .node import Node

    eps = node_entry_points()
    if executable not in eps:
        raise GraphError(f"unknown node executable '{executable}'" + did_you_mean(executable, eps))
    node_class = eps[executable].load()
    if not (isinstance(node_class, type) and issubclass(node_class, Node)):
        raise EfmUserError(f"entry point {executable} = {eps[executable].value} is not an efm Node class")
    return node_class
