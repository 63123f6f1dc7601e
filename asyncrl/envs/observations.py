"""How observations travel through the runtime: any gymnasium observation space becomes a flat dict
of arrays, one per leaf.

The leaves the runtime stores and the model encodes are Box (any rank, any numeric dtype),
Discrete, MultiDiscrete and MultiBinary spaces; Dict and Tuple spaces are walked down to them, nested
too. Each leaf gets a key: a Dict's own keys (nested ones joined by '/', e.g. 'sensors/lidar'), a
Tuple's positions ('obs/0', 'obs/1'), and 'obs' for an observation that is a leaf itself. Leaves
no encoder can use (Text, Graph, Sequence, OneOf) are left out, and say so once (`ObsLayout.dropped`).

Stored values are the env's own: a Discrete is its integer (the model makes it a one-hot), a
MultiDiscrete its integer array, a MultiBinary its bits. `ObsLayout.write` checks each value against
its leaf (shape, dtype kind) and `ObsLayout.check_rows` checks whole rows at once (NaN, integers out
of range), so that a broken env is named at its first bad step (`EnvContractError`) instead of
breaking the model later.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from asyncrl.utils.errors import UserError

# The key of a Dict observation that masks the logits of the discrete actions (1 = allowed), as
# in PettingZoo, MiniGrid's wrappers and Sample Factory.
ACTION_MASK_KEY = "action_mask"
ROOT_KEY = "obs"
SUPPORTED_OBS_SPACES = ("Box (any rank), Discrete, MultiDiscrete, MultiBinary, and Dicts or Tuples "
                        "of these (nested too)")
LEAF_TYPES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)

Path = tuple[Any, ...]  # Dict keys and Tuple positions from the observation down to a leaf


class EnvContractError(UserError):
    """An env broke its own declared contract (an observation outside its space, a reward that is
    not a number, a reset or step with the wrong number of values): recreating it would not help,
    so the run stops with this line."""


def one_line(space: gym.Space) -> str:
    """`str(space)` without the line breaks numpy puts into multi-dimensional arrays."""
    return " ".join(str(space).split())


@dataclass(frozen=True)
class ObsLayout:
    space: gym.spaces.Dict  # key -> leaf space, in the env's order
    paths: Mapping[str, Path]
    dropped: tuple[tuple[str, gym.Space], ...]  # (key, space) of leaves left out
    # The env's observation is one leaf: stored whole under ROOT_KEY without a walk.
    root_is_leaf: bool
    env_name: str = ""  # for error messages

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.space.spaces)

    def leaf(self, obs: Any, key: str) -> Any:
        """The value of leaf `key` in an observation (or in a batch of them from a vector env,
        whose Dicts and Tuples nest the same way)."""
        if self.root_is_leaf:
            return obs
        for step in self.paths[key]:
            obs = obs[step]
        return obs

    def write(self, arrays: Mapping[str, np.ndarray], index: int, obs: Any, env: int) -> None:
        """Stores one env's observation at row `index` of `arrays` (key -> `[rows, ...]`), checking
        each value's shape and dtype kind against its leaf; `env` names the env in errors."""
        if self.root_is_leaf:
            self._store(arrays[ROOT_KEY], index, obs, ROOT_KEY, env)
            return
        try:
            for key, path in self.paths.items():
                value = obs
                for step in path:
                    value = value[step]
                self._store(arrays[key], index, value, key, env)
        except (KeyError, IndexError, TypeError) as e:
            raise EnvContractError(
                f"{self._who(env)}: its observation is {_describe_value(obs)}, which does not "
                f"have the structure of its space {one_line(self._declared())} "
                f"({type(e).__name__}: {(str(e).splitlines() or [''])[0]})") from None

    def write_batch(self, arrays: Mapping[str, np.ndarray], rows: slice, obs: Any) -> None:
        """Stores a vector env's batched observation into `rows` (gymnasium's vector envs check
        their own envs' values against the space)."""
        for key in self.space.spaces:
            arrays[key][rows] = self.leaf(obs, key)

    def _store(self, array: np.ndarray, index: int, value: Any, key: str, env: int) -> None:
        if type(value) is not np.ndarray:
            value = np.asarray(value)
        if value.shape != array.shape[1:] or not _fits(value.dtype, array.dtype):
            raise EnvContractError(
                f"{self._who(env)}: observation {self._name(key)}is {_describe_value(value)} but "
                f"its space is {one_line(self.space[key])}")
        array[index] = value

    def check_rows(self, arrays: Mapping[str, np.ndarray], rows: Any, envs: Any) -> None:
        """Values no per-value check catches cheaply, for rows `rows` at once (a slice, or
        indices): NaN in float leaves, integers outside a Discrete's or MultiDiscrete's range.
        `envs(i)` names the env of the i-th checked row."""
        rows = contiguous(rows)
        for key in self._float_keys:
            values = arrays[key][rows]
            # A sum is NaN when any value is (or inf meets -inf): one pass, no temporary array.
            if np.isnan(np.add.reduce(values, axis=None)) and np.isnan(values).any():
                self._refuse(key, values, np.isnan(values), "NaN", envs)
        for key, (low, high) in self._ranges.items():
            values = arrays[key][rows]
            outside = (values < low) | (values >= high)
            if outside.any():
                self._refuse(key, values, outside, f"outside [{_range_text(self.space[key])}]", envs)

    @cached_property
    def _float_keys(self) -> tuple[str, ...]:
        return tuple(k for k, s in self.space.spaces.items() if np.dtype(s.dtype).kind == "f")

    @cached_property
    def _ranges(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """key -> (lowest, one past the highest) value of each Discrete and MultiDiscrete."""
        return {k: (np.asarray(s.start), np.asarray(s.start) + _sizes(s))
                for k, s in self.space.spaces.items()
                if isinstance(s, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))}

    def _refuse(self, key: str, values: np.ndarray, bad: np.ndarray, what: str, envs: Any) -> None:
        i = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
        raise EnvContractError(f"{self._who(envs(i))}: observation {self._name(key)}holds {what} "
                               f"values ({_describe_value(values[i])}) for its space "
                               f"{one_line(self.space[key])}")

    def _declared(self) -> gym.Space:
        return self.space[ROOT_KEY] if self.root_is_leaf else self.space

    def _name(self, key: str) -> str:
        return "" if self.root_is_leaf else f"'{key}' "

    def _who(self, env: int) -> str:
        return f"--env={self.env_name}: env {env}" if self.env_name else f"env {env}"


