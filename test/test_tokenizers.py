import numpy as np
import pytest

from efm_policy.tokenizers import ActionTokenizer, StepsToGoTokenizer, Tokenizers

LANGUAGE_TABLE = ActionTokenizer(low=(-0.1, -0.1), high=(0.1, 0.1), bins=256, horizon=1)


def test_action_round_trip_within_half_a_bin():
    actions = np.random.default_rng(0).uniform(-0.1, 0.1, size=(1000, 2))
    decoded = LANGUAGE_TABLE.decode(LANGUAGE_TABLE.encode(actions))
    assert np.max(np.abs(decoded - actions)) <= LANGUAGE_TABLE.bin_width.max() / 2 + 1e-12


def test_action_bins_cover_edges_and_clip_outside():
    tokens = LANGUAGE_TABLE.encode(np.array([[-0.1, 0.1], [-5.0, 5.0], [0.0, 0.0]]))
    assert tokens.tolist() == [[0, 255], [0, 255], [128, 128]]


def test_aloha_chunk_shape_and_errors():
    aloha = ActionTokenizer(low=[-1.0] * 14, high=[1.0] * 14, bins=256, horizon=5)
    chunk = np.zeros((5, 14))
    assert aloha.encode(chunk).shape == (5, 14) and aloha.tokens_per_chunk == 70
    with pytest.raises(ValueError, match="last axis of 14"):
        aloha.encode(np.zeros(70))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 255\]"):
        aloha.decode(np.full((5, 14), 256))
    with pytest.raises(ValueError, match="every high must exceed its low"):
        ActionTokenizer(low=(0.0,), high=(0.0,))


def test_fitted_bins_include_every_demo_action():
    demos = np.random.default_rng(1).normal(size=(500, 3))
    fitted = ActionTokenizer.from_actions(demos, bins=64)
    assert np.all(np.asarray(fitted.low) < demos.min(0)) and np.all(np.asarray(fitted.high) > demos.max(0))


def test_steps_to_go_bins_and_expectation():
    stg = StepsToGoTokenizer(bins=50, max_steps=200)
    assert stg.encode(np.array([0, 3, 4, 199, 200, 1000])).tolist() == [0, 0, 1, 49, 49, 49]
    one_hot = np.eye(50)[[0, 10, 49]]
    assert stg.expectation(one_hot).tolist() == [0.0, 40.0, 196.0]  # lower edges, as in the paper
    assert stg.expectation(np.full(50, 1 / 50)) == pytest.approx(np.mean(stg.lower_edges))


def test_save_load_and_compatibility(tmp_path):
    tokenizers = Tokenizers(LANGUAGE_TABLE, StepsToGoTokenizer())
    tokenizers.save(tmp_path / "tokenizers.json")
    loaded = Tokenizers.load(tmp_path / "tokenizers.json")
    assert loaded == tokenizers and loaded.fingerprint == tokenizers.fingerprint
    other = Tokenizers(ActionTokenizer((-0.1, -0.1), (0.1, 0.1), bins=128), StepsToGoTokenizer(max_steps=400))
    with pytest.raises(ValueError, match=r"action.bins: 256 != 128; steps_to_go.max_steps: 200 != 400"):
        tokenizers.check_compatible(other)
    (tmp_path / "bad.json").write_text('{"format_version": 99}')
    with pytest.raises(ValueError, match="bad.json: not a valid tokenizers file"):
        Tokenizers.load(tmp_path / "bad.json")
