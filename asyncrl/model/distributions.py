"""Action distributions parameterised by the flat output of the policy head.

The maths is written out directly rather than through `torch.distributions`: constructing those
objects validates and broadcasts on every call, which costs far more than the arithmetic itself on
the small batches that actors run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import gymnasium
import torch
import torch.nn.functional as F
from torch import Tensor

from asyncrl.utils.errors import UserError

_LOG_2PI = math.log(2.0 * math.pi)


def num_action_params(action_space: gymnasium.spaces.Space) -> int:
    """Width of the policy head's output for `action_space`: n logits for Discrete(n), a mean and a
    log-std per dimension (2 * A) for a 1-D Box of shape (A,)."""
    if isinstance(action_space, gymnasium.spaces.Discrete):
        # Sampled actions are indices 0..n-1; an offset start would silently shift every action.
        if int(action_space.start) != 0:
            raise UserError(f"unsupported action space {action_space}: Discrete spaces must start at 0")
        return int(action_space.n)
    if isinstance(action_space, gymnasium.spaces.Box) and len(action_space.shape) == 1:
        return 2 * int(action_space.shape[0])
    raise UserError(
        f"unsupported action space {action_space}: only Discrete and 1-D Box action spaces are supported"
    )


class ActionDistribution(ABC):
    """A batch of N independent action distributions."""

    @abstractmethod
    def sample(self) -> Tensor:
        """One random action per row."""

    @abstractmethod
    def deterministic(self) -> Tensor:
        """The most likely action per row (used for evaluation)."""

    @abstractmethod
    def log_prob(self, actions: Tensor) -> Tensor:
        """`[N]` log-probability (density) of `actions`."""

    @abstractmethod
    def entropy(self) -> Tensor:
        """`[N]` entropy of each distribution."""

    @abstractmethod
    def kl_divergence(self, other: ActionDistribution) -> Tensor:
        """`[N]` KL(self || other)."""

    @abstractmethod
    def symmetric_kl_with_uniform_prior(self) -> Tensor:
        """`[N]` KL(self || uniform) + KL(uniform || self)."""


class CategoricalDistribution(ActionDistribution):
    """Categorical over n actions from logits `[N, n]`."""

    def __init__(self, logits: Tensor) -> None:
        if logits.dim() != 2:
            raise ValueError(f"categorical logits must be [N, n], got shape {tuple(logits.shape)}")
        # Clamping keeps log-probs finite when a logit is -inf, so 0 * log(0) terms below stay 0.
        self.log_probs = F.log_softmax(logits, dim=-1).clamp(min=torch.finfo(logits.dtype).min)
        self.probs = self.log_probs.exp()

    @property
    def num_categories(self) -> int:
        return self.log_probs.shape[-1]

    def sample(self) -> Tensor:
        """`[N]` int64 action indices."""
        return torch.multinomial(self.probs, 1).squeeze(-1)

    def deterministic(self) -> Tensor:
        """`[N]` int64 argmax of the logits."""
        return self.log_probs.argmax(dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        """`actions` is `[N]` of action indices (any numeric dtype)."""
        if tuple(actions.shape) != (self.log_probs.shape[0],):
            raise ValueError(
                f"categorical actions must be [N] = ({self.log_probs.shape[0]},), got shape {tuple(actions.shape)}"
            )
        return self.log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.log_probs).sum(dim=-1)

    def kl_divergence(self, other: ActionDistribution) -> Tensor:
        if not isinstance(other, CategoricalDistribution):
            raise TypeError(f"KL between CategoricalDistribution and {type(other).__name__} is undefined")
        if other.log_probs.shape != self.log_probs.shape:
            raise ValueError(
                f"KL needs equal shapes, got {tuple(self.log_probs.shape)} and {tuple(other.log_probs.shape)}"
            )
        return (self.probs * (self.log_probs - other.log_probs)).sum(dim=-1)

    def symmetric_kl_with_uniform_prior(self) -> Tensor:
        # With u = 1/n: KL(p||u) = -H(p) + log n and KL(u||p) = -log n - mean_i log p_i; log n cancels.
        return -self.entropy() - self.log_probs.mean(dim=-1)


class DiagGaussianDistribution(ActionDistribution):
    """Diagonal Gaussian over A dimensions from `params = cat(mean [N, A], log_std [N, A])`."""

    def __init__(self, params: Tensor) -> None:
        if params.dim() != 2 or params.shape[-1] % 2 != 0:
            raise ValueError(f"gaussian params must be [N, 2 * A], got shape {tuple(params.shape)}")
        self.mean, self.log_std = params.chunk(2, dim=-1)
        self.std = self.log_std.exp()

    def sample(self) -> Tensor:
        """`[N, A]` float actions."""
        return self.mean + self.std * torch.randn_like(self.mean)

    def deterministic(self) -> Tensor:
        """`[N, A]` the means."""
        return self.mean

    def log_prob(self, actions: Tensor) -> Tensor:
        """`actions` is `[N, A]`; densities of the independent dimensions multiply, so log-probs sum."""
        if actions.shape != self.mean.shape:
            raise ValueError(
                f"gaussian actions must be [N, A] = {tuple(self.mean.shape)}, got shape {tuple(actions.shape)}"
            )
        z = (actions - self.mean) / self.std
        return (-0.5 * z.square() - self.log_std - 0.5 * _LOG_2PI).sum(dim=-1)

    def entropy(self) -> Tensor:
        return (0.5 + 0.5 * _LOG_2PI + self.log_std).sum(dim=-1)

    def kl_divergence(self, other: ActionDistribution) -> Tensor:
        if not isinstance(other, DiagGaussianDistribution):
            raise TypeError(f"KL between DiagGaussianDistribution and {type(other).__name__} is undefined")
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"KL needs equal shapes, got {tuple(self.mean.shape)} and {tuple(other.mean.shape)}")
        var_ratio = (self.std / other.std).square()
        mean_term = ((self.mean - other.mean) / other.std).square()
        return (0.5 * (var_ratio + mean_term - 1.0) - self.log_std + other.log_std).sum(dim=-1)

    def symmetric_kl_with_uniform_prior(self) -> Tensor:
        raise UserError("symmetric_kl needs a discrete action space: a Gaussian has no uniform prior")


def make_action_distribution(action_space: gymnasium.spaces.Space, params: Tensor) -> ActionDistribution:
    """Distribution for `action_space` from the policy head output `params` `[N, num_action_params]`."""
    expected = num_action_params(action_space)
    if params.dim() != 2 or params.shape[-1] != expected:
        raise ValueError(
            f"action params for {action_space} must be [N, {expected}], got shape {tuple(params.shape)}"
        )
    if isinstance(action_space, gymnasium.spaces.Discrete):
        return CategoricalDistribution(params)
    return DiagGaussianDistribution(params)