def contiguous(rows: Any) -> Any:
    """Row indices as a slice when they are consecutive (a split's rows are): a view instead of
    a copy."""
    if isinstance(rows, np.ndarray) and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _sizes(space: gym.Space) -> np.ndarray:
    return np.asarray(space.n if isinstance(space, gym.spaces.Discrete) else space.nvec)


def _range_text(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return f"{int(space.start)}, {int(space.start + space.n) - 1}"
    return "start, start + nvec - 1"


def _fits(value: np.dtype, stored: np.dtype) -> bool:
    """Whether values of dtype `value` belong in an array of dtype `stored`: any number into a
    float array, integers and booleans into an integer one; never a float into an integer array
    (a uint8 image, a Discrete), which would silently truncate it."""
    if value == stored:
        return True
    kinds = "biu" if stored.kind in "biu" else "biuf"
    return value.kind in kinds


def _describe_value(value: Any) -> str:
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return f"{value.dtype} {value.item()!r}"
    if isinstance(value, np.ndarray):
        text = f"an array of shape {value.shape} and dtype {value.dtype}"
        return text if value.size > 8 else f"{text} ({' '.join(str(value.tolist()).split())})"
    if isinstance(value, (dict, tuple, list)):
        return f"a {type(value).__name__}"
    return f"{type(value).__name__} {value!r}"


def obs_layout(space: gym.Space, env_name: str = "") -> ObsLayout:
    """The layout of an env's observation space; a UserError when no usable leaf is left."""
    leaves: dict[str, gym.Space] = {}
    paths: dict[str, Path] = {}
    dropped: list[tuple[str, gym.Space]] = []
    root_is_leaf = isinstance(space, LEAF_TYPES)
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            _walk(sub, str(key), (key,), leaves, paths, dropped)
    else:
        _walk(space, ROOT_KEY, (), leaves, paths, dropped)
    if not leaves:
        unusable = ", ".join(f"'{key}' {one_line(s)}" for key, s in dropped) or one_line(space)
        raise UserError(f"{f'--env={env_name}: ' if env_name else ''}no usable observation: "
                        f"{unusable} (supported: {SUPPORTED_OBS_SPACES})")
    return ObsLayout(gym.spaces.Dict(leaves), paths, tuple(dropped), root_is_leaf, env_name)


def _walk(space: gym.Space, key: str, path: Path, leaves: dict[str, gym.Space],
          paths: dict[str, Path], dropped: list[tuple[str, gym.Space]]) -> None:
    if isinstance(space, gym.spaces.Dict):
        for sub_key, sub in space.spaces.items():
            _walk(sub, f"{key}/{sub_key}", (*path, sub_key), leaves, paths, dropped)
    elif isinstance(space, gym.spaces.Tuple):
        for position, sub in enumerate(space.spaces):
            _walk(sub, f"{key}/{position}", (*path, position), leaves, paths, dropped)
    elif isinstance(space, LEAF_TYPES):
        leaves[key] = space
        paths[key] = path
    else:
        dropped.append((key, space))


def obs_dict_space(space: gym.Space) -> gym.spaces.Dict:
    """The leaves an env's observations are stored as: key -> Box, Discrete, MultiDiscrete or
    MultiBinary space."""
    return obs_layout(space).space


def dropped_keys_warning(layout: ObsLayout) -> str | None:
    """One line naming the leaves left out, or None."""
    if not layout.dropped:
        return None
    parts = ", ".join(f"'{key}' ({type(s).__name__})" for key, s in layout.dropped)
    return (f"observation {parts} left out: no encoder takes "
            f"{'this space' if len(layout.dropped) == 1 else 'these spaces'} "
            f"(supported: {SUPPORTED_OBS_SPACES})")
