"""Episodes on disk: one rosbag2 directory with MCAP storage per episode.

Demos, practice episodes and evaluation runs share this format, so `ros2 bag info`, `ros2 bag play`
and Foxglove open every one of them. Topics are stored relative to the robot (``/action``,
``/camera/top/image_raw/compressed``...); the robot, the task and the outcome are in the bag's
``custom_data`` (metadata.yaml), so a reader never has to parse topic names to learn them.

Crash safety: an episode is written under ``.<id>.partial``, every file is fsynced, and only then is
the directory renamed to ``<id>``. A folder without the ``.partial`` prefix is therefore complete; a
killed run leaves only a ``.partial`` folder, which the next writer of that id removes.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from efm_policy.preprocess import rgb8_image
from efm_runtime.messages import deserialize, embedded_typestore, get_message, message_type_name, serialize

PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"
COMPRESSED_SUFFIX = "/compressed"
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"  # compressed_image_transport's way of saying it
PNG_FORMAT = "rgb8; png compressed bgr8"
IMAGE_FORMATS = ("jpeg", "png")


def encode_image(rgb: np.ndarray, stamp, jpeg_quality: int = 90, image_format: str = "jpeg"):
    """sensor_msgs/CompressedImage of an H x W x 3 RGB frame: JPEG (small, lossy) or PNG (lossless, about
    2x the bytes, for data whose exact pixels matter, such as practice episodes REINFORCE trains on)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if image_format == "png":
        ok, buffer = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        label = PNG_FORMAT
    elif image_format == "jpeg":
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        label = JPEG_FORMAT
    else:
        raise ValueError(f"image format {image_format!r}: use one of {', '.join(IMAGE_FORMATS)}")
    if not ok:
        raise ValueError(f"{image_format} encoding failed for an image of shape {rgb.shape}")
    CompressedImage = get_message("sensor_msgs/msg/CompressedImage")
    Header = get_message("std_msgs/msg/Header")
    return CompressedImage(header=Header(stamp=stamp), format=label, data=buffer.reshape(-1))


