"""Recording core: turns a robot's episode messages into one episode folder each (no node, no ROS).

Shared by the ``episode_recorder`` node and the ``trainer_bridge``. An episode starts when a Task
arrives and ends with a terminal EpisodeStatus; in between, camera frames (stored JPEG-compressed as
``/camera/<name>/image_raw/compressed``), proprio, action chunks and rewards are written with their
header stamps, through the crash-safe :class:`~efm_trainer.episodes.EpisodeWriter`.

Metadata (the bag's ``custom_data``): robot, episode_id, instruction, task_family, embodiment, seed,
max_steps, outcome, success, steps, human_label, and the context a learner needs to judge the
episode: ``policy_version`` (from the action chunks, which the policy node stamps with the model
that computed them; the terminal status's, then the newest ``policy_version`` message, when no chunk
came) and ``reward_model_version`` (from the StepRewards). An episode whose chunks name more than one
version records them all, comma-separated, so it never counts as on-policy.

A human label that comes after the end (the episode manager re-publishes the terminal status with
``human_label`` set) is written into the finished episode's ``metadata.yaml`` (``human_label``,
temporary file, fsync, rename), so whoever reads or uploads the folder afterwards sees it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable

import yaml

from efm_runtime import Time, get_message

from .episodes import EpisodeWriter, _fsync, encode_image, image_msg_to_array

EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")

OUTCOMES = {
    EpisodeStatus.STATE_SUCCEEDED: "succeeded", EpisodeStatus.STATE_FAILED: "failed",
    EpisodeStatus.STATE_TIMED_OUT: "timed_out", EpisodeStatus.STATE_ABORTED: "aborted",
    EpisodeStatus.STATE_ESTOPPED: "estopped",
}
POLICY_VERSION_TOPIC = "/policy_version"
GROUND_TRUTH_TOPIC = "/sim/ground_truth_success"      # simulation only, when the node records it
METADATA_FILE = "metadata.yaml"

Log = Callable[[str, str], None]  # (level "info" | "warning" | "error", text)


class EpisodeRecording:
    """Feed it messages; it writes episodes into ``out_dir`` and calls ``on_finished(episode_id, path)``."""

    def __init__(self, out_dir: str | Path, robot: str = "", jpeg_quality: int = 90, log: Log | None = None,
                 on_finished: Callable[[str, Path], None] | None = None,
                 on_labelled: Callable[[str, int], bool] | None = None, label_lock=None,
                 on_closing: Callable[[str], None] | None = None, image_format: str = "jpeg") -> None:
        self.out_dir = Path(out_dir)
        self.robot = robot
        self.jpeg_quality = jpeg_quality
        self.image_format = image_format
        self._log = log or (lambda level, text: None)
        self._on_finished = on_finished or (lambda episode_id, path: None)
        # called before a finished episode becomes visible in out_dir (e.g. to hold it from an uploader)
        self._on_closing = on_closing or (lambda episode_id: None)
        # asked before a late label rewrites a finished episode: False = too late (e.g. already uploaded)
        self._on_labelled = on_labelled or (lambda episode_id, label: True)
        self._label_lock = label_lock or contextlib.nullcontext()  # held from that question to the rewrite
        self._writer: EpisodeWriter | None = None
        self._last_frame_ns = 0
        self._policy_versions: list[str] = []
        self._reward_versions: list[str] = []
        self._latest_policy_version = None   # newest PolicyVersion message: context for the next episode
        self._finished: dict[str, Path] = {}  # episode id -> folder, for late labels
        self.completed: list[str] = []

    @property
    def recording(self) -> bool:
        return self._writer is not None

    @property
    def episode_id(self) -> str | None:
        return self._writer.episode_id if self._writer is not None else None

    # ---- inputs ---------------------------------------------------------------------------------
    def on_task(self, msg) -> None:
        if self._writer is not None:
            self._log("warning", f"task {msg.episode_id} arrived while {self._writer.episode_id} was recording; "
                                 "closing that one as aborted")
            self._finish(outcome="aborted", success=False)
        self._writer = EpisodeWriter(self.out_dir, msg.episode_id, {
            "robot": msg.robot or self.robot, "episode_id": msg.episode_id,
            "instruction": msg.instruction, "task_family": msg.task_family, "embodiment": msg.embodiment,
            "seed": msg.seed, "max_steps": msg.max_steps})
        self._policy_versions, self._reward_versions = [], []
        self.write("/task", msg)
        if self._latest_policy_version is not None:  # the model the robot was told to run, for the record
            self._writer.write(POLICY_VERSION_TOPIC, self._latest_policy_version, _stamp_ns(msg))

    def on_policy_version(self, msg) -> None:
        self._latest_policy_version = msg

    def on_image(self, camera: str, msg) -> None:
        if self._writer is not None:
            compressed = encode_image(image_msg_to_array(msg), msg.header.stamp, self.jpeg_quality,
                                      self.image_format)
            self._last_frame_ns = _stamp_ns(msg)
            self.write(f"/camera/{camera}/image_raw/compressed", compressed)

    def on_ground_truth(self, msg) -> None:
        """The simulator's success flag (std_msgs/Bool, no header), stamped with the newest frame's time: the
        sim publishes it right after that observation. Experiments score the success detector against it."""
        if self._writer is not None:
            self._writer.write(GROUND_TRUTH_TOPIC, msg, self._last_frame_ns)

    def on_action(self, msg) -> None:
        if self._writer is not None:
            _note(self._policy_versions, msg.policy_version)
            self.write("/action", msg)

    def on_reward(self, msg) -> None:
        if self._writer is not None:
            _note(self._reward_versions, msg.reward_model_version)
            self.write("/reward", msg)

    def on_episode(self, msg) -> None:
        if self._writer is None or msg.episode_id != self._writer.episode_id:
            self._maybe_late_label(msg)
            return
        self.write("/episode", msg)
        if msg.state in OUTCOMES:
            policy = ",".join(self._policy_versions) or msg.policy_version or (
                self._latest_policy_version.version if self._latest_policy_version is not None else "")
            self._finish(outcome=OUTCOMES[msg.state], success=msg.state == EpisodeStatus.STATE_SUCCEEDED,
                         steps=msg.steps, human_label=msg.human_label, policy_version=policy,
                         reward_model_version=",".join(self._reward_versions))

    def write(self, topic: str, msg) -> None:
        if self._writer is not None:
            self._writer.write(topic, msg, _stamp_ns(msg))

    def discard(self) -> None:
        """Drop the episode being recorded (shutdown mid-episode: an unfinished episode is not data)."""
        if self._writer is not None:
            self._log("warning", f"discarding unfinished episode {self._writer.episode_id}")
            self._writer.abort()
            self._writer = None

    # ---- internals ------------------------------------------------------------------------------
    def _finish(self, **outcome) -> None:
        writer, self._writer = self._writer, None
        if len(self._policy_versions) > 1:
            self._log("warning", f"episode {writer.episode_id} was acted by several policy versions "
                                 f"({', '.join(self._policy_versions)}); it will not count as on-policy")
        self._on_closing(writer.episode_id)
        path = writer.close(**outcome)
        self.completed.append(writer.episode_id)
        self._finished[writer.episode_id] = path
        while len(self._finished) > 64:  # labels come minutes after the end at most, not days
            self._finished.pop(next(iter(self._finished)))
        self._log("info", f"episode {writer.episode_id} saved: {path} ({outcome['outcome']})")
        self._on_finished(writer.episode_id, path)

    def _maybe_late_label(self, msg) -> None:
        path = self._finished.get(msg.episode_id)
        if path is None or msg.state not in OUTCOMES or msg.human_label == EpisodeStatus.LABEL_NONE:
            return
        if not path.is_dir():
            self._log("warning", f"human label {msg.human_label} for episode {msg.episode_id} came after the "
                                 "episode left the folder (uploaded); the learner keeps the detector's outcome")
            return
        with self._label_lock:
            if not self._on_labelled(msg.episode_id, msg.human_label):
                return
            set_metadata(path, human_label=msg.human_label)
        self._log("info", f"episode {msg.episode_id} labelled {msg.human_label} by a human")


def set_metadata(episode_dir: str | Path, **values) -> None:
    """Update keys of a finished episode's custom_data; crash-safe (temporary file, fsync, rename)."""
    path = Path(episode_dir) / METADATA_FILE
    document = yaml.safe_load(path.read_text())
    info = document["rosbag2_bagfile_information"]
    custom = info.get("custom_data") or {}
    custom.update({str(k): str(v) for k, v in values.items()})
    info["custom_data"] = custom
    temporary = path.with_name(f".{METADATA_FILE}.tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False))
    _fsync(temporary)
    os.replace(temporary, path)
    _fsync(path.parent)


def _note(seen: list[str], version: str) -> None:
    if version and version not in seen:
        seen.append(version)


def _stamp_ns(msg) -> int:
    return Time.from_msg(msg.header.stamp).nanoseconds
