"""The repository is a real ROS 2 package set: package.xml, entry points and a colcon-visible layout."""
import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

from test_launch import setup_py_nodes

ROOT = Path(__file__).resolve().parents[1]
ROS_DEPENDENCIES = {"rclpy", "launch_ros", "sensor_msgs", "geometry_msgs", "std_msgs", "rosgraph_msgs",
                    "efm_msgs"}


def test_package_xml_is_ament_python_format_3_with_ros_dependencies():
    package = parse_package(ROOT / "package.xml")
    assert package.package_format == 3 and package.name == "efm"
    assert package.get_build_type() == "ament_python"
    declared = {d.name for d in package.exec_depends + package.build_depends + package.build_export_depends}
    assert ROS_DEPENDENCIES <= declared


def test_efm_msgs_is_an_interface_package():
    package = parse_package(ROOT / "efm_msgs" / "package.xml")
    assert package.package_format == 3 and package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}
    assert "rosidl_generate_interfaces" in (ROOT / "efm_msgs" / "CMakeLists.txt").read_text()


def test_ament_resource_marker_exists():
    assert (ROOT / "resource" / "efm").is_file()


def test_every_node_and_the_cli_is_an_installed_console_script():
    installed = {ep.name: ep.value for ep in distribution("efm").entry_points if ep.group == "console_scripts"}
    nodes = {ep.name: ep.value for ep in distribution("efm").entry_points if ep.group == "efm.nodes"}
    assert installed["efm"] == "efm_runtime.cli:main"
    for name, target in setup_py_nodes().items():
        assert installed[name] == target.split(":")[0] + ":main"
        assert nodes[name] == target


def colcon_list(workspace: Path, *base_paths: str) -> dict[str, str]:
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    result = subprocess.run([colcon, "list", "--base-paths", *base_paths], cwd=workspace,
                            capture_output=True, text=True, check=True)
    return {line.split("\t")[0]: line.split("\t")[2] for line in result.stdout.splitlines() if line}


@pytest.fixture
def workspace(tmp_path):
    """A colcon workspace with this repository cloned as src/efm (package files only)."""
    src = tmp_path / "src" / "efm"
    for rel in ("package.xml", "setup.py", "setup.cfg", "efm_msgs/package.xml", "efm_msgs/CMakeLists.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, src / rel)
    return tmp_path


def test_documented_colcon_command_finds_both_packages(workspace):
    readme = (ROOT / "README.md").read_text()
    assert "colcon build --base-paths src src/efm/efm_msgs" in readme
    found = colcon_list(workspace, "src", "src/efm/efm_msgs")
    assert found == {"efm": "(ros.ament_python)", "efm_msgs": "(ros.ament_cmake)"}


def test_plain_colcon_crawl_stops_at_the_top_package(workspace):
    """Why the README's command names efm_msgs: colcon does not descend into a package folder."""
    assert set(colcon_list(workspace, "src")) == {"efm"}
