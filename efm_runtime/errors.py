"""Errors that users can fix, each naming what was wrong and what to do about it.

Anything derived from ``EfmUserError`` is printed by the ``efm`` command as one plain message,
without a traceback: it is the user's input (a graph file, a parameter, a message) that needs
changing, not our code.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class EfmUserError(Exception):
    """A problem in the user's input; the message says what and where."""


class GraphError(EfmUserError):
    """A graph YAML file that cannot be run: unknown node, bad key, bad parameter."""


class ParameterError(EfmUserError):
    """A node parameter that is missing, unknown, of the wrong type or out of range."""


class MessageError(EfmUserError):
    """An unknown message type, or a message whose field holds a value of the wrong type."""


class RosNameError(EfmUserError):
    """An invalid ROS topic, service or node name."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or a list of valid names when none is close."""
    candidates = sorted(set(candidates))
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    if not candidates:
        return ""
    shown = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
    return f"; valid names: {shown}"
