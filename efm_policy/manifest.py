"""A model directory's manifest: what the exported graphs are, and how to check them (no torch).

    MODEL_DIR/manifest.json      this file's contents
    MODEL_DIR/policy.onnx        images, proprio, instruction -> action_logits
    MODEL_DIR/reward.onnx        the same inputs -> steps_to_go_probs, steps_to_go (the frozen d(o, g))
    MODEL_DIR/instructions.npz   embeddings of the instructions seen in training
    MODEL_DIR/text_encoder.onnx  MiniLM, for instructions outside that table (optional)
    MODEL_DIR/text_tokenizer.json

Every file is listed with its sha256; a robot verifies them all before it switches to a model, so a
half-copied or corrupt version is refused and the previous one keeps running.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .config import PolicyConfig
from .tokenizers import Tokenizers

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ModelDirError(ValueError):
    """A model directory that must not be run: missing or corrupt file, wrong embodiment, bad manifest."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    directory: Path
    version: str
    config: PolicyConfig
    tokenizers: Tokenizers
    files: dict[str, str]          # file name -> sha256
    parity: dict
    source: dict

    @property
    def embodiment(self) -> str:
        return self.config.embodiment

    def path(self, name: str) -> Path:
        return self.directory / name

    def has(self, name: str) -> bool:
        return name in self.files

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "version": self.version, "embodiment": self.embodiment,
                "policy_config": self.config.to_dict(), "tokenizers": self.tokenizers.to_dict(),
                "input": {"cameras": list(self.config.cameras), "history": self.config.history,
                          "image_size": list(self.config.image_size), "image_format": "rgb8",
                          "proprio_dim": self.config.proprio_dim},
                "files": self.files, "parity": self.parity, "source": self.source}

    def write(self) -> Path:
        path = self.directory / MANIFEST
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def verify_files(self) -> None:
        """Raise naming every missing or altered file."""
        problems = []
        for name, expected in sorted(self.files.items()):
            path = self.directory / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif sha256_file(path) != expected:
                problems.append(f"{name} is corrupt (sha256 differs from the manifest)")
        if problems:
            raise ModelDirError(f"{self.directory}: " + "; ".join(problems) + " - copy the model directory again")


def read_manifest(model_dir: str | Path, expected_embodiment: str | None = None, verify: bool = True) -> Manifest:
    """The manifest of ``model_dir``, with every file checked against its sha256 unless ``verify`` is False."""
    directory = Path(model_dir)
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelDirError(f"{directory}: no {MANIFEST} (is this a directory written by `efm export`?)")
    try:
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelDirError(f"{path}: format_version {data.get('format_version')!r}, this efm reads {FORMAT_VERSION}")
        manifest = Manifest(directory, str(data["version"]), PolicyConfig.from_dict(data["policy_config"]),
                            Tokenizers.from_dict(data["tokenizers"]), dict(data["files"]),
                            dict(data.get("parity", {})), dict(data.get("source", {})))
    except ModelDirError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{path}: not a valid manifest ({type(exc).__name__}: {exc})") from None
    if expected_embodiment and manifest.embodiment != expected_embodiment:
        raise ModelDirError(f"{directory}: a model for {manifest.embodiment!r}, but this robot is "
                            f"{expected_embodiment!r}")
    for required in ("policy.onnx", "reward.onnx"):
        if required not in manifest.files:
            raise ModelDirError(f"{path}: lists no {required}")
    if verify:
        manifest.verify_files()
    return manifest
