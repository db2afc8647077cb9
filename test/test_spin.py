"""Starting nodes from the command line on the embedded middleware, and stopping them with Ctrl-C."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from efm_runtime.errors import EfmUserError
from efm_runtime.ros_args import parse_ros_args

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ros_args_parameters_remaps_and_params_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    text: from file\n    rate_hz: 2.0\n"
                      "talker:\n  ros__parameters:\n    rate_hz: 3.0\n")
    parsed = parse_ros_args(["talker", "--ros-args", "--params-file", str(params), "-p", "rate_hz:=20",
                             "-r", "__ns:=/robot_a", "-r", "chatter:=/bus"], "talker")
    assert parsed.parameters == {"text": "from file", "rate_hz": 20}
    assert parsed.remappings == {"__ns": "/robot_a", "chatter": "/bus"}


def test_ros_args_errors_are_explained():
    with pytest.raises(EfmUserError, match="expected NAME:=VALUE"):
        parse_ros_args(["--ros-args", "-p", "rate_hz=2"], "talker")
    with pytest.raises(EfmUserError, match="unsupported argument '--log-level'"):
        parse_ros_args(["--ros-args", "--log-level", "debug"], "talker")


def start(args):
    env = {**os.environ, "EFM_MIDDLEWARE": "embedded", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(stream, needle, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} not seen in: {''.join(seen)}")


def test_node_executable_runs_alone_and_stops_cleanly_on_sigint():
    proc = start([str(BIN / "smoke_talker"), "--ros-args", "-r", "__ns:=/robot_a", "-p", "rate_hz:=20.0"])
    wait_for_line(proc.stderr, "[robot_a.talker]: running alone on the embedded middleware")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_node_executable_reports_bad_parameter_without_traceback():
    proc = start([str(BIN / "smoke_talker"), "--ros-args", "-p", "rate_hz:=fast"])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "parameter 'rate_hz': expected double, got str 'fast'" in err and "Traceback" not in err


def test_efm_up_prints_the_table_after_ctrl_c():
    proc = start([str(BIN / "efm"), "up", "config/smoke.yaml"])
    wait_for_line(proc.stderr, "heard 25 messages")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "/robot_a/chatter_relayed" in out and "/robot_b/chatter_relayed" in out
