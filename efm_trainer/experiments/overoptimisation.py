"""Stage 2 past its peak: ground-truth success, the detector against the truth, and which version each
selection rule keeps (the paper names over-optimisation of the learned reward as an open problem).

One ``efm self-improve`` run makes many more updates than the scaling experiment (default 10, every 10% of
the demos). Every version is evaluated twice on held-out scenes: set A (seeds 1000001.., what the
self-improve run evaluates and the learner's ``best`` rule sees) and set B (seeds 1100001.., never seen
by any rule), so a rule that picks a version for a lucky set-A score is caught by set B. The robots record
the simulator's truth with every practice episode, so the success detector's precision and recall are
measured per version on the episodes it judged, and rules that need no ground truth
(:mod:`.practice_truth`: the detector alone, occasional human labels, the false-alarm stop) are judged
against set B.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from efm_runtime.errors import EfmUserError

from ..selfimprove.evaluation import wilson_interval
from ..selfimprove.pipeline import INITIAL_VERSION
from ..selfimprove.settings import EVAL_FIRST_SEED, SelfImproveSettings
from .arms import evaluation_arm, practice_settings, self_improve_arm
from .common import ExperimentDir, Progress, percent
from .practice_truth import RULES, judge, rule_summary, run_signals, stopping_point

CONFIRM_FIRST_SEED = EVAL_FIRST_SEED + 100_000      # set B; practice seeds start at 2000001, demos at 1


@dataclasses.dataclass
class OveroptimisationConfig:
    env: str = "language_table"
    task: str = "separate"
    demos: int = 100
    seed: int = 0
    sft_steps: int = 1000
    episodes_per_update: int = 10
    updates: int = 10
    rl_lr: float = 0.0                    # 0: Stage 1's
    eval_episodes: int = 50               # set A and set B each
    eval_workers: int = 2
    label_every: int = 4                  # one practice episode in this many gets a (simulated) human label
    max_steps: int = 100
    robots: int = 2
    cache: str = "~/.cache/efm"

    def __post_init__(self) -> None:
        if self.updates < 2 or self.episodes_per_update < 1:
            raise EfmUserError("--updates must be at least 2 and --episodes-per-update at least 1")

    def settings(self) -> SelfImproveSettings:
        return practice_settings(
            episodes_per_update=self.episodes_per_update, updates=self.updates, env=self.env, task=self.task,
            cache=self.cache, seed=self.seed, demos=self.demos, sft_steps=self.sft_steps, robots=self.robots,
            max_steps=self.max_steps, eval_episodes=self.eval_episodes, eval_workers=self.eval_workers,
            rl_lr=self.rl_lr)

    def versions(self) -> list[str]:
        return [INITIAL_VERSION] + [f"rl-{i:04d}" for i in range(1, self.updates + 1)]


def run_overoptimisation(config: OveroptimisationConfig, out: str | Path, log=print) -> Path:
    exp = ExperimentDir(out, "overoptimisation", dataclasses.asdict(config))
    versions = config.versions()
    plan = [("self-improve", 90.0 * config.updates + 200.0)] + [(f"confirm-{v}", 30.0) for v in versions]
    progress = Progress(plan, log=log)
    try:
        settings = config.settings()
        self_improve_arm(exp, "self-improve", settings, {v: v for v in versions}, progress)
        run_dir = exp.root / "arms" / "self-improve" / "run"
        for version in versions:
            arm = f"confirm-{version}"
            if exp.result(arm):
                progress.skip(arm)
                continue
            progress.start(arm)
            first = exp.result(f"self-improve-{version}")
            result = evaluation_arm(
                exp, {"arm": arm, "group": f"{version} (set B)", "training_seed": config.seed, "demos": config.demos,
                      "practice_episodes": first["practice_episodes"], "version": version},
                run_dir / "learner" / "versions" / version, settings, CONFIRM_FIRST_SEED, config.eval_workers)
            progress.done(arm, f"{result['successes']}/{result['episodes']} on set B")
    finally:
        progress.close()
    return write_overoptimisation_report(exp, config)


def write_overoptimisation_report(exp: ExperimentDir, config: OveroptimisationConfig) -> Path:
    report = exp.start_report()
    run_dir = exp.root / "arms" / "self-improve" / "run"
    signals = run_signals(run_dir, label_every=config.label_every)
    set_a = {v: exp.result(f"self-improve-{v}") for v in config.versions()}
    set_b = {v: exp.result(f"confirm-{v}") for v in config.versions()}
    rate = {v: (r["successes"] / r["episodes"] if r else None) for v, r in set_b.items()}
    on_set_b = [dataclasses.replace(s, eval_rate=rate.get(s.version)) for s in signals]

    lines = [f"# Over-optimisation: Stage 2 past its peak ({config.env} {config.task})", "",
             f"Stage 1 on {config.demos} demos; {config.updates} learner updates of {config.episodes_per_update} "
             f"practice episodes each ({config.robots} robots); every version evaluated greedily on set A "
             f"({config.eval_episodes} scenes from seed {EVAL_FIRST_SEED}) and set B ({config.eval_episodes} scenes "
             f"from seed {CONFIRM_FIRST_SEED}). The detector is judged on the practice episodes against the "
             f"simulator's truth recorded with them; 'labels' are a 1-in-{config.label_every} subset of them "
             f"labelled with that truth (a human with a reset-supervisor label button, on hardware).", "",
             "| version | practice before | set A | set B | A+B | detector rate | truth on practice | precision "
             "| recall | labels (rate) | false alarms | mean return |", "|---" * 12 + "|"]
    for s in signals:
        a, b = set_a.get(s.version), set_b.get(s.version)
        both = ((a["successes"] + b["successes"]), (a["episodes"] + b["episodes"])) if a and b else None
        lines.append(
            f"| {s.version} | {a['practice_episodes'] if a else '-'} | {_fraction(a)} | {_fraction(b)} | "
            f"{_interval(*both) if both else '-'} | {percent(_nan(s.detector_rate))} | "
            f"{percent(_nan(s.truth_rate))} | {percent(_nan(s.precision))} | {percent(_nan(s.recall))} | "
            f"{s.labels} ({percent(_nan(s.label_rate))}) | {s.false_alarms} | {_nan(s.mean_return):.2f} |")
    stop = stopping_point(signals)
    lines += ["", f"False-alarm stop: {'fires at ' + stop if stop else 'never fires in this run'}.", "",
              "Which version each rule keeps, judged on set B (which no rule saw):", "",
              "| rule | what it needs | picks | its set-B success | best on set B | regret |", "|---" * 6 + "|"]
    for name, rule in RULES.items():
        chosen = rule(signals)
        verdict = judge(on_set_b, chosen, "eval_rate")
        lines.append(f"| {name} | {rule_summary(name)} | {chosen or 'none'} | "
                     f"{percent(_nan(verdict.chosen_truth))} | {verdict.best} ({percent(_nan(verdict.best_truth))}) | "
                     f"{'-' if verdict.regret is None else f'{100 * verdict.regret:.1f} points'} |")
    lines += ["", "Configuration: `config.json`; commands: `commands.txt`; raw results (sets A and B): "
              "`report/results.csv`; plots: `report/ground_truth_vs_updates.png`, `report/detector_vs_truth.png`."]
    _plots(signals, set_a, set_b, stop, report)
    path = report / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _nan(value):
    return float("nan") if value is None else value


def _fraction(result: dict | None) -> str:
    return "-" if not result else _interval(result["successes"], result["episodes"])


def _interval(successes: int, episodes: int) -> str:
    low, high = wilson_interval(successes, episodes)
    return f"{100 * successes / episodes:.0f}% ({successes}/{episodes}; {100 * low:.0f}-{100 * high:.0f})"


def _plots(signals, set_a, set_b, stop, report: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.version for s in signals]
    xs = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(7.0, 4.0), dpi=120)
    for label, results, marker in (("held-out set A", set_a, "o-"), ("held-out set B", set_b, "s--")):
        points = [(x, results[v]) for x, v in zip(xs, names) if results.get(v)]
        if points:
            px = [x for x, _ in points]
            rates = [100 * r["successes"] / r["episodes"] for _, r in points]
            bounds = [wilson_interval(r["successes"], r["episodes"]) for _, r in points]
            err = [[y - 100 * lo for y, (lo, _) in zip(rates, bounds)],
                   [100 * hi - y for y, (_, hi) in zip(rates, bounds)]]
            ax.errorbar(px, rates, yerr=err, fmt=marker, capsize=3, label=label)
    truth = [(x, 100 * s.truth_rate) for x, s in zip(xs, signals) if s.truth_rate is not None]
    if truth:
        ax.plot(*zip(*truth), "^:", label="truth on practice episodes (sampled actions)")
    if stop in names:
        ax.axvline(names.index(stop), color="grey", ls=":", lw=1)
        ax.annotate("false-alarm stop", (names.index(stop), 95), fontsize=7)
    _save(fig, ax, names, "ground-truth success (%)", "ground truth as Stage 2 goes on (95% Wilson)",
          report / "ground_truth_vs_updates.png")

    fig, ax = plt.subplots(figsize=(7.0, 4.0), dpi=120)
    for field, label, marker in (("precision", "detector precision", "o-"), ("recall", "detector recall", "s-"),
                                 ("detector_rate", "detector success rate", "^--"),
                                 ("label_rate", "label success rate (1 in N labelled)", "v:")):
        points = [(x, 100 * getattr(s, field)) for x, s in zip(xs, signals) if getattr(s, field) is not None]
        if points:
            ax.plot(*zip(*points), marker, label=label)
    _save(fig, ax, names, "%", "success detector against the simulator's truth, per version (practice episodes)",
          report / "detector_vs_truth.png")


def _save(fig, ax, versions: list[str], ylabel: str, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.set_xticks(range(len(versions)), versions, rotation=45, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
