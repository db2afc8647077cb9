"""A tiny exported model directory for tests: real model code and export, random weights, seconds to build."""
from __future__ import annotations

from pathlib import Path

EMBODIMENT = "toy"
INSTRUCTIONS = ["push the red moon to the blue cube", "slide the blue cube next to the yellow star"]


def tiny_checkpoint(run_dir: Path, cameras=("top",), proprio_dim: int = 2, horizon: int = 1, action_dim: int = 2,
                    image_size=(32, 48), embodiment: str = EMBODIMENT, seed: int = 0) -> Path:
    """A run directory with a randomly initialised scratch policy, as `efm train sft` leaves one."""
    import torch

    from efm_policy.config import PolicyConfig
    from efm_policy.model import save_untrained_checkpoint
    from efm_policy.tokenizers import ActionTokenizer, StepsToGoTokenizer, Tokenizers

    torch.manual_seed(seed)
    config = PolicyConfig(embodiment=embodiment, cameras=tuple(cameras), proprio_dim=proprio_dim, backbone="scratch",
                          image_size=tuple(image_size), d_model=32, layers=1, heads=2, dropout=0.0,
                          trainable_vision_blocks=-1)
    tokenizers = Tokenizers(ActionTokenizer([-0.1] * action_dim, [0.1] * action_dim, bins=16, horizon=horizon),
                            StepsToGoTokenizer(bins=10, max_steps=50))
    return save_untrained_checkpoint(run_dir, config, tokenizers, instructions=INSTRUCTIONS)


def tiny_model_dir(tmp_path: Path, name: str = "model", text_encoder: bool = False, version: str | None = None,
                   **layout) -> Path:
    """Export a tiny policy to ``tmp_path/name`` and return the model directory."""
    from efm_policy.export import export_model

    run = tiny_checkpoint(tmp_path / f"{name}-run", **layout)
    out = tmp_path / name
    export_model(run, out, version=version or name, text_encoder=text_encoder, log=lambda _: None)
    return out