def decode_image(msg) -> np.ndarray:
    """H x W x 3 RGB frame of a JPEG or PNG sensor_msgs/CompressedImage."""
    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("compressed image could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_msg_to_array(msg) -> np.ndarray:
    """H x W x 3 RGB array of a sensor_msgs/Image with rgb8 encoding."""
    return rgb8_image(msg, "the recorder")


class EpisodeWriter:
    """Writes one episode; ``close()`` makes it visible, ``abort()`` removes it."""

    def __init__(self, dataset_dir: str | Path, episode_id: str, metadata: dict[str, Any] | None = None) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.dataset_dir.mkdir(parents=True, exist_ok=True)
        self.episode_id = episode_id
        self.final_path = self.dataset_dir / episode_id
        self.partial_path = self.dataset_dir / f"{PARTIAL_PREFIX}{episode_id}{PARTIAL_SUFFIX}"
        if self.final_path.exists():
            raise FileExistsError(f"episode {self.final_path} already exists")
        if self.partial_path.exists():  # left by a killed run: never trusted, never resumed
            shutil.rmtree(self.partial_path)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._writer = Writer(self.partial_path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.message_count = 0

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._connections[topic] = self._writer.add_connection(
                topic, message_type_name(msg), typestore=embedded_typestore())
        self._writer.write(connection, int(stamp_ns), serialize(msg))
        self.message_count += 1

    def close(self, **metadata: Any) -> Path:
        """Finish the episode: metadata, fsync, rename to its final name. Returns that path."""
        self.metadata.update(metadata)
        for key, value in self.metadata.items():
            self._writer.set_custom_data(str(key), str(value))
        self._writer.close()
        for file in self.partial_path.iterdir():
            _fsync(file)
        _fsync(self.partial_path)
        os.rename(self.partial_path, self.final_path)
        _fsync(self.dataset_dir)
        return self.final_path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            shutil.rmtree(self.partial_path, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Episode:
    """An episode read back: every topic's messages with their receive stamps (ns)."""
    path: Path
    metadata: dict[str, str]
    messages: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)

    def topic(self, name: str) -> list[tuple[int, Any]]:
        return self.messages.get(name, [])

    def images(self, camera: str) -> Iterator[tuple[int, np.ndarray]]:
        for stamp, msg in self.topic(f"/camera/{camera}/image_raw{COMPRESSED_SUFFIX}"):
            yield stamp, decode_image(msg)

    @property
    def cameras(self) -> list[str]:
        return camera_names(self.messages)


def camera_names(topics) -> list[str]:
    """The cameras whose frames an episode's topics hold (``/camera/<name>/image_raw/compressed``)."""
    return sorted(t.split("/")[2] for t in topics if t.startswith("/camera/") and t.endswith(COMPRESSED_SUFFIX))


def read_cameras(path: str | Path) -> list[str]:
    """The cameras an episode recorded, from its bag's topic list (no message is read)."""
    with Reader(Path(path)) as reader:
        return camera_names(c.topic for c in reader.connections)


def read_metadata(path: str | Path) -> dict[str, str]:
    info = yaml.safe_load((Path(path) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return {str(k): str(v) for k, v in (info.get("custom_data") or {}).items()}


def read_episode(path: str | Path, topics: set[str] | None = None) -> Episode:
    """Load an episode (optionally only some topics); raises ValueError naming the path when corrupt."""
    path = Path(path)
    try:
        episode = Episode(path, read_metadata(path))
        with Reader(path) as reader:
            wanted = [c for c in reader.connections if topics is None or c.topic in topics]
            for connection, stamp, raw in reader.messages(connections=wanted):
                msg = deserialize(bytes(raw), connection.msgtype)
                episode.messages.setdefault(connection.topic, []).append((stamp, msg))
    except Exception as exc:  # rosbags raises several types for truncated/corrupt files
        raise ValueError(f"{path}: unreadable episode ({type(exc).__name__}: {exc})") from None
    return episode


def episode_dirs(dataset_dir: str | Path) -> list[Path]:
    """Completed episode folders of a dataset, sorted; ``.partial`` ones are not episodes."""
    root = Path(dataset_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(PARTIAL_PREFIX)
                  and (p / "metadata.yaml").is_file())


def episode_paths(path: str | Path) -> list[Path]:
    """``path`` itself when it is one episode folder, else the completed episodes of the dataset in it."""
    path = Path(path)
    return [path] if (path / "metadata.yaml").is_file() else episode_dirs(path)


def partial_dirs(dataset_dir: str | Path) -> list[Path]:
    root = Path(dataset_dir)
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(PARTIAL_SUFFIX)) if root.is_dir() else []


@dataclass
class DatasetSummary:
    episodes: list[dict[str, str]]          # metadata of each readable episode, plus "path" and "size_bytes"
    unreadable: list[tuple[Path, str]]      # (path, why)
    partial: list[Path]                     # .partial folders: unfinished writes (killed runs)

    @property
    def size_bytes(self) -> int:
        return sum(int(e["size_bytes"]) for e in self.episodes)


def summarize_dataset(dataset_dir: str | Path) -> DatasetSummary:
    """Metadata of every episode; corrupt or truncated ones are listed with the reason, not raised."""
    summary = DatasetSummary([], [], partial_dirs(dataset_dir))
    for path in episode_dirs(dataset_dir):
        try:
            metadata = read_metadata(path)
            with Reader(path) as reader:  # opening reads the MCAP summary: a truncated file fails here
                metadata["messages"] = str(reader.message_count)
        except Exception as exc:
            summary.unreadable.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        metadata["path"] = str(path)
        metadata["size_bytes"] = str(sum(f.stat().st_size for f in path.iterdir()))
        summary.episodes.append(metadata)
    return summary


def iter_episodes(dataset_dir: str | Path, topics: set[str] | None = None, on_skip=None) -> Iterator[Episode]:
    """Readable episodes of a dataset; a corrupt one is skipped and ``on_skip(path, why)`` told of it."""
    for path in episode_dirs(dataset_dir):
        try:
            yield read_episode(path, topics)
        except ValueError as exc:
            if on_skip is not None:
                on_skip(path, str(exc))
