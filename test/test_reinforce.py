"""REINFORCE pieces against hand-computed numbers, and practice episodes read back from bags."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from efm_trainer.practice_data import PracticeDataError, read_practice_episode  # noqa: E402
from efm_trainer.reinforce import (AlignmentError, align_rewards, chunk_log_probs,  # noqa: E402
                                   discounted_returns, reinforce_loss)
from practice_episodes import write_practice_episode  # noqa: E402


def test_action_t_is_paid_by_the_reward_of_step_t_plus_1():
    rewards = {0: 0.0, 1: 2.0, 2: -1.0, 3: 4.0}
    assert align_rewards([0, 1, 2], rewards).tolist() == [2.0, -1.0, 4.0]
    # the last action's observation was never scored: it is dropped, not invented
    assert align_rewards([0, 1, 2, 3], rewards).tolist() == [2.0, -1.0, 4.0]
    with pytest.raises(AlignmentError, match=r"no reward .*t in \[1\]"):
        align_rewards([0, 1, 2], {1: 2.0, 3: 4.0})
    with pytest.raises(AlignmentError, match="without gaps"):
        align_rewards([0, 2], rewards)


def test_discounted_returns_stop_at_the_episode_end():
    # R_2 = 4; R_1 = -1 + 0.9 * 4 = 2.6; R_0 = 2 + 0.9 * 2.6 = 4.34
    assert discounted_returns([2.0, -1.0, 4.0], gamma=0.9) == pytest.approx([4.34, 2.6, 4.0])
    assert discounted_returns([2.0, -1.0, 4.0], gamma=0.0) == pytest.approx([2.0, -1.0, 4.0])
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns([1.0], gamma=1.5)


def test_loss_is_minus_the_mean_of_scaled_returns_times_chunk_log_probs():
    # two chunks of two tokens over three bins; logits chosen so log-softmax is easy to write down
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]],
                           [[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    tokens = torch.tensor([[0, 0], [1, 2]])
    log_probs = chunk_log_probs(logits, tokens)
    expected = [math.log(1 / 3) + math.log(2 / 4), math.log(3 / 5) + math.log(1 / 3)]
    assert log_probs.tolist() == pytest.approx(expected)
    returns = torch.tensor([4.34, -2.0])
    loss = reinforce_loss(log_probs, returns, d_max=50)
    assert loss.item() == pytest.approx(-(4.34 / 50 * expected[0] - 2.0 / 50 * expected[1]) / 2)
    # a rank holding half of a minibatch divides by the whole minibatch
    assert reinforce_loss(log_probs[:1], returns[:1], 50, mean_over=2).item() == pytest.approx(
        -(4.34 / 50 * expected[0]) / 2)
    loss.backward()
    # positive return: gradient descent raises the taken token's logit
    assert logits.grad[0, 0, 0] < 0 and logits.grad[1, 0, 1] > 0


def test_practice_episode_arrays(tmp_path):
    path = write_practice_episode(tmp_path, "robot_a-1", "sft-0000", [[1, 2], [3, 4], [5, 6]], [1.0, 2.0, 3.0])
    episode = read_practice_episode(path, ["top"], history=2, image_size=(16, 24))
    assert episode.steps == 3 and episode.rewards.tolist() == [1.0, 2.0, 3.0]
    assert episode.tokens.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert episode.view_frames.tolist() == [[0, 0], [0, 1], [1, 2]]   # history starts at the first frame
    assert episode.frames.shape == (4, 16, 24, 3)
    assert episode.proprio[2].tolist() == pytest.approx([0.32, 0.02])
    assert episode.policy_versions == ["sft-0000"] and episode.reward_model_versions == ["sft-0000"]
    assert (episode.outcome, episode.detector_success, episode.human_label) == ("timed_out", False, "none")
    assert not episode.dropped_last_action


def test_practice_episode_refusals(tmp_path):
    tokens = [[1, 2], [3, 4], [5, 6]]
    no_reward = write_practice_episode(tmp_path, "a", "v", tokens, [1.0, 2.0, 3.0], skip_topics=["/reward"])
    with pytest.raises(PracticeDataError, match="no messages on /reward"):
        read_practice_episode(no_reward, ["top"], 2, (16, 24))
    with pytest.raises(PracticeDataError, match="/camera/side/image_raw/compressed"):
        read_practice_episode(no_reward.with_name("a"), ["side"], 2, (16, 24))
    unscored_tail = write_practice_episode(tmp_path, "b", "v", tokens, [1.0, 2.0])
    episode = read_practice_episode(unscored_tail, ["top"], 2, (16, 24))
    assert episode.steps == 2 and episode.dropped_last_action
    assert np.array_equal(episode.tokens, [[1, 2], [3, 4]])
