"""The `efm` command as a user meets it: help everywhere, `efm up` tables, errors without tracebacks."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from efm_runtime import COMMANDS, Node, get_message
from efm_runtime.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
String = get_message("std_msgs/msg/String")


def efm(*args, timeout=120):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "efm_runtime.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def all_command_paths(parser, prefix=()):
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_command_paths(sub, prefix + (name,))


@pytest.mark.parametrize("path", list(all_command_paths(build_parser())), ids=lambda p: " ".join(p) or "efm")
def test_help_on_every_level(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    assert "usage: efm" in capsys.readouterr().out


def test_up_smoke_prints_topic_table_for_both_robots():
    result = efm("up", "config/smoke.yaml", "--duration", "1.5")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("/")}
    for robot in ("robot_a", "robot_b"):
        for topic in ("chatter", "chatter_relayed"):
            row = rows[f"/{robot}/{topic}"]
            assert row[1] == "std_msgs/msg/String"
            assert int(row[4]) > 0, result.stdout  # messages
    assert "Traceback" not in result.stderr


def test_up_with_bad_graph_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("robots: {a: {nodes: [{executable: smoke_talkr}]}}\n")
    result = efm("up", str(bad), "--duration", "1")
    assert result.returncode == 2
    assert "did you mean 'smoke_talker'" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_check_validates_without_running():
    result = efm("up", "config/smoke.yaml", "--check")
    assert result.returncode == 0 and "graph is valid" in result.stderr


def test_bad_duration_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["up", "config/smoke.yaml", "--duration", "-1"])
    assert exit_info.value.code == 2
    assert "--duration must be > 0" in capsys.readouterr().err


class Faulty(Node):
    default_name = "faulty"

    def __init__(self, options=None):
        super().__init__(self.default_name, options)
        self.create_subscription(String, "chatter", self.boom, COMMANDS)

    def boom(self, msg):
        raise RuntimeError("bad frame")


def test_up_exits_1_when_a_callback_failed_and_keeps_running(tmp_path, monkeypatch, capsys):
    import efm_runtime.runner as runner
    from efm_runtime.registry import load_node_class as real_load, node_entry_points

    installed = node_entry_points()
    monkeypatch.setattr(runner, "load_node_class", lambda name: Faulty if name == "faulty" else real_load(name))
    monkeypatch.setattr("efm_runtime.registry.node_entry_points", lambda: {**installed, "faulty": None})
    graph = tmp_path / "faulty.yaml"
    graph.write_text("robots:\n  r:\n    nodes: [{executable: smoke_talker}, {executable: faulty},"
                     " {executable: smoke_relay}]\n")
    assert main(["up", str(graph), "--duration", "1"]) == 1
    captured = capsys.readouterr()
    assert "/r/faulty: subscription on 'chatter': RuntimeError: bad frame" in captured.err
    relayed = [line for line in captured.out.splitlines() if line.startswith("/r/chatter_relayed")]
    assert int(relayed[0].split()[4]) > 0  # the other nodes kept working


def test_nodes_lists_smoke_nodes(capsys):
    assert main(["nodes"]) == 0
    out = capsys.readouterr().out
    assert "smoke_talker" in out and "smoke_listener" in out
