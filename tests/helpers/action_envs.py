"""Test-only envs with MultiDiscrete, Tuple(Discrete, Box), Dict and MultiBinary action spaces,
registered as the env family `action_targets` on import (`--env=multidiscrete_targets`,
`--env=tuple_targets`, `--env=dict_targets`, `--env=multibinary_targets`; `--env=matrix_actions`
has an unsupported rank-2 Box action space).

Each step shows targets in the observation and pays for matching them, so a policy can learn to
score far above chance within a few thousand steps. Both spaces have a nonzero `start`, and
step() refuses any action outside the space, so a wrong conversion cannot go unnoticed.

    PYTHONPATH=.:tests/helpers python tests/helpers/action_envs.py enjoy --env=tuple_targets --experiment=x
runs asyncrl.enjoy (or `train`) with the family registered.
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np

from asyncrl.envs.registry import EnvFamily, register_env_family

EPISODE_LENGTH = 8


class _Targets(gym.Env):
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.steps = 0
        self._new_targets()
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"{action!r} is not in {self.action_space}")
        reward = self._reward(action)
        self.steps += 1
        self._new_targets()
        return self._obs(), reward, self.steps == EPISODE_LENGTH, False, {}


class MultiDiscreteTargets(_Targets):
    """Two targets shown one-hot; +1 for each action component equal to its target.
    Chance: 1/3 + 1/4 per step (4.67 per episode); the best return is 16."""

    action_space = gym.spaces.MultiDiscrete([3, 4], start=[1, -2])
    observation_space = gym.spaces.Box(0.0, 1.0, (7,), np.float32)

    def _new_targets(self):
        self.targets = np.array([self.rng.integers(3), self.rng.integers(4)])

    def _obs(self):
        obs = np.zeros(7, np.float32)
        obs[self.targets[0]] = obs[3 + self.targets[1]] = 1.0
        return obs

    def _reward(self, action):
        return float(np.sum(action - self.action_space.start == self.targets))


class TupleTargets(_Targets):
    """A target choice (one-hot) and a target position x in [-0.5, 0.5]; reward +1 for the right
    choice plus 0.5 - |a - x| for the position. Chance is about 0.33 - 0.08 per step (2.0 per
    episode with the initial policy); the best return is 12."""

    action_space = gym.spaces.Tuple((gym.spaces.Discrete(3, start=1),
                                     gym.spaces.Box(-1.0, 1.0, (1,), np.float32)))
    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _new_targets(self):
        self.choice, self.x = int(self.rng.integers(3)), float(self.rng.uniform(-0.5, 0.5))

    def _obs(self):
        obs = np.zeros(4, np.float32)
        obs[self.choice], obs[3] = 1.0, self.x
        return obs

    def _reward(self, action):
        choice, position = action
        return float(choice - 1 == self.choice) + 0.5 - abs(float(position[0]) - self.x)


class DictTargets(TupleTargets):
    """TupleTargets with its two parts as a Dict action."""

    action_space = gym.spaces.Dict({"position": gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
                                    "choice": gym.spaces.Discrete(3, start=1)})

    def _reward(self, action):
        return super()._reward((action["choice"], action["position"]))


class MultiBinaryTargets(_Targets):
    """Four target bits shown in the observation; +0.25 for each action bit equal to its target.
    Chance is 0.5 per step (4 per episode); the best return is 8."""

    action_space = gym.spaces.MultiBinary(4)
    observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)

    def _new_targets(self):
        self.targets = self.rng.integers(0, 2, size=4)

    def _obs(self):
        return self.targets.astype(np.float32)

    def _reward(self, action):
        return 0.25 * float(np.sum(action == self.targets))


class MatrixActions(MultiDiscreteTargets):
    """Rank-2 Box actions, which asyncrl does not support: for the error message."""

    action_space = gym.spaces.Box(0, 1, (2, 2))


ENVS = {"multidiscrete_targets": MultiDiscreteTargets, "tuple_targets": TupleTargets,
        "dict_targets": DictTargets, "multibinary_targets": MultiBinaryTargets,
        "matrix_actions": MatrixActions}

register_env_family(EnvFamily(name="action_targets", matches=lambda name: name in ENVS,
                              make_env=lambda name, cfg, i: ENVS[name](seed=i),
                              known_names=lambda: list(ENVS)))

if __name__ == "__main__":
    from asyncrl import enjoy, train

    entry = {"train": train, "enjoy": enjoy}[sys.argv[1]]
    sys.exit(entry.main(sys.argv[2:]))
