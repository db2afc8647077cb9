"""The learner core: on-policy filtering, updates that export rl-NNNN, restarts mid-update, rollback, DDP."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from efm_policy.manifest import read_manifest, sha256_file  # noqa: E402
from efm_trainer.learner import BadEpisode, EpisodeConflict, Learner, LearnerSettings, UnknownVersion  # noqa: E402
from practice_episodes import episode_tar, tiny_stage1, write_practice_episode  # noqa: E402

GOOD, BAD = [[3, 12]] * 3, [[9, 1]] * 3     # tokens rewarded up, tokens rewarded down


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A tiny Stage 1 run and its export (taken as sft-0000, so no learner test exports it again)."""
    return tiny_stage1(tmp_path_factory.mktemp("stage1"))


def make_learner(directory: Path, stage1, **overrides) -> Learner:
    settings = dict(dir=str(directory), run=str(stage1.run), initial_model=str(stage1.model), steps_per_update=6,
                    sgd_steps=4, batch_size=4, lr=0.02)
    hook = overrides.pop("stage_hook", None)
    settings.update(overrides)
    return Learner(LearnerSettings(**settings), log=lambda _: None, stage_hook=hook)


def upload(learner: Learner, episode_id: str, version: str, tokens, rewards, **kwargs):
    out = Path(learner.dir).parent / "robot"
    path = write_practice_episode(out, episode_id, version, tokens, rewards, **kwargs)
    body = episode_tar(path)
    return learner.receive_episode(episode_id, body, hashlib.sha256(body).hexdigest())


def upload_update_batch(learner: Learner, version: str, prefix: str):
    """Six steps: one episode paid for GOOD tokens, one charged for BAD ones."""
    return [upload(learner, f"{prefix}-1", version, GOOD, [2.0, 2.0, 2.0], seed=1),
            upload(learner, f"{prefix}-2", version, BAD, [-2.0, -2.0, -2.0], seed=2)]


@pytest.fixture(scope="module")
def trained(stage1, tmp_path_factory):
    """A learner that took one update: sft-0000 -> rl-0001."""
    learner = make_learner(tmp_path_factory.mktemp("trained") / "learner", stage1)
    receipts = upload_update_batch(learner, "sft-0000", "a")
    assert learner.wait_idle(120)
    return SimpleNamespace(learner=learner, receipts=receipts)


def test_first_start_adopts_the_initial_model_as_sft_0000(stage1, tmp_path):
    learner = make_learner(tmp_path / "learner", stage1)
    manifest = read_manifest(tmp_path / "learner" / "versions" / "sft-0000")
    assert manifest.version == "sft-0000" and learner.current == "sft-0000"
    assert learner.spec()["input_spec"]["cameras"] == ["top"]
    listing = learner.list_versions()
    assert listing["best"] is None and [v["version"] for v in listing["versions"]] == ["sft-0000"]
    assert listing["versions"][0]["manifest_sha256"] == sha256_file(manifest.directory / "manifest.json")


def test_update_publishes_rl_0001_with_the_frozen_reward_graph(trained):
    learner = trained.learner
    assert [(r.status, r.trained) for r in trained.receipts] == [("accepted", True), ("accepted", True)]
    assert learner.current == "rl-0001" and not learner.last_error
    root = Path(learner.dir)
    manifest = read_manifest(root / "versions" / "rl-0001")       # verifies every sha256
    first = read_manifest(root / "versions" / "sft-0000")
    assert manifest.version == "rl-0001" and manifest.files["reward.onnx"] == first.files["reward.onnx"]
    assert manifest.files["policy.onnx"] != first.files["policy.onnx"]
    assert os.path.samefile(root / "versions" / "rl-0001" / "reward.onnx", root / "versions" / "sft-0000" / "reward.onnx")
    entry = learner.list_versions()["versions"][1]
    assert (entry["version"], entry["parent"], entry["learner_step"], entry["trained_on_episodes"]) == \
        ("rl-0001", "sft-0000", 4, 2)
    assert {f["name"]: f["sha256"] for f in entry["files"]} == manifest.files
    state = json.loads((root / "state.json").read_text())
    assert state["updates"]["rl-0001"]["episodes"] == ["a-1", "a-2"] and state["pending_update"] is None


