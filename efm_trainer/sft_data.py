"""Stage 1 training samples from rosbag2/MCAP episodes (numpy; no torch).

Each action an episode recorded becomes one sample: the frames of every camera at that step (plus
the ``history - 1`` steps before it), the proprio, the instruction, the action chunk's tokens and the
steps that remained until the episode's successful end (hindsight relabelling: the goal is the
instruction the episode achieved). The observation after the last action adds one more sample with
zero steps to go and no action, so the steps-to-go head learns what "done" looks like, which the
Stage 2 success detector (d <= s) relies on.

Only successful episodes are used: like the paper, Stage 1 assumes every episode ends in success.
Frames are fitted to the model's input size once, with the same function the robot runtime uses.
"""
from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from efm_policy.preprocess import fit_image, proprio_from_message

from .episodes import COMPRESSED_SUFFIX, episode_paths, read_episode

NO_ACTION = -1


class DatasetError(ValueError):
    """No usable episode, or episodes that disagree (cameras, proprio, action shape)."""


@dataclass
class SFTData:
    frames: np.ndarray              # (F, H, W, 3) uint8: every frame once
    view_frames: np.ndarray         # (N, views) int: frame index of each view of each sample
    proprio: np.ndarray             # (N, P) float32
    instruction_ids: np.ndarray     # (N,) int index into ``instructions``
    actions: np.ndarray             # (N, horizon, action_dim) float32; zeros where there is no action
    has_action: np.ndarray          # (N,) bool: False for an episode's final observation
    steps_to_go: np.ndarray         # (N,) float32 policy steps left until the successful end
    episode_ids: np.ndarray         # (N,) int index into ``episodes``
    instructions: list[str]
    episodes: list[str]             # episode ids
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (episode, why)
    # [start, end) of each kept episode's frames in ``frames``: contiguous, and together every frame (a skipped or
    # half-read episode leaves none behind)
    frame_spans: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.proprio)

    def subset(self, episode_mask: np.ndarray) -> np.ndarray:
        """Sample indices whose episode is selected by a per-episode bool mask."""
        return np.flatnonzero(episode_mask[self.episode_ids])


