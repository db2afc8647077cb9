"""Self-improvement against more demonstrations (the paper's central claim, its Figure 4/Table 2 setting).

On one fixed set of held-out scenes (seeds and instructions no demo and no practice episode uses), per
training seed:

- ``1x``: Stage 1 on ``unit`` demos, and from the same run, Stage 2 self-improvement after about 10% and
  20% of ``unit`` practice episodes (``1x + 10%``, ``1x + 20%``): one ``efm self-improve`` run whose learner
  updates every ``unit / 10`` episodes and stops after two updates;
- ``2x``, ``4x``, ``8x``: Stage 1 alone on the first 2, 4 and 8 times ``unit`` demos (nested sets from
  one cached pool, so every arm of a seed sees the same first demos).

Arms of one seed are finished before the next seed starts, so a stopped experiment holds whole seeds.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from efm_runtime.errors import EfmUserError

from ..selfimprove.pipeline import INITIAL_VERSION
from ..selfimprove.settings import SelfImproveSettings
from .arms import practice_settings, self_improve_arm, stage1_arm
from .common import ExperimentDir, Progress, paired_difference, percent, summarise

# seconds per arm on the 2-core development machine, for the time-left estimate only
ESTIMATE_S = {"stage1_per_100_demos": 10.0, "stage1_fixed": 40.0, "self_improve": 300.0}


@dataclasses.dataclass
class ScalingConfig:
    env: str = "language_table"
    task: str = "separate"
    unit: int = 100                       # demos of "1x"
    multiples: tuple[int, ...] = (2, 4, 8)
    practice_fraction: float = 0.1        # practice episodes per update, as a fraction of unit; two updates
    seeds: int = 3
    eval_episodes: int = 50
    eval_workers: int = 2
    max_steps: int = 100                  # policy steps of a practice or evaluation episode
    sft_steps: int = 1000                 # Stage 1 steps at 1x and 2x ...
    sft_max_steps: int = 3000             # ... growing with the demos beyond (steps x m / 2), up to this
    robots: int = 2
    cache: str = "~/.cache/efm"

    def __post_init__(self) -> None:
        self.multiples = tuple(int(m) for m in self.multiples)
        if self.unit < 10:
            raise EfmUserError(f"--unit {self.unit}: at least 10 demos, so that 10% of it is an episode")
        if not self.multiples or min(self.multiples) < 2:
            raise EfmUserError(f"--multiples {' '.join(map(str, self.multiples))}: each must be 2 or more "
                               "(1x is the self-improvement arms' own Stage 1)")
        if self.seeds < 1 or self.eval_episodes < 1:
            raise EfmUserError("--seeds and --eval-episodes must be at least 1")
        if not 0 < self.practice_fraction <= 1:
            raise EfmUserError(f"--practice-fraction must be in (0, 1], got {self.practice_fraction}")

    @property
    def episodes_per_update(self) -> int:
        return max(1, round(self.unit * self.practice_fraction))

    def stage1_steps(self, multiple: int) -> int:
        """A fixed step count would leave 8x undertrained (14 passes over 8x at 3,000 steps against 37 over 1x at
        1,000): from 2x on, steps grow with the data, capped at the Stage 1 recipe's 3,000."""
        return min(self.sft_max_steps, max(self.sft_steps, round(self.sft_steps * multiple / 2)))

    def base_settings(self, seed: int) -> SelfImproveSettings:
        return practice_settings(
            episodes_per_update=self.episodes_per_update, updates=2, env=self.env, task=self.task, cache=self.cache,
            seed=seed, demos=self.unit, sft_steps=self.sft_steps, robots=self.robots, max_steps=self.max_steps,
            eval_episodes=self.eval_episodes, eval_workers=self.eval_workers)


def groups(config: ScalingConfig) -> list[str]:
    tenth = round(100 * config.practice_fraction)
    return ["1x", f"1x + {tenth}%", f"1x + {2 * tenth}%"] + [f"{m}x" for m in config.multiples]


def run_scaling(config: ScalingConfig, out: str | Path, log=print) -> Path:
    from efm_sim.demos import record_demos

    exp = ExperimentDir(out, "scaling", dataclasses.asdict(config))
    names = groups(config)
    plan = []
    for seed in range(config.seeds):
        plan.append((f"self-improve-seed{seed}", ESTIMATE_S["self_improve"]))
        plan += [(f"stage1-{m}x-seed{seed}", ESTIMATE_S["stage1_fixed"] + ESTIMATE_S["stage1_per_100_demos"]
                  * m * config.unit / 100 + config.stage1_steps(m) / 14) for m in config.multiples]
    progress = Progress(plan, log=log)
    try:
        pool_settings = config.base_settings(0)
        largest = max(config.multiples + (1,)) * config.unit
        log(f"demo pool: {largest} oracle demos in {pool_settings.demo_dir()} (cached between runs)")
        record_demos(config.env, config.task, largest, str(pool_settings.demo_dir()), noise=pool_settings.demo_noise,
                     workers=pool_settings.demo_workers)
        for seed in range(config.seeds):
            settings = config.base_settings(seed)
            self_improve_arm(exp, f"self-improve-seed{seed}", settings,
                             dict(zip(names[:3], (INITIAL_VERSION, "rl-0001", "rl-0002"))), progress)
            for multiple, group in zip(config.multiples, names[3:]):
                arm = f"stage1-{multiple}x-seed{seed}"
                if exp.result(arm):
                    progress.skip(arm)
                    continue
                stage1_arm(exp, arm, group, dataclasses.replace(settings, demos=multiple * config.unit,
                                                                sft_steps=config.stage1_steps(multiple)),
                           pool_settings.demo_dir(), config.eval_workers, progress)
    finally:
        progress.close()
    return write_scaling_report(exp, config)


