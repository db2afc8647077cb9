"""The policy module's shapes: one pass emits a whole chunk; the backbone cut sets the token grid."""
import pytest

torch = pytest.importorskip("torch")

from efm_policy.config import PolicyConfig  # noqa: E402
from efm_policy.model import EFMPolicy  # noqa: E402
from efm_policy.tokenizers import ActionTokenizer, StepsToGoTokenizer, Tokenizers  # noqa: E402

TOKENIZERS = Tokenizers(ActionTokenizer([-1.0] * 14, [1.0] * 14, bins=16, horizon=5), StepsToGoTokenizer(bins=10))


@pytest.mark.parametrize("vision_blocks, grid", [(11, (2, 3)), (5, (4, 6))])
def test_chunk_in_one_pass_and_grid_per_cut(vision_blocks, grid):
    config = PolicyConfig("aloha", ("top", "left_wrist"), 14, backbone="scratch", image_size=(32, 48), d_model=32,
                          heads=2, layers=1, token_pool=1, vision_blocks=vision_blocks)
    model = EFMPolicy(config, TOKENIZERS, pretrained=False).eval()
    assert model.grid == grid
    images = torch.randint(0, 256, (3, config.views, 32, 48, 3), dtype=torch.uint8)
    actions, steps = model(images, torch.zeros(3, 14), torch.zeros(3, 384))
    assert actions.shape == (3, 5 * 14, 16) and steps.shape == (3, 10)


def test_unknown_backbone_cut_is_refused():
    config = PolicyConfig("aloha", ("top",), 14, backbone="scratch", vision_blocks=7)
    with pytest.raises(ValueError, match=r"vision_blocks must be one of \[5, 8, 11\]"):
        EFMPolicy(config, TOKENIZERS, pretrained=False)
