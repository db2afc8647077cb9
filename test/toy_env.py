"""A tiny environment for fast tests of the sim node and recorder: a point that must reach a goal.

No MuJoCo: a 2-D point mass, a 24x32 "camera" with the point drawn in red and the goal in green,
LanguageTable-like (10 Hz, delta actions, chunk 1) or Aloha-like (50 Hz, chunks of 5) timing.
"""
from __future__ import annotations

import numpy as np

from efm_sim.env import Observation, Oracle, SimEnv, TaskSpec
from efm_sim.registry import register_env


class ToyEnv(SimEnv):
    name = "toy"
    action_dim = 2
    camera_names = ("top",)
    image_size = {"top": (24, 32)}
    proprio_names = ("x", "y")
    max_policy_steps = 30
    task_names = ("reach",)

    def __init__(self, control_hz: float = 10.0, chunk_size: int = 1) -> None:
        self.control_hz, self.chunk_size = control_hz, chunk_size
        self._pos = np.zeros(2)
        self._task = TaskSpec("reach the goal", "reach", {"goal": [0.5, 0.5]})
        self._steps = 0

    def sample_task(self, rng, task_name=None):
        if task_name not in (None, "reach"):
            raise ValueError(f"unknown task {task_name!r}; valid: reach")
        goal = rng.uniform(0.2, 0.8, size=2).round(3).tolist()
        return TaskSpec(f"reach the goal at {goal[0]:.2f} {goal[1]:.2f}", "reach", {"goal": goal})

    def reset(self, seed, task=None):
        rng = np.random.default_rng(seed)
        self._task = task or self.sample_task(rng)
        self._pos = np.zeros(2)
        self._steps = 0
        return self.observe()

    def step(self, action):
        action = np.asarray(action, dtype=float)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"bad action {action!r}")
        self._pos = np.clip(self._pos + np.clip(action, -0.1, 0.1), 0.0, 1.0)
        self._steps += 1

    def observe(self, render=True):
        images = {}
        if render:
            frame = np.zeros((24, 32, 3), np.uint8)
            gx, gy = self._task.params["goal"]
            frame[int(gy * 23), int(gx * 31)] = (0, 255, 0)
            frame[int(self._pos[1] * 23), int(self._pos[0] * 31)] = (255, 0, 0)
            images["top"] = frame
        return Observation(images, self._pos.copy())

    def is_success(self):
        return bool(np.linalg.norm(self._pos - np.asarray(self._task.params["goal"])) < 0.05)


class ToyOracle(Oracle):
    def reset(self):
        pass

    def act(self):
        goal = np.asarray(self.env.task.params["goal"])
        pos = self.env.observe(render=False).proprio
        step = np.clip(goal - pos, -0.1, 0.1) + self.noise * self.rng.normal(0, 0.05, 2)
        return np.tile(step, (self.env.chunk_size, 1))


def register(control_hz: float = 10.0, chunk_size: int = 1) -> None:
    register_env("toy", lambda **kw: ToyEnv(control_hz, chunk_size, **kw),
                 lambda env, noise=0.0, seed=0: ToyOracle(env, noise, seed))
