"""Closed-loop evaluation of an exported policy in simulation, scored by ground-truth success.

Scenes are reset and chunks executed by the sim node's own core (:class:`efm_sim.robot.SimRobot`), so
seed N here is the scene a robot in the graph gets for seed N, and a chunk plays out as it would there. Pick seeds the demos did not use (``efm demos`` starts at 1) to
evaluate on held-out scenes. This drives the simulator directly (no middleware) with the same
:class:`PolicyRuntime` the policy node runs, which makes 50 episodes take minutes, not tens of them.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from efm_sim.robot import SimRobot

from .runtime import PolicyRuntime

DEFAULT_FIRST_SEED = 1_000_001      # far from demo seeds (1, 2, ...)


@dataclass(frozen=True)
class EpisodeResult:
    seed: int
    instruction: str
    success: bool
    policy_steps: int
    mean_inference_ms: float


def run_episode(runtime: PolicyRuntime, robot: SimRobot, seed: int, task_family: str = "", greedy: bool = True,
                temperature: float = 1.0, max_policy_steps: int | None = None) -> EpisodeResult:
    env = robot.env
    task = robot.reset_scene(seed, task_family)
    robot.start_episode(f"eval-{seed}", task.instruction)
    observation = env.observe()
    cameras = runtime.config.cameras
    frames = {c: deque([observation.images[c]], maxlen=runtime.config.history) for c in cameras}
    action_rng = np.random.default_rng([seed, 2])
    limit = max_policy_steps or env.max_policy_steps
    inference = []
    for step in range(limit):
        sample = runtime.act(frames, observation.proprio, task.instruction, temperature=temperature,
                             greedy=greedy, rng=action_rng)
        inference.append(sample.inference_ms)
        problem = robot.accept_chunk(sample.values.ravel(), *sample.values.shape)
        if problem:
            raise ValueError(f"{runtime.version} cannot drive {env.name}: {problem}")
        for _ in range(env.chunk_size):
            robot.control_step()
        observation = env.observe()
        for camera in cameras:
            frames[camera].append(observation.images[camera])
        if env.is_success():
            return EpisodeResult(seed, task.instruction, True, step + 1, float(np.mean(inference)))
    return EpisodeResult(seed, task.instruction, False, limit, float(np.mean(inference)))


def evaluate_policy(model_dir: str, env_name: str, task_family: str = "", episodes: int = 50,
                    first_seed: int = DEFAULT_FIRST_SEED, greedy: bool = True, temperature: float = 1.0,
                    max_policy_steps: int | None = None, on_episode: Callable[[EpisodeResult], None] = lambda r: None,
                    log: Callable[[str], None] = print, workers: int = 1) -> list[EpisodeResult]:
    """Episodes on seeds ``first_seed..``, in seed order. ``workers`` > 1 runs them in that many processes,
    each with its own simulator and one ONNX Runtime thread: an episode depends only on its seed, so the
    results are the same as in one process, and the physics and rendering of one use the other cores."""
    if workers > 1 and episodes > 1:
        return _evaluate_in_processes(model_dir, env_name, task_family, episodes, first_seed, greedy, temperature,
                                      max_policy_steps, on_episode, workers)
    runtime = PolicyRuntime(model_dir, log=log)
    env = _open_env(model_dir, runtime.config, env_name)
    robot = SimRobot(env)
    results = []
    try:
        for seed in range(first_seed, first_seed + episodes):
            result = run_episode(runtime, robot, seed, task_family, greedy, temperature, max_policy_steps)
            results.append(result)
            on_episode(result)
    finally:
        env.close()
    return results


def _open_env(model_dir: str, config, env_name: str):
    """The simulator with the model's cameras; refuses a model made for another embodiment."""
    from efm_sim.registry import make_env

    env = make_env(env_name, cameras=list(config.cameras))
    if config.embodiment not in ("", env_name, env.name):
        env.close()
        raise ValueError(f"{model_dir} is a {config.embodiment!r} model; it cannot drive {env_name!r}")
    return env


def summarize(results: list[EpisodeResult]) -> dict:
    successes = [r for r in results if r.success]
    return {"episodes": len(results), "successes": len(successes),
            "success_rate": len(successes) / len(results) if results else 0.0,
            "mean_steps_successful": float(np.mean([r.policy_steps for r in successes])) if successes else None,
            "inference_ms_mean": float(np.mean([r.mean_inference_ms for r in results])) if results else None,
            "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


_worker: tuple | None = None        # (runtime, robot) of an evaluation worker process


def _start_worker(model_dir: str, env_name: str) -> None:
    import os

    os.environ.setdefault("EFM_ORT_THREADS", "1")
    global _worker
    runtime = PolicyRuntime(model_dir, log=lambda _m: None)
    _worker = (runtime, SimRobot(_open_env(model_dir, runtime.config, env_name)))


def _worker_episode(seed: int, task_family: str, greedy: bool, temperature: float,
                    max_policy_steps: int | None) -> EpisodeResult:
    runtime, robot = _worker
    return run_episode(runtime, robot, seed, task_family, greedy, temperature, max_policy_steps)


def _evaluate_in_processes(model_dir, env_name, task_family, episodes, first_seed, greedy, temperature,
                           max_policy_steps, on_episode, workers) -> list[EpisodeResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .manifest import read_manifest

    # a bad model directory or embodiment fails here, not in every worker
    _open_env(model_dir, read_manifest(model_dir).config, env_name).close()
    # spawn: the parent may hold ONNX Runtime and torch thread pools, which do not survive a fork
    with ProcessPoolExecutor(min(workers, episodes), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(model_dir, env_name)) as pool:
        futures = [pool.submit(_worker_episode, seed, task_family, greedy, temperature, max_policy_steps)
                   for seed in range(first_seed, first_seed + episodes)]
        results = []
        for future in as_completed(futures):
            results.append(future.result())
            on_episode(results[-1])
    return sorted(results, key=lambda r: r.seed)
