"""Environments and oracles by name, so nodes and commands take ``env: language_table`` from YAML."""
from __future__ import annotations

import importlib
import inspect
from typing import Callable

from efm_runtime.errors import EfmUserError, did_you_mean

from .env import Oracle, SimEnv

# name -> ("module:EnvClass", "module:oracle factory taking (env, noise, seed)")
_BUILTIN = {
    "language_table": ("efm_sim.language_table.env:LanguageTableEnv",
                       "efm_sim.language_table.oracle:LanguageTableOracle"),
    "aloha": ("efm_sim.aloha.env:AlohaEnv", "efm_sim.aloha.scripted:make_aloha_oracle"),
}
_extra: dict[str, tuple[Callable[..., SimEnv], Callable[..., Oracle]]] = {}


def register_env(name: str, env_factory: Callable[..., SimEnv], oracle_factory: Callable[..., Oracle]) -> None:
    """Add an environment (tests register a tiny one; users may add their own)."""
    _extra[name] = (env_factory, oracle_factory)


def env_names() -> list[str]:
    return sorted({*_BUILTIN, *_extra})


def _load(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _factories(name: str):
    if name in _extra:
        return _extra[name]
    if name not in _BUILTIN:
        raise EfmUserError(f"unknown environment '{name}'" + did_you_mean(name, env_names()))
    env_target, oracle_target = _BUILTIN[name]
    return _load(env_target), _load(oracle_target)


def make_env(name: str, cameras: list[str] | tuple[str, ...] | None = None, **options) -> SimEnv:
    """An environment; ``cameras`` picks among the ones it offers (all of its defaults when empty)."""
    factory = _factories(name)[0]
    takes_cameras = "cameras" in inspect.signature(factory).parameters
    try:
        env = factory(cameras=tuple(cameras), **options) if cameras and takes_cameras else factory(**options)
    except ValueError as exc:  # the environment's own check, e.g. of camera or block-set names
        raise EfmUserError(f"environment '{name}': {exc}") from None
    unknown = [c for c in cameras or () if c not in env.camera_names]
    if unknown:
        env.close()
        raise EfmUserError(f"environment '{name}' has no camera '{unknown[0]}'"
                           + did_you_mean(unknown[0], env.camera_names))
    return env


def make_oracle(env: SimEnv, noise: float = 0.0, seed: int = 0) -> Oracle:
    if not 0.0 <= noise <= 1.0:
        raise EfmUserError(f"oracle noise must be within [0, 1], got {noise}")
    return _factories(env.name)[1](env, noise=noise, seed=seed)


def check_task_name(env: SimEnv, task_name: str | None) -> None:
    if task_name and task_name not in env.task_names:
        raise EfmUserError(f"unknown task '{task_name}' for environment '{env.name}'"
                           + did_you_mean(task_name, env.task_names))
