"""`--env=memory_cue`: a memory task that a feed-forward policy cannot solve and a recurrent one can.

An episode is `memory_delay + 2` steps. The first observation shows a cue, one of
`memory_num_cues` (one-hot); then come `memory_delay` blank observations (zeros), then a query
observation (zeros but for its last entry). The action taken at the query is the choice: reward 1
if it names the cue, else 0, and the episode ends. Actions before the query do nothing.

Observations are `[memory_num_cues + 1]` floats. The query looks the same whatever the cue was, so
a policy without memory chooses right with probability 1 / memory_num_cues at best (an average
return of 0.5 with two cues); a recurrent policy has to carry the cue through the delay.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from asyncrl.config.params import Param

NAME = "memory_cue"
_GROUP = "memory_cue env family (--env=memory_cue)"

MEMORY_PARAMS: tuple[Param, ...] = (
    Param("memory_delay", int, 10, "Number of blank observations between the cue and the query",
          _GROUP, minimum=0),
    Param("memory_num_cues", int, 2, "Number of different cues (and actions); chance level is "
          "1 / memory_num_cues", _GROUP, minimum=2),
)


class MemoryCueEnv(gym.Env):
    def __init__(self, delay: int, num_cues: int):
        self.delay = delay
        self.num_cues = num_cues
        self.observation_space = gym.spaces.Box(0.0, 1.0, (num_cues + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_cues)
        self._cue = 0
        self._t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        elif self._t == self.delay + 1:
            obs[-1] = 1.0  # the query
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.num_cues))
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):
        if self._t == self.delay + 1:
            reward = 1.0 if int(action) == self._cue else 0.0
            return self._obs(), reward, True, False, {}
        self._t += 1
        return self._obs(), 0.0, False, False, {}


def make_memory_env(env_name: str, cfg: Any, env_index: int) -> gym.Env:
    return MemoryCueEnv(cfg.memory_delay, cfg.memory_num_cues)


# Tuned for wall-clock time on 2 CPU cores: a small GRU and many envs solve it (average return
# near 1) within seconds. A task of asyncrl's own: Sample Factory has no preset for it.
MEMORY_DEFAULTS: dict[str, Any] = {
    "use_rnn": True,
    "rnn_type": "gru",
    "rnn_size": 32,
    "encoder_mlp_layers": [32],
    "num_workers": 2,
    "num_envs_per_worker": 16,
    "worker_num_splits": 1,
    "rollout": 32,
    "batch_size": 512,
    "num_batches_per_epoch": 2,
    "num_epochs": 2,
    "learning_rate": 3e-3,
    "gamma": 0.99,
    "exploration_loss_coeff": 0.003,
    "save_best_after": 20_000,
    "device": "cpu",
}
