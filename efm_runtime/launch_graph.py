"""Turn a graph file into launch_ros ``Node`` actions, so ``ros2 launch`` runs what ``efm up`` runs.

Every file in ``launch/`` is three lines around ``launch_description_for_graph``. The graph is read
when the launch starts (``graph:=FILE`` picks another file), and each node spec becomes one
``launch_ros.actions.Node`` of package ``efm`` with the same name, namespace, parameters and remaps.
``node_launch_arguments`` is the pure part, tested without ROS.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .graph import Graph, load_graph

PACKAGE = "efm"


def installed_config(file_name: str) -> Path:
    """Where ``config/<file_name>`` is: the ROS share directory, the pip prefix, or this checkout."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)) / "config")
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    candidates += [Path(sys.prefix) / "share" / PACKAGE / "config", Path(__file__).resolve().parents[1] / "config"]
    for folder in candidates:
        if (folder / file_name).is_file():
            return folder / file_name
    return candidates[-1] / file_name


def node_launch_arguments(graph: Graph) -> list[dict[str, Any]]:
    """Keyword arguments of one ``launch_ros.actions.Node`` per node of the graph."""
    arguments = []
    for spec in graph.nodes:
        kwargs: dict[str, Any] = {
            "package": PACKAGE,
            "executable": spec.executable,
            "namespace": spec.namespace,
            "parameters": [{**spec.parameters, "use_sim_time": spec.use_sim_time}],
            "remappings": sorted(spec.remappings.items()),
            "output": "screen",
            "emulate_tty": True,
        }
        if spec.name:
            kwargs["name"] = spec.name
        arguments.append(kwargs)
    return arguments


def launch_description_for_graph(default_graph_file: str):
    """A LaunchDescription with a ``graph`` argument (default ``config/<default_graph_file>``)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    def nodes_for(context, *args, **kwargs):
        from launch_ros.actions import Node

        graph_path = os.path.expanduser(LaunchConfiguration("graph").perform(context))
        return [Node(**kwargs) for kwargs in node_launch_arguments(load_graph(graph_path))]

    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value=str(installed_config(default_graph_file)),
                              description="graph YAML file to launch (robots, nodes, parameters, remaps)"),
        OpaqueFunction(function=nodes_for),
    ])
