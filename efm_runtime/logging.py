"""Node loggers in the familiar ROS 2 shape: ``[INFO] [stamp] [robot_a.talker]: message``.

Callbacks at 10 Hz must not flood a terminal, so every call takes ``throttle_duration_sec`` and
``once`` like rclpy's logger, and ``skip_first``.
"""
from __future__ import annotations

import logging
import sys
import time

_HANDLER_INSTALLED = False


def _install_handler() -> None:
    global _HANDLER_INSTALLED
    if _HANDLER_INSTALLED:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RosFormatter())
    root = logging.getLogger("efm")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    _HANDLER_INSTALLED = True


class _RosFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        name = record.name.removeprefix("efm.node.") if record.name.startswith("efm.node.") else record.name
        level = "WARN" if record.levelname == "WARNING" else record.levelname
        text = f"[{level}] [{record.created:.3f}] [{name}]: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class NodeLogger:
    """Logger of one node; ``name`` is the node's fully-qualified name with dots, e.g. ``robot_a.talker``."""

    def __init__(self, name: str) -> None:
        _install_handler()
        self.name = name
        self._logger = logging.getLogger(f"efm.node.{name}")
        self._last_emit: dict[tuple, float] = {}
        self._seen: set[tuple] = set()

    def _should_emit(self, key: tuple, throttle_duration_sec: float, once: bool, skip_first: bool) -> bool:
        first = key not in self._seen
        self._seen.add(key)
        if once and not first:
            return False
        if skip_first and first:
            return False
        if throttle_duration_sec:
            now = time.monotonic()
            if now - self._last_emit.get(key, -float("inf")) < throttle_duration_sec:
                return False
            self._last_emit[key] = now
        return True

    def log(self, level: int, message: str, *, throttle_duration_sec: float = 0.0, once: bool = False,
            skip_first: bool = False, exc_info=None) -> bool:
        caller = sys._getframe(2)
        key = (level, caller.f_code.co_filename, caller.f_lineno)  # throttling is per call site, as in rclpy
        if not self._should_emit(key, throttle_duration_sec, once, skip_first):
            return False
        self._logger.log(level, message, exc_info=exc_info)
        return True

    def debug(self, message: str, **kw) -> bool:
        return self.log(logging.DEBUG, message, **kw)

    def info(self, message: str, **kw) -> bool:
        return self.log(logging.INFO, message, **kw)

    def warning(self, message: str, **kw) -> bool:
        return self.log(logging.WARNING, message, **kw)

    warn = warning

    def error(self, message: str, **kw) -> bool:
        return self.log(logging.ERROR, message, **kw)

    def fatal(self, message: str, **kw) -> bool:
        return self.log(logging.CRITICAL, message, **kw)

    def set_level(self, level: int) -> None:
        self._logger.setLevel(level)
