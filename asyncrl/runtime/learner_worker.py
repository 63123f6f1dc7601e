"""The learner worker: gathers finished trajectory slots into training batches, trains, publishes
the new weights to the policy workers and saves checkpoints when the runner asks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from signal_slot.signal_slot import signal

from asyncrl.algo.learner import Learner
from asyncrl.algo.optimizers import load_optimizer_state
from asyncrl.envs.registry import env_frames_per_step
from asyncrl.experiment.checkpoint import CheckpointManager, save_checkpoint_atomic
from asyncrl.experiment.checkpoint_state import (CheckpointState, InitialWeights, RunState,
                                                 SharedPolicy)
from asyncrl.model.actor_critic import ActorCritic, load_weights
from asyncrl.config.hyperparameters import hyperparameters_of
from asyncrl.runtime.buffers import PinnedStaging, SharedWeights, TrajectoryBuffers
from asyncrl.runtime.component import Component
from asyncrl.runtime import names
from asyncrl.utils.device import resolve_device

log = logging.getLogger(__name__)


def add_truncation_bootstrap(buffers: TrajectoryBuffers, truncations: list, model: ActorCritic,
                             gamma: float) -> None:
    """A time limit is not a real end: adds gamma * V(final observation) to the reward of each
    truncated step. `truncations`: (slot, step, final observation dict, recurrent state after the
    step or None) as the workers send them."""
    device = next(model.parameters()).device
    obs = {k: torch.as_tensor(np.stack([f[2][k] for f in truncations])).to(device)
           for k in truncations[0][2]}
    states = None
    if truncations[0][3] is not None:
        states = torch.as_tensor(np.stack([f[3] for f in truncations])).to(device)
    values = model.values(obs, states).cpu()
    for (slot, t, _, _), value in zip(truncations, values):
        buffers.rewards[slot, t] += gamma * value


@dataclass(frozen=True)
class LearnerStart:
    """What a policy's learner starts from: its hyperparameters and, on resume, its checkpoint,
    else maybe --initialize_from's weights."""

    hyperparameters: dict[str, float]
    resume: CheckpointState | None = None
    init_weights: InitialWeights | None = None


