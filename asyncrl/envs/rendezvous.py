"""A small built-in multi-agent env: two agents on a line who are rewarded for meeting.

Each agent sees its own position and its partner's (scaled to [-1, 1]) and moves left, stays or
moves right. Every step both get -distance / (length - 1): random walkers average about -0.3 per
step, agents that walk towards each other and stay together approach 0. Episodes last
`episode_length` steps (a time limit: the last observation comes in `infos[agent]["final_obs"]`)
and the env starts the next one itself, as multi-agent envs do.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

RENDEZVOUS_NAME = "rendezvous"


class Rendezvous(gym.Env):
    is_multiagent = True
    num_agents = 2

    def __init__(self, length: int = 11, episode_length: int = 25):
        self.length = length
        self.episode_length = episode_length
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)  # left, stay, right
        self.positions = np.zeros(self.num_agents, dtype=np.int64)
        self.t = 0

    def _observations(self) -> list[np.ndarray]:
        scaled = (2.0 * self.positions / (self.length - 1) - 1.0).astype(np.float32)
        return [np.array([scaled[a], scaled[1 - a]], dtype=np.float32) for a in range(self.num_agents)]

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        super().reset(seed=seed)
        self.t = 0
        self.positions = self.np_random.integers(0, self.length, size=self.num_agents)
        return self._observations(), [{} for _ in range(self.num_agents)]

    def step(self, actions: list[int]):
        moves = np.asarray(actions, dtype=np.int64) - 1
        self.positions = np.clip(self.positions + moves, 0, self.length - 1)
        self.t += 1
        reward = -abs(int(self.positions[0] - self.positions[1])) / (self.length - 1)
        obs = self._observations()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_agents)]
        truncated = self.t >= self.episode_length
        if truncated:
            for info, final in zip(infos, obs):
                info["final_obs"] = final
            obs, _ = self.reset()
        n = self.num_agents
        return obs, [reward] * n, [False] * n, [truncated] * n, infos


def make_rendezvous(env_name: str, cfg: Any, env_index: int) -> gym.Env:
    return Rendezvous()


# Tuned for wall-clock time on 2 CPU cores (a small MLP, many envs per inference call). A task of
# asyncrl's own: Sample Factory has no preset for it.
RENDEZVOUS_DEFAULTS: dict[str, Any] = {
    "num_workers": 2,
    "num_envs_per_worker": 16,
    "worker_num_splits": 1,
    "rollout": 32,
    "batch_size": 1024,
    "num_batches_per_epoch": 1,
    "num_epochs": 4,
    "encoder_mlp_layers": [64, 64],
    "use_rnn": False,
    "learning_rate": 3e-3,
    "gamma": 0.95,
    "value_bootstrap": True,
    "exploration_loss_coeff": 0.003,
    "device": "cpu",
}
