"""A simulated robot as the hardware driver sees it: scene resets, episodes and action chunks.

Pure Python over a ``SimEnv`` (no middleware), so the sim node stays a thin shell. A chunk is
checked before anything moves: a wrong length or a non-finite value is refused with a message and
the robot holds still, as a real driver must.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .env import Oracle, SimEnv, TaskSpec


@dataclass
class EpisodeState:
    episode_id: str
    instruction: str
    policy_steps: int = 0


class SimRobot:
    def __init__(self, env: SimEnv, oracle: Oracle | None = None, seed: int = 0) -> None:
        self.env, self.oracle = env, oracle
        self.next_seed = seed
        self.episode: EpisodeState | None = None
        self._actions: deque[np.ndarray] = deque()
        self.control_period_ns = int(round(1e9 / env.control_hz))
        self.sim_time_ns = 0  # monotonic across resets, so /clock never jumps back
        self.env.reset(seed)

    # ---- scene and episodes -----------------------------------------------------------------
    def reset_scene(self, seed: int = 0, task_family: str = "") -> TaskSpec:
        """New scene (seed 0 = next seed of this robot) prepared for a task of ``task_family``."""
        if seed == 0:
            self.next_seed += 1
            seed = self.next_seed
        rng = np.random.default_rng(seed)
        task = self.env.sample_task(rng, task_family or None)
        self.env.reset(seed, task)
        if self.oracle is not None:  # its noise too follows the scene's seed, not the episode order
            self.oracle.rng = np.random.default_rng([seed, 1])
        self._actions.clear()
        self.episode = None
        return task

    def start_episode(self, episode_id: str, instruction: str) -> str | None:
        """Begin an episode on the current scene; a warning text if the instruction does not match it."""
        self.episode = EpisodeState(episode_id, instruction)
        self._actions.clear()
        if self.oracle is not None:
            self.oracle.reset()
        if instruction and instruction != self.env.task.instruction:
            return (f"task '{instruction}' does not match the scene, which was prepared for "
                    f"'{self.env.task.instruction}'; call reset_scene first")
        return None

    def end_episode(self, episode_id: str) -> None:
        if self.episode is not None and self.episode.episode_id == episode_id:
            self.episode = None
            self._actions.clear()

    # ---- actions -----------------------------------------------------------------------------
    def accept_chunk(self, values, horizon: int, action_dim: int) -> str | None:
        """Queue a chunk for execution; an error text (and nothing queued) when it is malformed."""
        values = np.asarray(values, dtype=np.float64)
        if action_dim != self.env.action_dim:
            return f"action_dim {action_dim} but {self.env.name} takes {self.env.action_dim}"
        if horizon < 1 or values.size != horizon * action_dim:
            return f"{values.size} values for horizon {horizon} x action_dim {action_dim}"
        if not np.all(np.isfinite(values)):
            return "non-finite values (NaN or inf) in the action chunk"
        self._actions.clear()  # a new chunk replaces what is left of the previous one
        self._actions.extend(values.reshape(horizon, action_dim))
        return None

    def oracle_chunk(self) -> np.ndarray:
        chunk = np.asarray(self.oracle.act(), dtype=np.float64).reshape(self.env.chunk_size, self.env.action_dim)
        self.accept_chunk(chunk.ravel(), *chunk.shape)
        return chunk

    def control_step(self) -> None:
        """Execute the next queued action, or hold still when none is left."""
        action = self._actions.popleft() if self._actions else self.env.hold_action()
        self.env.step(action)
        self.sim_time_ns += self.control_period_ns

    def idle_policy_step(self) -> None:
        """Let one policy period pass without physics: in lock-step the world waits between episodes,
        so how long an episode waited (wall-clock dependent) cannot change how it plays out."""
        self.sim_time_ns += self.control_period_ns * self.env.chunk_size

    def count_policy_step(self) -> None:
        if self.episode is not None:
            self.episode.policy_steps += 1