class LearnerWorker(Component):
    def __init__(self, event_loop, cfg: Any, policy_id: int, obs_space: gym.Space,
                 action_space: gym.Space, buffers: TrajectoryBuffers, weights: SharedWeights,
                 free_slots: Any, checkpoints: CheckpointManager, start: LearnerStart,
                 stop_requested: Any | None = None):
        """`stop_requested`: a shared flag (`.value`) the runner sets when the run stops; from
        then on no further batch is trained, so the stop message is reached soon even behind a
        backlog of trajectories (a slow learner: Atari on a few CPU cores)."""
        super().__init__(event_loop, names.learner(policy_id).object_id, cfg)
        self.policy_id = policy_id
        self.obs_space = obs_space
        self.action_space = action_space
        self.buffers = buffers
        self.weights = weights
        self.free_slots = free_slots
        self.checkpoints = checkpoints
        self.start_from: LearnerStart | None = start  # dropped once applied: it may hold a checkpoint
        self.stop_requested = stop_requested
        self.learner: Learner | None = None
        self.staging: PinnedStaging | None = None  # on a CUDA device only
        self.env_steps = 0
        self.pending: list[int] = []
        self.batch_trajectories = cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout
        self.dropped_trajectories = 0
        # Experience of an older version than this is never trained on: set when PBT gives this
        # policy another policy's weights (its earlier experience is of a policy that is gone).
        self.min_version = 0
        self.pbt_dropped_trajectories = 0
        self.trained_samples = 0
        self.frames_per_step = env_frames_per_step(cfg)  # env_frameskip with summaries_use_frameskip

    @signal
    def report(self): ...

    @signal
    def stopped(self): ...

    @signal
    def pbt_shared(self): ...

    @signal
    def eval_snapshot_saved(self): ...

    def on_start(self) -> None:
        # Other processes may message us before our loop's start signal comes round.
        if self.learner is not None:
            return
        cfg = self.cfg
        device = resolve_device(cfg.device, warn=self.policy_id == 0)  # one warning per run
        self.learner = Learner(cfg, self.obs_space, self.action_space, device)
        if device.type == "cuda":
            self.staging = PinnedStaging(device)
        start, self.start_from = self.start_from, None
        self._apply_hyperparameters(start.hyperparameters)
        if start.resume is not None:
            self.learner.load_state(start.resume.learner, "the checkpoint")
            self.env_steps = start.resume.env_steps
        elif start.init_weights is not None:
            load_weights(self.learner.model, start.init_weights.model, start.init_weights.source)
        self.learner.schedule_learning_rate(self.env_steps)  # a resumed schedule goes on
        self.weights.publish(self.learner.model, self.learner.policy_version)
        self.start_reporting()

    def on_trajectories(self, slots: list[int], truncations: list) -> None:
        self.on_start()
        cfg = self.cfg
        if truncations and cfg.value_bootstrap:
            add_truncation_bootstrap(self.buffers, truncations, self.learner.model, cfg.gamma)
        self.pending += slots
        self.env_steps += len(slots) * cfg.rollout * self.frames_per_step
        while len(self.pending) >= self.batch_trajectories:
            if self.stop_requested is not None and self.stop_requested.value:
                break  # stopping: the final checkpoint keeps what was trained so far
            batch_slots = torch.tensor(self.pending[:self.batch_trajectories])
            self.pending = self.pending[self.batch_trajectories:]
            with self.timings.timeit("batch_copy"):
                batch = self.buffers.trajectories(batch_slots, self.staging)
            if cfg.async_rl:
                # The batch is copied out: the slots can take new experience while we train.
                self.free_slots.put_many(batch_slots.tolist())
            oldest = batch.policy_versions.min(dim=0).values  # [B]
            fresh = self.learner.policy_version - oldest <= cfg.max_policy_lag
            ours = oldest >= self.min_version
            self.pbt_dropped_trajectories += int((~ours).sum())
            self.dropped_trajectories += int((ours & ~fresh).sum())
            fresh &= ours
            if not bool(fresh.all()):
                if not bool(fresh.any()):
                    self._release_after_training(batch_slots)
                    continue
                batch = batch.select(fresh.nonzero()[:, 0])
            self.learner.schedule_learning_rate(self.env_steps)
            with self.timings.timeit("train"):
                stats = self.learner.train(batch)
            self.trained_samples += batch.rollout * batch.num_trajectories
            stats["samples_per_sec"] = self.trained_samples / max(self.timings.seconds["train"], 1e-9)
            stats["dropped_trajectories"] = float(self.dropped_trajectories)
            if self.pbt_dropped_trajectories:
                stats["pbt_dropped_trajectories"] = float(self.pbt_dropped_trajectories)
            self.weights.publish(self.learner.model, self.learner.policy_version)
            self._release_after_training(batch_slots)
            self.report.emit(self.policy_id, stats, self.env_steps, self.learner.policy_version)

    def _release_after_training(self, batch_slots: torch.Tensor) -> None:
        if not self.cfg.async_rl:  # only now may collection go on, with the new weights
            self.free_slots.put_many(batch_slots.tolist())

    def checkpoint_state(self, run_state: RunState) -> CheckpointState:
        return CheckpointState(self.learner.state(), self.env_steps, hyperparameters_of(self.cfg),
                               run_state)

    def _apply_hyperparameters(self, hyperparameters: dict[str, float]) -> None:
        """A new immutable config for this policy (the run's config is never edited)."""
        self.cfg = self.cfg.replace(**hyperparameters)
        self.learner.cfg = self.cfg
        # PBT's rate is the base the schedule scales.
        self.learner.set_learning_rate(self.cfg.learning_rate)
        self.learner.schedule_learning_rate(self.env_steps)

    # -- population-based training ----------------------------------------------------------------
    def on_pbt_share(self, path: str) -> None:
        """Writes the state another policy will copy (weights, optimizer state)."""
        self.on_start()
        shared = SharedPolicy(self.learner.model.state_dict(), self.learner.optimizer.state_dict())
        save_checkpoint_atomic(shared.to_dict(), Path(path))
        self.pbt_shared.emit(self.policy_id, path)

    def on_pbt_replace(self, path: str, source: int, hyperparameters: dict[str, float]) -> None:
        """Becomes a copy of policy `source`. Between two training iterations (this loop runs
        one message at a time), so no batch mixes the two; experience collected so far was
        produced by the replaced policy and is dropped."""
        self.on_start()
        shared = SharedPolicy.read(Path(path))
        load_weights(self.learner.model, shared.model, f"policy {source}'s weights")
        load_optimizer_state(self.learner.optimizer, shared.optimizer)
        self._apply_hyperparameters(hyperparameters)
        self.learner.policy_version += 1
        self.min_version = self.learner.policy_version
        self.weights.publish(self.learner.model, self.learner.policy_version)

    def on_pbt_hyperparameters(self, hyperparameters: dict[str, float]) -> None:
        self.on_start()
        self._apply_hyperparameters(hyperparameters)

    def on_eval_snapshot(self, run_state: RunState) -> None:
        """Saves the state to evaluate: a whole checkpoint, so that it can become the best one."""
        self.on_start()
        path = self.checkpoints.save_eval_snapshot(self.checkpoint_state(run_state).to_dict())
        self.eval_snapshot_saved.emit(self.policy_id, str(path), self.env_steps,
                                      self.learner.train_step, self.learner.policy_version)

    def on_save(self, kind: str, run_state: RunState, metric: float | None) -> None:
        self.on_start()
        state = self.checkpoint_state(run_state).to_dict()
        step, env_steps = self.learner.train_step, self.env_steps
        if kind == "best":
            self.checkpoints.save_best(state, step, env_steps, self.cfg.save_best_metric, metric)
        elif kind == "milestone":
            self.checkpoints.save_milestone(state, step, env_steps)
        else:
            path = self.checkpoints.save(state, step, env_steps)
            log.info("Saved checkpoint %s/%s", path.parent.name, path.name)

    def on_stop(self, run_state: RunState) -> None:
        self.on_save("regular", run_state, None)
        self.stopped.emit(self.policy_id, self.env_steps, self.learner.policy_version)
        self.event_loop.stop()
