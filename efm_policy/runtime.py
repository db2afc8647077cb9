"""Run an exported model directory with ONNX Runtime: what a robot runs (numpy, no torch).

Execution providers are tried in the order TensorRT, CUDA, CPU among those this onnxruntime build
offers; the one a session really got is logged (onnxruntime-gpu falls back to CPU on a machine
without a usable GPU, and says so only in its own log). Frames are fitted to the model's input
with :func:`efm_policy.preprocess.fit_image`, the function the training data went through.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import Manifest, ModelDirError, read_manifest
from .preprocess import ObservationError, check_proprio, stack_views
from .text import MAX_TOKENS

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_log = logging.getLogger("efm.policy.runtime")


def select_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """Providers to ask for, best first: ``requested`` (each must be available) or the preference
    order filtered by what this onnxruntime build offers."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ValueError(f"execution providers {missing} are not in this onnxruntime build "
                             f"(available: {list(available)})")
        return list(requested)
    chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    return chosen or ["CPUExecutionProvider"]


def create_session(path: Path, providers: Sequence[str] | None = None, log: Callable[[str], None] = _log.info):
    """An InferenceSession on the best provider that works; falls back to CPU when the GPU ones fail."""
    import onnxruntime as ort

    wanted = select_providers(ort.get_available_providers(), providers)
    # onnxruntime prints a page per provider it cannot load (missing CUDA/TensorRT libraries) and falls
    # back by itself; keep that out of the robot's log and report the outcome in one line instead.
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    # Several simulated robots on one machine each get one thread (EFM_ORT_THREADS=1), instead of
    # every session claiming all cores and the robots fighting over them.
    threads = int(os.environ.get("EFM_ORT_THREADS", "0") or 0)
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as exc:  # a broken CUDA/TensorRT install can raise instead of falling back
        if wanted == ["CPUExecutionProvider"]:
            raise ModelDirError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from None
        log(f"{path.name}: {wanted[0]} failed ({exc}); using CPUExecutionProvider")
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    got = session.get_providers()[0]
    note = "" if got == wanted[0] else f" (wanted {wanted[0]}: its libraries or GPU are missing here)"
    log(f"{path.name}: running on {got}{note}")
    return session


_TEXT_ENCODERS: dict[tuple, tuple] = {}     # (encoder sha256, tokenizer sha256, providers) -> (tokenizer, session)
_TEXT_ENCODERS_LOCK = threading.Lock()


def _text_encoder(manifest: Manifest, providers: Sequence[str] | None, log):
    """The MiniLM tokenizer and ONNX session of ``manifest``'s text encoder, one per process for the same
    bytes (sha256, verified when the manifest was read): a robot's policy and reward nodes share it, and a
    new policy version, which links the same encoder, does not load its 90 MB again."""
    key = (manifest.files["text_encoder.onnx"], manifest.files["text_tokenizer.json"], tuple(providers or ()))
    with _TEXT_ENCODERS_LOCK:  # sessions are thread-safe to run; creating one twice is only waste
        found = _TEXT_ENCODERS.get(key)
        if found is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(manifest.path("text_tokenizer.json")))
            tokenizer.no_padding()
            tokenizer.enable_truncation(MAX_TOKENS)
            found = _TEXT_ENCODERS[key] = (tokenizer, create_session(manifest.path("text_encoder.onnx"), providers, log))
    return found


class InstructionEmbedder:
    """Instruction text -> embedding: the export's table first, then its MiniLM text encoder."""

    def __init__(self, manifest: Manifest, providers: Sequence[str] | None = None, log=_log.info) -> None:
        table = np.load(manifest.path("instructions.npz"))
        self._cache: dict[str, np.ndarray] = {str(t): e.astype(np.float32) for t, e in zip(table["texts"], table["embeddings"])}
        self._encoder = None
        if manifest.has("text_encoder.onnx") and manifest.has("text_tokenizer.json"):
            self._tokenizer, self._encoder = _text_encoder(manifest, providers, log)

    def __call__(self, instruction: str) -> np.ndarray:
        embedding = self._cache.get(instruction)
        if embedding is None:
            if self._encoder is None:
                raise ObservationError(f"instruction {instruction!r} was not in training and this model has no "
                                       "text encoder (export it without --no-text-encoder)")
            encoding = self._tokenizer.encode(instruction)
            feeds = {"input_ids": np.asarray([encoding.ids], np.int64),
                     "attention_mask": np.asarray([encoding.attention_mask], np.int64)}
            embedding = self._encoder.run(None, feeds)[0][0].astype(np.float32)
            self._cache[instruction] = embedding
        return embedding


