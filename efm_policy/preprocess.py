"""Observation preprocessing shared by training and the robot runtime (numpy + OpenCV, no torch).

The policy's ONNX graph takes uint8 frames already fitted to the model's input size and normalises
them itself, so the only image processing outside the graph is :func:`fit_image`. The dataset
builder and :mod:`efm_policy.runtime` both call it: a frame seen on the robot is resized exactly
as the frames the model was trained on were.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np


class ObservationError(ValueError):
    """An observation the policy must not act on (wrong size or encoding, NaN proprio, missing camera)."""


def fit_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An HxWx3 uint8 RGB frame resized to ``size`` = (height, width) with area averaging."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ObservationError(f"expected an HxWx3 uint8 RGB image, got dtype {rgb.dtype} shape {rgb.shape}")
    height, width = size
    if rgb.shape[:2] == (height, width):
        return np.ascontiguousarray(rgb)
    # INTER_AREA averages the source pixels: no aliasing when shrinking camera frames.
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def stack_views(frames: Mapping[str, Sequence[np.ndarray]], cameras: Sequence[str], history: int,
                size: tuple[int, int]) -> np.ndarray:
    """The model's image input (views, height, width, 3) uint8: for each camera, its ``history`` newest
    frames oldest first; a camera with fewer frames so far repeats its oldest one (episode start)."""
    views = []
    for camera in cameras:
        recent = list(frames.get(camera, ()))[-history:]
        if not recent:
            raise ObservationError(f"no frame from camera {camera!r} (the model needs {list(cameras)})")
        recent = [recent[0]] * (history - len(recent)) + recent
        views.extend(fit_image(frame, size) for frame in recent)
    return np.stack(views)


def proprio_from_message(msg) -> np.ndarray:
    """The proprio vector of a ``joint_states`` (JointState: positions) or ``effector`` message
    (PointStamped: x, y; LanguageTable's effector moves in the table plane)."""
    if hasattr(msg, "position"):
        return np.asarray(msg.position, dtype=np.float32)
    if hasattr(msg, "point"):
        return np.array([msg.point.x, msg.point.y], dtype=np.float32)
    raise ObservationError(f"no proprio in a {type(msg).__name__} message (expected JointState or PointStamped)")


def check_proprio(values: Sequence[float], expected_dim: int) -> np.ndarray:
    """Proprio as float32, refusing a wrong length or a non-finite value (a sensor fault)."""
    proprio = np.asarray(values, dtype=np.float32).reshape(-1)
    if proprio.shape[0] != expected_dim:
        raise ObservationError(f"expected {expected_dim} proprio values, got {proprio.shape[0]}")
    if not np.all(np.isfinite(proprio)):
        raise ObservationError(f"proprio has non-finite values: {proprio.tolist()}")
    return proprio


def rgb8_image(msg, consumer: str = "the model") -> np.ndarray:
    """HxWx3 uint8 RGB of a sensor_msgs/Image; ValueError naming the problem for anything but consistent
    rgb8 (a bgr8 or mono8 frame would otherwise reach ``consumer`` as garbage)."""
    if msg.encoding != "rgb8":
        raise ValueError(f"encoding {msg.encoding!r}, {consumer} takes rgb8")
    height, width, step, size = int(msg.height), int(msg.width), int(msg.step), len(msg.data)
    if height < 1 or width < 1 or step != width * 3 or size != height * step:
        raise ValueError(f"inconsistent rgb8 image: {width}x{height}, step {step}, {size} bytes of data "
                         f"(expected step {width * 3} and {height * width * 3} bytes)")
    data = msg.data if isinstance(msg.data, np.ndarray) else np.frombuffer(bytes(msg.data), np.uint8)
    return np.asarray(data, np.uint8).reshape(height, width, 3)


@dataclass(frozen=True)
class Arrival:
    """The newest message of one observation input (a camera or the proprio), or why it was refused."""
    stamp_ns: int
    seq: int              # arrival number, all inputs counted together: which came before an episode began
    problem: str = ""


def not_synchronized(inputs: Iterable[tuple[str, Arrival]], stamp_ns: int, since_seq: int) -> list[tuple[str, Arrival]]:
    """The inputs that keep the observation stamped ``stamp_ns`` from being complete when a simulator stamps
    every input of one observation alike: stamped otherwise, or received before ``since_seq`` (a simulator
    stamps a new scene's first observation like the last frame before it)."""
    return [(name, seen) for name, seen in inputs if seen.stamp_ns != stamp_ns or seen.seq <= since_seq]
