"""A USB button box or foot pedal on a serial port: a small line protocol, and a link that survives unplugging.

Protocol (ASCII lines ending in ``\\n``; ``\\r`` is ignored; keywords are case-insensitive; at most
``MAX_LINE`` characters). ``<robot>`` is a robot's name or its 1-based position in the supervisor's
``robots`` list, so a box with numbered buttons needs no configuration.

  box -> supervisor                 meaning
  DONE                              reset done for the robot that has waited longest ("needs me" queue head)
  DONE <robot>                      reset done for that robot
  SUCCESS [<robot>]                 label the last ended episode of that robot (default: queue head) a success
  FAIL [<robot>]                    ... a failure
  PAUSE <robot> / RESUME <robot>    pause or resume that robot
  ESTOP [<robot>]                   e-stop that robot; without one, every robot
  PING                              the supervisor answers PONG

  supervisor -> box
  OK <robot> <action> <message>     the robot accepted the command
  ERR <reason>                      refused or not understood; nothing changed
  PONG                              answer to PING
  QUEUE <n>                         robots waiting for a human, sent on connect and whenever it changes
                                    (light an LED or show a number)

A line that is not understood is logged, answered with ``ERR``, and otherwise ignored. The link
(:class:`ButtonBoxLink`) reads on its own thread; when the port disappears (cable pulled) it closes it and
retries every ``reconnect_s`` until the port is back, so a udev name such as ``/dev/serial/by-id/...``
keeps working across unplugging.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .fleet import (
    ESTOP,
    LABEL_FAILURE_ACTION,
    LABEL_SUCCESS_ACTION,
    PAUSE,
    RESET_DONE,
    RESUME,
)

MAX_LINE = 80
QUEUE_HEAD = ""   # ButtonCommand.robot when the command is for the robot at the head of the queue
ALL_ROBOTS = "*"  # ButtonCommand.robot for an e-stop of every robot

_KEYWORDS = {
    "DONE": (RESET_DONE, True), "SUCCESS": (LABEL_SUCCESS_ACTION, True), "FAIL": (LABEL_FAILURE_ACTION, True),
    "PAUSE": (PAUSE, False), "RESUME": (RESUME, False), "ESTOP": (ESTOP, True),
}


class ProtocolError(ValueError):
    """A line the protocol does not define; the message is sent back after ``ERR``."""


@dataclass(frozen=True)
class ButtonCommand:
    action: str     # a fleet action, or "ping"
    robot: str      # a robot name, QUEUE_HEAD or ALL_ROBOTS


def parse_line(line: str, robots: list[str]) -> ButtonCommand:
    """One protocol line as a command; ProtocolError naming what is wrong."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} characters")
    if not line.isascii() or not line.isprintable():
        raise ProtocolError("line has non-ASCII or control characters")
    words = line.split()
    if not words:
        raise ProtocolError("empty line")
    keyword = words[0].upper()
    if keyword == "PING" and len(words) == 1:
        return ButtonCommand("ping", "")
    if keyword not in _KEYWORDS:
        raise ProtocolError(f"unknown command {words[0]!r}; known: {', '.join(_KEYWORDS)}, PING")
    action, optional = _KEYWORDS[keyword]
    if len(words) > 2:
        raise ProtocolError(f"{keyword} takes at most one robot, got {' '.join(words[1:])!r}")
    if len(words) == 1:
        if not optional:
            raise ProtocolError(f"{keyword} needs a robot (name or 1..{len(robots)})")
        return ButtonCommand(action, ALL_ROBOTS if action == ESTOP else QUEUE_HEAD)
    return ButtonCommand(action, resolve_robot(words[1], robots))


def resolve_robot(word: str, robots: list[str]) -> str:
    if word in robots:
        return word
    if word.isdigit() and 1 <= int(word) <= len(robots):
        return robots[int(word) - 1]
    raise ProtocolError(f"unknown robot {word!r}; use a name ({', '.join(robots)}) or 1..{len(robots)}")


