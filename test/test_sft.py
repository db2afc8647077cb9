"""Stage 1 SFT on a tiny recorded dataset: losses fall, resume is exact, bad input is explained."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import toy_env  # noqa: E402
from efm_runtime.cli import main  # noqa: E402
from efm_sim.demos import record_demos  # noqa: E402
from efm_trainer.sft import RunError, SFTRun, SFTSettings  # noqa: E402
from efm_trainer.sft_data import DatasetError, load_sft_data, validation_episodes  # noqa: E402


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    toy_env.register()
    out = tmp_path_factory.mktemp("toy_demos")
    record_demos("toy", "reach", 12, str(out), noise=0.3)
    return out


def settings(data, out, **overrides):
    base = dict(data=[str(data)], out=str(out), image_size=(24, 32), history=2, batch_size=16, d_model=32, layers=1,
                max_steps=4, log_every=2, eval_every=1000, checkpoint_every=2, val_fraction=0.25)
    return SFTSettings(**{**base, **overrides})


def test_samples_follow_the_episodes(toy_dataset):
    data = load_sft_data([toy_dataset], ["top"], history=2, image_size=(24, 32))
    assert len(data.episodes) == 12 and not data.skipped
    first = data.episode_ids == 0
    steps = data.steps_to_go[first]
    # hindsight labels count down to 0 at the final observation, which has no action
    assert steps[0] == first.sum() - 1 and steps[-1] == 0
    assert np.all(np.diff(steps) == -1)
    assert data.has_action[first].tolist() == [True] * (first.sum() - 1) + [False]
    # history: the first step repeats its only frame, later steps see the previous frame first
    views = data.view_frames[first]
    assert views[0, 0] == views[0, 1] and views[1, 0] == views[0, 1] and views[1, 1] == views[0, 1] + 1
    assert data.frames.shape[1:] == (24, 32, 3)


def test_validation_split_is_by_episode_and_stable():
    names = [f"ep-{i}" for i in range(200)]
    mask = validation_episodes(names, 0.1)
    assert 8 <= mask.sum() <= 35
    assert np.array_equal(validation_episodes(list(reversed(names)), 0.1), mask[::-1])


@pytest.mark.parametrize("backbone", ["small", "scratch"])
def test_sft_lowers_both_losses(toy_dataset, tmp_path, backbone):
    run = SFTRun(settings(toy_dataset, tmp_path / "run", backbone=backbone, max_steps=40, lr=1e-3), log=lambda _: None)
    assert run.model.vision_frozen == (backbone == "small")     # small: cached features, scratch: end to end
    before = run.evaluate(run.train_index)
    run.train()
    after = run.evaluate(run.train_index)
    assert after["val_bc_loss"] < before["val_bc_loss"] - 0.2
    assert after["val_steps_to_go_loss"] < before["val_steps_to_go_loss"] - 0.2
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"bc_loss", "steps_to_go_loss"} <= set(lines[0]) and lines[-1]["step"] == 40
    assert any("val_steps_to_go_mae" in line and "val_action_token_accuracy" in line for line in lines)


def test_resumed_run_takes_the_same_next_step(toy_dataset, tmp_path):
    straight = SFTRun(settings(toy_dataset, tmp_path / "straight", backbone="scratch"), log=lambda _: None)
    straight.train(max_steps=4)

    first = SFTRun(settings(toy_dataset, tmp_path / "resumed", backbone="scratch"), log=lambda _: None)
    first.train(max_steps=2)           # checkpoint_every=2: saved at step 2, then the process "dies"
    del first
    resumed = SFTRun(settings(toy_dataset, tmp_path / "resumed", backbone="scratch"), log=lambda _: None)
    assert resumed.step == 2
    resumed.train(max_steps=4)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and state["optimizer"]["state"]      # Adam moments kept for Stage 2


def test_resume_with_other_settings_is_refused(toy_dataset, tmp_path):
    SFTRun(settings(toy_dataset, tmp_path / "run", backbone="scratch"), log=lambda _: None).train(max_steps=2)
    with pytest.raises(RunError, match="lr: run has 0.0003, command gives 0.01"):
        SFTRun(settings(toy_dataset, tmp_path / "run", backbone="scratch", lr=0.01), log=lambda _: None)


def test_dataset_without_successes_is_explained(tmp_path):
    toy_env.register()
    record_demos("toy", "reach", 2, str(tmp_path / "d"), noise=0.0)
    for meta in (tmp_path / "d").glob("*/metadata.yaml"):
        meta.write_text(meta.read_text().replace("success: 'True'", "success: 'False'").replace("outcome: succeeded", "outcome: timed_out"))
    with pytest.raises(DatasetError, match="no usable episode .*timed_out: Stage 1 trains on successes"):
        load_sft_data([tmp_path / "d"], ["top"], 2, (24, 32))


def test_cli_reports_a_missing_dataset(tmp_path, capsys):
    assert main(["train", "sft", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 2
    assert "no episodes" in capsys.readouterr().err


def test_value_plot_uses_only_held_out_episodes(toy_dataset, tmp_path, capsys):
    run = SFTRun(settings(toy_dataset, tmp_path / "run", backbone="scratch"), log=lambda _: None)
    run.train(max_steps=2)
    held_out = json.loads((tmp_path / "run" / "split.json").read_text())["validation"]
    assert main(["eval", "value", str(tmp_path / "run"), "--episodes", str(toy_dataset),
                 "--out", str(tmp_path / "value.png")]) == 0
    assert f"{len(held_out)} held-out episodes" in capsys.readouterr().out
    assert (tmp_path / "value.png").stat().st_size > 0
    trained = json.loads((tmp_path / "run" / "split.json").read_text())["train"][0]
    assert main(["eval", "value", str(tmp_path / "run"), "--episodes", str(toy_dataset / trained),
                 "--out", str(tmp_path / "v2.png")]) == 2
    assert "was used to train" in capsys.readouterr().err


def test_shared_feature_cache_encodes_each_episode_once(toy_dataset, tmp_path):
    """Runs on overlapping demo sets (the scaling experiment) share the frozen backbone's features."""
    import os

    subset = tmp_path / "half"
    subset.mkdir()
    episodes = sorted(p for p in toy_dataset.iterdir() if p.is_dir())
    for episode in episodes[:6]:
        os.symlink(episode, subset / episode.name)
    cache, logs = tmp_path / "features", []
    half = SFTRun(settings(subset, tmp_path / "a", feature_cache=str(cache)), log=logs.append)
    full = SFTRun(settings(toy_dataset, tmp_path / "b", feature_cache=str(cache)), log=logs.append)
    assert any("0 of 6 episodes cached" in line for line in logs)
    assert any("6 of 12 episodes cached" in line for line in logs)
    private = SFTRun(settings(toy_dataset, tmp_path / "c"), log=lambda _: None)     # the run-folder cache
    # the same numbers up to fp16 rounding (per-episode batches vs 128-frame batches)
    assert torch.allclose(full.features.float(), private.features.float(), rtol=1e-2, atol=2e-2)
    assert torch.equal(half.features, full.features[:len(half.features)])
