"""The ``hf`` backbone: tiny random SigLIP / PaliGemma checkpoints written to a tmp dir, loaded back
through HFVisionEncoder (offline), exported to ONNX and checked against onnxruntime."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from efm_policy.backbones.hf import HFVisionEncoder  # noqa: E402

# 32x32 images in 8x8 patches: 16 tokens of 32 channels.
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              image_size=32, patch_size=8)
TOKENS, CHANNELS = 16, 32


def _tower_state(tower) -> dict:
    """The tower's weights, minus the pooling head the encoder drops."""
    return {k: v for k, v in tower.state_dict().items() if not k.startswith("head.")}


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.SiglipConfig(
        vision_config=VISION,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=100))
    model = transformers.SiglipModel(config)
    path = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(path)
    return path, _tower_state(model.vision_model)


@pytest.fixture(scope="module")
def siglip_vision_dir(tmp_path_factory):
    torch.manual_seed(2)
    model = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**VISION))
    path = tmp_path_factory.mktemp("siglip_vision")
    model.save_pretrained(path)
    return path, _tower_state(model)


@pytest.fixture(scope="module")
def paligemma_dir(tmp_path_factory):
    torch.manual_seed(1)
    try:
        config = transformers.PaliGemmaConfig(
            vision_config=dict(VISION, projection_dim=16),
            text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=1, head_dim=8, vocab_size=100),
            projection_dim=16)
        model = transformers.PaliGemmaForConditionalGeneration(config)
    except Exception as error:  # a transformers version whose PaliGemma will not build this small
        pytest.skip(f"cannot build a tiny PaliGemma with transformers {transformers.__version__}: {error!r}")
    path = tmp_path_factory.mktemp("paligemma")
    model.save_pretrained(path)
    return path, _tower_state(model.model.vision_tower)


@pytest.fixture(params=["siglip", "siglip_vision", "paligemma"])
def checkpoint(request):
    return request.getfixturevalue(f"{request.param}_dir")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loads_the_saved_weights_and_takes_any_image_size(checkpoint):
    path, saved = checkpoint
    encoder = HFVisionEncoder(path).eval()
    assert encoder.out_channels == CHANNELS
    assert _same(_tower_state(encoder.tower), saved)
    with torch.no_grad():
        for size in [(24, 40), (96, 160), (32, 32)]:
            tokens = encoder(torch.rand(2, 3, *size) * 2 - 1)
            assert tokens.shape == (2, TOKENS, CHANNELS) and tokens.dtype == torch.float32


def test_not_pretrained_builds_the_same_architecture_with_random_weights(checkpoint):
    path, saved = checkpoint
    encoder = HFVisionEncoder(path, pretrained=False).eval()
    state = _tower_state(encoder.tower)
    assert state.keys() == saved.keys() and not _same(state, saved)
    assert encoder(torch.zeros(1, 3, 24, 40)).shape == (1, TOKENS, CHANNELS)
    # and a policy checkpoint saved from a pretrained encoder loads into it
    encoder.load_state_dict(HFVisionEncoder(path).state_dict())


def test_not_pretrained_needs_only_config_json(siglip_dir, tmp_path):
    path, _ = siglip_dir
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    assert HFVisionEncoder(tmp_path, pretrained=False).out_channels == CHANNELS
    with pytest.raises(FileNotFoundError, match="no weight files"):
        HFVisionEncoder(tmp_path)


def test_onnx_export_matches_torch(siglip_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    encoder = HFVisionEncoder(siglip_dir[0]).eval()
    images = torch.rand(2, 3, 24, 40) * 2 - 1
    onnx_file = tmp_path / "encoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # TracerWarnings from transformers' python control flow
        torch.onnx.export(encoder, (images,), str(onnx_file), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["tokens"],
                          dynamic_axes={"images": {0: "batch"}, "tokens": {0: "batch"}})
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for batch in (2, 3):
        images = torch.rand(batch, 3, 24, 40) * 2 - 1
        with torch.no_grad():
            expected = encoder(images).numpy()
        (got,) = session.run(None, {"images": images.numpy()})
        assert got.shape == (batch, TOKENS, CHANNELS)
        assert np.abs(got - expected).max() < 1e-4


def test_missing_directory_or_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="--hf-path"):
        HFVisionEncoder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        HFVisionEncoder(tmp_path)


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert'.*siglip, siglip_vision_model, paligemma") as error:
        HFVisionEncoder(tmp_path)
    assert str(tmp_path) in str(error.value)
