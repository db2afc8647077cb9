"""``efm export``: a trained run -> a model directory the robot runtime loads with ONNX Runtime only.

Two graphs are written from the same weights: the policy (action logits) and the reward model (the
steps-to-go head: probabilities and their expectation d). Stage 2 exports the reward graph once from
the Stage 1 checkpoint and keeps it frozen while new policy graphs are exported after each update.
Before the directory appears, ONNX Runtime is run on the same inputs as torch; an export whose
outputs differ by more than ``PARITY_TOLERANCE`` fails and leaves nothing behind.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .manifest import Manifest, ModelDirError, sha256_file
from .model import EFMPolicy, load_policy
from .text import InstructionEncoder, mean_pool

PARITY_TOLERANCE = 1e-4     # max abs difference of action and steps-to-go probabilities, torch vs ONNX Runtime
OPSET = 17
INPUT_NAMES = ["images", "proprio", "instruction"]


class _PolicyGraph(nn.Module):
    def __init__(self, model: EFMPolicy) -> None:
        super().__init__()
        self.model = model

    def forward(self, images, proprio, instruction):
        return self.model(images, proprio, instruction)[0]


class _RewardGraph(nn.Module):
    def __init__(self, model: EFMPolicy) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("lower_edges", torch.tensor(model.tokenizers.steps_to_go.lower_edges, dtype=torch.float32))

    def forward(self, images, proprio, instruction):
        probs = self.model(images, proprio, instruction)[1].softmax(-1)
        return probs, probs @ self.lower_edges


class _TextGraph(nn.Module):
    """MiniLM with the mean pooling and L2 normalisation of sentence-transformers inside the graph."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)


def _export(module: nn.Module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic: dict | None = None) -> None:
    dynamic = dynamic or {name: {0: "batch"} for name in input_names + output_names}
    torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def example_inputs(model: EFMPolicy, instructions: np.ndarray, batch: int = 2, seed: int = 0) -> tuple:
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, config.views, *config.image_size, 3), dtype=torch.uint8, generator=generator)
    proprio = model.proprio_mean + model.proprio_std * torch.randn(batch, config.proprio_dim, generator=generator)
    rows = torch.randint(0, len(instructions), (batch,), generator=generator)
    return images, proprio.float(), torch.from_numpy(instructions[rows.numpy()])


def check_parity(model: EFMPolicy, out: Path, inputs: tuple) -> dict:
    """Max abs differences between torch and ONNX Runtime (CPU) on ``inputs``; raises past the tolerance."""
    import onnxruntime as ort

    feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs)}
    with torch.no_grad():
        action_logits, steps_logits = model(*inputs)
    expected_actions = action_logits.softmax(-1).numpy()
    expected_steps = steps_logits.softmax(-1).numpy()
    policy = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    reward = ort.InferenceSession(str(out / "reward.onnx"), providers=["CPUExecutionProvider"])
    got_logits = policy.run(None, feeds)[0]
    got_actions = np.exp(got_logits - got_logits.max(-1, keepdims=True))
    got_actions /= got_actions.sum(-1, keepdims=True)
    got_steps = reward.run(None, feeds)[0]
    report = {"tolerance": PARITY_TOLERANCE, "batch": int(inputs[0].shape[0]),
              "action_probs_max_abs_diff": float(np.abs(got_actions - expected_actions).max()),
              "steps_to_go_probs_max_abs_diff": float(np.abs(got_steps - expected_steps).max())}
    worst = max(report["action_probs_max_abs_diff"], report["steps_to_go_probs_max_abs_diff"])
    if not worst <= PARITY_TOLERANCE:   # also catches NaN
        raise ModelDirError(f"ONNX export differs from torch: {report}")
    return report


def export_model(checkpoint: str | Path, out: str | Path, version: str | None = None,
                 extra_instructions: Sequence[str] = (), text_encoder: bool = True, log=print) -> Manifest:
    """Write a verified model directory at ``out`` (replacing nothing: ``out`` must not exist)."""
    out = Path(out)
    if out.exists():
        raise ModelDirError(f"{out} already exists; export to a new directory (robots switch between versions)")
    model, state = load_policy(str(checkpoint))
    run_dir = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    version = version or f"{run_dir.name}-step{state['step']}"
    instructions = _training_instructions(run_dir) + [t for t in extra_instructions]
    instructions = list(dict.fromkeys(instructions)) or [""]
    encoder = InstructionEncoder()
    embeddings = encoder.encode(instructions)

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        started = time.perf_counter()
        inputs = example_inputs(model, embeddings)
        _export(_PolicyGraph(model).eval(), inputs, staging / "policy.onnx", INPUT_NAMES, ["action_logits"])
        _export(_RewardGraph(model).eval(), inputs, staging / "reward.onnx", INPUT_NAMES,
                ["steps_to_go_probs", "steps_to_go"])
        np.savez(staging / "instructions.npz", texts=np.array(instructions), embeddings=embeddings)
        if text_encoder:
            _export_text_encoder(encoder, staging)
        parity = check_parity(model, staging, inputs)
        files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()}
        manifest = Manifest(staging, version, model.config, model.tokenizers, files, parity,
                            {"checkpoint": str(Path(checkpoint).resolve()), "step": int(state["step"]),
                             "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "export_seconds": round(time.perf_counter() - started, 1)})
        manifest.write()
        for path in staging.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"parity torch vs ONNX Runtime: action probs {parity['action_probs_max_abs_diff']:.2e}, "
        f"steps-to-go probs {parity['steps_to_go_probs_max_abs_diff']:.2e} (tolerance {PARITY_TOLERANCE:g})")
    return Manifest(out, version, manifest.config, manifest.tokenizers, files, parity, manifest.source)


def _training_instructions(run_dir: Path) -> list[str]:
    import json

    path = run_dir / "instructions.json"
    return list(json.loads(path.read_text())) if path.is_file() else []


def _export_text_encoder(encoder: InstructionEncoder, out: Path) -> None:
    tokens = encoder.tokenizer(["push the red moon to the blue cube"], return_tensors="pt")
    sequence = {0: "batch", 1: "sequence"}
    _export(_TextGraph(encoder.model).eval(), (tokens["input_ids"], tokens["attention_mask"]),
            out / "text_encoder.onnx", ["input_ids", "attention_mask"], ["embedding"],
            dynamic={"input_ids": sequence, "attention_mask": sequence, "embedding": {0: "batch"}})
    encoder.tokenizer.backend_tokenizer.save(str(out / "text_tokenizer.json"))
