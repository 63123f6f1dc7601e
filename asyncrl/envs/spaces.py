"""Observations travel as dicts of arrays; a plain Box observation is the single key "obs"."""

from __future__ import annotations

import gymnasium as gym


def obs_dict_space(obs_space: gym.Space) -> gym.spaces.Dict:
    return obs_space if isinstance(obs_space, gym.spaces.Dict) else gym.spaces.Dict({"obs": obs_space})
