"""Stage 2 REINFORCE, exactly as the paper's reference code (see PAPER.md): nothing else.

    reward of action t      r_t = StepReward(step=t+1).reward = d(o_t, g) - d(o_{t+1}, g)
    return                  R_t = sum_k gamma^k r_{t+k}, within the episode (no bootstrap past its end)
    loss                    -mean(R_t / d_max * log pi(a_t | o_t, g))

log pi(a_t | o_t, g) is the sum over the chunk's tokens; d_max is the steps-to-go tokenizer's
``max_steps``. The return already carries a baseline (d telescopes: R_t is roughly how much closer
the robot came to the goal), so there is no other baseline, no normalisation and no KL or BC term.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

GAMMA = 0.9     # the paper's default: gamma = 1 fails, gamma = 0 is single-step RL


class AlignmentError(ValueError):
    """Actions and rewards of an episode that cannot be paired."""


def align_rewards(action_steps: Sequence[int], reward_by_step: Mapping[int, float]) -> np.ndarray:
    """The reward of each action: action t is paid by ``StepReward(step=t+1)`` (the contract's rule).

    The final action may lack its reward (the episode ended before its next observation was scored,
    e.g. at a time-out); it is then dropped, so the result can be one shorter than ``action_steps``.
    Any other action without its reward is an error: the episode was recorded incompletely.
    """
    steps = [int(s) for s in action_steps]
    if steps != list(range(len(steps))):
        raise AlignmentError(f"action steps must run 0, 1, 2, ... without gaps or repeats; got {_show(steps)}")
    missing = [t for t in steps[:-1] if t + 1 not in reward_by_step]
    if missing:
        raise AlignmentError(f"{len(missing)} actions have no reward (no StepReward with step t+1 for "
                             f"t in {_show(missing)}); the reward node must score every observation")
    if steps and steps[-1] + 1 not in reward_by_step:
        steps = steps[:-1]
    return np.array([reward_by_step[t + 1] for t in steps], dtype=np.float32)


def _show(values: Sequence[int], limit: int = 8) -> str:
    return "[" + ", ".join(map(str, values[:limit])) + (", ..." if len(values) > limit else "") + "]"


def discounted_returns(rewards: Sequence[float], gamma: float = GAMMA) -> np.ndarray:
    """R_t = sum_k gamma^k r_{t+k} over the rest of one episode."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    rewards = np.asarray(rewards, dtype=np.float64)
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns.astype(np.float32)


def chunk_log_probs(action_logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log pi of each chunk: (B, T, bins) logits and (B, T) token ids -> (B,), summed over the T tokens."""
    log_softmax = torch.log_softmax(action_logits.float(), dim=-1)
    return log_softmax.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1).sum(-1)


def reinforce_loss(log_probs: torch.Tensor, returns: torch.Tensor, d_max: float,
                   mean_over: float | None = None) -> torch.Tensor:
    """-mean(R_t / d_max * log pi). ``mean_over`` replaces the batch length as the divisor: with a
    minibatch split over ``world`` processes whose gradients DDP averages, each passes batch / world."""
    if d_max <= 0:
        raise ValueError(f"d_max must be > 0, got {d_max}")
    weighted = returns.to(log_probs.dtype) / float(d_max) * log_probs
    return -weighted.sum() / float(mean_over or len(log_probs))
