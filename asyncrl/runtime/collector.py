"""Acting: steps an env vector with the current policy into time-major trajectories.

This is where an action is computed (`policy_step`) and applied (`EnvVector.step`), split by
split: each split of every worker gets its actions from its own inference call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from asyncrl.algo.trajectories import Trajectories
from asyncrl.envs.vector import EnvVector, EpisodeStats
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.model.distributions import num_action_params


def split_indices(cfg: Any) -> list[np.ndarray]:
    """Env indices of each split (ascending): split s holds the s-th group of every worker's envs."""
    per_split = cfg.num_envs_per_worker // cfg.worker_num_splits
    splits = []
    for s in range(cfg.worker_num_splits):
        splits.append(np.concatenate([
            np.arange(w * cfg.num_envs_per_worker + s * per_split,
                      w * cfg.num_envs_per_worker + (s + 1) * per_split)
            for w in range(cfg.num_workers)]))
    return splits


class RolloutCollector:
    def __init__(self, cfg: Any, envs: EnvVector, model: ActorCritic, device: torch.device):
        self.cfg = cfg
        self.envs = envs
        self.model = model
        self.device = device
        self.splits = split_indices(cfg)
        T, N = cfg.rollout, envs.num_envs
        self._obs = {k: torch.zeros((T + 1, N, *v.shape[1:]), dtype=torch.from_numpy(v).dtype)
                     for k, v in envs.obs.items()}
        action_shape = envs.action_space.shape or ()
        action_dtype = torch.float32 if action_shape else torch.int64
        self._actions = torch.zeros((T, N, *action_shape), dtype=action_dtype)
        self._log_probs = torch.zeros((T, N))
        self._action_params = torch.zeros((T, N, num_action_params(envs.action_space)))
        self._values = torch.zeros((T, N))
        self._rewards = torch.zeros((T, N))
        self._dones = torch.zeros((T, N))

    def collect(self, policy_version: int) -> tuple[Trajectories, list[EpisodeStats]]:
        """`rollout` steps of every env -> Trajectories `[T, N]` and the episodes that ended."""
        cfg = self.cfg
        episodes: list[EpisodeStats] = []
        for t in range(cfg.rollout):
            for k, v in self.envs.obs.items():
                self._obs[k][t] = torch.from_numpy(v)
            for idx in self.splits:
                episodes += self._step_split(t, idx)
        for k, v in self.envs.obs.items():
            self._obs[k][cfg.rollout] = torch.from_numpy(v)
        trajectories = Trajectories(
            obs={k: v.clone() for k, v in self._obs.items()}, actions=self._actions.clone(),
            log_probs=self._log_probs.clone(), action_params=self._action_params.clone(),
            values=self._values.clone(), rewards=self._rewards.clone(), dones=self._dones.clone(),
            policy_versions=torch.full(self._rewards.shape, policy_version, dtype=torch.int64))
        return trajectories, episodes

    def _step_split(self, t: int, idx: np.ndarray) -> list[EpisodeStats]:
        cfg = self.cfg
        index = torch.from_numpy(idx)
        obs = {k: v[t, index].to(self.device) for k, v in self._obs.items()}
        out = self.model.policy_step(obs)
        actions = out.actions.cpu()
        self._actions[t, index] = actions
        self._log_probs[t, index] = out.log_probs.cpu()
        self._action_params[t, index] = out.action_params.cpu()
        self._values[t, index] = out.values.cpu()

        result = self.envs.step(idx, actions.numpy())
        rewards = np.clip(self.envs.rewards[idx] * cfg.reward_scale, -cfg.reward_clip, cfg.reward_clip)
        rewards = torch.from_numpy(rewards.astype(np.float32))
        if cfg.value_bootstrap and len(result.truncated_indices):
            # A time limit is not a real end: the return continues past it, so bootstrap it.
            final_obs = {k: torch.from_numpy(v).to(self.device) for k, v in result.final_obs.items()}
            bootstrap = self.model.values(final_obs).cpu()
            position = np.searchsorted(idx, result.truncated_indices)  # split indices are sorted
            rewards[torch.from_numpy(position)] += cfg.gamma * bootstrap
        self._rewards[t, index] = rewards
        done = self.envs.terminated[idx] | self.envs.truncated[idx]
        self._dones[t, index] = torch.from_numpy(done.astype(np.float32))
        return result.episodes
