"""The learner: a batch of trajectories in, one PPO / V-trace training iteration, stats out.

This is where the loss is taken. The same class serves the serial and the parallel runtime.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

import gymnasium as gym
import torch
from torch import Tensor

from asyncrl.algo import losses
from asyncrl.algo.advantages import gae, vtrace
from asyncrl.algo.optimizers import linear_decay, load_optimizer_state, make_optimizer
from asyncrl.algo.trajectories import Trajectories, from_sequences, to_sequences
from asyncrl.config.validate import resolved_recurrence
from asyncrl.envs.observations import one_line
from asyncrl.model.actor_critic import ActorCritic, load_weights
from asyncrl.model.distributions import make_action_distribution
from asyncrl.utils.errors import UserError


@dataclass(frozen=True)
class LearnerState:
    """The learner's part of a checkpoint (experiment/checkpoint_state.py names its keys)."""

    model: dict[str, Tensor]  # weights and normalizer statistics
    optimizer: dict[str, Any]
    policy_version: int
    train_step: int
    learning_rate: float  # the rate in use (a kl_adaptive schedule's state)


@dataclass
class _Sequences:
    """Sequences of `recurrence` steps, time-major `[R, n, ...]` (n sequences)."""

    obs: dict[str, Tensor]  # key -> [R, n, ...]
    resets: Tensor  # [R, n] 1.0 where the recurrent state is zeroed after the step
    start_states: Tensor | None  # [n, rnn_state_size] the behaviour policy's state at step 0
    actions: Tensor  # [R, n] or [R, n, A]
    log_probs: Tensor  # [R, n] behaviour
    action_params: Tensor  # [R, n, P] behaviour
    valid: Tensor | None  # [R, n] bool, False for reset-only steps; None: all valid

    @property
    def num_sequences(self) -> int:
        return self.resets.shape[1]

    def select(self, idx: Tensor) -> _Sequences:
        """The sequences `idx` (int64). index_select, not `v[:, idx]`: torch's advanced indexing
        took 2.3 ms to gather a minibatch of 64 Atari observations, index_select 0.15 ms."""
        def columns(v: Tensor) -> Tensor:
            return torch.index_select(v, 1, idx)

        return _Sequences(
            obs={k: columns(v) for k, v in self.obs.items()}, resets=columns(self.resets),
            start_states=None if self.start_states is None else torch.index_select(
                self.start_states, 0, idx),
            actions=columns(self.actions), log_probs=columns(self.log_probs),
            action_params=columns(self.action_params),
            valid=None if self.valid is None else columns(self.valid))


@dataclass
class _Minibatch:
    sequences: _Sequences
    per_step: dict[str, Tensor]  # GAE: advantages, targets, old_values, [R * n] time-major
    vtrace_data: tuple[Trajectories, Tensor] | None  # V-trace: the trajectories, discounts [T, b]


def _at(rnn_states: Tensor | None, t: int) -> Tensor | None:
    return None if rnn_states is None else rnn_states[t]


