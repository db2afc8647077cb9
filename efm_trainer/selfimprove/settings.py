"""What one ``efm self-improve`` run does, as one checked dataclass (saved with the run)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from efm_runtime.errors import EfmUserError

# Seed ranges never overlap: demos use 1.., evaluation 1,000,001.., robot i practises on
# PRACTICE_FIRST_SEED + i * PRACTICE_SEED_STRIDE.., so no practice or demo scene is ever an evaluation scene.
EVAL_FIRST_SEED = 1_000_001
PRACTICE_FIRST_SEED = 2_000_001
PRACTICE_SEED_STRIDE = 100_000


@dataclass
class SelfImproveSettings:
    env: str = "language_table"
    # Task family of demos, practice and evaluation. "separate" because a CPU-sized Stage 1 reaches about
    # 30% there (something to improve on) but only 2-4% on block2block (bench/RESULTS_stage1.md).
    task: str = "separate"
    out: str = "runs/self_improve"
    cache: str = "~/.cache/efm"               # oracle demos and their backbone features, shared between runs
    seed: int = 0                             # Stage 1 initialisation and minibatches, learner minibatches
    # Stage 1
    demos: int = 1000                         # oracle episodes ("1x" data)
    demo_noise: float = 0.2                   # oracle suboptimality, as real demonstrations are
    demo_workers: int = 2
    sft_steps: int = 4000
    sft_batch_size: int = 64
    sft_lr: float = 1e-3
    action_bins: int = 32
    vision_blocks: int = 11
    image_size: tuple[int, int] = (96, 160)
    backbone: str = "small"                   # small (pretrained) or scratch: the pretraining ablation
    d_model: int = 128
    layers: int = 2
    # Stage 2
    robots: int = 4
    practice_episodes: int = 200              # stop practising after this many uploaded episodes
    max_steps: int = 100                      # policy steps before an episode times out
    steps_per_update: int = 1024              # on-policy steps of one version before a learner update
    episodes_per_update: int = 0              # > 0: update after this many episodes instead of steps_per_update
    updates: int = 0                          # > 0: stop practising once this many updates are published
    sgd_steps: int = 32                       # per update; 0 = one pass over the update's actions
    rl_batch_size: int = 64
    rl_lr: float = 0.0                        # 0 = the Stage 1 optimizer's, whose Adam state Stage 2 continues
    gamma: float = 0.9
    temperature: float = 1.0                  # robots sample actions while practising
    # Freeze the simulated robots while the learner updates. On a machine with fewer cores than robots plus
    # learner, practice during an update only yields episodes of a version about to be replaced (stored,
    # never trained: on-policy) and starves the update. Real robots have their own computers and practise on.
    pause_robots_during_updates: bool = True
    success_threshold: float = 0.0            # s; 0 = calibrate on held-out demos
    min_detector_precision: float = 0.8       # calibration: a detector that ends episodes too early is worse
    success_streak: int = 3                   # k
    # evaluation (ground truth, held-out seeds, greedy actions)
    eval_episodes: int = 50
    eval_workers: int = 1                     # evaluation processes; more once practice no longer needs the cores
    evaluate_every_version: bool = False      # experiments: no version skipped when the evaluator falls behind
    port: int = 0                             # learner port; 0 = a free one
    max_wall_s: float = 0.0                   # stop practice after this long; 0 = no limit
    quick: bool = False

    def __post_init__(self) -> None:
        self.image_size = tuple(self.image_size)
        positive = ("demos", "sft_steps", "sft_batch_size", "robots", "practice_episodes", "max_steps",
                    "steps_per_update", "rl_batch_size", "eval_episodes", "success_streak")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise EfmUserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.sgd_steps < 0:
            raise EfmUserError(f"--sgd-steps must be 0 (one pass) or more, got {self.sgd_steps}")
        if self.episodes_per_update < 0 or self.updates < 0:
            raise EfmUserError("--episodes-per-update and --updates must be 0 (off) or more")
        if not 0.0 <= self.gamma <= 1.0:
            raise EfmUserError(f"--gamma must be within [0, 1], got {self.gamma}")
        if self.backbone not in ("small", "scratch"):
            raise EfmUserError(f"--backbone must be small or scratch, got {self.backbone!r}")
        if self.robots > 16:
            raise EfmUserError(f"--robots {self.robots}: each robot is a process with its own simulator; "
                               "use at most 16 on one machine")

    @property
    def out_dir(self) -> Path:
        return Path(self.out).expanduser().resolve()

    def demo_dir(self) -> Path:
        name = f"demos-{self.env}-{self.task or 'any'}-noise{self.demo_noise:g}"
        return Path(self.cache).expanduser().resolve() / name

    def feature_cache(self) -> Path:
        return Path(self.cache).expanduser().resolve() / "features"

    def sft_settings(self, data_dir: Path, out_dir: Path, eval_every: int | None = None):
        """Stage 1 on ``data_dir`` as this run trains it (validation and checkpoints every quarter by default)."""
        from efm_trainer.sft import SFTSettings

        quarter = max(100, self.sft_steps // 4)
        return SFTSettings(data=[str(data_dir)], out=str(out_dir), max_steps=self.sft_steps,
                           batch_size=self.sft_batch_size, lr=self.sft_lr, action_bins=self.action_bins,
                           vision_blocks=self.vision_blocks, image_size=self.image_size, backbone=self.backbone,
                           d_model=self.d_model, layers=self.layers, seed=self.seed,
                           feature_cache=str(self.feature_cache()), eval_every=eval_every or quarter,
                           checkpoint_every=quarter)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SelfImproveSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


# --quick: the whole pipeline in about 5 minutes on 2 CPU cores (5.2 min measured from an empty demo cache);
# a smoke run, not an experiment.
QUICK = dict(demos=120, sft_steps=600, sft_batch_size=32, vision_blocks=5, robots=4, practice_episodes=48,
             max_steps=60, steps_per_update=384, sgd_steps=16, rl_batch_size=32, eval_episodes=20, quick=True)
