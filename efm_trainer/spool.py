"""The robot's episode spool: finished episodes waiting for the learner, and what became of them.

    <spool_dir>/<episode_id>/            finished, not yet acknowledged by the learner (upload queue)
    <spool_dir>/.<episode_id>.partial/   being recorded (or left by a killed run: removed at start)
    <spool_dir>/.uploaded/<episode_id>/  acknowledged (201 or 200); deleted oldest first over the budget
    <spool_dir>/.refused/<episode_id>/   the learner refused it (4xx); ``reason.txt`` says why

Upload order is oldest first: by the bag file's modification time (written once, at the end of the
episode; a late label rewrites only metadata.yaml), then by name. Nothing that the learner has not
acknowledged is ever deleted: when waiting episodes alone exceed the budget, or the disk runs low,
:meth:`Spool.check` says so instead. Pure filesystem code: no network, no ROS.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .episodes import PARTIAL_SUFFIX, _fsync, episode_dirs, partial_dirs

UPLOADED = ".uploaded"
REFUSED = ".refused"
REASON_FILE = "reason.txt"


@dataclass
class SpoolReport:
    """The spool at one moment. ``problems``: condition name -> warning text (empty when all is well)."""
    pending: int
    pending_bytes: int
    uploaded: int
    uploaded_bytes: int
    refused: int
    refused_bytes: int
    free_bytes: int
    deleted: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return self.pending_bytes + self.uploaded_bytes + self.refused_bytes


class Spool:
    def __init__(self, root: str | Path, max_bytes: int = 20 << 30, min_free_bytes: int = 2 << 30,
                 disk_usage: Callable[[str], tuple] = shutil.disk_usage) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._disk_usage = disk_usage
        for sub in (self.root, self.root / UPLOADED, self.root / REFUSED):
            sub.mkdir(parents=True, exist_ok=True)

    # ---- the queue ------------------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """Finished episodes not yet acknowledged, oldest first."""
        return sorted(episode_dirs(self.root), key=lambda p: (_finished_at(p), p.name))

    def remove_partials(self) -> list[str]:
        """Delete ``.partial`` folders left by a killed recorder; call only while nothing records."""
        removed = []
        for path in partial_dirs(self.root):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name[1:-len(PARTIAL_SUFFIX)])
        return removed

    def mark_uploaded(self, episode_id: str) -> Path:
        """The learner acknowledged it: out of the queue, kept until the budget needs the space."""
        return self._move(episode_id, self.root / UPLOADED)

    def mark_refused(self, episode_id: str, reason: str) -> Path:
        """The learner refused it: out of the queue, kept with the reason for a human to look at."""
        target = self._move(episode_id, self.root / REFUSED)
        (target / REASON_FILE).write_text(reason.rstrip() + "\n")
        return target

    def is_uploaded(self, episode_id: str) -> bool:
        return (self.root / UPLOADED / episode_id).is_dir()

    # ---- budget and warnings --------------------------------------------------------------------
    def check(self) -> SpoolReport:
        """Delete acknowledged episodes (oldest first) while over the byte budget, then report."""
        pending = {p: _size(p) for p in self.pending()}
        uploaded = {p: _size(p) for p in sorted(_dirs(self.root / UPLOADED), key=lambda p: (_finished_at(p), p.name))}
        refused = {p: _size(p) for p in _dirs(self.root / REFUSED)}
        total = sum(pending.values()) + sum(uploaded.values()) + sum(refused.values())
        deleted = []
        for path, size in list(uploaded.items()):
            if total <= self.max_bytes:
                break
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path.name)
            total -= size
            del uploaded[path]
        free = int(self._disk_usage(str(self.root))[2])
        report = SpoolReport(len(pending), sum(pending.values()), len(uploaded), sum(uploaded.values()),
                             len(refused), sum(refused.values()), free, deleted)
        if report.pending_bytes > self.max_bytes:
            report.problems["over_budget"] = (
                f"spool {self.root}: {report.pending} episodes ({_mb(report.pending_bytes)}) wait for upload, more "
                f"than the budget spool_max_bytes={_mb(self.max_bytes)}; they are kept (never deleted before the "
                "learner has them): check the learner connection or raise spool_max_bytes")
        if free < self.min_free_bytes:
            report.problems["low_disk"] = (
                f"spool {self.root}: only {_mb(free)} free on its disk (min_free_bytes={_mb(self.min_free_bytes)}); "
                f"{report.pending} episodes ({_mb(report.pending_bytes)}) wait for upload: free disk space or check "
                "the learner connection, or recording will fail")
        return report

    # ---- internals ------------------------------------------------------------------------------
    def _move(self, episode_id: str, folder: Path) -> Path:
        source, target = self.root / episode_id, folder / episode_id
        if not source.is_dir():
            raise FileNotFoundError(f"episode {episode_id} is not in the spool {self.root}")
        if target.exists():  # an earlier copy (e.g. refused, then recorded again under the same id)
            shutil.rmtree(target)
        os.rename(source, target)
        _fsync(folder)
        _fsync(self.root)
        return target


def _dirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _finished_at(path: Path) -> int:
    try:
        bags = [f.stat().st_mtime_ns for f in path.iterdir() if f.is_file() and f.suffix == ".mcap"]
        return min(bags) if bags else path.stat().st_mtime_ns
    except OSError:  # deleted meanwhile: sorts first, and whoever touches it next finds it gone
        return 0


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
