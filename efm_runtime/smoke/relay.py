"""Smoke relay: republishes every ``chatter`` message on ``chatter_relayed`` with a suffix.

Topics: subscribes ``chatter``, publishes ``chatter_relayed`` (std_msgs/String, reliable, depth 10).
Parameters: ``suffix`` (string, " (relayed)").
Run: ``ros2 run efm smoke_relay`` or ``efm up config/smoke.yaml``.
"""
from __future__ import annotations

from efm_runtime import COMMANDS, Node, NodeOptions, get_message, run_node

String = get_message("std_msgs/msg/String")


class SmokeRelay(Node):
    default_name = "relay"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        self._suffix = self.declare_parameter("suffix", " (relayed)", description="appended to each message").value
        self._publisher = self.create_publisher(String, "chatter_relayed", COMMANDS)
        self.create_subscription(String, "chatter", self._on_chatter, COMMANDS)

    def _on_chatter(self, msg) -> None:
        self._publisher.publish(String(data=msg.data + self._suffix))


def main(args=None):
    return run_node(SmokeRelay, args)
