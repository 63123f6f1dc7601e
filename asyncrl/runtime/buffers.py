"""Shared-memory data of the parallel runtime: trajectory slots and the published policy weights.

Everything here is allocated once, before the worker processes start, and shared with them; the
queues between processes carry only slot indices and small messages.

The hot paths index numpy views of the shared tensors (`TrajectoryBuffers.arrays`): torch's
advanced indexing with slot indices is an order of magnitude slower for these shapes (writing the
16 Atari observations of a split: 440 us against 23 us; copying a Pong batch out: 26 ms against
3 ms).
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from asyncrl.algo.trajectories import Trajectories
from asyncrl.envs.spaces import action_layout


def _torch_dtype(np_dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(1, dtype=np_dtype)).dtype


class TrajectoryBuffers:
    """`num_slots` trajectory slots of `rollout` steps: slot-major `[S, T(+1), ...]` tensors.

    A rollout worker holds one slot per env while it fills it; `env_slots[e]` says which slot env
    `e` writes into, so that policy workers know where to read observations and write actions.

    A recurrent policy (`rnn_state_size` > 0) also keeps `rnn_states` `[S, T+1, rnn_state_size]`:
    the policy worker reads the state of step t and writes the next one at t+1; the rollout worker
    zeroes it when the episode ended at step t, and starts a trajectory from the previous one's
    state at T."""

    def __init__(self, obs_space: gym.spaces.Dict, action_space: gym.Space, rollout: int,
                 num_slots: int, num_envs: int, rnn_state_size: int = 0):
        S, T = num_slots, rollout
        self.num_slots = num_slots
        self.obs = {k: torch.zeros((S, T + 1, *s.shape), dtype=_torch_dtype(s.dtype))
                    for k, s in obs_space.spaces.items()}
        layout = action_layout(action_space)
        # One flat action per step: [S, T] int64 (Discrete) or [S, T, K + A] (envs/spaces.py).
        self.actions = torch.zeros((S, T, *layout.action_shape), dtype=_torch_dtype(layout.action_dtype))
        self.log_probs = torch.zeros((S, T))
        self.action_params = torch.zeros((S, T, layout.num_params))
        self.values = torch.zeros((S, T))
        self.rewards = torch.zeros((S, T))
        self.dones = torch.zeros((S, T))
        self.valid = torch.ones((S, T), dtype=torch.bool)  # False: an autoreset-only step
        self.policy_versions = torch.zeros((S, T), dtype=torch.int64)
        self.env_slots = torch.full((num_envs,), -1, dtype=torch.int64)  # -1: holds no slot
        self.rnn_states = (torch.zeros((S, T + 1, rnn_state_size)) if rnn_state_size > 0
                           else None)
        for tensor in self._tensors().values():
            tensor.share_memory_()
        # The same shared memory as numpy arrays, by the names of `_tensors` (a fork keeps them
        # pointing at it).
        self.arrays: dict[str, np.ndarray] = {name: t.numpy() for name, t in self._tensors().items()}

    def _tensors(self) -> dict[str, Tensor]:
        tensors = {**{f"obs/{k}": v for k, v in self.obs.items()}, "actions": self.actions,
                   "log_probs": self.log_probs, "action_params": self.action_params,
                   "values": self.values, "rewards": self.rewards, "dones": self.dones,
                   "valid": self.valid, "policy_versions": self.policy_versions,
                   "env_slots": self.env_slots}
        if self.rnn_states is not None:
            tensors["rnn_states"] = self.rnn_states
        return tensors

    def trajectories(self, slots: Tensor, staging: PinnedStaging | None = None) -> Trajectories:
        """Copies the slots out as time-major Trajectories `[T, B]` (the slots can be reused at
        once): on the CPU, or with `staging` on its CUDA device."""
        if staging is not None:
            staging.wait_until_sent()
        slot_list = slots.tolist()
        tensors = self._tensors()

        def take(name: str) -> Tensor:
            if staging is not None:
                return staging.send(name, tensors[name], slots).transpose(0, 1).contiguous()
            slot_major = self.arrays[name]  # [S, T(+1), ...]
            time_major = np.empty((slot_major.shape[1], len(slot_list), *slot_major.shape[2:]),
                                  dtype=slot_major.dtype)
            for b, slot in enumerate(slot_list):  # one contiguous read per slot
                time_major[:, b] = slot_major[slot]
            return torch.from_numpy(time_major)

        batch = Trajectories(
            obs={k: take(f"obs/{k}") for k in self.obs},
            actions=take("actions"), log_probs=take("log_probs"),
            action_params=take("action_params"), values=take("values"),
            rewards=take("rewards"), dones=take("dones"), valid=take("valid"),
            policy_versions=take("policy_versions"),
            rnn_states=None if self.rnn_states is None else take("rnn_states"))
        if staging is not None:
            staging.record_sent()
        return batch


class PinnedStaging:
    """Sends trajectory slots to a CUDA device through page-locked host memory: each tensor's
    slots are gathered once into a pinned buffer (kept from batch to batch) and copied to the
    device asynchronously, and the transpose to time-major runs on the device. Gathering and
    transposing on the CPU and then copying from pageable memory took more than half of the
    learner's time on a GPU node (Pong, 14 workers x 16 envs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.buffers: dict[str, Tensor] = {}
        self.sent: torch.cuda.Event | None = None

    def wait_until_sent(self) -> None:
        """The previous batch's copies must be done before its buffers are written again."""
        if self.sent is not None:
            self.sent.synchronize()

    def send(self, name: str, t: Tensor, slots: Tensor) -> Tensor:
        """`t[slots]` `[B, ...]` on the device."""
        buffer = self.buffers.get(name)
        if buffer is None or buffer.shape[0] < len(slots):
            buffer = torch.empty((len(slots), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
            self.buffers[name] = buffer
        gathered = torch.index_select(t, 0, slots, out=buffer[:len(slots)])
        return gathered.to(self.device, non_blocking=True)

    def record_sent(self) -> None:
        self.sent = torch.cuda.Event()
        self.sent.record()


class SharedWeights:
    """The latest policy weights (and normalizer statistics) published by the learner.

    The learner copies its state_dict in under a lock and bumps `version`; policy workers copy it
    out when the version they hold is older."""

    def __init__(self, model: nn.Module, version: int):
        self.state = {k: v.detach().cpu().clone().share_memory_() for k, v in model.state_dict().items()}
        self.version = torch.full((1,), version, dtype=torch.int64).share_memory_()
        self.lock = mp.get_context("fork").Lock()

    def publish(self, model: nn.Module, version: int) -> None:
        with torch.no_grad(), self.lock:
            for k, v in model.state_dict().items():
                self.state[k].copy_(v)
            self.version[0] = version

    def load_into(self, model: nn.Module, current_version: int) -> int:
        """Copies newer weights into `model`; returns the version `model` now holds."""
        if int(self.version[0]) == current_version:
            return current_version
        with torch.no_grad(), self.lock:
            model.load_state_dict(self.state)
            return int(self.version[0])
