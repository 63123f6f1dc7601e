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
    # [T+1, B, rnn_state_size] the recurrent state each step was acted in; rnn_states[T] is the
    # state obs[T] is met in. None for a feed-forward policy.
    rnn_states: Tensor | None = None

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
            if isinstance(value, dict):
                values[f.name] = {k: fn(v) for k, v in value.items()}
            else:
                values[f.name] = None if value is None else fn(value)
        return Trajectories(**values)

    def select(self, trajectory_indices: Tensor) -> "Trajectories":
        """The trajectories `trajectory_indices` (int64), by index_select: an order of magnitude
        faster than advanced indexing for image observations."""
        return self._map(lambda t: torch.index_select(t, 1, trajectory_indices))

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
            elif first is None:
                values[f.name] = None
            else:
                values[f.name] = torch.cat([getattr(p, f.name) for p in parts], dim=1)
        return Trajectories(**values)


def to_sequences(x: Tensor, recurrence: int) -> Tensor:
    """`[T, B, ...]` -> `[R, (T/R) * B, ...]` with R = `recurrence`: each column is a sequence of
    R consecutive steps of one trajectory (column k*B + b: steps k*R .. k*R+R-1 of trajectory b).
    A view, without copying, for R = 1 and R = T."""
    T, B, *rest = x.shape
    R, K = recurrence, T // recurrence
    return x.reshape(K, R, B, *rest).transpose(0, 1).reshape(R, K * B, *rest)


def from_sequences(x: Tensor, rollout: int) -> Tensor:
    """The inverse of `to_sequences`: `[R, (T/R) * B, ...]` -> `[T, B, ...]` with T = `rollout`."""
    R, C, *rest = x.shape
    K = rollout // R
    return x.reshape(R, K, C // K, *rest).transpose(0, 1).reshape(rollout, C // K, *rest)