class Learner:
    def __init__(self, cfg: Any, obs_space: gym.Space, action_space: gym.Space,
                 device: torch.device):
        self.cfg = cfg
        self.device = device
        self.model = ActorCritic(cfg, obs_space, action_space).to(device)
        self.action_layout = self.model.action_layout
        if cfg.exploration_loss == "symmetric_kl" and self.action_layout.continuous_dims:
            raise UserError("--exploration_loss=symmetric_kl needs a discrete action space (Discrete, "
                            f"MultiDiscrete or a Tuple of them); this env's is {one_line(action_space)} "
                            "(use --exploration_loss=entropy)")
        self.optimizer = make_optimizer(cfg.optimizer, self.model.parameters(), cfg.learning_rate,
                                        cfg.adam_eps, cfg.adam_beta1, cfg.adam_beta2)
        # The policy's own rate (PBT mutates it); `learning_rate` is the one in use, which a
        # schedule derives from it.
        self.base_learning_rate = cfg.learning_rate
        self.learning_rate = cfg.learning_rate
        self.recurrence = resolved_recurrence(cfg)  # steps per training sequence
        self.policy_version = 0  # +1 per training iteration; stamps the experience it produces
        self.train_step = 0  # SGD steps (minibatches) taken

    # -- checkpoint state -------------------------------------------------------------------
    def state(self) -> LearnerState:
        return LearnerState(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                            policy_version=self.policy_version, train_step=self.train_step,
                            learning_rate=self.learning_rate)

    def load_state(self, state: LearnerState, source: str) -> None:
        load_weights(self.model, state.model, source)
        try:
            load_optimizer_state(self.optimizer, state.optimizer)
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(f"{source}: the optimizer state does not fit ({e})") from None
        self.policy_version = state.policy_version
        self.train_step = state.train_step
        # A kl_adaptive schedule goes on from the rate in use when saved (its state); the other
        # schedules derive the rate from the policy's base rate, a hyperparameter restored (or
        # overridden) with the others. Either way into the optimizer, whose loaded state holds
        # the saved rate.
        adaptive = self.cfg.lr_schedule.startswith("kl_adaptive")
        self._use_learning_rate(state.learning_rate if adaptive else self.learning_rate)

    def set_learning_rate(self, lr: float) -> None:
        """The policy's base rate (its hyperparameter: the config's, or PBT's); the schedule starts
        from it afresh."""
        self.base_learning_rate = lr
        self._use_learning_rate(lr)

    def schedule_learning_rate(self, env_steps: int) -> None:
        """linear_decay: the rate for a policy that has `env_steps` env steps (counted as
        train_for_env_steps counts them); the other schedules do not depend on them."""
        if self.cfg.lr_schedule == "linear_decay":
            self._use_learning_rate(linear_decay(self.base_learning_rate, env_steps,
                                                 self.cfg.train_for_env_steps))

    def _use_learning_rate(self, lr: float) -> None:
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- training ---------------------------------------------------------------------------
    def train(self, batch: Trajectories) -> dict[str, float]:
        """One training iteration on `batch` (num_epochs passes of minibatches)."""
        cfg = self.cfg
        batch = batch.to(self.device)
        T, B = batch.rewards.shape
        lag = (self.policy_version - batch.policy_versions).float()
        stats: dict[str, list[float]] = defaultdict(list)

        self.model.preprocessor.update_statistics(
            {k: v[:T].flatten(0, 1) for k, v in batch.obs.items()})
        discounts = cfg.gamma * (1.0 - batch.dones)  # [T, B]
        # Steps that only reset a vector env carry no transition: they are left out of the loss.
        valid = None if bool(batch.valid.all()) else batch.valid

        if cfg.with_vtrace:
            minibatches = self._vtrace_minibatches(batch, discounts, valid)
        else:
            minibatches = self._gae_minibatches(batch, discounts, valid)

        steps_before = self.train_step
        for epoch_kls in minibatches:
            kls = [self._sgd_step(mb, stats) for mb in epoch_kls]
            if cfg.lr_schedule == "kl_adaptive_epoch":
                self._adapt_learning_rate(sum(kls) / len(kls))

        self.policy_version += 1
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        # A version is one training iteration here; Sample Factory counts one per SGD step. The
        # same lag in its unit: the SGD steps an iteration takes, as counted in this one (left-out
        # sequences and V-trace's whole trajectories make it differ from num_epochs x
        # num_batches_per_epoch).
        sgd_steps = self.train_step - steps_before
        for name, value in (("min", lag.min()), ("avg", lag.mean()), ("max", lag.max())):
            out[f"policy_lag_{name}"] = value.item()
            out[f"policy_lag_sgd_steps_{name}"] = value.item() * sgd_steps
        out["lr"] = self.learning_rate
        return out

    def _epochs(self, items: Tensor, items_per_minibatch: int) -> Iterator[list[Tensor]]:
        """`num_epochs` passes over `items` (indices), each split into minibatches."""
        for _ in range(self.cfg.num_epochs):
            order = (items[torch.randperm(len(items), device=self.device)]
                     if self.cfg.shuffle_minibatches else items)
            yield list(order.split(items_per_minibatch))

    def _gae_minibatches(self, batch: Trajectories, discounts: Tensor, valid: Tensor | None):
        """Advantages once per batch (behaviour values, bootstrap from the current model), then
        minibatches of `batch_size` transitions: batch_size / recurrence sequences of
        `recurrence` steps (single transitions for recurrence 1); a sequence without any valid
        step is left out."""
        cfg = self.cfg
        T, B = batch.rewards.shape
        bootstrap = self.model.values({k: v[T] for k, v in batch.obs.items()},
                                      _at(batch.rnn_states, T))  # [B]
        advantages, returns = gae(batch.rewards, discounts, batch.values, bootstrap, cfg.gae_lambda)
        if self.model.returns_normalizer is not None:
            self.model.returns_normalizer.update(returns.flatten() if valid is None else returns[valid])
        sequences = self._sequences(batch, valid)
        items = torch.arange(sequences.num_sequences, device=self.device)
        if sequences.valid is not None:
            items = sequences.valid.any(dim=0).nonzero()[:, 0]
        per_step = {k: to_sequences(v, self.recurrence) for k, v in {
            "old_values": self.model.normalize_values(batch.values),
            "targets": self.model.normalize_values(returns), "advantages": advantages}.items()}
        for epoch in self._epochs(items, cfg.batch_size // self.recurrence):
            yield [_Minibatch(sequences.select(idx), {k: v[:, idx].flatten(0, 1)
                                                      for k, v in per_step.items()}, None)
                   for idx in epoch]

    def _vtrace_minibatches(self, batch: Trajectories, discounts: Tensor, valid: Tensor | None):
        """Minibatches of whole trajectories (each cut into sequences of `recurrence` steps);
        V-trace targets use the current model's values."""
        cfg = self.cfg
        per_minibatch = max(1, cfg.batch_size // batch.rollout)
        trajectories = torch.arange(batch.num_trajectories, device=self.device)
        for epoch in self._epochs(trajectories, per_minibatch):
            minibatches = []
            for idx in epoch:
                mb = batch.select(idx)
                minibatches.append(_Minibatch(
                    self._sequences(mb, None if valid is None else valid[:, idx]), {},
                    (mb, discounts[:, idx])))
            yield minibatches

    def _sequences(self, batch: Trajectories, valid: Tensor | None) -> _Sequences:
        R, T = self.recurrence, batch.rollout
        # The core starts afresh after an episode end and after a reset-only step, as in acting.
        resets = batch.dones if valid is None else torch.maximum(batch.dones, (~valid).float())
        return _Sequences(
            obs={k: to_sequences(v[:T], R) for k, v in batch.obs.items()},
            resets=to_sequences(resets, R),
            # The state each sequence starts in: steps 0, R, 2R... of each trajectory.
            start_states=None if batch.rnn_states is None else batch.rnn_states[:T:R].flatten(0, 1),
            actions=to_sequences(batch.actions, R), log_probs=to_sequences(batch.log_probs, R),
            action_params=to_sequences(batch.action_params, R),
            valid=None if valid is None else to_sequences(valid, R))

    def _sgd_step(self, mb: _Minibatch, stats: dict[str, list[float]]) -> float:
        cfg = self.cfg
        seqs = mb.sequences
        # [R * n, P], [R * n] normalized, time-major over the minibatch's n sequences
        action_params, values, _ = self.model.forward_sequence(seqs.obs, seqs.start_states,
                                                               seqs.resets)
        actions = seqs.actions.flatten(0, 1)
        behaviour_log_probs = seqs.log_probs.flatten()
        behaviour_params = seqs.action_params.flatten(0, 1)
        dist = make_action_distribution(self.action_layout, action_params)
        log_probs = dist.log_prob(actions)

        if mb.vtrace_data is None:
            advantages, targets = mb.per_step["advantages"], mb.per_step["targets"]
            old_values = mb.per_step["old_values"]
        else:
            advantages, targets, old_values = self._vtrace_targets(mb.vtrace_data, log_probs,
                                                                   values)
        keep = None if seqs.valid is None else seqs.valid.flatten()
        if keep is not None and not bool(keep.all()):
            # Reset-only steps of vector envs stay in the sequences but out of the loss.
            action_params, values, log_probs = action_params[keep], values[keep], log_probs[keep]
            advantages, targets, old_values = advantages[keep], targets[keep], old_values[keep]
            behaviour_log_probs, behaviour_params = behaviour_log_probs[keep], behaviour_params[keep]
            dist = make_action_distribution(self.action_layout, action_params)
        ratio = torch.exp(log_probs - behaviour_log_probs)

        advantages = losses.normalize_advantages(advantages)
        policy_loss = losses.policy_loss(ratio, advantages, cfg.ppo_clip_ratio)
        value_loss = losses.value_loss(values, old_values, targets, cfg.ppo_clip_value)
        if cfg.exploration_loss == "entropy":
            exploration_loss = losses.entropy_loss(dist)
        else:
            exploration_loss = losses.symmetric_kl_loss(dist)
        behaviour = make_action_distribution(self.action_layout, behaviour_params)
        kl_loss = losses.kl_loss(dist, behaviour)
        loss = (policy_loss + cfg.value_loss_coeff * value_loss
                + cfg.exploration_loss_coeff * exploration_loss)
        if cfg.kl_loss_coeff > 0:
            loss = loss + cfg.kl_loss_coeff * kl_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        self.train_step += 1

        kl = kl_loss.item()
        if cfg.lr_schedule == "kl_adaptive_minibatch":
            self._adapt_learning_rate(kl)
        for name, value in (("loss", loss.detach()), ("policy_loss", policy_loss), ("value_loss", value_loss),
                            ("exploration_loss", exploration_loss), ("kl_divergence", kl),
                            ("entropy", dist.entropy().mean()), ("grad_norm", grad_norm),
                            ("clip_fraction", losses.clip_fraction(ratio, cfg.ppo_clip_ratio)),
                            ("adv_mean", advantages.mean()), ("adv_std", advantages.std()),
                            ("values_mean", self.model.denormalize_values(values).mean())):
            stats[name].append(value.item() if isinstance(value, torch.Tensor) else float(value))
        return kl

    def _vtrace_targets(self, data, log_probs: Tensor, values: Tensor):
        """`log_probs` and `values` `[R * n]` in the minibatch's sequence order -> advantages,
        targets and old values in that order."""
        mb, discounts = data
        T = mb.rollout
        R = self.recurrence

        def steps(x: Tensor) -> Tensor:  # [R * n] in sequence order -> [T, b]
            return from_sequences(x.view(R, -1), T)

        def back(x: Tensor) -> Tensor:  # [T, b] -> [R * n] in sequence order
            return to_sequences(x, R).flatten()

        with torch.no_grad():
            values_raw = steps(self.model.denormalize_values(values.detach()))
            bootstrap = self.model.values({k: v[T] for k, v in mb.obs.items()},
                                          _at(mb.rnn_states, T))
            log_rhos = steps(log_probs.detach()) - mb.log_probs
            vs, pg_advantages = vtrace(log_rhos, discounts, mb.rewards, values_raw, bootstrap,
                                       self.cfg.vtrace_rho, self.cfg.vtrace_c, self.cfg.vtrace_rho)
            if self.model.returns_normalizer is not None:
                self.model.returns_normalizer.update(vs[mb.valid])
            targets = self.model.normalize_values(back(vs))
            old_values = self.model.normalize_values(back(mb.values))
        return back(pg_advantages), targets, old_values

    def _adapt_learning_rate(self, kl: float) -> None:
        cfg = self.cfg
        if kl > 2.0 * cfg.lr_schedule_kl_threshold:
            self._use_learning_rate(max(self.learning_rate / 1.5, cfg.lr_adaptive_min))
        elif kl < 0.5 * cfg.lr_schedule_kl_threshold:
            self._use_learning_rate(min(self.learning_rate * 1.5, cfg.lr_adaptive_max))
