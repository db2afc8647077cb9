"""Demo datasets: the scripted oracle drives a simulated robot through the hardware topics while the
episode recorder writes one rosbag2/MCAP episode per seed.

Per worker, one embedded graph: ``sim`` (driver=oracle, lock-step sim time), ``episode_recorder`` and
``demo_director`` (this module), which for each seed resets the scene, announces the task, and ends
the episode on ground-truth success or at the step limit. Episodes are named by env, task and seed, so
re-running skips finished ones; a killed run leaves only ``.partial`` folders, removed on the next run.
"""
from __future__ import annotations

import multiprocessing
import queue
from dataclasses import dataclass, replace
from pathlib import Path

from efm_runtime import COMMANDS, LATCHED, Node, NodeOptions, Time, build_node, get_message, get_service
from efm_runtime.embedded import EmbeddedContext
from efm_runtime.errors import EfmUserError

Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
Header = get_message("std_msgs/msg/Header")
String = get_message("std_msgs/msg/String")
Bool = get_message("std_msgs/msg/Bool")
Clock = get_message("rosgraph_msgs/msg/Clock")
ResetScene = get_service("efm_msgs/srv/ResetScene")


def episode_id(env: str, task: str, seed: int) -> str:
    return f"{env}-{task or 'any'}-{seed:06d}"


@dataclass(frozen=True)
class DemoJob:
    env: str
    task: str
    seeds: tuple[int, ...]
    out_dir: str
    noise: float = 0.0
    max_steps: int = 0  # 0 = the environment's limit


class DemoDirector(Node):
    """Runs one episode per seed: reset scene -> task -> end on ground-truth success or step limit."""

    default_name = "demo_director"

    def __init__(self, options: NodeOptions | None = None, job: DemoJob | None = None, on_episode=None) -> None:
        super().__init__(self.default_name, options)
        self.job, self._on_episode = job, on_episode
        self._seeds = list(job.seeds)
        self._reset = self.create_client(ResetScene, "reset_scene")
        self._task_pub = self.create_publisher(Task, "task", COMMANDS)
        self._status_pub = self.create_publisher(EpisodeStatus, "episode", COMMANDS)
        self.create_subscription(String, "scene_ready", self._on_scene_ready, LATCHED)
        self.create_subscription(Bool, "sim/ground_truth_success", self._on_truth, COMMANDS)
        self.create_subscription(Clock, "/clock", self._on_clock, COMMANDS)
        self._current: dict | None = None
        self._ready_instruction: str | None = None
        self._sim_ns = 0
        self.done = False
        self.failed: str | None = None
        self.create_wall_timer(0.01, self._start_next_if_idle)

    def _on_clock(self, msg) -> None:
        self._sim_ns = Time.from_msg(msg.clock).nanoseconds

    def _start_next_if_idle(self) -> None:
        if self._current is not None or self.done:
            return
        if not self._seeds:
            self.done = True
            return
        seed = self._seeds.pop(0)
        # steps counts policy steps: the first ground-truth reading belongs to the episode's first frame
        self._current = {"seed": seed, "id": episode_id(self.job.env, self.job.task, seed), "steps": -1,
                         "instruction": None, "started": False}
        future = self._reset.call_async(ResetScene.Request(seed=seed, task_family=self.job.task))
        future.add_done_callback(self._on_reset_answer)

    def _on_reset_answer(self, future) -> None:
        response = future.result()
        if not response.success:
            self.failed = f"scene reset for seed {self._current['seed']} refused: {response.message}"
            self.done = True
            return
        self._current["instruction"] = response.instruction
        self._current["family"] = response.task_family
        self._start_if_ready()

    def _on_scene_ready(self, msg) -> None:
        self._ready_instruction = msg.data
        self._start_if_ready()

    def _start_if_ready(self) -> None:
        """The reset answer and scene_ready may arrive in either order; start once both are in."""
        current = self._current
        if current is None or current["started"] or current["instruction"] is None \
                or current["instruction"] != self._ready_instruction:
            return
        current["started"] = True
        self._ready_instruction = None
        self._task_pub.publish(Task(
            header=Header(stamp=Time(self._sim_ns).to_msg()), robot=self.get_namespace().strip("/"),
            episode_id=current["id"], instruction=current["instruction"], task_family=current["family"],
            embodiment=self.job.env, max_steps=self.job.max_steps, seed=current["seed"]))

    def _on_truth(self, msg) -> None:
        current = self._current
        if current is None or not current["started"]:
            return
        current["steps"] += 1
        if msg.data or current["steps"] >= self.job.max_steps:
            state = EpisodeStatus.STATE_SUCCEEDED if msg.data else EpisodeStatus.STATE_TIMED_OUT
            self._status_pub.publish(EpisodeStatus(
                header=Header(stamp=Time(self._sim_ns).to_msg()), robot=self.get_namespace().strip("/"),
                episode_id=current["id"], instruction=current["instruction"], state=state,
                detector_success=bool(msg.data), steps=current["steps"], policy_version="oracle"))
            self._current = None
            if self._on_episode is not None:
                self._on_episode(current["id"], bool(msg.data), current["steps"])


