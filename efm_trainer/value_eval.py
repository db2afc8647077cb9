"""``efm eval value``: the value landscape Stage 2 depends on, predicted d(o, g) against the true
steps to go along held-out episodes (torch, training side)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def held_out_episodes(run_dir: Path, episode_ids: list[str]) -> np.ndarray:
    """Bool mask of ``episode_ids`` the run did not train on (its validation split or never seen)."""
    split = run_dir / "split.json"
    trained = set(json.loads(split.read_text())["train"]) if split.is_file() else set()
    return np.array([e not in trained for e in episode_ids], dtype=bool)


def predict_held_out(run_dir: str | Path, episodes: list[str], max_episodes: int = 12):
    """d(o, g) of the run's model along held-out episodes: (data, chosen episodes, row index, predicted,
    true steps to go, training step)."""
    import torch

    from efm_policy.model import load_policy
    from efm_policy.text import InstructionEncoder

    from .episodes import episode_paths
    from .sft_data import load_sft_data

    run_dir = Path(run_dir)
    model, state = load_policy(str(run_dir))
    config = model.config
    paths = [p for d in episodes for p in episode_paths(d)]
    # Folder names are episode ids: read only held-out episodes, not a whole training set.
    paths = [p for p, keep in zip(paths, held_out_episodes(run_dir, [p.name for p in paths])) if keep]
    if not paths:
        raise ValueError(f"every episode in {', '.join(map(str, episodes))} was used to train {run_dir}; "
                         "point --episodes at held-out ones")
    data = load_sft_data(paths[:max_episodes], config.cameras, config.history, config.image_size)
    chosen = np.flatnonzero(held_out_episodes(run_dir, data.episodes))
    index = np.flatnonzero(np.isin(data.episode_ids, chosen))
    embeddings = torch.from_numpy(InstructionEncoder().encode(data.instructions))
    edges = torch.from_numpy(model.tokenizers.steps_to_go.lower_edges).float()
    predicted = []
    with torch.no_grad():
        for start in range(0, len(index), 64):
            batch = index[start:start + 64]
            _, logits = model(torch.from_numpy(data.frames[data.view_frames[batch]]),
                              torch.from_numpy(data.proprio[batch]), embeddings[data.instruction_ids[batch]])
            predicted.append((logits.softmax(-1) @ edges).numpy())
    return data, chosen, index, np.concatenate(predicted), data.steps_to_go[index], int(state["step"])


def value_landscape(run_dir: str | Path, episodes: list[str], out: str | Path, max_episodes: int = 12,
                    log=print) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    data, chosen, index, predicted, truth, step = predict_held_out(run_dir, episodes, max_episodes)
    mae = float(np.abs(predicted - truth).mean())
    correlation = float(np.corrcoef(predicted, truth)[0, 1]) if len(index) > 2 else float("nan")

    figure, (along, scatter) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for n, episode in enumerate(chosen):
        rows = data.episode_ids[index] == episode
        color = colors[n % 10]
        along.plot(predicted[rows], color=color, lw=1.5)
        along.plot(truth[rows], color=color, lw=1, ls="--")
    along.set_xlabel("policy step")
    along.set_ylabel("steps to go")
    along.set_title("held-out episodes: predicted d(o,g) (solid) vs true (dashed)")
    scatter.scatter(truth, predicted, s=6, alpha=0.5)
    top = max(float(truth.max()), float(predicted.max())) + 1
    scatter.plot([0, top], [0, top], color="k", lw=0.8)
    scatter.set_xlabel("true steps to go")
    scatter.set_ylabel("predicted d(o,g)")
    scatter.set_title(f"MAE {mae:.2f} steps, r = {correlation:.3f} ({len(chosen)} episodes, {len(index)} states)")
    figure.suptitle(f"{run_dir.name} step {step}")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return {"episodes": int(len(chosen)), "states": int(len(index)), "steps_to_go_mae": mae,
            "correlation": correlation, "step": step}
