"""A policy (inference) worker: batches the action requests of all rollout workers that arrived
since its last pass, computes actions in one forward pass and writes them into shared memory.
With several policies, each has its own policy workers, which act for that policy's rows only."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from signal_slot.signal_slot import signal

from asyncrl.model.actor_critic import ActorCritic
from asyncrl.runtime.buffers import SharedWeights, TrajectoryBuffers
from asyncrl.runtime.component import Component
from asyncrl.runtime.names import actions_ready_signal, policy_worker
from asyncrl.runtime.rollout_worker import row_policies, worker_env_indices
from asyncrl.utils.device import resolve_device

log = logging.getLogger(__name__)


class PolicyWorker(Component):
    def __init__(self, event_loop, cfg: Any, policy_id: int, worker_idx: int,
                 obs_space: gym.Space, action_space: gym.Space, buffers: TrajectoryBuffers,
                 weights: SharedWeights, wakeups: list[Any] | None, agents_per_env: int = 1):
        super().__init__(event_loop, policy_worker(policy_id, worker_idx).object_id, cfg)
        self.obs_space = obs_space
        self.action_space = action_space
        self.buffers = buffers
        self.weights = weights
        # One semaphore per rollout worker, posted with its actions (None in serial mode).
        self.wakeups = wakeups
        self.model: ActorCritic | None = None
        self.device = torch.device("cpu")
        self.version = -1
        self.pending: list[tuple[int, int, int, int]] = []
        self.scheduled = False
        # The rows of each (worker, split) that act for this policy, computed once.
        policies = row_policies(cfg, agents_per_env)
        self.split_envs = {}
        for w in range(cfg.num_workers):
            for s in range(cfg.worker_num_splits):
                rows = worker_env_indices(cfg, w, s, agents_per_env)
                self.split_envs[(w, s)] = rows[policies[rows] == policy_id]

    @signal
    def _process_pending(self): ...

    def on_start(self) -> None:
        # Rollout workers may ask for actions before our loop's start signal comes round.
        if self.model is not None:
            return
        self.device = resolve_device(self.cfg.device, warn=False)
        self.model = ActorCritic(self.cfg, self.obs_space, self.action_space).to(self.device).eval()
        self.version = self.weights.load_into(self.model, -1)
        self._process_pending.connect(self._infer)
        self.start_reporting()

    def on_request(self, worker_idx: int, split_idx: int, step: int, token: int) -> None:
        self.on_start()
        self.pending.append((worker_idx, split_idx, step, token))
        if not self.scheduled:
            # Handle every request already queued behind this one in the same forward pass.
            self.scheduled = True
            self._process_pending.emit()

    def _infer(self) -> None:
        with self.timings.timeit("inference"):
            self._infer_pending()

    def _infer_pending(self) -> None:
        self.scheduled = False
        requests, self.pending = self.pending, []
        if not requests:
            return
        arrays = self.buffers.arrays
        self.version = self.weights.load_into(self.model, self.version)
        # A request of a worker that died since it asked has no slots any more.
        env_slots = arrays["env_slots"]
        requests = [r for r in requests if (env_slots[self.split_envs[r[:2]]] >= 0).all()]
        if not requests:
            return
        envs = [self.split_envs[(w, s)] for w, s, _, _ in requests]
        slots = env_slots[np.concatenate(envs)]
        steps = np.concatenate([np.full(len(e), t) for e, (_, _, t, _) in zip(envs, requests)])
        obs = {k: torch.from_numpy(arrays[f"obs/{k}"][slots, steps]).to(self.device)
               for k in self.buffers.obs}
        states = None
        if "rnn_states" in arrays:
            states = torch.from_numpy(arrays["rnn_states"][slots, steps]).to(self.device)
        out = self.model.policy_step(obs, states)
        if out.rnn_states is not None:
            arrays["rnn_states"][slots, steps + 1] = out.rnn_states.cpu().numpy()
        arrays["actions"][slots, steps] = out.actions.cpu().numpy()
        arrays["log_probs"][slots, steps] = out.log_probs.cpu().numpy()
        arrays["values"][slots, steps] = out.values.cpu().numpy()
        arrays["action_params"][slots, steps] = out.action_params.cpu().numpy()
        arrays["policy_versions"][slots, steps] = self.version
        for w, s, _, token in requests:
            self.emit(actions_ready_signal(w), s, token)
            if self.wakeups is not None:
                self.wakeups[w].release()

    def on_stop(self) -> None:
        self.event_loop.stop()
