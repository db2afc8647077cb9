"""The contract between simulated environments, their scripted oracles and the sim node.

An environment steps at its own control rate (LanguageTable 10 Hz, Aloha 50 Hz); the policy runs
at 10 Hz and sends chunks of ``chunk_size`` actions, each executed for one control step. The sim
node and ``efm demos`` only ever use what is declared here, so both environments look the same to
them, and a new environment needs nothing else.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TaskSpec:
    """One episode's goal: the instruction a human would type and what it means to the simulator."""
    instruction: str                  # e.g. "push the red moon to the blue cube"
    family: str                       # e.g. "block2block", "transfer_cube"
    params: dict[str, Any] = field(default_factory=dict)  # e.g. {"block": "red_moon", "target": "blue_cube"}


@dataclass
class Observation:
    images: dict[str, np.ndarray]     # camera name -> H x W x 3 uint8 RGB
    proprio: np.ndarray               # float64; names in SimEnv.proprio_names


class SimEnv(abc.ABC):
    name: str                         # "language_table" | "aloha"
    control_hz: float                 # rate of step()
    policy_hz: float = 10.0           # rate of the policy that drives it
    action_dim: int                   # values per control step
    chunk_size: int                   # control steps per policy step (control_hz / policy_hz)
    camera_names: tuple[str, ...]
    image_size: dict[str, tuple[int, int]]   # camera -> (height, width)
    proprio_names: tuple[str, ...]    # LanguageTable: ("x", "y"); Aloha: the 14 joint names
    proprio_topic: str = "joint_states"  # sensor_msgs/JointState; "effector": geometry_msgs/PointStamped x, y
    max_policy_steps: int             # episode limit in policy steps (LanguageTable 200)
    task_names: tuple[str, ...]       # valid values of `task` for reset/sample_task

    @abc.abstractmethod
    def sample_task(self, rng: np.random.Generator, task_name: str | None = None) -> TaskSpec:
        """A random task (of ``task_name``'s family when given); ValueError for an unknown name."""

    @abc.abstractmethod
    def reset(self, seed: int, task: TaskSpec | None = None) -> Observation:
        """New scene, deterministic for ``seed``; samples a task with the same seed when ``task`` is None."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> None:
        """Advance one control step; ValueError (and no motion) for a wrong shape or non-finite action."""

    @abc.abstractmethod
    def observe(self, render: bool = True) -> Observation:
        """Current proprio, and camera images when ``render`` (empty dict otherwise)."""

    @abc.abstractmethod
    def is_success(self) -> bool:
        """Ground truth: has the current task been achieved?"""

    # Subclasses set _task in reset() and count control steps in _steps; task and time_s derive from them.
    _task: TaskSpec | None = None
    _steps: int = 0

    @property
    def task(self) -> TaskSpec:
        """The current episode's task."""
        if self._task is None:
            raise RuntimeError("call reset() first")
        return self._task

    @property
    def time_s(self) -> float:
        """Simulated seconds since reset."""
        return self._steps / self.control_hz

    def hold_action(self) -> np.ndarray:
        """The action that keeps the robot still (delta envs: zeros; joint-position envs override)."""
        return np.zeros(self.action_dim)

    def close(self) -> None:
        """Release renderers (call before exit: EGL contexts complain when garbage-collected late)."""


class Oracle(abc.ABC):
    """A scripted policy with privileged access to the simulator state."""

    def __init__(self, env: SimEnv, noise: float = 0.0, seed: int = 0) -> None:
        self.env, self.noise = env, noise
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def reset(self) -> None:
        """Called after env.reset(); plan for env.task."""

    @abc.abstractmethod
    def act(self) -> np.ndarray:
        """The next chunk: array of shape (env.chunk_size, env.action_dim)."""
