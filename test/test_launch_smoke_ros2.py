"""launch_testing: `ros2 launch` brings up config/smoke.yaml and both robots' chains carry messages.

Runs where ROS 2 is installed (`colcon test` or `pytest` with the launch_testing plugin); skipped
here with the reason shown by `pytest -rs`.
"""
import pytest

launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_testing is not installed (ROS 2 not available here)")
rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (ROS 2 not available here)")

import time  # noqa: E402
import unittest  # noqa: E402

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from efm_runtime.launch_graph import installed_config  # noqa: E402

pytestmark = pytest.mark.ros2


@pytest.mark.launch_test
def generate_test_description():
    from ament_index_python.packages import get_package_share_directory

    smoke = f"{get_package_share_directory('efm')}/launch/smoke.launch.py"
    return launch.LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(smoke),
                                 launch_arguments={"graph": str(installed_config("smoke.yaml"))}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestSmokeChains(unittest.TestCase):
    def test_both_robots_relay_messages(self):
        rclpy.init()
        node = rclpy.create_node("smoke_probe")
        heard = {"/robot_a": 0, "/robot_b": 0}
        for ns in heard:
            node.create_subscription(String, f"{ns}/chatter_relayed",
                                     lambda _msg, ns=ns: heard.__setitem__(ns, heard[ns] + 1), 10)
        deadline = time.monotonic() + 20.0
        try:
            while time.monotonic() < deadline and min(heard.values()) < 3:
                rclpy.spin_once(node, timeout_sec=0.1)
        finally:
            node.destroy_node()
            rclpy.shutdown()
        self.assertGreaterEqual(min(heard.values()), 3, heard)


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
