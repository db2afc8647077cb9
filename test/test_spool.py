"""The spool: upload order, acknowledged and refused episodes, the byte budget and its warnings."""
import os
from pathlib import Path

import pytest

from efm_trainer.spool import REFUSED, UPLOADED, Spool

GB = 1 << 30


def episode(root: Path, episode_id: str, size: int, finished_s: int) -> Path:
    """A finished episode folder as EpisodeWriter leaves one: a bag of ``size`` bytes and metadata."""
    path = root / episode_id
    path.mkdir(parents=True)
    (path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    bag = path / f"{episode_id}_0.mcap"
    bag.write_bytes(b"x" * size)
    os.utime(bag, ns=(finished_s * 10**9, finished_s * 10**9))
    return path


def plenty(_path):
    return (100 * GB, 0, 50 * GB)


def test_pending_is_oldest_first_and_skips_partials_and_done(tmp_path):
    spool = Spool(tmp_path, disk_usage=plenty)
    episode(tmp_path, "b-late", 10, finished_s=300)
    episode(tmp_path, "z-early", 10, finished_s=100)
    episode(tmp_path, "a-middle", 10, finished_s=200)
    (tmp_path / ".c.partial").mkdir()
    assert [p.name for p in spool.pending()] == ["z-early", "a-middle", "b-late"]
    spool.mark_uploaded("z-early")
    assert [p.name for p in spool.pending()] == ["a-middle", "b-late"]
    assert spool.is_uploaded("z-early") and (tmp_path / UPLOADED / "z-early" / "metadata.yaml").is_file()
    assert spool.remove_partials() == ["c"] and not (tmp_path / ".c.partial").exists()


def test_refused_keeps_the_reason(tmp_path):
    spool = Spool(tmp_path, disk_usage=plenty)
    episode(tmp_path, "ep", 10, finished_s=1)
    spool.mark_refused("ep", "400: bag lacks /reward")
    assert (tmp_path / REFUSED / "ep" / "reason.txt").read_text() == "400: bag lacks /reward\n"
    assert spool.pending() == []
    with pytest.raises(FileNotFoundError, match="episode ep is not in the spool"):
        spool.mark_uploaded("ep")


def test_budget_deletes_oldest_uploaded_first_never_pending(tmp_path):
    spool = Spool(tmp_path, max_bytes=2500, disk_usage=plenty)
    for i, name in enumerate(["up-1", "up-2", "up-3", "wait-1"]):
        episode(tmp_path, name, 1000, finished_s=i + 1)
    for name in ("up-2", "up-1", "up-3"):  # acknowledgement order differs from age
        spool.mark_uploaded(name)
    report = spool.check()
    assert report.deleted == ["up-1", "up-2"]
    assert [p.name for p in spool.pending()] == ["wait-1"]
    assert spool.is_uploaded("up-3") and report.total_bytes <= 2500 + 200  # metadata files are small
    assert report.problems == {}


def test_waiting_episodes_over_budget_are_kept_with_a_warning(tmp_path):
    spool = Spool(tmp_path, max_bytes=1500, disk_usage=plenty)
    episode(tmp_path, "wait-1", 1000, finished_s=1)
    episode(tmp_path, "wait-2", 1000, finished_s=2)
    report = spool.check()
    assert report.deleted == [] and len(spool.pending()) == 2
    assert "2 episodes" in report.problems["over_budget"] and "spool_max_bytes" in report.problems["over_budget"]


def test_low_free_disk_space_is_reported(tmp_path):
    spool = Spool(tmp_path, min_free_bytes=2 * GB, disk_usage=lambda p: (100 * GB, 99 * GB, GB))
    episode(tmp_path, "wait-1", 1000, finished_s=1)
    problem = spool.check().problems["low_disk"]
    assert "1073.7 MB free" in problem and "min_free_bytes" in problem and "1 episodes" in problem


def test_a_budget_of_zero_is_refused(tmp_path):
    with pytest.raises(ValueError, match="max_bytes must be positive, got 0"):
        Spool(tmp_path, max_bytes=0)
