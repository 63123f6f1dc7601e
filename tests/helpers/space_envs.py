"""Envs for the observation-space, action-mask and broken-env tests; importing this module
registers them (`--env=space_envs:MixedObs-v0`, ...).

MixedObs-v0: a Dict observation with every kind of leaf, nested: a Box of rank 0, a Discrete
goal with a start, a MultiDiscrete of unequal sizes, MultiBinary bits, a nested Dict with a Tuple,
and a Text mission (left out). Each step pays 1 for the action that equals the goal (shown only
through the Discrete leaf), so learning shows that the one-hot reaches the policy: chance is 1/4
per step, 2 per episode of 8 steps.

MaskedGoal-v0: Discrete(6) actions and an `action_mask` allowing three of them, the goal always
among them; 1 for the goal. Chance among the allowed actions is 1/3 per step (1/6 among all).
Each episode reports `masked_actions`, the masked actions it was given, as a custom statistic.

Broken envs, each wrong in one way: WrongShape-v0, FloatImage-v0, NanObs-v0, NanReward-v0,
TextReward-v0, OldReset-v0 (reset returns the observation only), OldStep-v0 (step returns 4
values), GoalOutOfRange-v0 (a Discrete observation outside its range), BreaksLater-v0 (a wrong
observation shape from its 40th step on), RaisesOnReset-v0.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

EPISODE_LENGTH = 8


class _Env(gym.Env):
    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode


class MixedObs(_Env):
    observation_space = gym.spaces.Dict({
        "speed": gym.spaces.Box(-1.0, 1.0, (), np.float32),
        "goal": gym.spaces.Discrete(4, start=1),
        "grid": gym.spaces.MultiDiscrete([3, 5]),
        "flags": gym.spaces.MultiBinary(2),
        "nested": gym.spaces.Dict({
            "vec": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
            "pair": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (2, 2)))),
        }),
        "mission": gym.spaces.Text(12),
    })
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.goal = int(self.np_random.integers(4))
        return self._obs(), {}

    def _obs(self):
        rng = self.np_random
        return {"speed": np.array(rng.uniform(-1, 1), np.float32), "goal": self.goal + 1,
                "grid": rng.integers(0, [3, 5]), "flags": rng.integers(0, 2, 2).astype(np.int8),
                "nested": {"vec": rng.uniform(-1, 1, 3).astype(np.float32),
                           "pair": (int(rng.integers(2)), rng.uniform(0, 1, (2, 2)).astype(np.float32))},
                "mission": "find the goal"}

    def step(self, action):
        reward = float(int(action) == self.goal)
        self.t += 1
        self.goal = int(self.np_random.integers(4))
        return self._obs(), reward, self.t >= EPISODE_LENGTH, False, {}


class MaskedGoal(_Env):
    NUM_ACTIONS = 6
    observation_space = gym.spaces.Dict({
        "goal": gym.spaces.Box(0.0, 1.0, (NUM_ACTIONS,), np.float32),
        "action_mask": gym.spaces.MultiBinary(NUM_ACTIONS),
    })
    action_space = gym.spaces.Discrete(NUM_ACTIONS)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.masked_actions = 0
        self._new_goal()
        return self._obs(), {}

    def _new_goal(self):
        allowed = self.np_random.choice(self.NUM_ACTIONS, 3, replace=False)
        self.mask = np.zeros(self.NUM_ACTIONS, np.int8)
        self.mask[allowed] = 1
        self.goal = int(allowed[0])

    def _obs(self):
        goal = np.zeros(self.NUM_ACTIONS, np.float32)
        goal[self.goal] = 1.0
        return {"goal": goal, "action_mask": self.mask.copy()}

    def step(self, action):
        self.masked_actions += int(not self.mask[int(action)])
        reward = float(int(action) == self.goal)
        self.t += 1
        self._new_goal()
        terminated = self.t >= EPISODE_LENGTH
        info = {"episode_extra_stats": {"masked_actions": self.masked_actions}} if terminated else {}
        return self._obs(), reward, terminated, False, info


class _Fine(_Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.zeros(4, np.float32)

    def _reward(self):
        return 1.0

    def step(self, action):
        self.t += 1
        return self._obs(), self._reward(), self.t >= 50, False, {}


class WrongShape(_Fine):
    def _obs(self):
        return np.zeros(3, np.float32)


class FloatImage(_Fine):
    observation_space = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)

    def _obs(self):
        return np.full((3, 8, 8), 0.5)


class NanObs(_Fine):
    def _obs(self):
        return np.full(4, np.nan if getattr(self, "t", 0) >= 1 else 0.0, np.float32)


class NanReward(_Fine):
    def _reward(self):
        return float("nan")


class TextReward(_Fine):
    def _reward(self):
        return "1.0"


class OldReset(_Fine):
    def reset(self, *, seed=None, options=None):
        return super().reset(seed=seed)[0]


class OldStep(_Fine):
    def step(self, action):
        obs, reward, terminated, _, info = super().step(action)
        return obs, reward, terminated, info


class GoalOutOfRange(_Fine):
    observation_space = gym.spaces.Discrete(4)

    def _obs(self):
        return 7


class BreaksLater(_Fine):
    def reset(self, *, seed=None, options=None):
        self.steps = getattr(self, "steps", 0)
        return super().reset(seed=seed)

    def step(self, action):
        self.steps += 1
        return super().step(action)

    def _obs(self):
        return np.zeros(3 if getattr(self, "steps", 0) >= 40 else 4, np.float32)


class RaisesOnReset(_Fine):
    def reset(self, *, seed=None, options=None):
        raise RuntimeError("the simulator is not running")


for _env in (MixedObs, MaskedGoal, WrongShape, FloatImage, NanObs, NanReward, TextReward, OldReset,
             OldStep, GoalOutOfRange, BreaksLater, RaisesOnReset):
    gym.register(f"{_env.__name__}-v0", entry_point=_env, disable_env_checker=True)
