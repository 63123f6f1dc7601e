"""APPO loss terms. Each takes flat `[N]` tensors (valid samples only) and returns a scalar;
coefficients are applied by the caller."""

from __future__ import annotations

import torch
from torch import Tensor

from asyncrl.algo.shapes import require_same_shape
from asyncrl.model.distributions import ActionDistribution


def _ratio_bounds(clip_ratio: float) -> tuple[float, float]:
    # Symmetric in log space (1/(1+c), 1+c) rather than PPO's (1-c, 1+c), so clipping does not
    # favour shrinking a probability over growing it.
    return 1.0 / (1.0 + clip_ratio), 1.0 + clip_ratio


def policy_loss(ratio: Tensor, advantages: Tensor, clip_ratio: float) -> Tensor:
    """Clipped surrogate loss, `ratio` and `advantages` `[N]`; `ratio` = pi / mu per sample."""
    require_same_shape("[N]", ratio=ratio, advantages=advantages)
    low, high = _ratio_bounds(clip_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, low, high) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(values: Tensor, old_values: Tensor, targets: Tensor, clip_value: float) -> Tensor:
    """Clipped squared error, all `[N]`: the new value may move at most `clip_value` from
    `old_values` before the pessimistic (larger) error takes over."""
    require_same_shape("[N]", values=values, old_values=old_values, targets=targets)
    values_clipped = old_values + torch.clamp(values - old_values, -clip_value, clip_value)
    return torch.max((values - targets).square(), (values_clipped - targets).square()).mean()


def entropy_loss(dist: ActionDistribution) -> Tensor:
    """Negative mean entropy: minimising it keeps the policy exploratory."""
    return -dist.entropy().mean()


def symmetric_kl_loss(dist: ActionDistribution) -> Tensor:
    """Mean symmetric KL to the uniform policy: an entropy-like regulariser that also penalises
    probabilities collapsing towards 0 (discrete actions only)."""
    return dist.symmetric_kl_with_uniform_prior().mean()


def kl_loss(dist: ActionDistribution, behaviour_dist: ActionDistribution) -> Tensor:
    """Mean KL(dist || behaviour_dist): keeps the learner near the policy that collected the data."""
    return dist.kl_divergence(behaviour_dist).mean()


def clip_fraction(ratio: Tensor, clip_ratio: float) -> float:
    """Fraction of `ratio` `[N]` outside [1/(1+c), 1+c] (a diagnostic, not differentiable)."""
    low, high = _ratio_bounds(clip_ratio)
    return ((ratio < low) | (ratio > high)).float().mean().item()


def normalize_advantages(adv: Tensor) -> Tensor:
    """(adv - mean) / max(std, 1e-7) over all elements. Uses the population std so that a single
    sample normalises to 0 instead of NaN."""
    std, mean = torch.std_mean(adv, correction=0)
    return (adv - mean) / torch.clamp(std, min=1e-7)
