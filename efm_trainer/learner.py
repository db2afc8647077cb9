"""The Stage 2 learner (core, no HTTP): stores practice episodes, runs on-policy REINFORCE updates,
exports and keeps policy versions. :mod:`efm_trainer.learner_service` is its HTTP front end.

Learner directory (every JSON and checkpoint replaced atomically: temporary name, fsync, rename):

    DIR/settings.json             the settings of the first start
    DIR/stage1/checkpoint.pt      copy of the Stage 1 checkpoint: the frozen reward model and sft-0000's weights
    DIR/checkpoints/<version>.pt  weights + Adam state each version was exported from (rollback continues from it)
    DIR/episodes/<id>/            a stored upload (rosbag2 episode); DIR/episodes/<id>.json its record
                                  (sha256 of the upload, policy version, steps, trainable or why not)
    DIR/versions/<version>/       exported model directories; DIR/versions.json lists them
    DIR/state.json                learner step, current, best, evaluations, which episodes trained which
                                  version, and the update in progress (its plan)
    DIR/metrics.jsonl             one line per update

On-policy, as in the paper: only episodes collected by the current version, scored by the frozen
Stage 1 reward model, train it. When ``steps_per_update`` of their actions are in, an update runs in a
background thread (uploads keep being accepted) from the current version's checkpoint; the new
checkpoint is saved, exported as ``rl-NNNN`` with the frozen reward graph and the Stage 1 text encoder
linked in, and published as current. Episodes of older versions are stored and counted, never trained.

Crash safety: an update's plan is written to state.json before it trains; its checkpoint names the
episodes it used. After a restart, a plan without its checkpoint is trained again from the same parent
with the same episodes (same minibatches); a plan with its checkpoint is only exported and published.
An episode is therefore marked trained exactly when the checkpoint that used it exists.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from efm_policy.manifest import MANIFEST, ModelDirError, read_manifest, sha256_file

from .practice_data import PracticeDataError, read_practice_episode
from .reinforce import GAMMA

FIRST_VERSION = "sft-0000"
EPISODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
UNTRAINABLE_OUTCOMES = {"aborted", "estopped"}
LINKED_FILES = ("reward.onnx", "text_encoder.onnx", "text_tokenizer.json")   # the same bytes in every version


class LearnerError(ValueError):
    """Bad settings or a learner directory that cannot be used as asked."""


class BadEpisode(ValueError):
    """An upload that is not a readable, complete episode (HTTP 400). ``reason``: "sha256_mismatch" (a
    truncated upload: send it again) or "unreadable" (do not resend)."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


class EpisodeConflict(ValueError):
    """An upload that contradicts what the learner holds (HTTP 409). ``reason``: "content_differs" (another
    body under the same id) or "spec_mismatch" (another embodiment, tokenizers or proprio)."""

    def __init__(self, message: str, reason: str = "spec_mismatch") -> None:
        super().__init__(message)
        self.reason = reason


class UnknownVersion(LookupError):
    """A version name the learner never published (HTTP 404)."""


@dataclass
class LearnerSettings:
    dir: str                        # the learner directory (created on the first start)
    run: str = ""                   # Stage 1 run directory (checkpoint.pt); needed on the first start only
    initial_model: str = ""         # an existing export of that run, taken as sft-0000 instead of exporting
    steps_per_update: int = 2048    # the paper's: actions of the current version per update
    # > 0: update after this many episodes of the current version instead (experiments that count practice
    # in episodes, e.g. "10% of the demos"); steps_per_update is then not used
    episodes_per_update: int = 0
    sgd_steps: int = 32             # minibatch steps per update (paper: 32 x 64); 0 = one pass over its samples
    batch_size: int = 64
    lr: float | None = None         # None: the learning rate in the Stage 1 optimizer state
    gamma: float = GAMMA
    seed: int = 0
    # keep Stage 1's Adam momentum into the first update (the paper carries the whole state); by default its
    # first moment starts at zero there (see UpdatePlan.reset_momentum)
    keep_stage1_momentum: bool = False

    def __post_init__(self) -> None:
        for name in ("steps_per_update", "batch_size"):
            if getattr(self, name) < 1:
                raise LearnerError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sgd_steps < 0:
            raise LearnerError(f"sgd_steps must be >= 0 (0 = one pass over the update's samples), got {self.sgd_steps}")
        if self.episodes_per_update < 0:
            raise LearnerError(f"episodes_per_update must be >= 0, got {self.episodes_per_update}")
        if not 0.0 <= self.gamma <= 1.0:
            raise LearnerError(f"gamma must lie in [0, 1], got {self.gamma}")
        if self.lr is not None and not self.lr > 0:
            raise LearnerError(f"lr must be > 0, got {self.lr}")


