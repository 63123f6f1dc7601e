"""How actions travel through the runtime (observations: envs/observations.py).

Actions are one flat vector per step for every supported action space: Discrete, MultiDiscrete,
MultiBinary, a 1-D Box, and Tuples and Dicts of these (nested too; a Dict's parts in its key
order). `ActionLayout` sees such a space as K
independent categorical components (a Discrete is one, a MultiDiscrete one per entry of nvec, a
MultiBinary one two-way component, a Bernoulli, per bit) and A continuous dimensions (all Box
parts, concatenated), both in depth-first order of the space:

- the policy head outputs `[N, L + 2A]`: the logits of the K components (L = the sum of their
  sizes), then A means, then A log-stds;
- a stored action is `[N]` int64 for a plain Discrete (the common case, kept as it always was),
  else `[N, K + A]`: the K category indices, then the A continuous values; int64 when A == 0,
  else float32, which holds every index below 2**24 exactly;
- category indices count from 0: the `start` of a Discrete or MultiDiscrete is added only when
  actions go to the envs (`ActionLayout.to_env`, or `to_vector_env` for a gymnasium VectorEnv),
  which also clips Box parts to their bounds;
- an action mask (the observation key `action_mask`, 1 = allowed) has one entry per logit, `[L]`:
  the allowed categories of each component, concatenated in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import gymnasium as gym
import numpy as np

from asyncrl.envs.observations import one_line
from asyncrl.utils.errors import UserError

# float32 represents every integer up to 2**24 exactly: the largest category index a float
# action vector (a Tuple with Box parts) can carry without rounding.
MAX_CATEGORIES_IN_FLOAT_ACTIONS = 2**24

SUPPORTED_ACTION_SPACES = ("Discrete, MultiDiscrete, MultiBinary, 1-D Box, and Tuples or Dicts "
                           "of these (nested too)")
CATEGORICAL_SPACES = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)

# Where each part goes in the env's action: a part index, or a tuple (Tuple space) or dict (Dict
# space) of such structures.
Structure = Union[int, tuple["Structure", ...], dict[str, "Structure"]]


@dataclass(frozen=True)
class ActionPart:
    """One Discrete, MultiDiscrete, MultiBinary or 1-D Box inside the action space and its columns
    in the flat action vector."""

    space: gym.Space
    columns: slice

    def to_env(self, block: np.ndarray) -> np.ndarray:
        """This part's columns `[n, width]` -> its n env actions as one array: `[n]` for a
        Discrete, `[n, *nvec.shape]` for a MultiDiscrete, `[n, *shape]` for a MultiBinary,
        `[n, A]` for a Box."""
        space = self.space
        if isinstance(space, gym.spaces.Box):
            return np.clip(block, space.low, space.high).astype(space.dtype)
        if isinstance(space, gym.spaces.Discrete):
            return block[:, 0].astype(np.int64) + int(space.start)
        if isinstance(space, gym.spaces.MultiBinary):
            return block.astype(space.dtype).reshape(-1, *space.shape)
        shifted = block.astype(space.dtype) + space.start.reshape(-1).astype(space.dtype)
        return shifted.reshape(-1, *space.shape)


@dataclass(frozen=True)
class ActionLayout:
    space: gym.Space
    categories: tuple[int, ...]  # [K] sizes of the categorical components
    continuous_dims: int  # A
    parts: tuple[ActionPart, ...]
    structure: Structure
    # A plain Discrete's start; such actions are `[N]` indices rather than `[N, 1]` vectors.
    discrete_start: int | None

    @property
    def scalar(self) -> bool:
        return self.discrete_start is not None

    @property
    def num_logits(self) -> int:
        """L: the logits of all categorical components, and the size of an action mask."""
        return sum(self.categories)

    @property
    def num_params(self) -> int:
        return self.num_logits + 2 * self.continuous_dims

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one stored action: () or (K + A,)."""
        return () if self.scalar else (len(self.categories) + self.continuous_dims,)

    @property
    def action_dtype(self) -> type:
        return np.int64 if self.continuous_dims == 0 else np.float32

    def to_env(self, actions: np.ndarray) -> Sequence[Any]:
        """Stored actions `[n]` or `[n, K + A]` -> the n actions env.step accepts: ints for a
        Discrete, arrays for a MultiDiscrete, MultiBinary or Box (clipped to its bounds), tuples
        or dicts of these for a Tuple or Dict, with each Discrete's and MultiDiscrete's `start`
        added."""
        if self.discrete_start is not None:
            return self.to_vector_env(actions).tolist()
        if isinstance(self.structure, int):  # a plain MultiDiscrete or Box: its rows
            return self.parts[0].to_env(actions)
        arrays = self._part_arrays(actions)
        return _per_env(self.structure, [a.tolist() if a.ndim == 1 else a for a in arrays])

    def to_vector_env(self, actions: np.ndarray) -> Any:
        """Stored actions `[n]` or `[n, K + A]` -> one batched action for a gymnasium VectorEnv
        of n envs (its `batch_space` format): an array `[n, ...]` per part as in `to_env`,
        nested in tuples like the Tuple space."""
        if self.discrete_start is not None:
            return actions + self.discrete_start if self.discrete_start else actions
        if isinstance(self.structure, int):
            return self.parts[0].to_env(actions)
        return _batched(self.structure, self._part_arrays(actions))

    def _part_arrays(self, actions: np.ndarray) -> list[np.ndarray]:
        return [part.to_env(actions[:, part.columns]) for part in self.parts]

    def random_actions(self, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Stored actions `[n]` or `[n, K + A]` drawn uniformly among the categories `masks`
        `[n, L]` allows (a component that allows none draws from all), Box parts from their
        spaces: what acting at random means in an env with action masks."""
        n = len(masks)
        allowed = masks.reshape(n, -1) != 0
        columns = []
        first = 0
        for size in self.categories:
            own = allowed[:, first:first + size]
            own = own | ~own.any(axis=1, keepdims=True)
            # The first allowed category after a uniform draw among the allowed ones.
            keys = np.where(own, rng.random((n, size)), -1.0)
            columns.append(keys.argmax(axis=1))
            first += size
        discrete = np.stack(columns, axis=1) if columns else np.zeros((n, 0), dtype=np.int64)
        if self.scalar:
            return discrete[:, 0]
        boxes = [np.stack([part.space.sample() for _ in range(n)]).reshape(n, -1)
                 for part in self.parts if isinstance(part.space, gym.spaces.Box)]
        return np.concatenate([discrete, *boxes], axis=1).astype(self.action_dtype)


def _per_env(structure: Structure, parts: list[Sequence[Any]]) -> Sequence[Any]:
    """Per-part sequences of n env actions -> n (nested) tuples and dicts shaped like the
    space."""
    if isinstance(structure, int):
        return parts[structure]
    if isinstance(structure, dict):
        keys = list(structure)
        return [dict(zip(keys, values))
                for values in zip(*(_per_env(s, parts) for s in structure.values()))]
    return list(zip(*(_per_env(s, parts) for s in structure)))


def _batched(structure: Structure, parts: list[np.ndarray]) -> Any:
    """Per-part arrays `[n, ...]` -> tuples and dicts of them nested like the space."""
    if isinstance(structure, int):
        return parts[structure]
    if isinstance(structure, dict):
        return {key: _batched(s, parts) for key, s in structure.items()}
    return tuple(_batched(s, parts) for s in structure)


def action_layout(space: gym.Space) -> ActionLayout:
    """The layout of `space`, or a UserError naming the space (and the unsupported part of it)."""
    leaves: list[gym.Space] = []
    structure = _collect_leaves(space, space, leaves)
    categories: list[int] = []
    for leaf in leaves:
        if isinstance(leaf, gym.spaces.Discrete):
            categories.append(int(leaf.n))
        elif isinstance(leaf, gym.spaces.MultiDiscrete):
            categories.extend(int(n) for n in leaf.nvec.reshape(-1))
        elif isinstance(leaf, gym.spaces.MultiBinary):
            categories.extend([2] * int(np.prod(leaf.shape)))
    num_discrete, next_discrete, next_continuous = len(categories), 0, len(categories)
    parts = []
    for leaf in leaves:
        if isinstance(leaf, gym.spaces.Box):
            width = int(leaf.shape[0])
            parts.append(ActionPart(leaf, slice(next_continuous, next_continuous + width)))
            next_continuous += width
        else:
            width = 1 if isinstance(leaf, gym.spaces.Discrete) else int(
                leaf.nvec.size if isinstance(leaf, gym.spaces.MultiDiscrete) else np.prod(leaf.shape))
            parts.append(ActionPart(leaf, slice(next_discrete, next_discrete + width)))
            next_discrete += width
    discrete_start = int(space.start) if isinstance(space, gym.spaces.Discrete) else None
    layout = ActionLayout(space, tuple(categories), next_continuous - num_discrete, tuple(parts),
                          structure, discrete_start)
    if layout.continuous_dims and categories and max(categories) > MAX_CATEGORIES_IN_FLOAT_ACTIONS:
        raise UserError(f"unsupported action space {one_line(space)}: with Box parts, discrete parts "
                        f"may have at most 2**24 actions (actions are stored as float32)")
    return layout


def _collect_leaves(space: gym.Space, whole: gym.Space, leaves: list[gym.Space]) -> Structure:
    """Appends the Discrete, MultiDiscrete, MultiBinary and Box parts of `space` to `leaves`
    depth-first; returns where each goes in the env's action."""
    if isinstance(space, gym.spaces.Tuple) and len(space.spaces) > 0:
        return tuple(_collect_leaves(s, whole, leaves) for s in space.spaces)
    if isinstance(space, gym.spaces.Dict) and len(space.spaces) > 0:
        return {key: _collect_leaves(s, whole, leaves) for key, s in space.spaces.items()}
    if isinstance(space, CATEGORICAL_SPACES) or (
            isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        leaves.append(space)
        return len(leaves) - 1
    part = "" if space is whole else f" (its part {one_line(space)} is not)"
    raise UserError(f"unsupported action space {one_line(whole)}{part}: supported are "
                    f"{SUPPORTED_ACTION_SPACES}")
