"""A child process of the run (a robot's graph, the learner): started in its own session, logged to a
file, stopped with SIGINT so it shuts down cleanly, killed only when it does not."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class ChildProcess:
    def __init__(self, name: str, efm_args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.efm_args, self.log_path = name, efm_args, log_path
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            # its own session: Ctrl-C in the terminal reaches the run, which stops children in order
            self.process = subprocess.Popen([sys.executable, "-m", "efm_runtime.cli", *self.efm_args], stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def pause(self) -> None:
        """Freeze the process (SIGSTOP). A lock-step simulated robot then stands still in sim time too."""
        if self.running:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float) -> None:
        if not self.running:
            return
        self.resume()  # a frozen process cannot shut down
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
