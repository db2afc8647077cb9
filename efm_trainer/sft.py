"""Stage 1: supervised fine-tuning of the EFM policy on demonstration episodes (torch).

Loss = bc_weight * CE(action tokens) + steps_to_go_weight * CE(binned steps to go), 1:1 by default,
Adam (lr 3e-4, eps 1e-7 as in the paper's reference code). A run directory holds everything needed
to continue, evaluate or export:

    RUN/policy_config.json   architecture (PolicyConfig)
    RUN/tokenizers.json      action and steps-to-go bins, fitted to the demos on the first start
    RUN/instructions.json    every training instruction (embeddings are recomputed from the text)
    RUN/split.json           which episodes are held out for validation
    RUN/checkpoint.pt        model, optimizer state, step: replaced atomically, so a kill loses at most
                             the steps since the last checkpoint; Stage 2 continues from it
    RUN/metrics.jsonl        one JSON line per log interval and per validation
    RUN/features-*.npy       the frozen backbone's features of every frame (when the backbone is frozen)

Every step draws its batch and its dropout from (seed, step) alone, so a resumed run takes exactly
the step the uninterrupted run would have taken.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from efm_policy.config import PolicyConfig
from efm_policy.model import CHECKPOINT, EFMPolicy, checkpoint_state
from efm_policy.text import InstructionEncoder
from efm_policy.tokenizers import ActionTokenizer, StepsToGoTokenizer, Tokenizers

from .sft_data import SFTData, load_sft_data, validation_episodes



@dataclass
class SFTSettings:
    data: list[str]
    out: str
    backbone: str = "small"
    hf_path: str = ""
    max_steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-4
    bc_weight: float = 1.0
    steps_to_go_weight: float = 1.0
    val_fraction: float = 0.1
    log_every: int = 50
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    action_bins: int = 256
    steps_to_go_bins: int = 50
    history: int = 2
    image_size: tuple[int, int] = (96, 160)
    cameras: list[str] = field(default_factory=list)     # empty: every camera of the first episode
    trainable_vision_blocks: int | None = None           # None: 0 for small/hf (cached features), all for scratch
    token_pool: int = 2
    vision_blocks: int = 11
    d_model: int = 128
    layers: int = 2
    # a folder shared between runs: the frozen backbone's features of each episode, keyed by the episode's
    # pixels and the backbone layout, so runs on overlapping demo sets (experiments) encode each demo once
    feature_cache: str = ""


class RunError(ValueError):
    """A run directory that cannot be continued with the settings given."""


def _atomic_np_save(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")     # runs sharing a feature cache may race
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _first_episode_layout(data_dirs: Sequence[str]) -> tuple[str, list[str], int]:
    """(embodiment, cameras, max_steps) of the first episode, to size a new run."""
    from .episodes import episode_paths, read_cameras, read_metadata
    for directory in data_dirs:
        for episode_path in episode_paths(directory):
            metadata = read_metadata(episode_path)
            return metadata.get("embodiment", ""), read_cameras(episode_path), int(metadata.get("max_steps") or 200)
    raise RunError(f"no episodes in {', '.join(data_dirs)}")


class SFTRun:
    """A training run in a directory: created on the first start, continued on later ones."""

    def __init__(self, settings: SFTSettings, log: Callable[[str], None] = print) -> None:
        self.settings, self.log = settings, log
        self.dir = Path(settings.out)
        self.dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(settings.seed)
        resuming = (self.dir / CHECKPOINT).is_file()
        if resuming:
            self.config = PolicyConfig.load(self.dir / "policy_config.json")
            self.tokenizers = Tokenizers.load(self.dir / "tokenizers.json")
            self._check_resume_settings()
        else:
            embodiment, cameras, max_steps = _first_episode_layout(settings.data)
            cameras = settings.cameras or cameras
            trainable = settings.trainable_vision_blocks
            if trainable is None:
                trainable = -1 if settings.backbone == "scratch" else 0
            self._pending_layout = dict(
                embodiment=embodiment, cameras=tuple(cameras), backbone=settings.backbone, hf_path=settings.hf_path,
                history=settings.history, image_size=tuple(settings.image_size), d_model=settings.d_model,
                token_pool=settings.token_pool, vision_blocks=settings.vision_blocks,
                layers=settings.layers, trainable_vision_blocks=trainable)
            self._max_steps = max_steps
            self.config = None
        cameras = self.config.cameras if self.config else self._pending_layout["cameras"]
        self.log(f"reading episodes from {', '.join(settings.data)}")
        self.data: SFTData = load_sft_data(settings.data, cameras, settings.history, tuple(settings.image_size),
                                           progress=lambda it: tqdm(it, desc="episodes", unit="ep", leave=False))
        reasons: dict[str, list[str]] = {}
        for name, why in self.data.skipped:
            reasons.setdefault(why, []).append(name)
        for why, names in reasons.items():
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            self.log(f"skipped {len(names)} episodes ({', '.join(names[:3])}{more}): {why}")
        if not resuming:
            self._create(self._pending_layout)
        self._split()
        self.model = EFMPolicy(self.config, self.tokenizers, pretrained=not resuming)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=settings.lr, eps=1e-7)
        self.step = 0
        if resuming:
            state = torch.load(self.dir / CHECKPOINT, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            self.log(f"resuming {self.dir} at step {self.step}")
        else:
            proprio = self.data.proprio[self.train_index]
            self.model.set_proprio_statistics(proprio.mean(0), proprio.std(0))
        encoder = InstructionEncoder()
        self.instruction_embeddings = torch.from_numpy(encoder.encode(self.data.instructions))
        self.action_tokens = torch.from_numpy(
            self.tokenizers.action.encode(self.data.actions).reshape(len(self.data), -1))
        self.steps_to_go_tokens = torch.from_numpy(self.tokenizers.steps_to_go.encode(self.data.steps_to_go))
        self.features = self._cache_features() if self.model.vision_frozen else None

    # -- set-up -------------------------------------------------------------------------------
    def _create(self, layout: dict) -> None:
        data = self.data
        proprio_dim = data.proprio.shape[1]
        horizon, action_dim = data.actions.shape[1:]
        if layout["embodiment"] == "":
            layout["embodiment"] = "unknown"
        self.config = PolicyConfig(proprio_dim=proprio_dim, extra={
            "episodes": len(data.episodes), "data": list(self.settings.data)}, **layout)
        moves = data.actions[data.has_action].reshape(-1, action_dim)
        self.tokenizers = Tokenizers(
            ActionTokenizer.from_actions(moves, bins=self.settings.action_bins, horizon=horizon),
            StepsToGoTokenizer(bins=self.settings.steps_to_go_bins, max_steps=self._max_steps))
        self.config.save(self.dir / "policy_config.json")
        self.tokenizers.save(self.dir / "tokenizers.json")
        _write_json(self.dir / "settings.json", asdict(self.settings))

    def _check_resume_settings(self) -> None:
        saved = json.loads((self.dir / "settings.json").read_text())
        fixed = ("backbone", "hf_path", "history", "image_size", "action_bins", "steps_to_go_bins", "seed",
                 "batch_size", "lr", "d_model", "layers", "token_pool", "vision_blocks")
        ours = asdict(self.settings)
        changed = [f"{k}: run has {saved[k]!r}, command gives {ours[k]!r}" for k in fixed
                   if k in saved and json.loads(json.dumps(ours[k])) != saved[k]]
        if changed:
            raise RunError(f"{self.dir} was started with other settings ({'; '.join(changed)}); "
                           "continue it with the same ones or choose a new --out")

    def _split(self) -> None:
        held_out = validation_episodes(self.data.episodes, self.settings.val_fraction)
        self.train_index = self.data.subset(~held_out)
        self.val_index = self.data.subset(held_out)
        _write_json(self.dir / "split.json", {
            "train": [e for e, h in zip(self.data.episodes, held_out) if not h],
            "validation": [e for e, h in zip(self.data.episodes, held_out) if h]})
        _write_json(self.dir / "instructions.json", self.data.instructions)
        self.log(f"{len(self.data.episodes)} episodes: {len(self.train_index)} training samples, "
                 f"{len(self.val_index)} validation samples ({int(held_out.sum())} held-out episodes)")

    def _cache_features(self) -> torch.Tensor:
        """The frozen backbone's features of every frame (fp16), computed once and kept in the run
        directory, so a resumed or repeated run on the same episodes skips the slowest part."""
        if self.settings.feature_cache:
            return self._shared_features()
        config = self.config
        key = hashlib.sha256(json.dumps([self.data.episodes, len(self.data.frames), config.backbone, config.hf_path,
                                         list(config.image_size), config.vision_blocks]).encode()).hexdigest()[:16]
        path = self.dir / f"features-{key}.npy"
        if path.is_file():
            return torch.from_numpy(np.load(path))
        for stale in self.dir.glob("features-*.npy"):
            stale.unlink()
        features = self._encode(np.arange(len(self.data.frames)))
        _atomic_np_save(features, path)
        return torch.from_numpy(features)

    def _shared_features(self) -> torch.Tensor:
        """Per-episode features from ``feature_cache``; only episodes never encoded before are computed."""
        config = self.config
        layout = hashlib.sha256(json.dumps([config.backbone, config.hf_path, list(config.image_size),
                                            config.vision_blocks]).encode()).hexdigest()[:16]
        root = Path(self.settings.feature_cache).expanduser() / layout
        root.mkdir(parents=True, exist_ok=True)
        frames, spans = self.data.frames, self.data.frame_spans
        paths = [root / f"{hashlib.sha256(frames[a:b].tobytes()).hexdigest()[:32]}.npy" for a, b in spans]
        missing = [i for i, path in enumerate(paths) if not path.is_file()]
        self.log(f"frozen backbone features: {len(paths) - len(missing)} of {len(paths)} episodes cached in {root}")
        if missing:
            computed = self._encode(np.concatenate([np.arange(*spans[i]) for i in missing]))
            offset = 0
            for i in missing:
                start, end = spans[i]
                _atomic_np_save(computed[offset:offset + end - start], paths[i])
                offset += end - start
        return torch.from_numpy(np.concatenate([np.load(path) for path in paths]))

    def _encode(self, index: np.ndarray) -> np.ndarray:
        """fp16 backbone features of ``frames[index]``, in full 128-frame batches: one batch shape, as oneDNN
        prepares each new shape anew (about a second each)."""
        frames = self.data.frames
        self.model.eval()
        with torch.no_grad():
            chunks = [self.model.vision_features(torch.from_numpy(frames[index[a:a + 128]]).unsqueeze(1))[:, 0].half()
                      for a in tqdm(range(0, len(index), 128), desc="frozen backbone features", unit="batch",
                                    leave=False)]
        self.model.train()
        return torch.cat(chunks).numpy()

    # -- training -----------------------------------------------------------------------------
    def _inputs(self, index: np.ndarray):
        views = self.data.view_frames[index]
        proprio = torch.from_numpy(self.data.proprio[index])
        instruction = self.instruction_embeddings[self.data.instruction_ids[index]]
        if self.features is not None:
            return self.model.forward_features(self.features[torch.from_numpy(views)], proprio, instruction)
        return self.model(torch.from_numpy(self.data.frames[views]), proprio, instruction)

    def _losses(self, index: np.ndarray):
        action_logits, steps_logits = self._inputs(index)
        acting = torch.from_numpy(self.data.has_action[index])
        tokens = self.action_tokens[index][acting]
        logits = action_logits[acting]
        bc = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)) if acting.any() \
            else action_logits.sum() * 0.0
        steps = F.cross_entropy(steps_logits, self.steps_to_go_tokens[index])
        return bc, steps, logits, tokens, steps_logits

    def train_step(self) -> dict[str, float]:
        rng = np.random.default_rng([self.settings.seed, self.step])
        torch.manual_seed(self.settings.seed * 1_000_003 + self.step)
        index = rng.choice(self.train_index, size=self.settings.batch_size, replace=True)
        bc, steps, *_ = self._losses(index)
        loss = self.settings.bc_weight * bc + self.settings.steps_to_go_weight * steps
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), "bc_loss": bc.item(), "steps_to_go_loss": steps.item()}

    @torch.no_grad()
    def evaluate(self, index: np.ndarray | None = None) -> dict[str, float]:
        """Validation losses, action-token accuracy and steps-to-go mean absolute error (policy steps)."""
        index = self.val_index if index is None else index
        if len(index) == 0:
            return {}
        self.model.eval()
        totals = {"bc_loss": 0.0, "steps_to_go_loss": 0.0, "action_token_accuracy": 0.0, "steps_to_go_mae": 0.0}
        actions = 0
        edges = torch.from_numpy(self.tokenizers.steps_to_go.lower_edges).float()
        for start in range(0, len(index), 256):
            batch = index[start:start + 256]
            bc, steps, logits, tokens, steps_logits = self._losses(batch)
            acting = int(self.data.has_action[batch].sum())
            totals["bc_loss"] += bc.item() * acting
            totals["action_token_accuracy"] += (logits.argmax(-1) == tokens).float().mean(-1).sum().item()
            actions += acting
            totals["steps_to_go_loss"] += steps.item() * len(batch)
            predicted = steps_logits.softmax(-1) @ edges
            truth = torch.from_numpy(self.data.steps_to_go[batch])
            totals["steps_to_go_mae"] += (predicted - truth).abs().sum().item()
        self.model.train()
        return {"val_bc_loss": totals["bc_loss"] / max(actions, 1),
                "val_action_token_accuracy": totals["action_token_accuracy"] / max(actions, 1),
                "val_steps_to_go_loss": totals["steps_to_go_loss"] / len(index),
                "val_steps_to_go_mae": totals["steps_to_go_mae"] / len(index)}

    def save_checkpoint(self) -> None:
        _atomic_torch_save(checkpoint_state(self.model, self.step, self.optimizer.state_dict()), self.dir / CHECKPOINT)

    def _record(self, entry: dict) -> None:
        with open(self.dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": self.step, "time": round(time.time(), 3), **entry}) + "\n")

    def train(self, max_steps: int | None = None) -> dict[str, float]:
        max_steps = self.settings.max_steps if max_steps is None else max_steps
        window: dict[str, list[float]] = {}
        bar = tqdm(total=max_steps, initial=self.step, desc="sft", unit="step", dynamic_ncols=True)
        last = {}
        while self.step < max_steps:
            for key, value in self.train_step().items():
                window.setdefault(key, []).append(value)
            bar.update(1)
            if self.step % self.settings.log_every == 0 or self.step == max_steps:
                means = {k: float(np.mean(v)) for k, v in window.items()}
                window.clear()
                self._record(means)
                bar.set_postfix(bc=f"{means['bc_loss']:.3f}", stg=f"{means['steps_to_go_loss']:.3f}")
            if self.step % self.settings.eval_every == 0 or self.step == max_steps:
                last = self.evaluate()
                if last:
                    self._record(last)
                    bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
            if self.step % self.settings.checkpoint_every == 0 or self.step == max_steps:
                self.save_checkpoint()
        bar.close()
        if not (self.dir / CHECKPOINT).is_file():
            self.save_checkpoint()
        return last
