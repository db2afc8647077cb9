"""ONNX export (parity, manifest, atomic output) and the torch-free runtime that robots run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from efm_policy import export as export_module  # noqa: E402
from efm_policy.manifest import ModelDirError, read_manifest  # noqa: E402
from efm_policy.preprocess import ObservationError  # noqa: E402
from efm_policy.runtime import PolicyRuntime, RewardRuntime, create_session, sample_tokens, select_providers  # noqa: E402
from tiny_model import INSTRUCTIONS, tiny_checkpoint, tiny_model_dir  # noqa: E402

FRAME = np.random.default_rng(0).integers(0, 256, (180, 320, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("export"), text_encoder=True)


def test_export_writes_a_verified_model_directory(model_dir):
    manifest = read_manifest(model_dir, expected_embodiment="toy")
    assert set(manifest.files) == {"policy.onnx", "reward.onnx", "instructions.npz", "text_encoder.onnx",
                                   "text_tokenizer.json"}
    assert manifest.parity["action_probs_max_abs_diff"] <= export_module.PARITY_TOLERANCE
    assert manifest.parity["steps_to_go_probs_max_abs_diff"] <= export_module.PARITY_TOLERANCE
    data = json.loads((model_dir / "manifest.json").read_text())
    assert data["input"] == {"cameras": ["top"], "history": 2, "image_size": [32, 48], "image_format": "rgb8",
                             "proprio_dim": 2}
    assert data["tokenizers"]["action"]["bins"] == 16
    assert not list(model_dir.parent.glob("*.partial"))


def test_runtime_does_not_import_torch(model_dir):
    code = (f"import sys, numpy as np; from efm_policy.runtime import PolicyRuntime; "
            f"r = PolicyRuntime({str(model_dir)!r}, log=lambda m: None); "
            f"r.act({{'top': [np.zeros((180, 320, 3), np.uint8)]}}, [0.3, 0.1], {INSTRUCTIONS[0]!r}); "
            f"assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_policy_acts_and_reports_its_log_probability(model_dir):
    runtime = PolicyRuntime(model_dir, log=lambda m: None)
    assert runtime.provider == "CPUExecutionProvider" and runtime.version == "model"
    frames = {"top": [FRAME]}
    greedy = [runtime.act(frames, [0.3, 0.1], INSTRUCTIONS[0], greedy=True) for _ in range(2)]
    assert np.array_equal(greedy[0].tokens, greedy[1].tokens)
    sample = runtime.act(frames, [0.3, 0.1], INSTRUCTIONS[1], rng=np.random.default_rng(3))
    assert sample.values.shape == sample.tokens.shape == (1, 2) and sample.values.dtype == np.float32
    assert np.all(np.abs(sample.values) <= 0.1) and sample.log_prob < 0 and sample.inference_ms > 0
    feeds = runtime.inputs(frames, [0.3, 0.1], INSTRUCTIONS[1])
    logits = runtime.session.run(None, feeds)[0][0]
    log_softmax = logits - logits.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    assert sample.log_prob == pytest.approx(log_softmax[[0, 1], sample.tokens[0]].sum(), abs=1e-4)


def test_reward_model_gives_expected_steps_to_go(model_dir):
    reward = RewardRuntime(model_dir, log=lambda m: None)
    d, probs = reward.steps_to_go({"top": [FRAME, FRAME]}, [0.3, 0.1], INSTRUCTIONS[0])
    assert probs.shape == (10,) and probs.sum() == pytest.approx(1, abs=1e-5)
    assert d == pytest.approx(float(probs @ np.arange(0, 50, 5)), abs=1e-3)


def test_unseen_instruction_goes_through_the_exported_text_encoder(model_dir):
    from efm_policy.text import InstructionEncoder

    runtime = PolicyRuntime(model_dir, log=lambda m: None)
    text = "nudge the green star toward the top left corner"
    expected = InstructionEncoder().encode([text])[0]
    assert np.abs(runtime.embed(text) - expected).max() < 1e-4


def test_without_text_encoder_an_unseen_instruction_is_refused(tmp_path):
    runtime = PolicyRuntime(tiny_model_dir(tmp_path, text_encoder=False), log=lambda m: None)
    with pytest.raises(ObservationError, match="was not in training and this model has no text encoder"):
        runtime.act({"top": [FRAME]}, [0.3, 0.1], "something new")


@pytest.mark.parametrize("frames, proprio, message", [
    ({"top": [FRAME]}, [0.3, float("nan")], "non-finite"),
    ({"top": [FRAME]}, [0.3], "expected 2 proprio values, got 1"),
    ({"top": [FRAME.astype(np.float32)]}, [0.3, 0.1], "uint8 RGB image"),
    ({"top": [FRAME[..., 0]]}, [0.3, 0.1], "uint8 RGB image"),
    ({"wrist": [FRAME]}, [0.3, 0.1], "no frame from camera 'top'"),
])
def test_bad_observations_are_refused(model_dir, frames, proprio, message):
    runtime = PolicyRuntime(model_dir, log=lambda m: None)
    with pytest.raises(ObservationError, match=message):
        runtime.act(frames, proprio, INSTRUCTIONS[0])


def test_aloha_shaped_chunks(tmp_path):
    model = tiny_model_dir(tmp_path, cameras=("top", "left_wrist"), proprio_dim=14, horizon=5, action_dim=14,
                           embodiment="aloha")
    runtime = PolicyRuntime(model, expected_embodiment="aloha", log=lambda m: None)
    sample = runtime.act({"top": [FRAME], "left_wrist": [FRAME]}, np.zeros(14), INSTRUCTIONS[0])
    assert sample.values.shape == sample.tokens.shape == (5, 14)


def test_corrupt_missing_or_foreign_model_directories_are_refused(model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    with pytest.raises(ModelDirError, match="a model for 'toy', but this robot is 'aloha'"):
        read_manifest(copy, expected_embodiment="aloha")
    blob = bytearray((copy / "policy.onnx").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (copy / "policy.onnx").write_bytes(bytes(blob))
    (copy / "instructions.npz").unlink()
    with pytest.raises(ModelDirError, match="instructions.npz is missing; policy.onnx is corrupt"):
        PolicyRuntime(copy, log=lambda m: None)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not a valid manifest"):
        read_manifest(copy)
    with pytest.raises(ModelDirError, match="no manifest.json"):
        read_manifest(tmp_path)


def test_export_refuses_an_existing_directory_and_leaves_nothing_when_parity_fails(tmp_path, monkeypatch):
    run = tiny_checkpoint(tmp_path / "run")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ModelDirError, match="already exists"):
        export_module.export_model(run, tmp_path / "taken", text_encoder=False, log=lambda m: None)
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ModelDirError, match="ONNX export differs from torch"):
        export_module.export_model(run, tmp_path / "out", text_encoder=False, log=lambda m: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_provider_preference_and_fallback(model_dir):
    assert select_providers(["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="not in this onnxruntime build"):
        select_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])
    said = []
    session = create_session(model_dir / "policy.onnx", log=said.append)
    import onnxruntime as ort
    best = select_providers(ort.get_available_providers())[0]
    got = session.get_providers()[0]
    assert said[-1].startswith(f"policy.onnx: running on {got}")
    if got != best:                      # a GPU build on a machine without a GPU: it says why
        assert f"wanted {best}" in said[-1]


def test_sampling_follows_the_temperature():
    logits = np.log(np.array([[0.7, 0.2, 0.1]]))
    rng = np.random.default_rng(0)
    draws = np.array([sample_tokens(logits, 1.0, False, rng)[0][0] for _ in range(4000)])
    assert np.bincount(draws, minlength=3) / 4000 == pytest.approx([0.7, 0.2, 0.1], abs=0.03)
    cold = np.array([sample_tokens(logits, 0.05, False, rng)[0][0] for _ in range(200)])
    assert (cold == 0).all()
    with pytest.raises(ObservationError):
        sample_tokens(np.array([[np.nan, 0.0]]), 1.0, False, rng)


def test_eval_policy_runs_seeded_episodes_in_simulation(model_dir, tmp_path, capsys):
    import toy_env
    from efm_runtime.cli import main

    toy_env.register()
    out = tmp_path / "eval.json"
    assert main(["eval", "policy", str(model_dir), "--env", "toy", "--task", "reach", "--episodes", "2",
                 "--first-seed", "5", "--json", str(out)]) == 0
    assert "success" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["summary"]["episodes"] == 2 and [e["seed"] for e in report["episodes"]] == [5, 6]
    assert all(1 <= e["policy_steps"] <= 30 for e in report["episodes"])     # the toy's 30-step limit
    def outcomes(report):
        return [(e["seed"], e["instruction"], e["success"], e["policy_steps"]) for e in report["episodes"]]

    assert main(["eval", "policy", str(model_dir), "--env", "toy", "--task", "reach", "--episodes", "2",
                 "--first-seed", "5", "--json", str(out)]) == 0
    assert outcomes(json.loads(out.read_text())) == outcomes(report)         # greedy + seeded: repeatable


def test_runtimes_of_one_process_share_one_text_encoder(model_dir):
    """A robot's policy and reward nodes, and every later version linking the same encoder, load it once."""
    policy = PolicyRuntime(model_dir, log=lambda m: None)
    reward = RewardRuntime(model_dir, log=lambda m: None)
    assert policy.embed._encoder is reward.embed._encoder is not None
    unseen = "nudge the yellow star a little to the left"
    assert np.array_equal(policy.embed(unseen), reward.embed(unseen))
