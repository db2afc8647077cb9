"""One learner update (torch): the paper's on-policy REINFORCE step on a fixed set of practice episodes.

From the parent version's checkpoint (weights and the Adam state carried over from Stage 1), run
``sgd_steps`` minibatches of ``batch_size`` samples drawn from the episodes' actions, and hand back
the model and optimizer to be saved as the new version. Everything an update does is a function of
its :class:`UpdatePlan` (episodes, parent, seed, learner step), so an update redone after a crash
takes exactly the steps the interrupted one would have.

Several processes (``torchrun``, ``WORLD_SIZE`` > 1): the model is wrapped in DistributedDataParallel
and each minibatch is split across the ranks; rank 0 broadcasts the plan, every rank reads the same
episodes from the learner directory (a shared disk) and only rank 0 saves and exports.

With a frozen vision backbone (the CPU setting) each frame's features are computed once per update,
then every SGD step runs only the fusion transformer and the heads.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import numpy as np
import torch
from torch import nn

from efm_policy.model import EFMPolicy, load_policy

from .practice_data import read_practice_episode
from .reinforce import chunk_log_probs, discounted_returns, reinforce_loss

FEATURE_BATCH = 128


@dataclass
class UpdatePlan:
    """Everything that determines an update; rank 0 writes it to state.json before training."""
    version: str                    # the version this update produces, e.g. "rl-0003"
    parent: str                     # the version whose checkpoint it starts from (and which collected the episodes)
    parent_checkpoint: str
    episodes: list[str]             # episode ids, in training order
    episode_dirs: list[str]
    learner_step: int               # learner steps before this update; seeds the minibatches
    sgd_steps: int
    batch_size: int
    gamma: float
    seed: int
    lr: float | None = None         # None: the learning rate carried in the checkpoint's optimizer state
    # Start Adam's first moment at zero (its second moment and step count are kept). Set for the first update
    # after Stage 1: Stage 1's momentum points along the imitation loss, and at Stage 1's learning rate it moved
    # every practice action's log pi by about -0.45 nats in an update of ~700 samples, drowning the REINFORCE
    # gradient (bench/RESULTS_experiments.md); the second moment keeps the step sizes Stage 1 ended with.
    reset_momentum: bool = False
    instruction_embeddings: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UpdatePlan":
        return cls(**data)


class Distributed:
    """This process's place among the torchrun processes of a multi-GPU (or multi-process CPU) learner."""

    def __init__(self, rank: int, world_size: int, local_rank: int) -> None:
        import torch.distributed as dist

        self.rank, self.world_size = rank, world_size
        use_cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        # Followers wait for rank 0's next plan for as long as practice takes: no collective timeout.
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(days=365))
        self.control = dist.new_group(backend="gloo", timeout=timedelta(days=365))

    @classmethod
    def from_environment(cls) -> "Distributed | None":
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return None
        return cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj=None):
        """Rank 0's ``obj`` on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def close(self) -> None:
        import torch.distributed as dist

        dist.destroy_process_group()


class _Heads(nn.Module):
    """The policy from cached backbone features (or frames), as one module DDP can wrap."""

    def __init__(self, model: EFMPolicy, cached: bool) -> None:
        super().__init__()
        self.model, self.cached = model, cached

    def forward(self, visual, proprio, instruction):
        if self.cached:
            return self.model.forward_features(visual, proprio, instruction)[0]
        return self.model(visual, proprio, instruction)[0]


@dataclass
class Samples:
    """Every action of the update's episodes."""
    frames: np.ndarray          # (F, H, W, 3) uint8
    view_frames: np.ndarray     # (N, views)
    proprio: np.ndarray         # (N, P)
    instructions: np.ndarray    # (N, 384)
    tokens: np.ndarray          # (N, tokens per chunk)
    returns: np.ndarray         # (N,)
    recorded_log_probs: np.ndarray

    def __len__(self) -> int:
        return len(self.returns)


def load_samples(plan: UpdatePlan, model: EFMPolicy) -> Samples:
    config = model.config
    parts: dict[str, list] = {k: [] for k in ("frames", "views", "proprio", "instructions", "tokens", "returns", "logp")}
    offset = 0
    for episode_dir in plan.episode_dirs:
        episode = read_practice_episode(episode_dir, config.cameras, config.history, config.image_size)
        parts["frames"].append(episode.frames)
        parts["views"].append(episode.view_frames + offset)
        offset += len(episode.frames)
        parts["proprio"].append(episode.proprio)
        embedding = np.asarray(plan.instruction_embeddings[episode.instruction], np.float32)
        parts["instructions"].append(np.repeat(embedding[None], episode.steps, axis=0))
        parts["tokens"].append(episode.tokens)
        parts["returns"].append(discounted_returns(episode.rewards, plan.gamma))
        parts["logp"].append(episode.log_probs)
    cat = np.concatenate
    return Samples(cat(parts["frames"]), cat(parts["views"]), cat(parts["proprio"]), cat(parts["instructions"]),
                   cat(parts["tokens"]), cat(parts["returns"]), cat(parts["logp"]))


