"""Any efm graph file on real ROS 2: one process per node, same names, parameters and remaps.

    ros2 launch efm graph.launch.py graph:=/path/to/graph.yaml
    efm up /path/to/graph.yaml          # the same graph without ROS 2
"""
from efm_runtime.launch_graph import launch_description_for_graph

GRAPH_FILE = "smoke.yaml"  # used when no graph:= is given


def generate_launch_description():
    return launch_description_for_graph(GRAPH_FILE)