@dataclass(frozen=True)
class ActionSample:
    values: np.ndarray          # (horizon, action_dim) float32, within the tokenizer's [low, high]
    tokens: np.ndarray          # (horizon, action_dim) int64
    log_prob: float             # log pi(tokens | observation) at the sampling temperature
    inference_ms: float


class _ExportedModel:
    graph = ""

    def __init__(self, model_dir: str | Path, providers: Sequence[str] | None = None,
                 expected_embodiment: str | None = None, log: Callable[[str], None] = _log.info,
                 manifest: Manifest | None = None) -> None:
        self.manifest = manifest or read_manifest(model_dir, expected_embodiment)
        self.config = self.manifest.config
        self.session = create_session(self.manifest.path(self.graph), providers, log)
        self.provider = self.session.get_providers()[0]
        self.embed = InstructionEmbedder(self.manifest, providers, log)

    @property
    def version(self) -> str:
        return self.manifest.version

    def inputs(self, frames: Mapping[str, Sequence[np.ndarray]], proprio: Sequence[float], instruction: str) -> dict:
        """Feeds for one observation: newest frames per camera (oldest first), proprio, instruction."""
        config = self.config
        images = stack_views(frames, config.cameras, config.history, config.image_size)
        return {"images": images[None], "proprio": check_proprio(proprio, config.proprio_dim)[None],
                "instruction": self.embed(instruction)[None]}


class PolicyRuntime(_ExportedModel):
    """The policy graph: observation -> a sampled action chunk with its tokens and log-probability."""
    graph = "policy.onnx"

    def act(self, frames: Mapping[str, Sequence[np.ndarray]], proprio: Sequence[float], instruction: str,
            temperature: float = 1.0, greedy: bool = False, rng: np.random.Generator | None = None) -> ActionSample:
        feeds = self.inputs(frames, proprio, instruction)
        started = time.perf_counter()
        logits = self.session.run(None, feeds)[0][0]
        inference_ms = (time.perf_counter() - started) * 1e3
        tokens, log_prob = sample_tokens(logits, temperature, greedy, rng or np.random.default_rng())
        action = self.manifest.tokenizers.action
        tokens = tokens.reshape(action.horizon, action.action_dim)
        values = action.decode(tokens).astype(np.float32)
        return ActionSample(values, tokens, log_prob, inference_ms)


class RewardRuntime(_ExportedModel):
    """The frozen steps-to-go graph: observation -> d(o, g), the expected policy steps to success."""
    graph = "reward.onnx"

    def steps_to_go(self, frames: Mapping[str, Sequence[np.ndarray]], proprio: Sequence[float],
                    instruction: str) -> tuple[float, np.ndarray]:
        probs, expected = self.session.run(None, self.inputs(frames, proprio, instruction))
        return float(expected[0]), probs[0]


def sample_tokens(logits: np.ndarray, temperature: float, greedy: bool,
                  rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One token per row of ``logits`` (tokens x bins) and the summed log-probability of the choice."""
    if not np.all(np.isfinite(logits)):
        raise ObservationError("the policy produced non-finite logits; not acting on them")
    if greedy:
        tokens = logits.argmax(-1)
        scaled = logits
    else:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use greedy for argmax), got {temperature}")
        scaled = logits / temperature
        # Gumbel-max: one vectorised draw per token from softmax(scaled)
        tokens = (scaled + rng.gumbel(size=scaled.shape)).argmax(-1)
    log_probs = scaled - scaled.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return tokens.astype(np.int64), float(log_probs[np.arange(len(tokens)), tokens].sum())
