"""The policy's architecture settings, saved with every checkpoint and export (no torch)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

BACKBONES = ("small", "scratch", "hf")


@dataclass(frozen=True)
class PolicyConfig:
    embodiment: str                             # "language_table", "aloha", ...: a manifest from another is refused
    cameras: tuple[str, ...]
    proprio_dim: int
    backbone: str = "small"                     # small | scratch | hf
    hf_path: str = ""                           # local transformers checkpoint directory, for backbone "hf"
    history: int = 2                            # frames per camera: the current one and the ones before it
    image_size: tuple[int, int] = (96, 160)     # (height, width) the frames are fitted to
    # Average-pool the backbone's token grid by this factor per side before fusion: 2 turns 6x10 into
    # 3x5 tokens per frame, a 4x cheaper transformer (what lets SFT run on a laptop CPU).
    token_pool: int = 2
    instruction_dim: int = 384                  # MiniLM sentence embedding size
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    # Last EfficientNet blocks fine-tuned; the stem and earlier blocks stay at their pretrained values
    # (-1: fine-tune everything, as "scratch" must). Freezing most of the trunk is what makes SFT
    # practical on a CPU; a GPU learner can pass -1.
    trainable_vision_blocks: int = 3
    vision_blocks: int = 11                     # EfficientNet-Lite0 blocks kept: 11 (stride 16), 8, or 5 (stride 8)
    extra: dict = field(default_factory=dict)   # free-form notes (dataset, demo count) kept with the run

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.backbone == "hf" and not self.hf_path:
            raise ValueError("backbone 'hf' needs hf_path: a local directory holding a transformers checkpoint")
        if not self.cameras:
            raise ValueError("the policy needs at least one camera")
        if self.history < 1 or self.proprio_dim < 1:
            raise ValueError(f"history and proprio_dim must be >= 1, got {self.history} and {self.proprio_dim}")
        if self.token_pool < 1:
            raise ValueError(f"token_pool must be >= 1, got {self.token_pool}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")

    @property
    def views(self) -> int:
        return len(self.cameras) * self.history

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cameras"], data["image_size"] = list(self.cameras), list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PolicyConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown policy config keys {unknown}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PolicyConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
