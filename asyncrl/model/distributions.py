"""Action distributions parameterised by the flat output of the policy head (its layout, and that
of the actions, is described in asyncrl/envs/spaces.py).

The maths is written out directly rather than through `torch.distributions`: constructing those
objects validates and broadcasts on every call, which costs far more than the arithmetic itself on
the small batches that actors run.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asyncrl.envs.observations import ACTION_MASK_KEY, one_line
from asyncrl.envs.spaces import ActionLayout, action_layout
from asyncrl.utils.errors import UserError

_LOG_2PI = math.log(2.0 * math.pi)


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
        raise UserError("symmetric_kl needs a discrete action space (Discrete, MultiDiscrete or Tuples "
                        "of them): a Gaussian (Box actions) has no uniform prior")


@functools.lru_cache(maxsize=None)
def _padding(categories: tuple[int, ...], device: torch.device) -> tuple[Tensor | None, Tensor, Tensor]:
    """For K components of different sizes padded to n_max: `index` `[K * n_max]` into the
    concatenated logits followed by one -inf column (None when all sizes are equal: a plain
    reshape then), `valid` `[K, n_max]` 1.0 where a category exists, `sizes` `[K]`."""
    n_max, total = max(categories), sum(categories)
    offsets = torch.tensor([0, *categories[:-1]]).cumsum(0)  # [K] first logit of each component
    sizes = torch.tensor(categories)
    positions = torch.arange(n_max)
    valid = positions[None, :] < sizes[:, None]  # [K, n_max]
    index = torch.where(valid, offsets[:, None] + positions[None, :], total).reshape(-1)
    uniform = len(set(categories)) == 1
    return (None if uniform else index.to(device)), valid.float().to(device), sizes.float().to(device)


class MultiCategoricalDistribution(ActionDistribution):
    """K independent categoricals of sizes `categories` from their concatenated logits
    `[N, sum(categories)]`; actions are `[N, K]`. The components are padded to the largest size
    with -inf logits (probability 0) and handled as the N * K rows of one categorical, so that
    nothing loops over components or rows."""

    def __init__(self, logits: Tensor, categories: tuple[int, ...]) -> None:
        if logits.dim() != 2 or logits.shape[-1] != sum(categories):
            raise ValueError(f"multi-categorical logits must be [N, {sum(categories)}], "
                             f"got shape {tuple(logits.shape)}")
        index, self.valid, self.sizes = _padding(categories, logits.device)
        if index is not None:
            pad = logits.new_full((logits.shape[0], 1), float("-inf"))
            logits = torch.cat([logits, pad], dim=-1)[:, index]  # [N, K * n_max]
        self.shape = (logits.shape[0], len(categories))  # (N, K)
        self.rows = CategoricalDistribution(logits.reshape(-1, max(categories)))  # [N * K, n_max]

    def _per_row(self, values: Tensor) -> Tensor:
        """`[N * K]` values of the components -> `[N]` sums (the components are independent)."""
        return values.view(self.shape).sum(dim=-1)

    def sample(self) -> Tensor:
        """`[N, K]` int64 category indices."""
        return self.rows.sample().view(self.shape)

    def deterministic(self) -> Tensor:
        """`[N, K]` int64 argmax of each component."""
        return self.rows.deterministic().view(self.shape)

    def log_prob(self, actions: Tensor) -> Tensor:
        """`actions` is `[N, K]` of category indices (any numeric dtype)."""
        if tuple(actions.shape) != self.shape:
            raise ValueError(f"multi-categorical actions must be [N, K] = {self.shape}, "
                             f"got shape {tuple(actions.shape)}")
        return self._per_row(self.rows.log_prob(actions.reshape(-1)))

    def entropy(self) -> Tensor:
        return self._per_row(self.rows.entropy())

    def kl_divergence(self, other: ActionDistribution) -> Tensor:
        if not isinstance(other, MultiCategoricalDistribution):
            raise TypeError(f"KL between MultiCategoricalDistribution and {type(other).__name__} is undefined")
        return self._per_row(self.rows.kl_divergence(other.rows))

    def symmetric_kl_with_uniform_prior(self) -> Tensor:
        # Per component as for a categorical: -H(p) - mean of log p over its own categories
        # (padding log-probs are finite and masked out); the components' values add up.
        log_probs = self.rows.log_probs.view(*self.shape, -1)  # [N, K, n_max]
        mean_log_prob = (log_probs * self.valid).sum(dim=-1) / self.sizes  # [N, K]
        return self._per_row(-self.rows.entropy()) - mean_log_prob.sum(dim=-1)


class MixedDistribution(ActionDistribution):
    """Independent categorical components and a diagonal Gaussian (a Tuple with discrete and Box
    parts): params `[N, L + 2A]` = (logits `[N, L]` | means `[N, A]` | log-stds `[N, A]`),
    actions `[N, K + A]` float32 = (category indices `[N, K]` | continuous values `[N, A]`)."""

    def __init__(self, params: Tensor, categories: tuple[int, ...]) -> None:
        num_logits = sum(categories)
        self.num_discrete = len(categories)
        self.discrete = MultiCategoricalDistribution(params[:, :num_logits], categories)
        self.continuous = DiagGaussianDistribution(params[:, num_logits:])

    def sample(self) -> Tensor:
        """`[N, K + A]` float32: indices (exact as floats) then continuous values."""
        return torch.cat([self.discrete.sample().float(), self.continuous.sample()], dim=-1)

    def deterministic(self) -> Tensor:
        return torch.cat([self.discrete.deterministic().float(), self.continuous.deterministic()], dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        """`actions` is `[N, K + A]`."""
        K = self.num_discrete
        return self.discrete.log_prob(actions[:, :K]) + self.continuous.log_prob(actions[:, K:])

    def entropy(self) -> Tensor:
        return self.discrete.entropy() + self.continuous.entropy()

    def kl_divergence(self, other: ActionDistribution) -> Tensor:
        if not isinstance(other, MixedDistribution):
            raise TypeError(f"KL between MixedDistribution and {type(other).__name__} is undefined")
        return (self.discrete.kl_divergence(other.discrete)
                + self.continuous.kl_divergence(other.continuous))

    def symmetric_kl_with_uniform_prior(self) -> Tensor:
        # Sample Factory sums the parts' values and fails on the Gaussian part; penalising only
        # the discrete parts would silently leave the continuous ones unregularized.
        return self.continuous.symmetric_kl_with_uniform_prior()


@functools.lru_cache(maxsize=None)
def _components(categories: tuple[int, ...], device: torch.device) -> Tensor:
    """`[L]` the component each logit belongs to."""
    return torch.repeat_interleave(torch.arange(len(categories)), torch.tensor(categories)).to(device)


def mask_logits(params: Tensor, mask: Tensor, categories: tuple[int, ...]) -> Tensor:
    """Action parameters `[N, P]`, whose first L = sum(categories) columns are the logits of the
    categorical components, with the logits `mask` `[N, L]` forbids (0; nonzero = allowed) set to
    -inf: such actions get probability 0, are never sampled nor taken as the most likely one, and
    log-probabilities and entropies are those of the distribution over the allowed actions. A
    component of which the mask allows nothing keeps all its logits (better some action than NaN
    probabilities)."""
    num_rows, num_logits = params.shape[0], sum(categories)
    allowed = mask.reshape(num_rows, num_logits) != 0
    if len(categories) == 1:
        allowed = allowed | ~allowed.any(dim=1, keepdim=True)
    else:
        component = _components(categories, params.device)
        allowed_per_component = torch.zeros((num_rows, len(categories)), device=params.device)
        allowed_per_component.index_add_(1, component, allowed.float())
        allowed = allowed | (allowed_per_component == 0)[:, component]
    logits = params[:, :num_logits].masked_fill(~allowed, float("-inf"))
    return logits if params.shape[1] == num_logits else torch.cat([logits, params[:, num_logits:]], 1)


class ActionMasking(nn.Module):
    """`mask_logits` for an action layout, with the mask observation checked once: it needs a
    categorical part in the actions and one entry per logit."""

    def __init__(self, layout: ActionLayout, mask_space: gymnasium.Space):
        super().__init__()
        self.categories = layout.categories
        entries = int(np.prod(mask_space.shape)) if mask_space.shape is not None else 0
        if not layout.categories:
            raise UserError(f"observation '{ACTION_MASK_KEY}' masks discrete actions, but this env's "
                            f"action space {one_line(layout.space)} has none")
        if not isinstance(mask_space, (gymnasium.spaces.Box, gymnasium.spaces.MultiBinary)) or \
                entries != layout.num_logits:
            raise UserError(
                f"observation '{ACTION_MASK_KEY}' is {one_line(mask_space)}: it must be a Box or "
                f"MultiBinary with one entry per action, {layout.num_logits} for "
                f"{one_line(layout.space)} (the allowed actions of each discrete part, "
                "concatenated)")

    def forward(self, params: Tensor, mask: Tensor) -> Tensor:
        return mask_logits(params, mask, self.categories)


def make_action_distribution(action_space: gymnasium.spaces.Space | ActionLayout,
                             params: Tensor) -> ActionDistribution:
    """Distribution for `action_space` (or its precomputed layout, as the model keeps it) from the
    policy head output `params` `[N, num_params]`."""
    layout = action_space if isinstance(action_space, ActionLayout) else action_layout(action_space)
    expected = layout.num_params
    if params.dim() != 2 or params.shape[-1] != expected:
        raise ValueError(
            f"action params for {layout.space} must be [N, {expected}], got shape {tuple(params.shape)}"
        )
    if layout.scalar:
        return CategoricalDistribution(params)
    if not layout.categories:
        return DiagGaussianDistribution(params)
    if not layout.continuous_dims:
        return MultiCategoricalDistribution(params, layout.categories)
    return MixedDistribution(params, layout.categories)
