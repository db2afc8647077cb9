"""Pretrained against scratch backbones (the paper's PaLI vs Scratch ablation).

The same Stage 1 + Stage 2 pipeline (one ``efm self-improve`` run per backbone and training seed) with the
``small`` backbone (ImageNet EfficientNet-Lite0 + MiniLM) and with ``scratch`` (the same network, randomly
initialised and trained end to end). The Stage 1 run is both the policy and the frozen reward model, so
the ablation covers both, as in the paper. Besides ground-truth success, the report gives each reward
model's steps-to-go error on held-out demos and its success detector's calibration.

Training the whole backbone on a CPU costs many frozen-feature steps, so the defaults cut the backbone after
its first 5 blocks (the stride-8 grid, as ``efm self-improve --quick``) and use batches of 32 for both arms:
the comparison is fair, the absolute figures are lower than the scaling experiment's.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from efm_runtime.errors import EfmUserError

from ..selfimprove.pipeline import INITIAL_VERSION
from ..selfimprove.settings import SelfImproveSettings
from .arms import practice_settings, self_improve_arm
from .common import ExperimentDir, Progress, paired_difference, percent, summarise

BACKBONES = ("small", "scratch")
ESTIMATE_S = {"small": 240.0, "scratch": 900.0}
STAGES = ("Stage 1", "+ 10%", "+ 20%")
VERSIONS = (INITIAL_VERSION, "rl-0001", "rl-0002")


@dataclasses.dataclass
class PretrainingConfig:
    env: str = "language_table"
    task: str = "separate"
    demos: int = 100
    seeds: int = 1
    sft_steps: int = 1000
    image_size: tuple[int, int] = (96, 160)
    vision_blocks: int = 5
    sft_batch_size: int = 32
    practice_fraction: float = 0.1
    eval_episodes: int = 50
    eval_workers: int = 2
    max_steps: int = 100
    robots: int = 2
    cache: str = "~/.cache/efm"

    def __post_init__(self) -> None:
        self.image_size = tuple(int(v) for v in self.image_size)
        if self.seeds < 1 or self.demos < 10:
            raise EfmUserError("--seeds must be at least 1 and --demos at least 10")

    def settings(self, backbone: str, seed: int) -> SelfImproveSettings:
        per_update = max(1, round(self.demos * self.practice_fraction))
        return practice_settings(
            episodes_per_update=per_update, updates=2, env=self.env, task=self.task, cache=self.cache, seed=seed,
            demos=self.demos, sft_steps=self.sft_steps, sft_batch_size=self.sft_batch_size,
            image_size=self.image_size, vision_blocks=self.vision_blocks, backbone=backbone, robots=self.robots,
            max_steps=self.max_steps, eval_episodes=self.eval_episodes, eval_workers=self.eval_workers)


def group(backbone: str, stage: str) -> str:
    return f"{backbone} {stage}"


def run_pretraining(config: PretrainingConfig, out: str | Path, log=print) -> Path:
    exp = ExperimentDir(out, "pretraining", dataclasses.asdict(config))
    plan = [(f"{b}-seed{s}", ESTIMATE_S[b]) for s in range(config.seeds) for b in BACKBONES]
    progress = Progress(plan, log=log)
    try:
        for seed in range(config.seeds):
            for backbone in BACKBONES:
                versions = {group(backbone, stage): v for stage, v in zip(STAGES, VERSIONS)}
                self_improve_arm(exp, f"{backbone}-seed{seed}", config.settings(backbone, seed), versions, progress)
    finally:
        progress.close()
    return write_pretraining_report(exp, config)


def reward_model_quality(run_dir: Path) -> dict:
    """Held-out steps-to-go error of the Stage 1 run (its last validation) and the detector calibration."""
    quality: dict = {}
    metrics = run_dir / "sft" / "metrics.jsonl"
    if metrics.is_file():
        validations = [json.loads(line) for line in metrics.read_text().splitlines()
                       if "val_steps_to_go_mae" in line]
        if validations:
            quality["steps_to_go_mae"] = validations[-1]["val_steps_to_go_mae"]
            quality["bc_loss"] = validations[-1]["val_bc_loss"]
    threshold = run_dir / "success_threshold.json"
    if threshold.is_file():
        quality.update(json.loads(threshold.read_text()))
    return quality


def write_pretraining_report(exp: ExperimentDir, config: PretrainingConfig) -> Path:
    report = exp.start_report()
    rows = exp.episodes()
    groups = [group(b, s) for b in BACKBONES for s in STAGES]
    by_group = {g: [r for r in rows if r["group"] == g] for g in groups}
    summaries = {g: summarise(v) for g, v in by_group.items() if v}
    lines = [f"# Pretraining: small (pretrained) vs scratch backbones ({config.env} {config.task})", "",
             f"{config.demos} demos, {config.sft_steps} Stage 1 steps at {config.image_size[0]}x{config.image_size[1]} "
             f"with {config.vision_blocks} backbone blocks for both; Stage 2 updates every "
             f"{max(1, round(config.demos * config.practice_fraction))} practice episodes; {config.seeds} training "
             f"seed(s); {config.eval_episodes} held-out scenes, ground-truth success.", "",
             "| arm | success, pooled (95% Wilson) | per seed |", "|---|---|---|"]
    for g in groups:
        s = summaries.get(g)
        lines.append(f"| {g} | " + (f"{percent(s.rate)} ({s.successes}/{s.episodes}; {percent(s.pooled_low)}-"
                                    f"{percent(s.pooled_high)}) | {', '.join(percent(r) for r in s.seed_rates)} |"
                                    if s else "not run yet | |"))
    lines += ["", "| comparison | scenes | difference | 95% interval |", "|---|---|---|---|"]
    for a, b in [(group("small", s), group("scratch", s)) for s in STAGES] + \
            [(group(bb, "+ 20%"), group(bb, "Stage 1")) for bb in BACKBONES]:
        if by_group.get(a) and by_group.get(b):
            d = paired_difference(by_group[a], by_group[b])
            lines.append(f"| {a} - {b} | {d.scenes} | {100 * d.difference:+.1f} points | "
                         f"{100 * d.low:+.1f} to {100 * d.high:+.1f} |")
    lines += ["", "Reward model (the frozen Stage 1 run) per backbone and seed:", "",
              "| run | held-out steps-to-go MAE | val BC loss | detector s | precision | recall |",
              "|---|---|---|---|---|---|"]
    for run in sorted((exp.root / "arms").glob("*/run")):
        q = reward_model_quality(run)
        if q:
            lines.append(f"| {run.parent.name} | {q.get('steps_to_go_mae', float('nan')):.2f} | "
                         f"{q.get('bc_loss', float('nan')):.3f} | {q.get('success_threshold', float('nan')):.2f} | "
                         f"{q.get('precision', float('nan')):.2f} | {q.get('recall', float('nan')):.2f} |")
    lines += ["", "Configuration: `config.json`; commands: `commands.txt`; raw results: `report/results.csv`; "
              "plot: `report/success_by_backbone.png`."]
    _plot(summaries, report / "success_by_backbone.png", config)
    path = report / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot(summaries, path: Path, config: PretrainingConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    width = 0.38
    for i, backbone in enumerate(BACKBONES):
        xs, ys, low, high = [], [], [], []
        for j, stage in enumerate(STAGES):
            s = summaries.get(group(backbone, stage))
            if s:
                xs.append(j + (i - 0.5) * width)
                ys.append(100 * s.rate)
                low.append(100 * (s.rate - s.pooled_low))
                high.append(100 * (s.pooled_high - s.rate))
        if xs:
            ax.bar(xs, ys, width, yerr=[low, high], capsize=3, label=backbone)
    ax.set_xticks(range(len(STAGES)), [f"Stage 1 ({config.demos} demos)", "+10% practice", "+20% practice"])
    ax.set_ylabel("ground-truth success on held-out scenes (%)")
    ax.set_title(f"{config.env} {config.task}: pretrained vs scratch (95% Wilson)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
