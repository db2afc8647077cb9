"""The run's report: success rate against practice episodes (PNG), a markdown table, summary.json."""
from __future__ import annotations

import json
from pathlib import Path

from .evaluation import VersionEvaluation
from .settings import SelfImproveSettings


def _ordered(evaluations: dict[str, VersionEvaluation]) -> list[VersionEvaluation]:
    return sorted(evaluations.values(), key=lambda e: (e.practice_episodes, e.version))


def plot_success(evaluations: list[VersionEvaluation], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [e.practice_episodes for e in evaluations]
    ys = [100 * e.success_rate for e in evaluations]
    err = [[100 * (e.success_rate - e.ci_low) for e in evaluations],
           [100 * (e.ci_high - e.success_rate) for e in evaluations]]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="ground-truth success (95% interval)")
    for e, x, y in zip(evaluations, xs, ys):
        ax.annotate(e.version, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.set_xlabel("practice episodes (Stage 2)")
    ax.set_ylabel(f"success on {evaluations[0].episodes if evaluations else 0} held-out scenes (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(settings: SelfImproveSettings, evaluations: dict[str, VersionEvaluation], status: dict,
                 facts: dict, out_dir: Path) -> Path:
    """Writes ``out_dir``/report.md, success_vs_practice.png and summary.json; returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = _ordered(evaluations)
    title = f"efm self-improve: {settings.env} {settings.task}{' (--quick)' if settings.quick else ''}"
    if ordered:
        plot_success(ordered, out_dir / "success_vs_practice.png", title)
    detector = status.get("success_rate_per_version", {})
    collected = status.get("episodes_per_version", {})
    before = evaluations.get("sft-0000")
    best = max(ordered, key=lambda e: (e.success_rate, -e.practice_episodes), default=None)
    last = ordered[-1] if ordered else None

    def pct(e: VersionEvaluation | None) -> str:
        return "-" if e is None else (f"{100 * e.success_rate:.0f}% ({e.successes}/{e.episodes}, "
                                      f"95% CI {100 * e.ci_low:.0f}-{100 * e.ci_high:.0f}%)")

    lines = [f"# {title}", "",
             f"Stage 1 on {facts.get('demos', settings.demos)} oracle demos, then Stage 2 with "
             f"{settings.robots} simulated robots; evaluation: ground-truth success on {settings.eval_episodes} "
             f"held-out scenes (seeds from {ordered[0].first_seed if ordered else '-'}), greedy actions, "
             f"{settings.max_steps} policy steps at most.", "",
             f"- before Stage 2 (sft-0000): {pct(before)}",
             f"- after Stage 2 (last evaluated, {last.version if last else '-'}): {pct(last)}",
             f"- best version by held-out success: {best.version if best else '-'}: {pct(best)}",
             f"- practice episodes uploaded: {status.get('episodes_total', 0)}; "
             f"learner steps: {status.get('learner_step', 0)}; wall time: {facts.get('wall_s', 0) / 60:.1f} min",
             ]
    for key in ("first_frame_successes", "stopped_because", "versions_skipped"):
        if facts.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {facts[key]}")
    lines += ["", "| version | practice episodes before it | held-out success | 95% CI | practice episodes "
              "collected by it | detector success in practice |", "|---|---|---|---|---|---|"]
    for e in ordered:
        rate = detector.get(e.version)
        lines.append(f"| {e.version} | {e.practice_episodes} | {100 * e.success_rate:.0f}% "
                     f"({e.successes}/{e.episodes}) | {100 * e.ci_low:.0f}-{100 * e.ci_high:.0f}% | "
                     f"{collected.get(e.version, 0)} | {'-' if rate is None else f'{100 * rate:.0f}%'} |")
    lines += ["", "![success rate against practice episodes](success_vs_practice.png)", "",
              "Command: `" + facts.get("command", "efm self-improve") + "`", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    summary = {"settings": settings.to_dict(), "facts": facts, "status": status,
               "evaluations": [e.__dict__ for e in ordered],
               "before": before.__dict__ if before else None, "best": best.__dict__ if best else None,
               "last": last.__dict__ if last else None}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return report
