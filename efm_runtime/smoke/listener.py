"""Smoke listener: counts ``chatter_relayed`` messages and logs every ``log_every``-th one.

Topics: subscribes ``chatter_relayed`` (std_msgs/String, reliable, depth 10).
Parameters: ``log_every`` (integer, 10; 0 logs nothing).
Run: ``ros2 run efm smoke_listener`` or ``efm up config/smoke.yaml``.
"""
from __future__ import annotations

from efm_runtime import COMMANDS, Node, NodeOptions, get_message, run_node

String = get_message("std_msgs/msg/String")


class SmokeListener(Node):
    default_name = "listener"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        self._log_every = self.declare_parameter("log_every", 10, description="log every N-th message",
                                                 min=0).value
        self.received = 0
        self.create_subscription(String, "chatter_relayed", self._on_message, COMMANDS)

    def _on_message(self, msg) -> None:
        self.received += 1
        if self._log_every and self.received % self._log_every == 0:
            self.get_logger().info(f"heard {self.received} messages, latest: {msg.data!r}")


def main(args=None):
    return run_node(SmokeListener, args)