class ButtonBoxLink:
    """Reads protocol lines from a serial port on a thread and answers them; reconnects when the port goes.

    ``handle(line) -> reply`` gets every complete line (decoded, stripped) and returns the line to send
    back. ``open_port(port, baud)`` returns a pyserial-like object (``read``, ``write``, ``close``); the
    default opens ``serial.Serial`` with a short read timeout.
    """

    def __init__(self, port: str, handle: Callable[[str], str], *, baud: int = 9600, reconnect_s: float = 1.0,
                 log: Callable[[str, str], None] | None = None,
                 open_port: Callable[[str, int], object] | None = None) -> None:
        self.port, self.baud, self.reconnect_s = port, baud, reconnect_s
        self._handle = handle
        self._log = log or (lambda level, message: None)
        self._open_port = open_port or _open_serial
        self._stop = threading.Event()
        self._serial = None
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.connections = 0           # how many times the port was opened
        self.on_connect: Callable[[], None] = lambda: None

    def start(self) -> ButtonBoxLink:
        self._thread = threading.Thread(target=self._run, name=f"button-box {self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._close()

    def send(self, line: str) -> bool:
        """Send one line to the box; False when it is not connected (the line is dropped)."""
        with self._write_lock:
            serial = self._serial
            if serial is None:
                return False
            try:
                serial.write((line + "\n").encode("ascii", "replace"))
                return True
            except (OSError, ValueError) as exc:  # pyserial's SerialException is an OSError
                self._log("warning", f"button box {self.port}: write failed ({exc}); reconnecting")
                return False

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            try:
                serial = self._open_port(self.port, self.baud)
            except (OSError, ValueError) as exc:
                if not warned:
                    self._log("warning", f"button box {self.port}: cannot open ({exc}); retrying every "
                                         f"{self.reconnect_s} s until it is plugged in")
                    warned = True
                self._stop.wait(self.reconnect_s)
                continue
            warned = False
            with self._write_lock:
                self._serial = serial
            self.connections += 1
            self.connected.set()
            self._log("info", f"button box connected on {self.port}")
            self.on_connect()
            self._read_lines(serial)
            self.connected.clear()
            self._close()
            if not self._stop.is_set():
                self._log("warning", f"button box {self.port} disconnected; retrying every {self.reconnect_s} s")

    def _read_lines(self, serial) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = serial.read(256)
            except (OSError, ValueError, TypeError):  # pulled cable: EIO, or pyserial's "device disconnected"
                return
            if not chunk:
                continue
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                self._answer(raw)
            if len(buffer) > MAX_LINE * 4:  # a box spewing bytes without newlines: drop them
                self._log("warning", f"button box {self.port}: {len(buffer)} bytes without a newline; dropped")
                self.send("ERR line too long")
                buffer = b""

    def _answer(self, raw: bytes) -> None:
        line = raw.decode("ascii", "replace").replace("\r", "").strip()
        if not line:
            return
        try:
            reply = self._handle(line)
        except Exception as exc:  # noqa: BLE001 -- a bug in a handler must not kill the reader thread
            self._log("warning", f"button box {self.port}: {line!r} raised {type(exc).__name__}: {exc}")
            reply = f"ERR internal error: {exc}"
        if reply:
            self.send(reply)

    def _close(self) -> None:
        with self._write_lock:
            serial, self._serial = self._serial, None
        if serial is not None:
            try:
                serial.close()
            except OSError:
                pass


def _open_serial(port: str, baud: int):
    import serial

    return serial.Serial(port, baudrate=baud, timeout=0.2)


def answer_line(line: str, console) -> str:
    """Carry out one protocol line through the operator console; the reply line for the box."""
    try:
        command = parse_line(line, console.robots)
    except ProtocolError as exc:
        console.fleet.log("warning", f"button box: {line!r} ignored: {exc}")
        return f"ERR {exc}"
    if command.action == "ping":
        return "PONG"
    if command.robot == ALL_ROBOTS:
        results = console.estop_all(source="button box")
        refused = [r for r in results if not r.accepted]
        if refused:
            return "ERR " + "; ".join(f"{r.robot}: {r.message}" for r in refused)
        return f"OK * estop {len(results)} robots stopped"
    robot = command.robot
    if robot == QUEUE_HEAD:
        queue = console.fleet.queue()
        if not queue:
            return "ERR no robot is waiting for a human"
        robot = queue[0]
    result = console.command(robot, command.action, source="button box")
    if not result.accepted:
        return f"ERR {robot} {command.action}: {result.message}"
    return f"OK {robot} {command.action} {result.message}".rstrip()
