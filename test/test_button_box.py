"""The button box protocol, and the serial link through a real pseudo-terminal pair: unplug and reconnect."""
import os
import pty
import select
import threading
import time
import tty

import pytest

from efm_reset_supervisor.button_box import (
    ALL_ROBOTS,
    QUEUE_HEAD,
    ButtonBoxLink,
    ButtonCommand,
    ProtocolError,
    answer_line,
    parse_line,
)
from efm_reset_supervisor.console import Console
from efm_reset_supervisor.fleet import Fleet, StatusUpdate

ROBOTS = ["lt_1", "lt_2"]


@pytest.mark.parametrize("line, command", [
    ("DONE", ButtonCommand("reset_done", QUEUE_HEAD)),
    ("done 2", ButtonCommand("reset_done", "lt_2")),
    ("DONE lt_1", ButtonCommand("reset_done", "lt_1")),
    ("SUCCESS", ButtonCommand("label_success", QUEUE_HEAD)),
    ("FAIL 1", ButtonCommand("label_failure", "lt_1")),
    ("PAUSE 1", ButtonCommand("pause", "lt_1")),
    ("RESUME lt_2", ButtonCommand("resume", "lt_2")),
    ("ESTOP", ButtonCommand("estop", ALL_ROBOTS)),
    ("  estop 2 ", ButtonCommand("estop", "lt_2")),
    ("PING", ButtonCommand("ping", "")),
])
def test_protocol_lines(line, command):
    assert parse_line(line, ROBOTS) == command


@pytest.mark.parametrize("line, why", [
    ("REBOOT", "unknown command"), ("DONE 3", "unknown robot"), ("DONE 0", "unknown robot"),
    ("PAUSE", "needs a robot"), ("DONE 1 2", "at most one robot"), ("", "empty"),
    ("DONE \x00", "control characters"), ("DONE " + "x" * 100, "longer than"),
])
def test_malformed_lines_are_refused(line, why):
    with pytest.raises(ProtocolError, match=why):
        parse_line(line, ROBOTS)


def make_console():
    """A console whose robots accept every command at once."""
    fleet = Fleet(ROBOTS)
    for t, robot in enumerate(ROBOTS):
        fleet.on_status(robot, StatusUpdate(state=0, episode_id=f"{robot}-1"), float(t))
    sent = []

    def send(command, done):
        sent.append((command.robot, command.action))
        done(True, "ok")

    return Console(fleet, send, lambda: 10.0), sent


def test_answers_go_through_the_console_and_bad_lines_change_nothing():
    console, sent = make_console()
    assert answer_line("PING", console) == "PONG"
    assert answer_line("DONE", console).startswith("OK lt_1 reset_done")   # the longest wait
    assert answer_line("DONE 1", console).startswith("ERR lt_1 reset_done: lt_1: reset already done")
    assert answer_line("garbage", console).startswith("ERR unknown command")
    assert answer_line("ESTOP", console) == "OK * estop 2 robots stopped"
    assert sent == [("lt_1", "reset_done"), ("lt_1", "estop"), ("lt_2", "estop")]


class PtyBox:
    """The box's end of a pseudo-terminal; the supervisor opens the other end through a symlink, as through a
    udev name, so "unplugging" (closing the pair and removing the link) and "plugging back" (a new pair behind
    the same name) look like the real thing."""

    def __init__(self, link):
        self.link = link
        self.master = None
        self.plug()

    def plug(self):
        self.master, self.slave = pty.openpty()  # the slave stays open here too, so the pair lives until unplug
        tty.setraw(self.slave)
        self.slave_name = os.ttyname(self.slave)
        if os.path.lexists(self.link):
            os.unlink(self.link)
        os.symlink(self.slave_name, self.link)

    def unplug(self):
        os.unlink(self.link)
        os.close(self.master)
        os.close(self.slave)

    def write(self, line):
        os.write(self.master, line.encode() + b"\n")

    def read_line(self, timeout_s=10.0):
        data = b""
        while not data.endswith(b"\n"):
            ready, _, _ = select.select([self.master], [], [], timeout_s)
            assert ready, f"no line from the supervisor within {timeout_s} s (got {data!r})"
            data += os.read(self.master, 1)
        return data.decode().strip()


def test_serial_link_answers_and_survives_unplugging(tmp_path):
    console, sent = make_console()
    box = PtyBox(str(tmp_path / "button-box"))
    logs = []
    link = ButtonBoxLink(box.link, lambda line: answer_line(line, console), reconnect_s=0.05,
                         log=lambda level, msg: logs.append((level, msg)))
    connected = threading.Event()
    link.on_connect = lambda: (link.send("QUEUE 2"), connected.set())
    link.start()
    try:
        assert box.read_line() == "QUEUE 2"
        box.write("PING")
        assert box.read_line() == "PONG"
        box.write("NONSENSE 42")
        assert box.read_line().startswith("ERR unknown command")
        box.write("DONE\r")
        assert box.read_line().startswith("OK lt_1 reset_done")
        assert link.connections == 1

        box.unplug()
        assert _wait_until(lambda: not link.connected.is_set())
        connected.clear()
        box.plug()
        assert connected.wait(10.0)
        assert box.read_line() == "QUEUE 2"
        box.write("DONE 2")
        assert box.read_line().startswith("OK lt_2 reset_done")
        assert link.connections == 2
        assert any("disconnected" in msg for _, msg in logs)
    finally:
        link.stop()
    assert sent == [("lt_1", "reset_done"), ("lt_2", "reset_done")]


def _wait_until(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    return predicate()
