"""Creating the context that nodes live in, for whichever middleware this process uses."""
from __future__ import annotations

from typing import Any

from .backend import EMBEDDED, middleware
from .clock import WallSource

_default: Any = None


def create_context(kind: str | None = None, *, wall: WallSource | None = None, args: list[str] | None = None):
    """A fresh context: ``EmbeddedContext`` or ``Ros2Context`` (which owns its own rclpy context)."""
    kind = kind or middleware()
    if kind == EMBEDDED:
        from .embedded import EmbeddedContext

        return EmbeddedContext(wall)
    from .ros2.context import Ros2Context

    return Ros2Context(args=args)


def default_context():
    """The process-wide context nodes use when ``NodeOptions.context`` is not given."""
    global _default
    if _default is None:
        _default = create_context()
    return _default


def set_default_context(context) -> None:
    global _default
    _default = context