def test_update_raises_log_probs_of_positively_rewarded_actions(trained):
    metrics = [json.loads(line) for line in (Path(trained.learner.dir) / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and metrics[0]["samples"] == 6
    assert metrics[0]["log_prob_change_positive_return"] > 0 > metrics[0]["log_prob_change_negative_return"]


def test_only_on_policy_episodes_scored_by_the_frozen_model_train(trained):
    learner = trained.learner
    old = upload(learner, "old-1", "sft-0000", GOOD, [1.0] * 3)
    assert (old.status, old.trained) == ("stored", False) and "off-policy" in old.reason
    other_reward = upload(learner, "rm-1", "rl-0001", GOOD, [1.0] * 3, reward_model_version="someone-else")
    assert not other_reward.trained and "reward model 'someone-else'" in other_reward.reason
    aborted = upload(learner, "ab-1", "rl-0001", GOOD, [1.0] * 3, outcome="aborted")
    assert not aborted.trained and "aborted" in aborted.reason
    status = learner.status()
    assert status["episodes_per_version"] == {"sft-0000": 3, "rl-0001": 2}
    assert status["pending_steps"] == 0 and status["current"] == "rl-0001"


def test_duplicate_conflict_and_bad_uploads(stage1, tmp_path):
    learner = make_learner(tmp_path / "learner", stage1, steps_per_update=1000)
    path = write_practice_episode(tmp_path / "robot", "ep-1", "sft-0000", GOOD, [1.0] * 3)
    body = episode_tar(path)
    sha = hashlib.sha256(body).hexdigest()
    assert learner.receive_episode("ep-1", body, sha).status == "accepted"
    assert learner.receive_episode("ep-1", body, sha).status == "duplicate"
    other = episode_tar(write_practice_episode(tmp_path / "other", "ep-1", "sft-0000", BAD, [1.0] * 3))
    with pytest.raises(EpisodeConflict, match="already stored with other content"):
        learner.receive_episode("ep-1", other, hashlib.sha256(other).hexdigest())
    fresh = episode_tar(write_practice_episode(tmp_path / "robot", "ep-2", "sft-0000", GOOD, [1.0] * 3))
    with pytest.raises(BadEpisode, match="truncated"):
        learner.receive_episode("ep-2", fresh[:len(fresh) // 2], sha)
    half = fresh[:len(fresh) // 2]
    with pytest.raises(BadEpisode):
        learner.receive_episode("ep-2", half, hashlib.sha256(half).hexdigest())
    no_reward = episode_tar(write_practice_episode(tmp_path / "robot", "ep-3", "sft-0000", GOOD, [1.0] * 3,
                                                   skip_topics=["/reward"]))
    with pytest.raises(BadEpisode, match="/reward"):
        learner.receive_episode("ep-3", no_reward, hashlib.sha256(no_reward).hexdigest())
    aloha = episode_tar(write_practice_episode(tmp_path / "robot", "ep-4", "sft-0000", GOOD, [1.0] * 3,
                                               embodiment="aloha"))
    with pytest.raises(EpisodeConflict, match="embodiment 'aloha'"):
        learner.receive_episode("ep-4", aloha, hashlib.sha256(aloha).hexdigest())
    wide = episode_tar(write_practice_episode(tmp_path / "robot", "ep-5", "sft-0000", [[1, 2, 3]] * 3, [1.0] * 3,
                                              action_dim=3))
    with pytest.raises(EpisodeConflict, match="tokenizers"):
        learner.receive_episode("ep-5", wide, hashlib.sha256(wide).hexdigest())
    assert learner.status()["episodes_total"] == 1
    assert sorted(p.name for p in (tmp_path / "learner" / "episodes").iterdir()) == ["ep-1", "ep-1.json"]
    reopened = make_learner(tmp_path / "learner", stage1, steps_per_update=1000)
    assert reopened.receive_episode("ep-1", body, sha).status == "duplicate"


class Crash(Exception):
    pass


@pytest.mark.parametrize("stage", ["trained", "saved"])
def test_restart_mid_update_redoes_it_once_with_the_same_episodes(stage1, trained, tmp_path, stage):
    def crash(at):
        if at == stage:
            raise Crash(at)

    learner = make_learner(tmp_path / "learner", stage1, stage_hook=crash)
    upload_update_batch(learner, "sft-0000", "a")
    assert learner.wait_idle(120)
    assert "Crash" in learner.last_error and learner.current == "sft-0000"
    checkpoint = tmp_path / "learner" / "checkpoints" / "rl-0001.pt"
    saved_before = sha256_file(checkpoint) if stage == "saved" else None
    assert checkpoint.is_file() == (stage == "saved")

    restarted = make_learner(tmp_path / "learner", stage1)
    assert restarted.wait_idle(120) and not restarted.last_error
    assert restarted.current == "rl-0001"
    state = json.loads((tmp_path / "learner" / "state.json").read_text())
    assert state["updates"]["rl-0001"]["episodes"] == ["a-1", "a-2"] and state["pending_update"] is None
    assert state["next_version"] == 2 and state["learner_step"] == 4
    if saved_before:      # saved before the crash: exported, not trained again
        assert sha256_file(checkpoint) == saved_before
    redone = torch.load(checkpoint, weights_only=False)["model"]
    reference = torch.load(Path(trained.learner.dir) / "checkpoints" / "rl-0001.pt", weights_only=False)["model"]
    assert all(torch.equal(redone[k], reference[k]) for k in reference)   # the very same minibatches
    read_manifest(tmp_path / "learner" / "versions" / "rl-0001")


def test_rollback_continues_from_that_versions_checkpoint_and_best_follows_evaluations(stage1, trained, tmp_path):
    root = tmp_path / "learner"
    shutil.copytree(trained.learner.dir, root)      # a learner at rl-0001, restarted elsewhere
    learner = make_learner(root, stage1)
    assert learner.current == "rl-0001"
    learner.record_evaluation("sft-0000", episodes=10, successes=4)
    assert learner.record_evaluation("rl-0001", episodes=10, successes=3)["best"] == "sft-0000"
    with pytest.raises(UnknownVersion):
        learner.set_current("rl-0009")
    assert learner.set_current("sft-0000") == {"current": "sft-0000", "previous": "rl-0001"}
    late = upload(learner, "late-1", "rl-0001", GOOD, [1.0] * 3)
    assert "off-policy" in late.reason
    upload_update_batch(learner, "sft-0000", "b")
    assert learner.wait_idle(120) and not learner.last_error
    listing = learner.list_versions()
    assert listing["current"] == "rl-0002" and listing["versions"][-1]["parent"] == "sft-0000"
    assert listing["versions"][-1]["learner_step"] == 8
    state = torch.load(root / "checkpoints" / "rl-0002.pt", weights_only=False)
    assert state["learner"]["parent"] == "sft-0000" and state["learner"]["episodes"] == ["b-1", "b-2"]


DDP_SCRIPT = """
import json, sys, torch
from efm_trainer.learner_update import Distributed, UpdatePlan, run_update
distributed = Distributed.from_environment()
plan = UpdatePlan.from_dict(json.load(open(sys.argv[1])))
model, _, _ = run_update(plan, distributed, log=lambda m: None)
if distributed.leader:
    torch.save(model.state_dict(), sys.argv[2])
distributed.close()
"""


def test_two_process_ddp_update_matches_one_process(trained, tmp_path):
    """torchrun --nproc_per_node 2 on CPU (gloo): each rank takes half of every minibatch."""
    from efm_trainer.learner_update import UpdatePlan, run_update

    root = Path(trained.learner.dir)
    learner = trained.learner
    plan = UpdatePlan(version="check", parent="sft-0000", parent_checkpoint=str(root / "checkpoints" / "sft-0000.pt"),
                      episodes=["a-1", "a-2"], episode_dirs=[str(root / "episodes" / e) for e in ("a-1", "a-2")],
                      learner_step=0, sgd_steps=3, batch_size=4, gamma=0.9, seed=0, lr=0.02,
                      instruction_embeddings=learner._embeddings({"episodes": ["a-1", "a-2"]}))
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_dict()))
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", str(tmp_path / "ddp.py"), str(tmp_path / "plan.json"),
                             str(tmp_path / "ddp.pt")], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    single, _, _ = run_update(plan, None, log=lambda m: None)
    # Compare what the policies do, not raw weights: Adam turns the float noise of gradients that are
    # zero in exact arithmetic (attention key biases) into full-size steps that change nothing.
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randint(0, 256, (3, single.config.views, *single.config.image_size, 3), dtype=torch.uint8,
                            generator=generator), torch.randn(3, 2, generator=generator),
              torch.randn(3, 384, generator=generator))
    with torch.no_grad():
        expected = single(*inputs)[0].log_softmax(-1)
        single.load_state_dict(torch.load(tmp_path / "ddp.pt", weights_only=False))
        got = single(*inputs)[0].log_softmax(-1)
        single.load_state_dict(torch.load(root / "checkpoints" / "sft-0000.pt", weights_only=False)["model"])
        parent = single(*inputs)[0].log_softmax(-1)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert (expected - parent).abs().max() > 100 * (got - expected).abs().max()


def test_episodes_per_update_counts_episodes_not_steps(stage1, tmp_path):
    learner = make_learner(tmp_path / "learner", stage1, steps_per_update=1000, episodes_per_update=3)
    upload_update_batch(learner, "sft-0000", "a")        # 2 episodes, 6 steps: not enough episodes
    assert learner.wait_idle(120) and learner.current == "sft-0000"
    assert learner.status()["episodes_per_update"] == 3
    upload(learner, "a-3", "sft-0000", GOOD, [1.0] * 3, seed=3)
    assert learner.wait_idle(120) and learner.current == "rl-0001"
    assert learner.list_versions()["versions"][1]["trained_on_episodes"] == 3


def test_sgd_steps_zero_makes_one_pass_over_the_update(stage1, tmp_path):
    learner = make_learner(tmp_path / "learner", stage1, sgd_steps=0, batch_size=4)
    upload_update_batch(learner, "sft-0000", "a")        # 6 steps, minibatches of 4: two steps
    assert learner.wait_idle(120) and learner.current == "rl-0001"
    metrics = json.loads((Path(learner.dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["sgd_steps"] == 2 and learner.status()["learner_step"] == 2


def test_the_first_update_starts_adam_momentum_at_zero_and_keeps_its_scale(stage1, tmp_path):
    """Stage 1's momentum follows the imitation loss; Stage 2 keeps only Adam's second moment and step."""
    import torch

    from efm_policy.model import load_policy
    from efm_trainer.learner_update import build_optimizer

    model, _ = load_policy(stage1.run / "checkpoint.pt")
    warm = build_optimizer(model, {}, 1e-3)
    for parameter in warm.param_groups[0]["params"]:
        parameter.grad = torch.ones_like(parameter)
    warm.step()
    state = {"optimizer": warm.state_dict()}
    for reset in (False, True):
        optimizer = build_optimizer(model, state, None, reset_momentum=reset)
        moments = [optimizer.state[p] for p in optimizer.param_groups[0]["params"]]
        assert all(bool(m["exp_avg"].abs().sum() == 0) == reset for m in moments)
        assert all(bool(m["exp_avg_sq"].abs().sum() > 0) and float(m["step"]) == 1 for m in moments)

    learner = make_learner(tmp_path / "learner", stage1, steps_per_update=1000)
    plans = []
    learner._start_update = lambda: plans.append(dict(learner.state["pending_update"]))
    learner.settings.steps_per_update = 6
    upload_update_batch(learner, "sft-0000", "a")
    assert plans and plans[0]["reset_momentum"] is True       # the parent is the Stage 1 version
