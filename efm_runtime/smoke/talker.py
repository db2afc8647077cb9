"""Smoke talker: publishes a numbered std_msgs/String on ``chatter`` at ``rate_hz``.

Topics: publishes ``chatter`` (std_msgs/String, reliable, depth 10).
Parameters: ``rate_hz`` (double, 10.0), ``text`` (string, "hello").
Run: ``ros2 run efm smoke_talker`` or, in a graph, ``efm up config/smoke.yaml``.
"""
from __future__ import annotations

from efm_runtime import COMMANDS, Node, NodeOptions, get_message, run_node

String = get_message("std_msgs/msg/String")


class SmokeTalker(Node):
    default_name = "talker"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        rate_hz = self.declare_parameter("rate_hz", 10.0, description="messages per second",
                                         min=0.1, max=1000.0).value
        self._text = self.declare_parameter("text", "hello", description="text before the counter").value
        self._count = 0
        self._publisher = self.create_publisher(String, "chatter", COMMANDS)
        self.create_timer(1.0 / rate_hz, self._tick)

    def _tick(self) -> None:
        self._count += 1
        self._publisher.publish(String(data=f"{self._text} #{self._count}"))


def main(args=None):
    return run_node(SmokeTalker, args)
