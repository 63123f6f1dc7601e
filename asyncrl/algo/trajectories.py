"""The unit of experience between acting and learning: B trajectories of T steps, time-major."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class Trajectories:
    obs: dict[str, Tensor]  # key -> [T+1, B, ...]; obs[T] is where each trajectory continues
    actions: Tensor  # [T, B] (Discrete) or [T, B, K + A] (see asyncrl/envs/spaces.py)
    log_probs: Tensor  # [T, B] behaviour policy log-probabilities of the actions
    action_params: Tensor  # [T, B, P] behaviour policy distribution parameters
    values: Tensor  # [T, B] behaviour value estimates, raw (denormalized) units
    rewards: Tensor  # [T, B] scaled and clipped; a truncated step includes gamma * V(final obs)
    dones: Tensor  # [T, B] 1.0 where the episode ended at this step
    valid: Tensor  # [T, B] bool; False where a vector env's step only reset the env (no transition)
    policy_versions: Tensor  # [T, B] version of the policy that acted

    @property
    def rollout(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_trajectories(self) -> int:
        return self.rewards.shape[1]

    def _map(self, fn) -> "Trajectories":
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = {k: fn(v) for k, v in value.items()} if isinstance(value, dict) else fn(value)
        return Trajectories(**values)

    def select(self, trajectory_indices: Tensor) -> "Trajectories":
        return self._map(lambda t: t[:, trajectory_indices])

    def to(self, device: torch.device) -> "Trajectories":
        return self._map(lambda t: t.to(device, non_blocking=True))

    @staticmethod
    def cat(parts: Sequence["Trajectories"]) -> "Trajectories":
        if len(parts) == 1:
            return parts[0]
        values = {}
        for f in fields(Trajectories):
            first = getattr(parts[0], f.name)
            if isinstance(first, dict):
                values[f.name] = {k: torch.cat([getattr(p, f.name)[k] for p in parts], dim=1)
                                  for k in first}
            else:
                values[f.name] = torch.cat([getattr(p, f.name) for p in parts], dim=1)
        return Trajectories(**values)