def validation_episodes(episodes: Sequence[str], fraction: float) -> np.ndarray:
    """Per-episode bool mask of the held-out split, chosen by a hash of the episode id so the split
    never changes when episodes are added or the order of ``--data`` folders changes."""
    def unit(episode: str) -> float:
        return int(hashlib.sha256(episode.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    mask = np.array([unit(e) < fraction for e in episodes], dtype=bool)
    if fraction > 0 and not mask.any() and len(episodes) > 1:
        mask[-1] = True             # tiny datasets still get one validation episode
    return mask


def load_sft_data(dataset_dirs: Sequence[str | Path], cameras: Sequence[str], history: int,
                  image_size: tuple[int, int], progress: Callable[[Sequence], Sequence] = lambda it: it) -> SFTData:
    """Samples from every successful episode under ``dataset_dirs`` (each a dataset folder or one episode)."""
    paths = []
    for directory in map(Path, dataset_dirs):
        if not directory.is_dir():
            raise DatasetError(f"{directory}: no such dataset folder")
        paths.extend(episode_paths(directory))
    if not paths:
        raise DatasetError(f"no episodes in {', '.join(map(str, dataset_dirs))} (record some with `efm demos`)")

    builder = _Builder(list(cameras), history, tuple(image_size))
    for path in progress(paths):
        mark = builder.mark()
        try:
            builder.add(read_episode(path))
        except (ValueError, KeyError) as exc:
            builder.rollback(mark)      # a half-read episode leaves no frames or samples behind
            builder.skipped.append((path.name, str(exc)))
    return builder.finish()


class _Builder:
    def __init__(self, cameras: list[str], history: int, image_size: tuple[int, int]) -> None:
        self.cameras, self.history, self.image_size = cameras, history, image_size
        self.frames: list[np.ndarray] = []
        self.rows: dict[str, list] = {k: [] for k in ("views", "proprio", "instruction", "action", "has_action",
                                                      "steps_to_go", "episode")}
        self.instructions: dict[str, int] = {}
        self.episodes: list[str] = []
        self.frame_spans: list[tuple[int, int]] = []
        self.skipped: list[tuple[str, str]] = []
        self.action_shape: tuple[int, int] | None = None
        self.proprio_topic: str | None = None

    def mark(self) -> tuple[int, int, int]:
        return len(self.frames), len(self.episodes), len(self.rows["episode"])

    def rollback(self, mark: tuple[int, int, int]) -> None:
        frames, episodes, samples = mark
        del self.frames[frames:], self.episodes[episodes:], self.frame_spans[episodes:]
        for column in self.rows.values():
            del column[samples:]

    def add(self, episode) -> None:
        first_frame = len(self.frames)
        name = episode.metadata.get("episode_id") or episode.path.name
        if episode.metadata.get("success") != "True":
            self.skipped.append((name, f"outcome {episode.metadata.get('outcome', 'unknown')}: Stage 1 trains on successes"))
            return
        actions = episode.topic("/action")
        if not actions:
            raise DatasetError("no /action messages")
        proprio_topic = next((t for t in ("/joint_states", "/effector") if episode.topic(t)), None)
        if proprio_topic is None:
            raise DatasetError("no /joint_states or /effector messages")
        if self.proprio_topic not in (None, proprio_topic):
            raise DatasetError(f"proprio on {proprio_topic}, other episodes have {self.proprio_topic}")
        self.proprio_topic = proprio_topic
        shape = (int(actions[0][1].horizon), int(actions[0][1].action_dim))
        if self.action_shape not in (None, shape):
            raise DatasetError(f"action chunks of {shape[0]}x{shape[1]}, other episodes have "
                               f"{self.action_shape[0]}x{self.action_shape[1]}")
        self.action_shape = shape

        camera_frames = {}      # camera -> (stamps, global frame indices)
        for camera in self.cameras:
            messages = episode.topic(f"/camera/{camera}/image_raw{COMPRESSED_SUFFIX}")
            if not messages:
                raise DatasetError(f"no frames from camera {camera!r} (episode has {episode.cameras})")
            stamps, indices = [], []
            for stamp, rgb in episode.images(camera):
                stamps.append(stamp)
                indices.append(len(self.frames))
                self.frames.append(fit_image(rgb, self.image_size))
            camera_frames[camera] = (stamps, indices)
        proprio_msgs = episode.topic(proprio_topic)
        proprio_stamps = [s for s, _ in proprio_msgs]

        instruction = episode.metadata.get("instruction", "")
        instruction_id = self.instructions.setdefault(instruction, len(self.instructions))
        episode_id = len(self.episodes)
        self.episodes.append(name)
        # Observation times: one per action, then the final observation (after the last action).
        final_stamp = max(stamps[-1] for stamps, _ in camera_frames.values())
        times = [(stamp, msg) for stamp, msg in actions] + [(final_stamp, None)]
        total = len(actions)
        for step, (stamp, msg) in enumerate(times):
            views = []
            for camera in self.cameras:
                stamps, indices = camera_frames[camera]
                newest = bisect.bisect_right(stamps, stamp) - 1
                if newest < 0:
                    raise DatasetError(f"step {step}: no frame from {camera!r} at or before the action")
                views.extend(indices[max(newest - back, 0)] for back in range(self.history - 1, -1, -1))
            newest_proprio = bisect.bisect_right(proprio_stamps, stamp) - 1
            if newest_proprio < 0:
                raise DatasetError(f"step {step}: no proprio at or before the action")
            self.rows["views"].append(views)
            self.rows["proprio"].append(proprio_from_message(proprio_msgs[newest_proprio][1]))
            self.rows["instruction"].append(instruction_id)
            if msg is None:
                self.rows["action"].append(np.zeros(shape, np.float32))
            else:
                self.rows["action"].append(np.asarray(msg.values, np.float32).reshape(shape))
            self.rows["has_action"].append(msg is not None)
            self.rows["steps_to_go"].append(float(total - step))
            self.rows["episode"].append(episode_id)
        self.frame_spans.append((first_frame, len(self.frames)))

    def finish(self) -> SFTData:
        if not self.episodes:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.skipped[:5])
            raise DatasetError(f"no usable episode ({len(self.skipped)} skipped: {reasons})")
        proprio = self.rows["proprio"]
        if len({len(p) for p in proprio}) != 1:
            raise DatasetError(f"proprio lengths differ between episodes: {sorted({len(p) for p in proprio})}")
        return SFTData(
            frames=np.stack(self.frames), view_frames=np.asarray(self.rows["views"], np.int64),
            proprio=np.stack(proprio).astype(np.float32),
            instruction_ids=np.asarray(self.rows["instruction"], np.int64),
            actions=np.stack(self.rows["action"]), has_action=np.asarray(self.rows["has_action"], bool),
            steps_to_go=np.asarray(self.rows["steps_to_go"], np.float32),
            episode_ids=np.asarray(self.rows["episode"], np.int64),
            instructions=list(self.instructions), episodes=self.episodes, skipped=self.skipped,
            frame_spans=self.frame_spans)
