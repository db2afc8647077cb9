"""Tiny practice episodes for learner tests: what the trainer bridge records, written in milliseconds."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from efm_runtime import Time, get_message
from efm_trainer.episodes import EpisodeWriter, encode_image

Task = get_message("efm_msgs/msg/Task")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
StepReward = get_message("efm_msgs/msg/StepReward")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Point = get_message("geometry_msgs/msg/Point")
Header = get_message("std_msgs/msg/Header")

STEP_NS = 100_000_000   # 10 Hz


def write_practice_episode(out_dir: Path, episode_id: str, policy_version: str, tokens, rewards,
                           reward_model_version: str = "sft-0000", embodiment: str = "toy",
                           instruction: str = "push the red moon to the blue cube", camera: str = "top",
                           outcome: str = "timed_out", seed: int = 0, skip_topics=(), frame_size=(24, 32),
                           action_dim: int = 2, horizon: int = 1) -> Path:
    """One episode of ``len(tokens)`` actions; ``rewards[t]`` is published as StepReward step t+1, so
    action t is paid ``rewards[t]`` (drop the last one to leave the final action unscored)."""
    rng = np.random.default_rng(seed)
    writer = EpisodeWriter(out_dir, episode_id, {
        "robot": "robot_a", "episode_id": episode_id, "instruction": instruction, "task_family": "block2block",
        "embodiment": embodiment, "seed": seed, "max_steps": 50})

    def write(topic, msg, ns):
        if topic not in skip_topics:
            writer.write(topic, msg, ns)

    def header(ns):
        return Header(stamp=Time(ns).to_msg())

    write("/task", Task(header=header(1), robot="robot_a", episode_id=episode_id, instruction=instruction,
                        task_family="block2block", embodiment=embodiment, max_steps=50, seed=seed), 1)
    steps = len(tokens)
    for t in range(steps + 1):          # observation t; the last one only scores the last action
        ns = (t + 1) * STEP_NS
        frame = rng.integers(0, 256, (*frame_size, 3), dtype=np.uint8)
        write(f"/camera/{camera}/image_raw/compressed", encode_image(frame, header(ns).stamp), ns)
        write("/effector", PointStamped(header=header(ns), point=Point(x=0.3 + 0.01 * t, y=0.01 * t, z=0.0)), ns)
        if t == 0 or t - 1 < len(rewards):
            write("/reward", StepReward(header=header(ns), episode_id=episode_id, step=t, steps_to_go=10.0,
                                        reward=0.0 if t == 0 else float(rewards[t - 1]),
                                        reward_model_version=reward_model_version), ns)
        if t < steps:
            chunk = np.asarray(tokens[t], np.uint16).reshape(-1)
            write("/action", ActionChunk(header=header(ns), episode_id=episode_id, step=t, horizon=horizon,
                                         action_dim=action_dim, values=np.zeros(chunk.size, np.float32),
                                         tokens=chunk, log_prob=-1.0, policy_version=policy_version), ns)
    state = {"succeeded": EpisodeStatus.STATE_SUCCEEDED, "aborted": EpisodeStatus.STATE_ABORTED}.get(
        outcome, EpisodeStatus.STATE_TIMED_OUT)
    end = (steps + 2) * STEP_NS
    write("/episode", EpisodeStatus(header=header(end), robot="robot_a", episode_id=episode_id, state=state,
                                    detector_success=outcome == "succeeded", steps=steps,
                                    policy_version=policy_version), end)
    return writer.close(outcome=outcome, success=outcome == "succeeded", steps=steps, human_label=0)


def episode_tar(episode_dir: Path) -> bytes:
    """The upload body: an uncompressed tar of ``<episode_id>/...``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(episode_dir, arcname=episode_dir.name)
    return buffer.getvalue()


def tiny_stage1(root: Path):
    """A tiny Stage 1 run and its export (``run``, ``model``): what a learner starts from in tests."""
    from types import SimpleNamespace

    from efm_policy.export import export_model
    from tiny_model import tiny_checkpoint

    run = tiny_checkpoint(root / "run")
    export_model(run, root / "model", version="tiny-v1", text_encoder=False, log=lambda _: None)
    return SimpleNamespace(run=run, model=root / "model", root=root)
