"""Action and steps-to-go tokenizers, shared by training, ONNX export and the robot runtime.

Both heads of the policy are categorical: every action dimension of every step of a chunk is one
token over uniform bins, and the steps-to-go head is a distribution over binned remaining steps,
whose expectation is d(o, g) (the paper: ``d = sum(softmax * bin_lower_edges)``). The bins are part of
the model: they are saved next to every checkpoint and export, and a runtime refuses a model whose
tokenizers differ from what it was configured for (``check_compatible``), so a policy can never be
decoded with the wrong bins.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ActionTokenizer:
    """Per-dimension uniform bins over [low, high] for a chunk of ``horizon`` actions."""
    low: tuple[float, ...]      # per action dimension
    high: tuple[float, ...]
    bins: int = 256
    horizon: int = 1            # actions per chunk (LanguageTable 1, Aloha 5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", tuple(float(v) for v in self.low))
        object.__setattr__(self, "high", tuple(float(v) for v in self.high))
        if len(self.low) != len(self.high) or not self.low:
            raise ValueError(f"low and high need one value per action dimension, got {len(self.low)} and {len(self.high)}")
        if any(h <= lo for lo, h in zip(self.low, self.high)):
            raise ValueError(f"every high must exceed its low: low={self.low}, high={self.high}")
        if self.bins < 2 or self.horizon < 1:
            raise ValueError(f"bins must be >= 2 and horizon >= 1, got bins={self.bins}, horizon={self.horizon}")

    @property
    def action_dim(self) -> int:
        return len(self.low)

    @property
    def tokens_per_chunk(self) -> int:
        return self.horizon * self.action_dim

    @property
    def bin_width(self) -> np.ndarray:
        return (np.asarray(self.high) - np.asarray(self.low)) / self.bins

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Token ids (same shape, last axis = action dimension); values outside [low, high] are clipped."""
        actions = np.asarray(actions, dtype=np.float64)
        self._check_last_axis(actions)
        low, high = np.asarray(self.low), np.asarray(self.high)
        scaled = (np.clip(actions, low, high) - low) / (high - low) * self.bins
        return np.minimum(scaled.astype(np.int64), self.bins - 1)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Bin centres of token ids (last axis = action dimension)."""
        tokens = np.asarray(tokens)
        self._check_last_axis(tokens)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.bins):
            raise ValueError(f"token ids must lie in [0, {self.bins - 1}], got {tokens.min()}..{tokens.max()}")
        return np.asarray(self.low) + (tokens + 0.5) * self.bin_width

    def _check_last_axis(self, array: np.ndarray) -> None:
        if array.ndim == 0 or array.shape[-1] != self.action_dim:
            raise ValueError(f"expected a last axis of {self.action_dim} action dimensions, got shape {array.shape}")

    @classmethod
    def from_actions(cls, actions: np.ndarray, bins: int = 256, horizon: int = 1, margin: float = 0.05):
        """Bins fitted to demonstration actions (N x D), widened by ``margin`` of each range on both sides."""
        actions = np.asarray(actions, dtype=np.float64)
        low, high = actions.min(axis=0), actions.max(axis=0)
        span = np.maximum(high - low, 1e-6)
        return cls(tuple(low - margin * span), tuple(high + margin * span), bins, horizon)


@dataclass(frozen=True)
class StepsToGoTokenizer:
    """``bins`` uniform bins over [0, max_steps] remaining policy steps."""
    bins: int = 50
    max_steps: int = 200        # the episode limit in policy steps

    def __post_init__(self) -> None:
        if self.bins < 2 or self.max_steps < 1:
            raise ValueError(f"bins must be >= 2 and max_steps >= 1, got bins={self.bins}, max_steps={self.max_steps}")

    @property
    def lower_edges(self) -> np.ndarray:
        return np.linspace(0.0, self.max_steps, self.bins + 1)[:-1]

    def encode(self, steps_to_go: np.ndarray) -> np.ndarray:
        """Bin of each remaining-steps count; counts beyond ``max_steps`` fall in the last bin."""
        steps = np.clip(np.asarray(steps_to_go, dtype=np.float64), 0.0, self.max_steps)
        return np.minimum((steps / self.max_steps * self.bins).astype(np.int64), self.bins - 1)

    def expectation(self, probabilities: np.ndarray) -> np.ndarray:
        """d(o, g): the expected steps-to-go of a distribution over the bins (last axis)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.shape[-1] != self.bins:
            raise ValueError(f"expected {self.bins} probabilities on the last axis, got shape {probabilities.shape}")
        return probabilities @ self.lower_edges


@dataclass(frozen=True)
class Tokenizers:
    action: ActionTokenizer
    steps_to_go: StepsToGoTokenizer

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "action": asdict(self.action), "steps_to_go": asdict(self.steps_to_go)}

    @classmethod
    def from_dict(cls, data: dict) -> "Tokenizers":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"tokenizers format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        return cls(ActionTokenizer(**data["action"]), StepsToGoTokenizer(**data["steps_to_go"]))

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal fingerprints mean identical bins."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizers":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid tokenizers file ({exc})") from None

    def check_compatible(self, other: "Tokenizers", what: str = "model") -> None:
        """Raise naming every differing setting when ``other`` would decode tokens differently."""
        if self.fingerprint == other.fingerprint:
            return
        mine, theirs = self.to_dict(), other.to_dict()
        differences = [f"{head}.{key}: {mine[head][key]} != {theirs[head][key]}"
                       for head in ("action", "steps_to_go") for key in mine[head] if mine[head][key] != theirs[head][key]]
        raise ValueError(f"{what} tokenizers differ: " + "; ".join(differences))
