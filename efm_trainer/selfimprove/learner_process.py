"""The learner service as a child process on loopback, and the few calls the run makes to it."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import requests

from efm_runtime.errors import EfmUserError

from ..uploader import LearnerClient
from .child import ChildProcess


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LearnerProcess(ChildProcess):
    """``efm learner serve`` in a child process; its output goes to ``log_path``."""

    def __init__(self, command: list[str], url: str, token: str, log_path: Path) -> None:
        super().__init__("learner", command, log_path)
        self.url = url
        # short reads: the run asks every second and must not hang on a learner busy exporting
        self.client = LearnerClient(url, token, read_timeout_s=10.0)

    def status(self) -> dict:
        return self.client.get_json("/v1/status")

    def versions(self) -> dict:
        return self.client.get_json("/v1/versions")

    def post_evaluation(self, version: str, episodes: int, successes: int, first_seed: int) -> None:
        self.client.post_json("/v1/evaluations", {"version": version, "episodes": episodes, "successes": successes,
                                                  "seeds": list(range(first_seed, first_seed + episodes))})

    def start(self, ready_timeout_s: float = 300.0) -> None:
        super().start()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise EfmUserError(f"the learner exited with code {self.returncode} while starting; "
                                   f"its log ({self.log_path}) ends with:\n{self.log_tail()}")
            try:
                self.status()
                return
            except requests.RequestException:
                time.sleep(0.5)
        raise EfmUserError(f"the learner did not answer on {self.url} within {ready_timeout_s:.0f} s; "
                           f"see {self.log_path}")

    def stop(self, timeout_s: float = 60.0) -> None:
        """The learner finishes writing what it is writing; an update in flight is redone on restart."""
        super().stop(timeout_s)