def run_demo_job(job: DemoJob, on_episode=None) -> None:
    """Record ``job.seeds`` in this process (one embedded graph)."""
    from efm_trainer.recorder_node import EpisodeRecorder

    from .node import SimNode

    context = EmbeddedContext()
    ns = "/demo"
    try:
        sim = build_node(SimNode, NodeOptions(namespace=ns, context=context, parameters={
            "env": job.env, "task": job.task, "driver": "oracle", "oracle_noise": job.noise,
            "use_sim_time": True}))
        recorder = build_node(EpisodeRecorder, NodeOptions(namespace=ns, context=context, parameters={
            "out_dir": job.out_dir, "cameras": list(sim.env.camera_names),
            "proprio_topic": sim.env.proprio_topic, "use_sim_time": True}))
        job = replace(job, max_steps=job.max_steps or sim.env.max_policy_steps)
        director = DemoDirector(NodeOptions(namespace=ns, context=context, parameters={"use_sim_time": True}),
                                job=job, on_episode=on_episode)
        # done only when the recorder has also saved the last episode the director ended
        context.spin_until(lambda: (director.done and not recorder.recording) or bool(context.callback_errors))
        if director.failed:
            raise EfmUserError(director.failed)
        if context.callback_errors:
            error = context.callback_errors[0]
            raise RuntimeError(f"demo recording failed in {error.node}: {error.callback}: {error.error}")
    finally:
        context.shutdown()


def _worker(job: DemoJob, results: "multiprocessing.Queue") -> None:
    try:
        run_demo_job(job, on_episode=lambda eid, ok, steps: results.put(("episode", eid, ok, steps)))
        results.put(("done", None, None, None))
    except BaseException as exc:  # report to the parent instead of dying silently
        results.put(("error", f"{type(exc).__name__}: {exc}", None, None))


def pending_seeds(env: str, task: str, seeds: range, out_dir: str | Path) -> list[int]:
    """Seeds whose episode is not yet complete in ``out_dir`` (resuming skips the rest)."""
    out = Path(out_dir)
    return [s for s in seeds if not (out / episode_id(env, task, s) / "metadata.yaml").is_file()]


def record_demos(env: str, task: str, episodes: int, out_dir: str, noise: float = 0.0, workers: int = 1,
                 first_seed: int = 1, progress=None) -> dict:
    """Record ``episodes`` demos (seeds ``first_seed..``), skipping finished ones; returns counts."""
    todo = pending_seeds(env, task, range(first_seed, first_seed + episodes), out_dir)
    summary = {"requested": episodes, "skipped": episodes - len(todo), "recorded": 0, "succeeded": 0}
    if not todo:
        return summary
    workers = max(1, min(workers, len(todo)))
    jobs = [DemoJob(env, task, tuple(todo[i::workers]), str(out_dir), noise) for i in range(workers)]

    def count(_eid, ok, _steps):
        summary["recorded"] += 1
        summary["succeeded"] += int(ok)
        if progress is not None:
            progress(summary)

    if workers == 1:
        run_demo_job(jobs[0], on_episode=count)
        return summary
    ctx = multiprocessing.get_context("spawn")  # a fresh process per worker: no inherited GL state
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, results), daemon=True) for job in jobs]
    for proc in procs:
        proc.start()
    running = len(procs)
    try:
        while running:
            try:
                kind, eid, ok, steps = results.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("a demo worker died without reporting (out of memory?)") from None
                continue
            if kind == "episode":
                count(eid, ok, steps)
            elif kind == "done":
                running -= 1
            else:
                raise RuntimeError(f"demo worker failed: {eid}")
    finally:
        for proc in procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
    return summary
