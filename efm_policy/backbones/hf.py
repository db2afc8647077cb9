"""The ``hf`` backbone of the EFM policy: the vision tower of a transformers vision-language model.

``HFVisionEncoder`` loads a checkpoint from a LOCAL directory (it never downloads) and keeps only the
image encoder, e.g. SigLIP's vision tower or the SigLIP inside PaliGemma. The instruction is encoded
elsewhere (the MiniLM sentence embedding fed to the policy), so the language half of the model is
dropped. Every output token is kept (no pooling), as the other backbones keep their grid of tokens.

Supported checkpoint directories, told apart by ``model_type`` in their ``config.json``:

* ``siglip``              a SiglipModel (vision + text towers); its ``vision_model`` is used,
* ``siglip_vision_model`` a SiglipVisionModel,
* ``paligemma``           a PaliGemmaForConditionalGeneration; its ``vision_tower`` is used.

Training side only: the tower exports to ONNX inside the policy graph, so the robot never needs
torch or transformers.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_MODEL_TYPES = ("siglip", "siglip_vision_model", "paligemma")
PATH_HINT = ("point --hf-path at a local directory holding a transformers checkpoint (config.json and "
             "*.safetensors), e.g. one written by save_pretrained() or fetched with "
             "`hf download google/siglip-base-patch16-224 --local-dir DIR`")
# SDPA attention exports to ONNX (opset 17, TorchScript exporter) as plain MatMul/Softmax and trains
# faster than "eager"; the test checks the export.
ATTENTION = "sdpa"


def _model_type(path: Path) -> str:
    if not path.is_dir():
        raise FileNotFoundError(f"hf backbone directory {path} does not exist: {PATH_HINT}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json, so it is not a transformers checkpoint: {PATH_HINT}")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{path} holds a model of type {model_type!r}; the hf backbone supports "
                         f"model types {', '.join(SUPPORTED_MODEL_TYPES)}")
    return model_type


def _load_tower(path: Path, model_type: str, pretrained: bool) -> nn.Module:
    import transformers
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    if not pretrained:   # same architecture, random weights: build the vision tower alone
        vision_config = config if model_type == "siglip_vision_model" else config.vision_config
        return transformers.AutoModel.from_config(vision_config, attn_implementation=ATTENTION)
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise FileNotFoundError(f"{path} has a config.json but no weight files (*.safetensors or *.bin): "
                                f"{PATH_HINT}, or build with pretrained=False for random weights")
    cls = {"siglip": transformers.SiglipModel,
           "siglip_vision_model": transformers.SiglipVisionModel,
           "paligemma": transformers.PaliGemmaForConditionalGeneration}[model_type]
    # dtype="auto" keeps the checkpoint's dtype (bfloat16 for PaliGemma), so the language model, loaded
    # only to be dropped, costs half the memory; the tower is cast to float32 by the caller.
    model = cls.from_pretrained(path, local_files_only=True, dtype="auto", attn_implementation=ATTENTION)
    if model_type == "siglip":
        return model.vision_model
    if model_type == "paligemma":
        return model.model.vision_tower
    return model


class HFVisionEncoder(nn.Module):
    """Vision tower of a transformers vision-language model loaded from a LOCAL directory (never downloads)."""

    def __init__(self, path: str | Path, pretrained: bool = True) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.model_type = _model_type(self.path)
        tower = _load_tower(self.path, self.model_type, pretrained).float()
        if getattr(tower, "use_head", False):
            # SigLIP's attention-pooling head makes one vector per image; the policy wants every
            # token, and an unused head would only carry dead weights (and trouble DDP).
            tower.use_head = tower.config.vision_use_head = False
            del tower.head
        self.tower = tower
        size = tower.config.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.out_channels: int = tower.config.hidden_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float32 (B, 3, H, W) already normalised to [-1, 1]; returns tokens (B, N, out_channels)."""
        # The position embeddings are learnt for one image size: resize any input to it (a 96x160
        # robot frame becomes e.g. 224x224). SigLIP normalises with mean 0.5 and std 0.5, i.e. it
        # expects [-1, 1], which is the policy's normalisation already: no further scaling here.
        x = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        return self.tower(pixel_values=x).last_hidden_state
