"""A fake learner that implements docs/stage2_contract.md's HTTP API, and episodes to feed it.

``FakeLearner`` is a FastAPI app served by uvicorn on 127.0.0.1 (port 0) in a thread. Failures are
switched on by attributes: ``fail_5xx`` / ``truncate`` / ``fail_after_store`` (count of next PUTs that
answer 503 / lose their last bytes in transit / are stored, then answer 500 as if the reply was lost),
``slow`` (count of next PUTs that are stored, then sleep ``slow_s`` before answering), ``corrupt`` (file names served with one byte flipped),
``stop()`` / ``start()`` (down and up again on the same port). Bridge tests and bench/bridge_upload.py
use it.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from efm_policy.manifest import MANIFEST, sha256_file
from efm_runtime import get_message

Header = get_message("std_msgs/msg/Header")
Image = get_message("sensor_msgs/msg/Image")
Task = get_message("efm_msgs/msg/Task")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
StepReward = get_message("efm_msgs/msg/StepReward")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
Time = get_message("builtin_interfaces/msg/Time")


def spec_of(model_dir) -> dict:
    manifest = json.loads((Path(model_dir) / MANIFEST).read_text())
    return {"embodiment": manifest["embodiment"], "tokenizers": manifest["tokenizers"],
            "input_spec": manifest["input"]}


class FakeLearner:
    def __init__(self, token: str = "secret", spec: dict | None = None) -> None:
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()
        self.reset(token, spec)

    def reset(self, token: str = "secret", spec: dict | None = None) -> None:
        """Forget everything stored and switch every failure off (a module-scoped server between tests)."""
        self.token = token
        self.spec = spec or {"embodiment": "toy", "tokenizers": {}, "input_spec": {}}
        self.stored: dict[str, str] = {}      # episode id -> sha256 of the body stored
        self.bodies: dict[str, bytes] = {}
        self.puts: list[tuple[int, str]] = []  # (status, episode id) of every PUT answered
        self.fail_5xx = self.truncate = self.fail_after_store = 0
        self.slow, self.slow_s = 0, 1.0
        self.headers: dict[str, dict] = {}    # episode id -> X-* headers of its last PUT
        self.corrupt: set[str] = set()
        self.downloads: list[str] = []        # "version/name" of every file served
        self.current = ""
        self.versions: dict[str, Path] = {}   # version -> model directory served
        self.lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_version(self, model_dir: Path, current: bool = True) -> str:
        version = json.loads((model_dir / MANIFEST).read_text())["version"]
        self.versions[version] = Path(model_dir)
        if current:
            self.current = version
        return version

    # ---- lifetime -------------------------------------------------------------------------------
    def start(self) -> "FakeLearner":
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"fake learner could not start on port {self.port}")
            self._thread.join(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> "FakeLearner":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the API --------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def authorized(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bearer {self.token}"

        def refuse():
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)

        @app.get("/v1/spec")
        def spec(request: Request):
            return self.spec if authorized(request) else refuse()

        @app.put("/v1/episodes/{episode_id}")
        async def put_episode(episode_id: str, request: Request):
            if not authorized(request):
                return refuse()
            body = await request.body()
            self.headers[episode_id] = {k: v for k, v in request.headers.items() if k.startswith("x-")}
            status, answer = self._store(episode_id, body, request.headers.get("x-content-sha256", ""))
            with self.lock:  # before a slow answer, so a late reply never lands in the next test's record
                self.puts.append((status, episode_id))
            if self.slow:
                self.slow -= 1
                await asyncio.sleep(self.slow_s)
            return JSONResponse(answer, status_code=status)

        @app.get("/v1/versions")
        def versions(request: Request):
            if not authorized(request):
                return refuse()
            return {"current": self.current, "best": self.current,
                    "versions": [self._describe(v, d) for v, d in self.versions.items()]}

        @app.get("/v1/versions/{version}/files/{name}")
        def file(version: str, name: str, request: Request):
            if not authorized(request):
                return refuse()
            path = self.versions[version] / name
            data = bytearray(path.read_bytes())
            if name in self.corrupt:
                data[len(data) // 2] ^= 0xFF
            self.downloads.append(f"{version}/{name}")
            return Response(bytes(data), media_type="application/octet-stream")

        return app

    def _store(self, episode_id: str, body: bytes, claimed: str) -> tuple[int, dict]:
        with self.lock:
            if self.fail_5xx:
                self.fail_5xx -= 1
                return 503, {"detail": "learner busy"}
            if self.truncate:
                self.truncate -= 1
                body = body[: len(body) // 2]
            sha = hashlib.sha256(body).hexdigest()
            if sha != claimed:
                return 400, {"detail": f"sha256 mismatch: body {sha}, header {claimed} (truncated upload?)",
                             "reason": "sha256_mismatch"}
            try:
                embodiment = _embodiment_of(episode_id, body)
            except (tarfile.TarError, KeyError, ValueError) as exc:
                return 400, {"detail": f"unreadable episode: {exc}", "reason": "unreadable"}
            if episode_id in self.stored:
                if self.stored[episode_id] == sha:
                    return 200, {"status": "duplicate"}
                return 409, {"detail": f"episode {episode_id} is stored with other content",
                             "reason": "content_differs"}
            if embodiment != self.spec["embodiment"]:
                return 409, {"detail": f"episode embodiment {embodiment!r} is not the learner's "
                                       f"{self.spec['embodiment']!r}", "reason": "spec_mismatch"}
            self.stored[episode_id], self.bodies[episode_id] = sha, body
            if self.fail_after_store:
                self.fail_after_store -= 1
                return 500, {"detail": "stored, then the reply was lost"}
            return 201, {"status": "accepted", "trained": True}

    def _describe(self, version: str, directory: Path) -> dict:
        files = sorted(p for p in directory.iterdir() if p.is_file())
        return {"version": version, "learner_step": 7, "manifest_sha256": sha256_file(directory / MANIFEST),
                "created": "2026-01-01T00:00:00Z", "parent": None, "episodes": 0, "success_rate": None,
                "files": [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size} for p in files]}


def _embodiment_of(episode_id: str, body: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
        document = yaml.safe_load(tar.extractfile(f"{episode_id}/metadata.yaml").read())
    return str(document["rosbag2_bagfile_information"]["custom_data"]["embodiment"])


# ---- episodes ---------------------------------------------------------------------------------
def stamp(step: int):
    return Time(sec=step // 10, nanosec=(step % 10) * 100_000_000)


def frame(step: int, height: int = 18, width: int = 32, rng=None):
    rng = rng or np.random.default_rng(step)
    data = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image(header=Header(stamp=stamp(step)), height=height, width=width, encoding="rgb8",
                 step=width * 3, data=data.reshape(-1))


def play_episode(recording, episode_id: str, steps: int = 3, embodiment: str = "toy", policy: str = "sft-0000",
                 reward_model: str = "sft-0000", state=EpisodeStatus.STATE_SUCCEEDED, height: int = 18,
                 width: int = 32, cameras=("top",)) -> None:
    """Feed one whole episode (task, frames, chunks, rewards, terminal status) to a recording core."""
    recording.on_task(Task(header=Header(stamp=stamp(0)), robot="robot_a", episode_id=episode_id,
                           instruction="push the red moon to the blue cube", embodiment=embodiment, max_steps=10))
    rng = np.random.default_rng(len(episode_id))
    for step in range(steps):
        for camera in cameras:
            recording.on_image(camera, frame(step, height, width, rng))
        recording.on_action(ActionChunk(header=Header(stamp=stamp(step)), episode_id=episode_id, step=step,
                                        horizon=1, action_dim=2, values=np.zeros(2, np.float32),
                                        tokens=np.zeros(2, np.uint16), policy_version=policy))
        recording.on_reward(StepReward(header=Header(stamp=stamp(step)), episode_id=episode_id, step=step,
                                       reward_model_version=reward_model))
    recording.on_episode(EpisodeStatus(header=Header(stamp=stamp(steps)), robot="robot_a", episode_id=episode_id,
                                       state=state, steps=steps, policy_version=policy))


def label(episode_id: str, human_label=EpisodeStatus.LABEL_FAILURE, state=EpisodeStatus.STATE_SUCCEEDED):
    """The terminal status the episode manager re-publishes when a human labels an ended episode."""
    return EpisodeStatus(header=Header(stamp=stamp(99)), robot="robot_a", episode_id=episode_id, state=state,
                         human_label=human_label)


# ---- model versions ---------------------------------------------------------------------------
def derive_version(model_dir: Path, out: Path, version: str, embodiment: str | None = None,
                   new_policy: bool = True) -> Path:
    """A later version of an exported model without exporting again: the same reward model and
    instruction table (as the learner's versions share them), a policy.onnx with other bytes (a valid
    ONNX file: only its doc string differs), and a manifest naming ``version`` with every sha256 right."""
    import shutil

    import onnx

    shutil.copytree(model_dir, out)
    manifest = json.loads((out / MANIFEST).read_text())
    if new_policy:
        graph = onnx.load(str(out / "policy.onnx"))
        graph.doc_string = f"efm policy {version}"
        onnx.save(graph, str(out / "policy.onnx"))
        manifest["files"]["policy.onnx"] = sha256_file(out / "policy.onnx")
    manifest["version"] = version
    if embodiment:
        manifest["embodiment"] = manifest["policy_config"]["embodiment"] = embodiment
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


_VERSIONS: dict[str, Path] = {}


def model_versions(tmp_path_factory) -> dict[str, Path]:
    """sft-0000 (a real tiny export), rl-0001 and rl-0002 derived from it, and rl-0009 for another
    embodiment ("aloha"); built once per test process (an export takes seconds)."""
    if not _VERSIONS:
        from tiny_model import tiny_model_dir

        root = tmp_path_factory.mktemp("versions")
        base = tiny_model_dir(root, name="sft-0000")
        _VERSIONS.update({"sft-0000": base, "rl-0001": derive_version(base, root / "rl-0001", "rl-0001"),
                          "rl-0002": derive_version(base, root / "rl-0002", "rl-0002"),
                          "aloha": derive_version(base, root / "aloha", "rl-0009", embodiment="aloha")})
    return _VERSIONS
