"""Two robots' talker -> relay -> listener chains from config/smoke.yaml.

    ros2 launch efm smoke.launch.py
    efm up config/smoke.yaml            # the same graph without ROS 2
"""
from efm_runtime.launch_graph import launch_description_for_graph

GRAPH_FILE = "smoke.yaml"


def generate_launch_description():
    return launch_description_for_graph(GRAPH_FILE)
