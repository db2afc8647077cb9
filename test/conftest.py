"""Shared fixtures: a context for each middleware the process can run.

Node-level tests take ``context`` and run once per middleware: ``embedded`` always (when this process
uses it), ``ros2`` where rclpy imports. On a ROS 2 machine, run the suite a second time with
``EFM_MIDDLEWARE=embedded`` to cover the embedded middleware there too.
"""
from __future__ import annotations

import logging
import os

# Before anything imports mujoco: render offscreen through EGL (no display in CI).
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from efm_runtime import create_context, middleware  # noqa: E402
from efm_runtime.clock import ManualWallSource  # noqa: E402

ROS2_SKIP = ("ros2 middleware not active: rclpy does not import on this machine (ROS 2 is not installed); "
             "these tests run where a ROS 2 Humble/Jazzy setup is sourced")
EMBEDDED_SKIP = "this process uses the ros2 middleware; rerun with EFM_MIDDLEWARE=embedded"


@pytest.fixture(params=["embedded", pytest.param("ros2", marks=pytest.mark.ros2)])
def context(request):
    if request.param != middleware():
        pytest.skip(ROS2_SKIP if request.param == "ros2" else EMBEDDED_SKIP)
    ctx = create_context(request.param)
    yield ctx
    ctx.shutdown()


@pytest.fixture
def embedded():
    """An embedded context on a manual clock: time moves only when the executor waits."""
    if middleware() != "embedded":
        pytest.skip(EMBEDDED_SKIP)
    ctx = create_context("embedded", wall=ManualWallSource())
    yield ctx
    ctx.shutdown()


@pytest.fixture
def ctx():
    """An embedded context on a manual clock, for tests that bring up nodes and graphs."""
    context = create_context("embedded", wall=ManualWallSource())
    yield context
    context.shutdown()


class NodeLogs(list):
    """What nodes logged, as (level name, text)."""

    def said(self, level: str, *needles: str) -> list[str]:
        return [text for lvl, text in self if lvl == level and all(n in text for n in needles)]


@pytest.fixture
def logs():
    records = NodeLogs()

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage()))

    handler = Keep()
    logger = logging.getLogger("efm.node")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
