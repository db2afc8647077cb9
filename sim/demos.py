"""Demo datasets: the scripted oracle drives a simulated robot through the hardware topics while the
episode recorder writes one rosbag2/MCAP episode per seed.

Per worker, one embedded graph: ``sim`` (driver=oracle, lock-step sim time), ``episode_recorder`` and
``demo_director`` (:mod:`efm_sim.director`), which for each seed resets the scene, announces the task, and ends
the episode on ground-truth success or at the step limit. Episodes are named by env, task and seed, so
re-running skips finished ones; a killed run leaves only ``.partial`` folders, removed on the next run.
"""
from __future__ import annotations

import multiprocessing
import queue
from dataclasses import replace
from pathlib import Path

from efm_runtime import NodeOptions, build_node
from efm_runtime.embedded import EmbeddedContext
from efm_runtime.errors import EfmUserError

from .director import DemoDirector, DemoJob, episode_id  # noqa: F401 (episode_id: part of this module's API)


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

