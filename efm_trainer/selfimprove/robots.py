"""Simulated robots for a self-improvement run: one graph file and one ``efm up`` process per robot.

A process per robot, as on a real fleet: each has its own lock-step sim clock (``/clock`` is global
within a graph, so robots sharing one graph would share one clock), its own ONNX sessions and its own
spool, and uses another core when there is one. The graph is the one a user can start by hand
(``efm up robots/<name>/graph.yaml``) to see what a robot did.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .child import ChildProcess
from .settings import PRACTICE_FIRST_SEED, PRACTICE_SEED_STRIDE, SelfImproveSettings

PROPRIO_TOPICS = {"language_table": "effector", "aloha": "joint_states"}


def robot_names(count: int) -> list[str]:
    return [f"robot_{i + 1}" for i in range(count)]


def robot_graph(settings: SelfImproveSettings, name: str, index: int, model_dir: Path, learner_url: str,
                token_file: Path, robot_dir: Path, cameras: list[str]) -> dict:
    """The nodes of one practising robot, as a graph-file mapping."""
    proprio = PROPRIO_TOPICS.get(settings.env, "effector")
    return {
        "description": f"simulated {settings.env} robot {name} practising {settings.task or 'any task'} "
                       f"for efm self-improve (lock-step sim time)",
        "use_sim_time": True,
        "robots": {name: {"nodes": [
            {"executable": "sim", "parameters": {
                "env": settings.env, "task": settings.task, "driver": "topic", "reset_delay_s": 0.0,
                "cameras": list(cameras)}},
            {"executable": "policy", "parameters": {
                "model_dir": str(model_dir), "embodiment": settings.env, "proprio_topic": proprio,
                "temperature": settings.temperature, "greedy": False, "seed": index + 1}},
            {"executable": "reward", "parameters": {
                "model_dir": str(model_dir), "embodiment": settings.env, "proprio_topic": proprio,
                "success_threshold": float(settings.success_threshold),
                "success_streak": int(settings.success_streak)}},
            {"executable": "episode_manager", "parameters": {
                "embodiment": settings.env, "task_family": settings.task, "max_steps": settings.max_steps,
                "auto_reset": True, "auto_start": True,
                "first_seed": PRACTICE_FIRST_SEED + index * PRACTICE_SEED_STRIDE}},
            {"executable": "trainer_bridge", "parameters": {
                "learner_url": learner_url, "token_file": str(token_file),
                "spool_dir": str(robot_dir / "spool"), "models_dir": str(robot_dir / "models"),
                "model_dir": str(model_dir), "cameras": list(cameras), "proprio_topic": proprio,
                # no human labels in an unattended sim run: upload at once; follow new versions quickly
                "label_grace_s": 0.0, "poll_s": 2.0,
                # the simulator's truth travels with each episode, so experiments can score the detector
                "record_ground_truth": True}},
        ]}},
    }


class RobotProcess(ChildProcess):
    """``efm up graph.yaml`` for one robot; one ONNX Runtime thread per session, so robots share cores."""

    def __init__(self, name: str, graph_path: Path, log_path: Path) -> None:
        super().__init__(name, ["up", str(graph_path)], log_path,
                         env={"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "EFM_ORT_THREADS": "1",
                              "OMP_NUM_THREADS": "1"})
        self.graph_path = graph_path

    def stop(self, timeout_s: float = 20.0) -> None:
        """The nodes shut down cleanly: the bridge keeps what it has not uploaded in its spool."""
        super().stop(timeout_s)


def write_fleet(settings: SelfImproveSettings, model_dir: Path, learner_url: str, token_file: Path,
                cameras: list[str]) -> list[RobotProcess]:
    robots = []
    for index, name in enumerate(robot_names(settings.robots)):
        robot_dir = settings.out_dir / "robots" / name
        robot_dir.mkdir(parents=True, exist_ok=True)
        graph = robot_graph(settings, name, index, model_dir, learner_url, token_file, robot_dir, cameras)
        graph_path = robot_dir / "graph.yaml"
        graph_path.write_text(yaml.safe_dump(graph, sort_keys=False))
        robots.append(RobotProcess(name, graph_path, robot_dir / "log.txt"))
    return robots
