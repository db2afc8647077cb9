"""The operator's one path to the robots: the page, the button box and the simulated operator all command
through a ``Console``, so a button press and a click are checked and sent the same way.

A command is checked by the fleet (:meth:`Fleet.begin_command`: refused with a reason, nothing sent), then
handed to ``send(command, done)``, which calls the robot's service and reports the answer through
``done(accepted, message)``. :meth:`Console.command` waits for the answer (up to ``timeout_s``) when called
from the page's or the box's threads, or returns at once (``wait=False``) on the node's own executor
thread, where waiting would block the very answer it waits for.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .fleet import ESTOP, RESET_DONE, Command, CommandRefused, Fleet

Send = Callable[[Command, Callable[[bool, str], None]], None]


@dataclass(frozen=True)
class CommandResult:
    robot: str
    action: str
    outcome: str          # "accepted" | "refused" (by the fleet or the robot) | "sent" (not waited for) | "timeout"
    message: str

    @property
    def accepted(self) -> bool:
        return self.outcome in ("accepted", "sent")


class Console:
    def __init__(self, fleet: Fleet, send: Send, clock: Callable[[], float], *, timeout_s: float = 3.0) -> None:
        self.fleet, self._send, self._clock, self.timeout_s = fleet, send, clock, timeout_s

    @property
    def robots(self) -> list[str]:
        return self.fleet.robots

    def now(self) -> float:
        return self._clock()

    def snapshot(self) -> dict:
        return self.fleet.snapshot(self._clock())

    def command(self, robot: str, action: str, episode_id: str = "", *, source: str = "operator",
                wait: bool = True) -> CommandResult:
        pending = self._start(robot, action, episode_id, source)
        return pending.result(self.timeout_s) if wait else pending.sent()

    def _start(self, robot: str, action: str, episode_id: str, source: str) -> _Pending:
        try:
            command = self.fleet.begin_command(robot, action, episode_id, source)
        except CommandRefused as exc:
            return _Pending(robot, action, refused=str(exc))
        pending = _Pending(robot, action, fleet=self.fleet, command=command)
        try:
            self._send(command, pending.done)
        except Exception as exc:  # noqa: BLE001 -- e.g. no service client: the command is over, say why
            pending.done(False, f"could not send: {exc}")
        return pending

    def command_queue_head(self, action: str = RESET_DONE, *, source: str = "operator") -> CommandResult:
        """``action`` for the robot that has waited longest for a human."""
        queue = self.fleet.queue()
        if not queue:
            return CommandResult("", action, "refused", "no robot is waiting for a human")
        return self.command(queue[0], action, source=source)

    def estop_all(self, *, source: str = "operator", wait: bool = True) -> list[CommandResult]:
        """E-stop every robot: all are sent before any answer is awaited."""
        pending = [self._start(robot, ESTOP, "", source) for robot in self.fleet.robots]
        return [p.result(self.timeout_s) if wait else p.sent() for p in pending]


class _Pending:
    """One command on its way; the first answer counts (a late reply after a timeout is dropped)."""

    def __init__(self, robot: str, action: str, *, refused: str = "", fleet: Fleet | None = None,
                 command: Command | None = None) -> None:
        self.robot, self.action, self._fleet, self._command = robot, action, fleet, command
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self._answer: tuple[str, str] | None = ("refused", refused) if command is None else None
        if command is None:
            self._answered.set()

    def done(self, accepted: bool, message: str, outcome: str = "") -> None:
        with self._lock:
            if self._answer is not None:
                return
            self._answer = (outcome or ("accepted" if accepted else "refused"), message)
        self._fleet.finish_command(self._command, accepted, message)
        self._answered.set()

    def sent(self) -> CommandResult:
        if self._answered.is_set():
            return CommandResult(self.robot, self.action, *self._answer)
        return CommandResult(self.robot, self.action, "sent", "sent; the answer comes on the page")

    def result(self, timeout_s: float) -> CommandResult:
        if not self._answered.wait(timeout_s):
            self.done(False, f"no answer from {self.robot} within {timeout_s:.1f} s", outcome="timeout")
        return CommandResult(self.robot, self.action, *self._answer)
