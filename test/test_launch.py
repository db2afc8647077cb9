"""Launch files: importable without ROS, driven by a shipped graph, naming only declared executables."""
import ast
import importlib.util
from pathlib import Path

import pytest

from efm_runtime.graph import load_graph
from efm_runtime.launch_graph import installed_config, node_launch_arguments

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def setup_py_nodes() -> dict:
    """The NODES table literally as written in setup.py (what colcon installs as executables)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "NODES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no NODES table")


def load_launch_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_launch_files():
    assert {p.name for p in LAUNCH_FILES} >= {"smoke.launch.py", "graph.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_declared_executables(path):
    module = load_launch_module(path)
    assert callable(module.generate_launch_description)
    graph = load_graph(installed_config(module.GRAPH_FILE))
    arguments = node_launch_arguments(graph)
    assert arguments, "the launch file's graph has no nodes"
    declared = setup_py_nodes()
    for kwargs in arguments:
        assert kwargs["package"] == "efm"
        assert kwargs["executable"] in declared, f"{path.name}: {kwargs['executable']} is not in setup.py NODES"


def test_launch_arguments_carry_namespace_parameters_and_remaps(tmp_path):
    graph_file = tmp_path / "g.yaml"
    graph_file.write_text("use_sim_time: true\nrobots:\n  robot_a:\n    nodes:\n"
                          "      - {executable: smoke_talker, name: talk, parameters: {rate_hz: 5.0},"
                          " remappings: {chatter: /bus}}\n")
    (kwargs,) = node_launch_arguments(load_graph(graph_file))
    assert kwargs["namespace"] == "/robot_a" and kwargs["name"] == "talk"
    assert kwargs["parameters"] == [{"rate_hz": 5.0, "use_sim_time": True}]
    assert kwargs["remappings"] == [("chatter", "/bus")]


@pytest.mark.ros2
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds_with_launch_ros(path):
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 not available here)")
    from launch import LaunchDescription

    assert isinstance(load_launch_module(path).generate_launch_description(), LaunchDescription)