def minibatch_order(plan: UpdatePlan, samples: int) -> np.ndarray:
    """(sgd_steps, batch_size) sample indices: shuffled passes over every sample, as many as needed."""
    rng = np.random.default_rng([plan.seed, plan.learner_step])
    needed = plan.sgd_steps * plan.batch_size
    passes = -(-needed // samples)
    order = np.concatenate([rng.permutation(samples) for _ in range(passes)])[:needed]
    return order.reshape(plan.sgd_steps, plan.batch_size)


def build_optimizer(model: EFMPolicy, state: dict, lr: float | None,
                    reset_momentum: bool = False) -> torch.optim.Optimizer:
    """Adam over the trainable weights, continuing the checkpoint's state (Stage 1's, then each update's)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr if lr is not None else 3e-4, eps=1e-7)
    if state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
        if reset_momentum:
            for moments in optimizer.state.values():
                if "exp_avg" in moments:
                    moments["exp_avg"].zero_()
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    return optimizer


@torch.no_grad()
def _features(model: EFMPolicy, frames: np.ndarray, device: torch.device) -> torch.Tensor:
    chunks = []
    for start in range(0, len(frames), FEATURE_BATCH):
        batch = torch.from_numpy(frames[start:start + FEATURE_BATCH]).to(device).unsqueeze(1)
        chunks.append(model.vision_features(batch)[:, 0])
    return torch.cat(chunks)


def run_update(plan: UpdatePlan, distributed: Distributed | None = None,
               log: Callable[[str], None] = print) -> tuple[EFMPolicy, torch.optim.Optimizer, dict]:
    """Train one update; returns the model, its optimizer and metrics (rank 0 saves them)."""
    device = distributed.device if distributed else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, world = (distributed.rank, distributed.world_size) if distributed else (0, 1)
    started = time.perf_counter()
    model, state = load_policy(plan.parent_checkpoint)
    model.to(device)
    # eval(): no dropout, so the gradient is that of the policy the robots ran (log pi as sampled)
    model.eval()
    optimizer = build_optimizer(model, state, plan.lr, plan.reset_momentum)
    samples = load_samples(plan, model)
    loaded = time.perf_counter()
    cached = model.vision_frozen
    visual_source = _features(model, samples.frames, device) if cached else torch.from_numpy(samples.frames)
    featured = time.perf_counter()
    heads = _Heads(model, cached)
    trainer: nn.Module = heads
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        # the steps-to-go head is computed but takes no gradient from REINFORCE
        trainer = DistributedDataParallel(heads, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    d_max = float(model.tokenizers.steps_to_go.max_steps)
    tokens = torch.from_numpy(samples.tokens)
    returns = torch.from_numpy(samples.returns)

    def inputs(index: np.ndarray):
        views = torch.from_numpy(samples.view_frames[index])
        visual = visual_source[views.to(visual_source.device)] if cached else visual_source[views]
        return (visual.to(device), torch.from_numpy(samples.proprio[index]).to(device),
                torch.from_numpy(samples.instructions[index]).to(device))

    def log_probs_of_all(module: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            out = [chunk_log_probs(module(*inputs(idx)), tokens[idx].to(device)).cpu()
                   for idx in np.array_split(np.arange(len(samples)), max(1, len(samples) // 256))]
        return torch.cat(out)

    before = log_probs_of_all(heads)
    sgd_started = time.perf_counter()
    losses = []
    for index in minibatch_order(plan, len(samples)):
        mine = index[rank::world]
        log_probs = chunk_log_probs(trainer(*inputs(mine)), tokens[mine].to(device))
        # DDP averages the ranks' gradients: dividing each rank's sum by batch / world makes that
        # average the gradient of the whole minibatch's mean
        loss = reinforce_loss(log_probs, returns[mine].to(device), d_max, mean_over=len(index) / world)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())   # on rank > 0 an estimate from its share
    sgd_s = time.perf_counter() - sgd_started
    after = log_probs_of_all(heads)
    change = (after - before).numpy()
    positive, negative = samples.returns > 0, samples.returns < 0
    metrics = {
        "samples": len(samples), "episodes": len(plan.episodes), "sgd_steps": plan.sgd_steps,
        "loss_first": losses[0] if losses else 0.0, "loss_mean": float(np.mean(losses)) if losses else 0.0,
        "return_mean": float(samples.returns.mean()),
        # recorded (robot, ONNX, live frames) vs recomputed (learner, torch, JPEG frames) log pi:
        # near 0 unless the robot sampled at a temperature != 1 or preprocessing differs
        "log_prob_gap_mean": float(np.mean(np.abs(before.numpy() - samples.recorded_log_probs))),
        "log_prob_change_positive_return": float(change[positive].mean()) if positive.any() else 0.0,
        "log_prob_change_negative_return": float(change[negative].mean()) if negative.any() else 0.0,
        "load_s": round(loaded - started, 3), "features_s": round(featured - loaded, 3), "sgd_s": round(sgd_s, 3),
        "sgd_samples_per_s": round(plan.sgd_steps * plan.batch_size / max(sgd_s, 1e-9), 1),
        "update_s": round(time.perf_counter() - started, 3), "world_size": world, "device": str(device),
    }
    if rank == 0:
        log(f"{plan.version}: {len(samples)} samples from {len(plan.episodes)} episodes, {plan.sgd_steps} steps, "
            f"loss {metrics['loss_first']:.4f} -> {losses[-1] * 1.0 if losses else 0.0:.4f}")
    return model, optimizer, metrics