@dataclass
class Receipt:
    """The learner's answer to an upload."""
    status: str                     # accepted | duplicate | stored
    trained: bool = False
    reason: str = ""


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)     # versions share the big frozen files instead of holding copies
    except OSError:
        shutil.copy2(source, target)


def _version_name(number: int) -> str:
    return f"rl-{number:04d}"


class Learner:
    """Thread-safe learner core. ``distributed`` (rank 0's): updates are broadcast to the other ranks."""

    def __init__(self, settings: LearnerSettings, log: Callable[[str], None] = print, distributed=None,
                 stage_hook: Callable[[str], None] | None = None) -> None:
        self.settings, self.log, self.distributed = settings, log, distributed
        # Called with "trained", "saved", "exported" during an update: tests raise there to play a crash.
        self._stage_hook = stage_hook or (lambda stage: None)
        self.dir = Path(settings.dir)
        self._lock = threading.Condition()
        self._receive_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error = ""
        self._encoder = None
        if not (self.dir / "state.json").is_file():
            self._create()
        self._load()
        self._clean_leftovers()
        if self.state["pending_update"]:
            self._start_update()

    # -- directory --------------------------------------------------------------------------------
    def _create(self) -> None:
        import torch

        run = Path(self.settings.run) if self.settings.run else None
        checkpoint = run / "checkpoint.pt" if run else None
        if checkpoint is None or not checkpoint.is_file():
            raise LearnerError(f"{self.dir} is not a learner directory yet; its first start needs --run pointing at "
                               f"a Stage 1 run with a checkpoint.pt (got {self.settings.run or 'none'})")
        for sub in ("stage1", "checkpoints", "episodes", "versions"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint, self.dir / "stage1" / "checkpoint.pt")
        instructions = run / "instructions.json"
        for target in (self.dir / "stage1" / "instructions.json", self.dir / "checkpoints" / "instructions.json"):
            if instructions.is_file():
                shutil.copy2(instructions, target)
            else:
                target.write_text("[]\n")
        first_checkpoint = self.dir / "checkpoints" / f"{FIRST_VERSION}.pt"
        first_checkpoint.unlink(missing_ok=True)
        _link_or_copy(self.dir / "stage1" / "checkpoint.pt", first_checkpoint)
        stage1 = torch.load(first_checkpoint, map_location="cpu", weights_only=False)
        version_dir = self.dir / "versions" / FIRST_VERSION
        shutil.rmtree(version_dir, ignore_errors=True)
        if self.settings.initial_model:
            self._adopt_initial_model(Path(self.settings.initial_model), stage1, version_dir)
        else:
            from efm_policy.export import export_model

            self.log(f"exporting {FIRST_VERSION} from {checkpoint}")
            export_model(first_checkpoint, version_dir, version=FIRST_VERSION, text_encoder=True, log=self.log)
        settings = asdict(self.settings)
        write_json(self.dir / "settings.json", settings)
        write_json(self.dir / "versions.json", [self._version_entry(FIRST_VERSION, None, 0)])
        write_json(self.dir / "state.json", {
            "learner_step": 0, "current": FIRST_VERSION, "best": None, "next_version": 1,
            "stage1_step": int(stage1.get("step", 0)), "evaluations": {}, "updates": {}, "pending_update": None})

    def _adopt_initial_model(self, source: Path, stage1: dict, version_dir: Path) -> None:
        """Take an existing export of the Stage 1 run as sft-0000 (saves the export's minutes)."""
        from efm_policy.config import PolicyConfig
        from efm_policy.tokenizers import Tokenizers

        manifest = read_manifest(source)
        if manifest.config != PolicyConfig.from_dict(stage1["config"]):
            raise LearnerError(f"--initial-model {source} was exported from another architecture than --run "
                               f"{self.settings.run}; export the run (or leave --initial-model out)")
        Tokenizers.from_dict(stage1["tokenizers"]).check_compatible(manifest.tokenizers, f"--initial-model {source}")
        staging = version_dir.with_name(f".staging-{version_dir.name}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in manifest.files:
            _link_or_copy(source / name, staging / name)
        data = json.loads((source / MANIFEST).read_text())
        data["version"] = FIRST_VERSION          # robots report the name of the version they run
        data.setdefault("source", {}).update(adopted_from=str(source.resolve()), adopted_version=manifest.version)
        write_json(staging / MANIFEST, data)
        os.replace(staging, version_dir)

    def _load(self) -> None:
        self.state = json.loads((self.dir / "state.json").read_text())
        self.versions: list[dict] = json.loads((self.dir / "versions.json").read_text())
        manifest = read_manifest(self.dir / "versions" / FIRST_VERSION, verify=False)
        self.config, self.tokenizers = manifest.config, manifest.tokenizers
        self.embodiment = manifest.embodiment
        # the export taken as sft-0000 may carry another name; robots that still run it run sft-0000
        adopted = json.loads((self.dir / "versions" / FIRST_VERSION / MANIFEST).read_text())["source"].get(
            "adopted_version")
        self._aliases = {adopted: FIRST_VERSION} if adopted and adopted != FIRST_VERSION else {}
        self.records: dict[str, dict] = {}
        for path in sorted((self.dir / "episodes").glob("*.json")):
            record = json.loads(path.read_text())
            self.records[record["episode_id"]] = record
        self.trained_in = {episode: version for version, update in self.state["updates"].items()
                           for episode in update["episodes"]}

    def _clean_leftovers(self) -> None:
        """Half-received uploads and half-made exports of a killed learner are never trusted."""
        for path in (self.dir / "episodes").iterdir():
            if path.name.startswith(".") or path.suffix == ".tmp" or (path.is_dir() and path.name not in self.records):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        for path in (self.dir / "versions").iterdir():
            if path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)

    def _save_state(self) -> None:
        write_json(self.dir / "state.json", self.state)

    def _version_entry(self, version: str, parent: str | None, learner_step: int) -> dict:
        directory = self.dir / "versions" / version
        manifest = json.loads((directory / MANIFEST).read_text())
        return {"version": version, "parent": parent, "learner_step": learner_step,
                "manifest_sha256": sha256_file(directory / MANIFEST),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": [{"name": name, "sha256": sha, "size": (directory / name).stat().st_size}
                          for name, sha in sorted(manifest["files"].items())]}

    # -- queries ----------------------------------------------------------------------------------
    @property
    def current(self) -> str:
        return self.state["current"]

    @property
    def updating(self) -> bool:
        with self._lock:
            return self._thread is not None

    def version_names(self) -> list[str]:
        return [v["version"] for v in self.versions]

    def manifest(self, version: str | None = None) -> dict:
        version = version or self.current
        return json.loads((self.version_dir(version) / MANIFEST).read_text())

    def version_dir(self, version: str) -> Path:
        if version not in self.version_names():
            raise UnknownVersion(f"no version {version!r}; the learner has {', '.join(self.version_names())}")
        return self.dir / "versions" / version

    def version_file(self, version: str, name: str) -> Path:
        directory = self.version_dir(version)
        if name != MANIFEST and name not in self.manifest(version)["files"]:
            raise UnknownVersion(f"version {version} has no file {name!r}")
        return directory / name

    def spec(self) -> dict:
        manifest = self.manifest()
        return {"embodiment": manifest["embodiment"], "tokenizers": manifest["tokenizers"],
                "input_spec": manifest["input"]}

    def _per_version(self) -> tuple[dict, dict]:
        counts, wins = {}, {}
        for record in self.records.values():
            version = record["policy_version"]
            counts[version] = counts.get(version, 0) + 1
            wins[version] = wins.get(version, 0) + int(record["detector_success"])
        return counts, {v: wins[v] / counts[v] for v in counts}

    def list_versions(self) -> dict:
        with self._lock:
            counts, rates = self._per_version()
            trained_on = {v: len(u["episodes"]) for v, u in self.state["updates"].items()}
            versions = [{**entry, "episodes": counts.get(entry["version"], 0),
                         "success_rate": rates.get(entry["version"]),
                         "trained_on_episodes": trained_on.get(entry["version"], 0),
                         "evaluation": self.state["evaluations"].get(entry["version"])} for entry in self.versions]
            return {"current": self.current, "best": self.state["best"], "versions": versions}

    def status(self) -> dict:
        with self._lock:
            counts, rates = self._per_version()
            pending = self._pending_episodes()
            return {"learner_step": self.state["learner_step"], "current": self.current, "best": self.state["best"],
                    "updating": self._thread is not None, "episodes_total": len(self.records),
                    "episodes_per_version": counts, "success_rate_per_version": rates,
                    "evaluations": self.state["evaluations"],
                    "pending_steps": self._steps(pending),
                    "steps_per_update": self.settings.steps_per_update,
                    "episodes_per_update": self.settings.episodes_per_update, "last_error": self.last_error}

    # -- uploads ----------------------------------------------------------------------------------
    def receive_episode(self, episode_id: str, body: bytes, sha256: str) -> Receipt:
        """Store one uploaded episode (a tar of ``<episode_id>/...``) whose sha256 the robot computed."""
        import hashlib

        if not EPISODE_ID.match(episode_id):
            raise BadEpisode(f"episode id {episode_id!r} is not a plain name (letters, digits, '_', '-', '.')")
        actual = hashlib.sha256(body).hexdigest()
        if actual != (sha256 or "").strip().lower():
            raise BadEpisode(f"body sha256 {actual} differs from X-Content-SHA256 {sha256!r}: a truncated or "
                             "altered upload; send it again", reason="sha256_mismatch")
        with self._receive_lock:
            known = self.records.get(episode_id)
            if known is not None:
                if known["sha256"] == actual:
                    return Receipt("duplicate")
                raise EpisodeConflict(f"episode {episode_id} is already stored with other content (sha256 "
                                      f"{known['sha256']}); episode ids must be unique", reason="content_differs")
            return self._store(episode_id, body, actual)

    def _store(self, episode_id: str, body: bytes, sha256: str) -> Receipt:
        episodes = self.dir / "episodes"
        incoming = episodes / f".{episode_id}.incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        try:
            _extract_episode(body, episode_id, incoming)
            episode = read_practice_episode(incoming / episode_id, self.config.cameras, self.config.history,
                                            self.config.image_size)
            self._check_compatible(episode)
            os.replace(incoming / episode_id, episodes / episode_id)
        except PracticeDataError as exc:
            raise BadEpisode(str(exc)) from None
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        with self._lock:
            reason = self._untrainable_reason(episode)
            record = {"episode_id": episode_id, "sha256": sha256, "size": len(body), "robot": episode.robot,
                      "policy_version": episode.policy_version or ",".join(episode.policy_versions),
                      "reward_model_versions": episode.reward_model_versions, "steps": episode.steps,
                      "instruction": episode.instruction, "outcome": episode.outcome,
                      "detector_success": episode.detector_success, "human_label": episode.human_label,
                      "trainable": not reason, "reason": reason, "received": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_json(episodes / f"{episode_id}.json", record)     # the commit point of an upload
            self.records[episode_id] = record
            self._maybe_start_update()
        if reason:
            return Receipt("stored", False, reason)
        return Receipt("accepted", True)

    def _check_compatible(self, episode) -> None:
        if episode.embodiment != self.embodiment:
            raise EpisodeConflict(f"episode {episode.episode_id} is from embodiment {episode.embodiment!r}; this "
                                  f"learner trains {self.embodiment!r}")
        action = self.tokenizers.action
        if episode.action_shape != (action.horizon, action.action_dim):
            raise EpisodeConflict(f"episode {episode.episode_id} has {episode.action_shape[0]}x"
                                  f"{episode.action_shape[1]} action chunks; this learner's tokenizers make "
                                  f"{action.horizon}x{action.action_dim} (another model's tokenizers?)")
        if episode.tokens.size and episode.tokens.max() >= action.bins:
            raise EpisodeConflict(f"episode {episode.episode_id} has action token {int(episode.tokens.max())}; this "
                                  f"learner's tokenizers have {action.bins} bins (another model's tokenizers?)")
        if episode.proprio.shape[1] != self.config.proprio_dim:
            raise EpisodeConflict(f"episode {episode.episode_id} has {episode.proprio.shape[1]} proprio values; "
                                  f"this learner's model takes {self.config.proprio_dim}")

    def _untrainable_reason(self, episode) -> str:
        """Why an episode must not train the current version ('' when it will)."""
        episode.policy_versions = list(dict.fromkeys(self._aliases.get(v, v) for v in episode.policy_versions))
        if len(episode.policy_versions) != 1:
            return f"actions from several policy versions ({', '.join(episode.policy_versions)})"
        version = episode.policy_version
        if version != self.current:
            return f"off-policy: collected by {version!r}, the current version is {self.current!r}"
        frozen = set(self.version_names()) | set(self._aliases)
        others = [v for v in episode.reward_model_versions if not v or v not in frozen]
        if others:
            return (f"scored by reward model {', '.join(map(repr, others))}, not the frozen Stage 1 model "
                    f"(every version of this learner carries it, named after the version)")
        if episode.outcome in UNTRAINABLE_OUTCOMES:
            return f"outcome {episode.outcome}: not a complete practice episode"
        pending = self.state["pending_update"]
        if pending and pending["parent"] == version:
            return f"the update of {version} already has its {self._update_size()} and is running"
        return ""

    # -- updates ----------------------------------------------------------------------------------
    def _pending_episodes(self) -> list[str]:
        """Trainable episodes of the current version not yet used, oldest first."""
        return [e for e, r in self.records.items() if r["trainable"] and r["policy_version"] == self.current
                and e not in self.trained_in]

    def _update_size(self) -> str:
        if self.settings.episodes_per_update:
            return f"{self.settings.episodes_per_update} episodes"
        return f"{self.settings.steps_per_update} steps"

    def _enough_for_update(self, pending: list[str]) -> bool:
        if self.settings.episodes_per_update:
            return len(pending) >= self.settings.episodes_per_update
        return self._steps(pending) >= self.settings.steps_per_update

    def _sgd_steps(self, episodes: list[str]) -> int:
        """The setting, or with 0 one pass over the update's actions, as the paper's 32 x 64 over 2048 steps: an
        update counted in episodes has fewer samples, and several passes over them overfit the little data."""
        if self.settings.sgd_steps:
            return self.settings.sgd_steps
        return max(1, -(-self._steps(episodes) // self.settings.batch_size))

    def _steps(self, episodes: list[str]) -> int:
        return sum(self.records[e]["steps"] for e in episodes)

    def _maybe_start_update(self) -> None:
        """Under the lock: plan an update when the current version has collected enough steps."""
        if self._thread is not None or self.state["pending_update"]:
            return
        pending = sorted(self._pending_episodes(), key=lambda e: (self.records[e]["received"], e))
        if not self._enough_for_update(pending):
            return
        settings = self.settings
        version = _version_name(self.state["next_version"])
        self.state["pending_update"] = {
            "version": version, "parent": self.current,
            "parent_checkpoint": str(self.dir / "checkpoints" / f"{self.current}.pt"),
            "episodes": pending, "episode_dirs": [str(self.dir / "episodes" / e) for e in pending],
            "learner_step": self.state["learner_step"], "sgd_steps": self._sgd_steps(pending),
            "batch_size": settings.batch_size, "gamma": settings.gamma, "seed": settings.seed, "lr": settings.lr,
            "reset_momentum": not settings.keep_stage1_momentum and self.current == self.versions[0]["version"]}
        self.state["next_version"] += 1
        self._save_state()
        self._start_update()

    def _start_update(self) -> None:
        self._thread = threading.Thread(target=self._update_worker, name="learner-update", daemon=True)
        self._thread.start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no update runs; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._thread is None, timeout)

    def _update_worker(self) -> None:
        try:
            self._finish_update(self.state["pending_update"])
        except BaseException as exc:   # noqa: BLE001 - the plan stays in state.json and is redone on restart
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.log(f"update failed, redone at the next start: {self.last_error}\n{traceback.format_exc()}")
        finally:
            with self._lock:
                self._thread = None
                self._lock.notify_all()
                if not self.last_error:
                    self._maybe_start_update()

    def _finish_update(self, plan_data: dict) -> None:
        import torch

        from efm_policy.model import checkpoint_state

        from .learner_update import UpdatePlan, run_update
        from .sft import _atomic_torch_save

        version = plan_data["version"]
        checkpoint = self.dir / "checkpoints" / f"{version}.pt"
        if checkpoint.is_file():
            self.log(f"{version}: checkpoint already saved before the restart; exporting it")
            metrics = torch.load(checkpoint, map_location="cpu", weights_only=False)["learner"]["metrics"]
        else:
            plan = UpdatePlan.from_dict({**plan_data, "instruction_embeddings": self._embeddings(plan_data)})
            if self.distributed:
                self.distributed.broadcast({"op": "update", "plan": plan.to_dict()})
            model, optimizer, metrics = run_update(plan, self.distributed, self.log)
            self._stage_hook("trained")
            learner_step = plan.learner_step + plan.sgd_steps
            state = checkpoint_state(model, learner_step, optimizer.state_dict())
            state["learner"] = {"version": version, "parent": plan.parent, "episodes": plan.episodes,
                                "learner_step": learner_step, "metrics": metrics}
            _atomic_torch_save(state, checkpoint)    # from here on, these episodes have trained this version
        self._stage_hook("saved")
        if not (self.dir / "versions" / version).is_dir():
            self._export(version, checkpoint, plan_data)
        self._stage_hook("exported")
        learner_step = plan_data["learner_step"] + plan_data["sgd_steps"]
        with self._lock:
            if version not in self.version_names():
                self.versions.append(self._version_entry(version, plan_data["parent"], learner_step))
                write_json(self.dir / "versions.json", self.versions)
            if self.current == plan_data["parent"]:     # not rolled elsewhere while it trained
                self.state["current"] = version
            self.state["learner_step"] = max(self.state["learner_step"], learner_step)
            self.state["updates"][version] = {"parent": plan_data["parent"], "episodes": plan_data["episodes"],
                                              "learner_step": learner_step}
            self.state["pending_update"] = None
            self._save_state()
            self.trained_in.update({e: version for e in plan_data["episodes"]})
        with open(self.dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"version": version, "parent": plan_data["parent"], "learner_step": learner_step,
                                     "time": round(time.time(), 3), **metrics}) + "\n")
        self.log(f"published {version} (parent {plan_data['parent']}, learner step {learner_step})")

    def _embeddings(self, plan: dict) -> dict[str, list[float]]:
        instructions = sorted({self.records[e]["instruction"] for e in plan["episodes"]})
        if self._encoder is None:
            from efm_policy.text import InstructionEncoder
            self._encoder = InstructionEncoder()
        return {text: row.tolist() for text, row in zip(instructions, self._encoder.encode(instructions))}

    def _export(self, version: str, checkpoint: Path, plan: dict) -> None:
        """Export the new policy graph; link the frozen reward graph and the Stage 1 text encoder in."""
        from efm_policy.export import export_model

        final = self.dir / "versions" / version
        staging = final.with_name(f".staging-{version}")
        shutil.rmtree(staging, ignore_errors=True)
        practice_instructions = sorted({self.records[e]["instruction"] for e in plan["episodes"]})
        export_model(checkpoint, staging, version=version, extra_instructions=practice_instructions,
                     text_encoder=False, log=self.log)
        first = self.dir / "versions" / FIRST_VERSION
        first_files = self.manifest(FIRST_VERSION)["files"]
        data = json.loads((staging / MANIFEST).read_text())
        for name in LINKED_FILES:
            if name in first_files:
                (staging / name).unlink(missing_ok=True)
                _link_or_copy(first / name, staging / name)
                data["files"][name] = first_files[name]
        data["source"].update({"reward_model": FIRST_VERSION, "parent": plan["parent"],
                               "episodes": len(plan["episodes"])})
        write_json(staging / MANIFEST, data)
        read_manifest(staging)       # every sha256 checked before robots can see it
        os.replace(staging, final)

    # -- fleet control ----------------------------------------------------------------------------
    def set_current(self, version: str) -> dict:
        """Roll the fleet back (or forward) to ``version``; training continues from its checkpoint."""
        with self._lock:
            self.version_dir(version)
            if not (self.dir / "checkpoints" / f"{version}.pt").is_file():
                raise UnknownVersion(f"version {version} has no checkpoint to continue training from")
            previous = self.state["current"]
            self.state["current"] = version
            self._save_state()
            self.log(f"current version {previous} -> {version}")
            self._maybe_start_update()
            return {"current": version, "previous": previous}

    def record_evaluation(self, version: str, episodes: int, successes: int, seeds=None) -> dict:
        """A ground-truth evaluation of ``version`` (replaces an earlier one); best = highest success rate."""
        if episodes < 1 or not 0 <= successes <= episodes:
            raise LearnerError(f"need episodes >= 1 and 0 <= successes <= episodes, got {successes}/{episodes}")
        with self._lock:
            self.version_dir(version)
            self.state["evaluations"][version] = {"episodes": int(episodes), "successes": int(successes),
                                                  "success_rate": successes / episodes, "seeds": seeds,
                                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            order = {v: i for i, v in enumerate(self.version_names())}
            # ties go to the earlier version: fewer updates past the peak (over-optimisation degrades it)
            self.state["best"] = max(self.state["evaluations"],
                                     key=lambda v: (self.state["evaluations"][v]["success_rate"], -order[v]))
            self._save_state()
            return {"version": version, "best": self.state["best"]}

    def close(self, timeout: float | None = None) -> None:
        """Wait for a running update (its plan survives a kill anyway), then release the other ranks."""
        self.wait_idle(timeout)
        if self.distributed:
            try:
                self.distributed.broadcast({"op": "stop"})
            except RuntimeError:
                pass        # torchrun passed the same Ctrl-C to the followers: they are gone already


def _extract_episode(body: bytes, episode_id: str, into: Path) -> None:
    """Unpack an upload: a tar holding only ``<episode_id>/`` with plain files."""
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
            members = tar.getmembers()
            strays = [m.name for m in members if Path(m.name).parts[:1] != (episode_id,)
                      or not (m.isfile() or m.isdir())]
            if strays or not members:
                raise BadEpisode(f"the tar must hold only {episode_id}/ with plain files; found "
                                 f"{', '.join(strays[:5]) or 'nothing'}")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadEpisode(f"episode {episode_id}: the body is not a readable tar ({exc}); send it again") from None
    if not (into / episode_id / "metadata.yaml").is_file():
        raise BadEpisode(f"episode {episode_id}: no {episode_id}/metadata.yaml in the tar (not a rosbag2 episode)")


def follow(distributed, log: Callable[[str], None] = print) -> None:
    """Ranks > 0: run every update rank 0 broadcasts, until it says stop."""
    from .learner_update import UpdatePlan, run_update

    while True:
        command = distributed.broadcast()
        if command["op"] == "stop":
            return
        run_update(UpdatePlan.from_dict(command["plan"]), distributed, log)
