"""The learner service as a child process on loopback, and the few calls the run makes to it."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from efm_runtime.errors import EfmUserError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_token(path: Path) -> str:
    """The run's learner token, created once (owner-only) and kept so a resumed run reuses it."""
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


class LearnerClient:
    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def _get(self, path: str) -> dict:
        response = self._session.get(f"{self.url}{path}", timeout=self.timeout_s)
        response.raise_for_status()
        return response.json()

    def status(self) -> dict:
        return self._get("/v1/status")

    def versions(self) -> dict:
        return self._get("/v1/versions")

    def post_evaluation(self, version: str, episodes: int, successes: int, first_seed: int) -> None:
        response = self._session.post(f"{self.url}/v1/evaluations", timeout=self.timeout_s, json={
            "version": version, "episodes": episodes, "successes": successes,
            "seeds": list(range(first_seed, first_seed + episodes))})
        response.raise_for_status()


class LearnerProcess:
    """``efm learner serve`` in a child process; its output goes to ``log_path``."""

    def __init__(self, command: list[str], url: str, token: str, log_path: Path) -> None:
        self.command, self.url, self.log_path = command, url, log_path
        self.client = LearnerClient(url, token)
        self.process: subprocess.Popen | None = None

    def start(self, ready_timeout_s: float = 300.0) -> None:
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-m", "efm_runtime.cli", *self.command], stdout=log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EfmUserError(f"the learner exited with code {self.process.returncode} while starting; "
                                   f"its log ({self.log_path}) ends with:\n{self.log_tail()}")
            try:
                self.client.status()
                return
            except requests.RequestException:
                time.sleep(0.5)
        raise EfmUserError(f"the learner did not answer on {self.url} within {ready_timeout_s:.0f} s; "
                           f"see {self.log_path}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGINT: the learner finishes writing what it is writing (an update in flight is redone on restart)."""
        if not self.running:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
