"""One practice episode (a robot's Stage 2 episode) read into the arrays REINFORCE trains on (numpy).

A practice episode is what ``efm_trainer.recorder_node`` (or the trainer bridge) records: ``/task``,
``/action`` (ActionChunk: tokens, log_prob, policy_version, step), ``/reward`` (StepReward),
``/episode``, ``/camera/<cam>/image_raw/compressed`` and ``/effector`` or ``/joint_states``, with the
robot, task and outcome in the bag's metadata. Each action becomes one sample: the frames of every
camera as the policy saw them (the ``history`` newest at the action's stamp, fitted with the
function the robot runtime uses; an episode's first frames repeat, as the policy loop does), the
proprio, the recorded tokens and the reward that paid the action (see :mod:`efm_trainer.reinforce`).
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from efm_policy.preprocess import fit_image, proprio_from_message

from .episodes import COMPRESSED_SUFFIX, read_episode
from .reinforce import AlignmentError, align_rewards

PROPRIO_TOPICS = ("/joint_states", "/effector")
LABELS = {"0": "none", "1": "success", "2": "failure"}


class PracticeDataError(ValueError):
    """A practice episode that cannot be trained on as recorded: missing topics, actions without rewards."""


@dataclass
class PracticeEpisode:
    episode_id: str
    robot: str
    instruction: str
    embodiment: str
    outcome: str                    # succeeded, failed, timed_out, aborted, estopped (the recorder's words)
    detector_success: bool          # the reward node's success detector fired
    human_label: str                # none, success, failure
    policy_versions: list[str]      # distinct ActionChunk.policy_version, in order of first use
    reward_model_versions: list[str]
    action_shape: tuple[int, int]   # (horizon, action_dim)
    frames: np.ndarray              # (F, H, W, 3) uint8, every frame once, fitted to the model's size
    view_frames: np.ndarray         # (T, views) int: frame index of each view (camera-major, oldest first)
    proprio: np.ndarray             # (T, P) float32
    tokens: np.ndarray              # (T, horizon * action_dim) int64, as the policy sampled them
    log_probs: np.ndarray           # (T,) float32 the policy's recorded log pi (at its sampling temperature)
    rewards: np.ndarray             # (T,) float32, reward of each action
    dropped_last_action: bool = False   # its reward was never scored (episode ended first)
    metadata: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.rewards)

    @property
    def policy_version(self) -> str:
        return self.policy_versions[0] if len(self.policy_versions) == 1 else ""


def read_practice_episode(path: str | Path, cameras: Sequence[str], history: int,
                          image_size: tuple[int, int]) -> PracticeEpisode:
    """Read one episode folder; raises PracticeDataError naming the episode and what is wrong."""
    path = Path(path)
    try:
        episode = read_episode(path)
    except ValueError as exc:
        raise PracticeDataError(str(exc)) from None
    try:
        return _build(episode, list(cameras), history, tuple(image_size))
    except (PracticeDataError, AlignmentError) as exc:
        raise PracticeDataError(f"{path.name}: {exc}") from None


def _build(episode, cameras: list[str], history: int, image_size: tuple[int, int]) -> PracticeEpisode:
    meta = episode.metadata
    required = ["/task", "/action", "/reward"] + [f"/camera/{c}/image_raw{COMPRESSED_SUFFIX}" for c in cameras]
    missing = [t for t in required if not episode.topic(t)]
    if missing:
        raise PracticeDataError(f"no messages on {', '.join(missing)} (the episode has "
                                f"{', '.join(sorted(episode.messages)) or 'no topics'}); record the whole "
                                "episode with the trainer bridge")
    proprio_topic = next((t for t in PROPRIO_TOPICS if episode.topic(t)), None)
    if proprio_topic is None:
        raise PracticeDataError(f"no proprio: neither of {', '.join(PROPRIO_TOPICS)} has messages")

    actions = sorted(episode.topic("/action"), key=lambda item: item[1].step)
    first = actions[0][1]
    shape = (int(first.horizon), int(first.action_dim))
    for _, msg in actions:
        if (int(msg.horizon), int(msg.action_dim)) != shape or len(msg.tokens) != shape[0] * shape[1]:
            raise PracticeDataError(f"action step {msg.step}: {len(msg.tokens)} tokens for a "
                                    f"{msg.horizon}x{msg.action_dim} chunk; every chunk must be {shape[0]}x{shape[1]}")
    rewards = {int(msg.step): float(msg.reward) for _, msg in episode.topic("/reward")}
    aligned = align_rewards([msg.step for _, msg in actions], rewards)
    dropped = len(aligned) < len(actions)
    actions = actions[:len(aligned)]
    if not actions:
        raise PracticeDataError("no action was followed by a scored observation: nothing to train on")

    camera_frames: dict[str, tuple[list[int], list[int]]] = {}
    frames: list[np.ndarray] = []
    for camera in cameras:
        stamps, indices = [], []
        for stamp, rgb in episode.images(camera):
            stamps.append(stamp)
            indices.append(len(frames))
            frames.append(fit_image(rgb, image_size))
        camera_frames[camera] = (stamps, indices)
    proprio_msgs = episode.topic(proprio_topic)
    proprio_stamps = [s for s, _ in proprio_msgs]

    views, proprio = [], []
    for stamp, msg in actions:
        row = []
        for camera in cameras:
            stamps, indices = camera_frames[camera]
            newest = bisect.bisect_right(stamps, stamp) - 1
            if newest < 0:
                raise PracticeDataError(f"action step {msg.step}: no frame from {camera!r} at or before it")
            row.extend(indices[max(newest - back, 0)] for back in range(history - 1, -1, -1))
        newest_proprio = bisect.bisect_right(proprio_stamps, stamp) - 1
        if newest_proprio < 0:
            raise PracticeDataError(f"action step {msg.step}: no {proprio_topic} message at or before it")
        views.append(row)
        proprio.append(proprio_from_message(proprio_msgs[newest_proprio][1]))

    reward_versions = list(dict.fromkeys(str(m.reward_model_version) for _, m in episode.topic("/reward")))
    task = episode.topic("/task")[0][1]
    statuses = episode.topic("/episode")
    status = statuses[-1][1] if statuses else None      # the latest: a human label re-publishes it
    return PracticeEpisode(
        episode_id=meta.get("episode_id") or str(task.episode_id) or episode.path.name,
        robot=meta.get("robot", "") or str(task.robot), instruction=meta.get("instruction", str(task.instruction)),
        embodiment=meta.get("embodiment", "") or str(task.embodiment),
        outcome=meta.get("outcome", "unknown"),
        detector_success=bool(status.detector_success) if status else meta.get("success") == "True",
        # a label given after the end is only in metadata.yaml (the contract); else the latest status
        human_label=LABELS.get(meta.get("human_label", "0") if meta.get("human_label", "0") != "0"
                               else str(status.human_label) if status else "0", "none"),
        policy_versions=list(dict.fromkeys(str(m.policy_version) for _, m in actions)),
        reward_model_versions=reward_versions, action_shape=shape,
        frames=np.stack(frames), view_frames=np.asarray(views, np.int64),
        proprio=np.stack(proprio).astype(np.float32),
        tokens=np.stack([np.asarray(m.tokens, np.int64) for _, m in actions]),
        log_probs=np.array([m.log_prob for _, m in actions], np.float32), rewards=aligned,
        dropped_last_action=dropped, metadata=dict(meta))
