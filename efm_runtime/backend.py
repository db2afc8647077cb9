"""Which middleware this process runs on: real ROS 2 (rclpy) or the embedded one.

``EFM_MIDDLEWARE=ros2|embedded`` forces a choice; unset (or ``auto``) picks ``ros2`` whenever rclpy
imports and ``embedded`` otherwise. The answer is fixed for the life of the process, because
message classes from the two worlds must never be mixed.
"""
from __future__ import annotations

import functools
import importlib.util
import os

from .errors import EfmUserError

ENV_VAR = "EFM_MIDDLEWARE"
ROS2 = "ros2"
EMBEDDED = "embedded"


def rclpy_available() -> bool:
    return importlib.util.find_spec("rclpy") is not None


@functools.cache
def middleware() -> str:
    """``"ros2"`` or ``"embedded"``, as chosen by ``EFM_MIDDLEWARE`` or by whether rclpy imports."""
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice == "auto":
        return ROS2 if rclpy_available() else EMBEDDED
    if choice == EMBEDDED:
        return EMBEDDED
    if choice == ROS2:
        if not rclpy_available():
            raise EfmUserError(
                f"{ENV_VAR}=ros2 but rclpy does not import: source your ROS 2 setup "
                "(e.g. `source /opt/ros/jazzy/setup.bash`) or set EFM_MIDDLEWARE=embedded"
            )
        return ROS2
    raise EfmUserError(f"{ENV_VAR}={choice!r} is not valid; use 'ros2', 'embedded' or 'auto'")