def write_scaling_report(exp: ExperimentDir, config: ScalingConfig) -> Path:
    report = exp.start_report()
    rows = exp.episodes()
    names = groups(config)
    by_group = {g: [r for r in rows if r["group"] == g] for g in names}
    summaries = {g: summarise(v) for g, v in by_group.items() if v}
    spent = {}
    for g, v in by_group.items():
        per_seed = {}
        for r in v:
            per_seed[r["training_seed"]] = (int(r["demos"]), int(r["practice_episodes"]))
        spent[g] = sorted(per_seed.values())
    _plot(summaries, spent, config, report / "success_vs_episodes.png")
    lines = [f"# Scaling: self-improvement vs more demos ({config.env} {config.task})", "",
             f"Held-out scenes: {config.eval_episodes} (seeds from 1000001, greedy, at most {config.max_steps} "
             f"policy steps), the same for every arm; success is the simulator's ground truth. "
             f"1x = {config.unit} oracle demos; {config.seeds} training seeds.", "",
             "| arm | demos | Stage 1 steps | practice episodes (per seed) | success, pooled (95% Wilson) "
             "| mean of seeds (95% t) | per seed |", "|---" * 7 + "|"]
    for g in names:
        if g not in summaries:
            lines.append(f"| {g} | - | - | - | not run yet | | |")
            continue
        s = summaries[g]
        demos = spent[g][0][0] if spent[g] else 0
        practice = ", ".join(str(p) for _, p in spent[g])
        multiple = int(g[:-1]) if g.endswith("x") and g[:-1].isdigit() else 1
        lines.append(f"| {g} | {demos} | {config.stage1_steps(multiple)} | {practice} | {percent(s.rate)} "
                     f"({s.successes}/{s.episodes}; {percent(s.pooled_low)}-{percent(s.pooled_high)}) | "
                     f"{percent(s.seed_mean)} ({percent(s.seed_low)}-{percent(s.seed_high)}) | "
                     f"{', '.join(percent(r) for r in s.seed_rates)} |")
    comparisons = [(names[1], f"{config.multiples[-1]}x"), (names[2], f"{config.multiples[-1]}x"),
                   (names[1], "1x"), (names[2], "1x")]
    lines += ["", "Paired differences (same scenes; each scene's success averaged over training seeds first):", "",
              "| comparison | scenes | difference | 95% interval |", "|---|---|---|---|"]
    for a, b in comparisons:
        if by_group.get(a) and by_group.get(b):
            d = paired_difference(by_group[a], by_group[b])
            lines.append(f"| {a} - {b} | {d.scenes} | {100 * d.difference:+.1f} points | "
                         f"{100 * d.low:+.1f} to {100 * d.high:+.1f} |")
    lines += ["", "Configuration: `config.json`; commands: `commands.txt`; raw per-episode results: "
              "`report/results.csv`; plot: `report/success_vs_episodes.png`."]
    path = report / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot(summaries, spent, config: ScalingConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    names = groups(config)
    stage1 = [g for g in [names[0]] + names[3:] if g in summaries]
    improved = [g for g in names[:3] if g in summaries]

    def point(g):
        s = summaries[g]
        total = sum(d + p for d, p in spent[g]) / max(1, len(spent[g]))
        return total, 100 * s.rate, [[100 * (s.rate - s.pooled_low)], [100 * (s.pooled_high - s.rate)]]

    for members, label, style in ((stage1, "Stage 1 only (more demos)", "o-"),
                                  (improved, "Stage 1 on 1x + self-improvement", "s-")):
        if not members:
            continue
        xs, ys, errs = zip(*(point(g) for g in members))
        ax.errorbar(xs, ys, yerr=[[e[0][0] for e in errs], [e[1][0] for e in errs]], fmt=style, capsize=3,
                    label=label)
        for g, x, y in zip(members, xs, ys):
            ax.annotate(g, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("episodes spent (demos + practice), mean per seed")
    ax.set_ylabel("ground-truth success on held-out scenes (%)")
    ax.set_title(f"{config.env} {config.task}: {config.seeds} seeds x {config.eval_episodes} scenes "
                 "(95% Wilson, pooled)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
