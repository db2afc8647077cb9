"""The learner service as a child process on loopback, and the few calls the run makes to it."""
from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

import requests

from efm_runtime.errors import EfmUserError

from .child import ChildProcess


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


class LearnerProcess(ChildProcess):
    """``efm learner serve`` in a child process; its output goes to ``log_path``."""

    def __init__(self, command: list[str], url: str, token: str, log_path: Path) -> None:
        super().__init__("learner", command, log_path)
        self.url = url
        self.client = LearnerClient(url, token)

    def start(self, ready_timeout_s: float = 300.0) -> None:
        super().start()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise EfmUserError(f"the learner exited with code {self.returncode} while starting; "
                                   f"its log ({self.log_path}) ends with:\n{self.log_tail()}")
            try:
                self.client.status()
                return
            except requests.RequestException:
                time.sleep(0.5)
        raise EfmUserError(f"the learner did not answer on {self.url} within {ready_timeout_s:.0f} s; "
                           f"see {self.log_path}")

    def stop(self, timeout_s: float = 60.0) -> None:
        """The learner finishes writing what it is writing; an update in flight is redone on restart."""
        super().stop(timeout_s)
