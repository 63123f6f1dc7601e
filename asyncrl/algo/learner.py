"""The learner: a batch of trajectories in, one PPO / V-trace training iteration, stats out.

This is where the loss is taken. The same class serves the serial and the parallel runtime.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator

import gymnasium as gym
import torch
from torch import Tensor

from asyncrl.algo import losses
from asyncrl.algo.advantages import gae, vtrace
from asyncrl.algo.optimizers import make_optimizer
from asyncrl.algo.trajectories import Trajectories
from asyncrl.envs.spaces import one_line
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.model.distributions import make_action_distribution
from asyncrl.utils.errors import UserError


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
        self.learning_rate = cfg.learning_rate
        self.policy_version = 0  # +1 per training iteration; stamps the experience it produces
        self.train_step = 0  # SGD steps (minibatches) taken

    # -- checkpoint state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "policy_version": self.policy_version, "train_step": self.train_step,
                "learning_rate": self.learning_rate}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        missing = [k for k in ("model", "optimizer", "policy_version", "train_step",
                               "learning_rate") if k not in state]
        if missing:
            raise UserError(f"{source} is incomplete: it has no {missing[0]!r}")
        self.load_weights(state["model"], source)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(f"{source}: the optimizer state does not fit ({e})") from None
        self.policy_version = int(state["policy_version"])
        self.train_step = int(state["train_step"])
        self._set_learning_rate(float(state["learning_rate"]))

    def load_weights(self, model_state: dict[str, Tensor], source: str) -> None:
        """Weights and normalizer statistics only; a different architecture is a UserError."""
        own = self.model.state_dict()
        missing = sorted(set(own) - set(model_state))
        unexpected = sorted(set(model_state) - set(own))
        if missing or unexpected:
            name = (missing or unexpected)[0]
            what = "is missing from" if missing else "is not part of this model but is in"
            raise UserError(f"{source} does not fit this model: parameter {name} {what} the "
                            "checkpoint (different architecture or env)")
        for name, tensor in model_state.items():
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise UserError(f"{source} does not fit this model: {name} has shape "
                                f"{tuple(tensor.shape)} in the checkpoint and {tuple(own[name].shape)} "
                                "here (different architecture or env)")
        self.model.load_state_dict(model_state)

    def _set_learning_rate(self, lr: float) -> None:
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

        for epoch_kls in minibatches:
            kls = [self._sgd_step(*mb, stats) for mb in epoch_kls]
            if cfg.lr_schedule == "kl_adaptive_epoch":
                self._adapt_learning_rate(sum(kls) / len(kls))

        self.policy_version += 1
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        out.update(policy_lag_min=lag.min().item(), policy_lag_avg=lag.mean().item(),
                   policy_lag_max=lag.max().item(), lr=self.learning_rate)
        return out

    def _epochs(self, items: Tensor, items_per_minibatch: int) -> Iterator[list[Tensor]]:
        """`num_epochs` passes over `items` (indices), each split into minibatches."""
        for _ in range(self.cfg.num_epochs):
            order = (items[torch.randperm(len(items), device=self.device)]
                     if self.cfg.shuffle_minibatches else items)
            yield list(order.split(items_per_minibatch))

    def _gae_minibatches(self, batch: Trajectories, discounts: Tensor, valid: Tensor | None):
        """Advantages once per batch (behaviour values, bootstrap from the current model), then
        minibatches of `batch_size` valid transitions."""
        cfg = self.cfg
        T, B = batch.rewards.shape
        bootstrap = self.model.values({k: v[T] for k, v in batch.obs.items()})  # [B]
        advantages, returns = gae(batch.rewards, discounts, batch.values, bootstrap, cfg.gae_lambda)
        items = (torch.arange(T * B, device=self.device) if valid is None
                 else valid.flatten().nonzero()[:, 0])
        if self.model.returns_normalizer is not None:
            self.model.returns_normalizer.update(returns.flatten()[items])
        flat_obs = {k: v[:T].flatten(0, 1) for k, v in batch.obs.items()}
        flat = dict(actions=batch.actions.flatten(0, 1), log_probs=batch.log_probs.flatten(),
                    action_params=batch.action_params.flatten(0, 1),
                    old_values=self.model.normalize_values(batch.values.flatten()),
                    targets=self.model.normalize_values(returns.flatten()),
                    advantages=advantages.flatten())
        for epoch in self._epochs(items, cfg.batch_size):
            yield [(({k: v[idx] for k, v in flat_obs.items()}),
                    {k: v[idx] for k, v in flat.items()}, None) for idx in epoch]

    def _vtrace_minibatches(self, batch: Trajectories, discounts: Tensor, valid: Tensor | None):
        """Minibatches of whole trajectories; V-trace targets use the current model's values."""
        cfg = self.cfg
        per_minibatch = max(1, cfg.batch_size // batch.rollout)
        trajectories = torch.arange(batch.num_trajectories, device=self.device)
        for epoch in self._epochs(trajectories, per_minibatch):
            minibatches = []
            for idx in epoch:
                mb = batch.select(idx)
                minibatches.append(({k: v[:-1].flatten(0, 1) for k, v in mb.obs.items()},
                                    dict(actions=mb.actions.flatten(0, 1),
                                         log_probs=mb.log_probs.flatten(),
                                         action_params=mb.action_params.flatten(0, 1)),
                                    (mb, discounts[:, idx],
                                     None if valid is None else valid[:, idx].flatten())))
            yield minibatches

    def _sgd_step(self, obs: dict[str, Tensor], mb: dict[str, Tensor], vtrace_data,
                  stats: dict[str, list[float]]) -> float:
        cfg = self.cfg
        action_params, values = self.model(obs)  # [N, P], [N] normalized
        dist = make_action_distribution(self.action_layout, action_params)
        log_probs = dist.log_prob(mb["actions"])
        ratio = torch.exp(log_probs - mb["log_probs"])

        if vtrace_data is None:
            advantages, targets, old_values = mb["advantages"], mb["targets"], mb["old_values"]
        else:
            advantages, targets, old_values = self._vtrace_targets(vtrace_data, log_probs, values)
            keep = vtrace_data[2]  # [N] valid steps of these whole trajectories
            if keep is not None:
                action_params, values, ratio = action_params[keep], values[keep], ratio[keep]
                advantages, targets, old_values = advantages[keep], targets[keep], old_values[keep]
                mb = {k: v[keep] for k, v in mb.items()}
                dist = make_action_distribution(self.action_layout, action_params)

        advantages = losses.normalize_advantages(advantages)
        policy_loss = losses.policy_loss(ratio, advantages, cfg.ppo_clip_ratio)
        value_loss = losses.value_loss(values, old_values, targets, cfg.ppo_clip_value)
        if cfg.exploration_loss == "entropy":
            exploration_loss = losses.entropy_loss(dist)
        else:
            exploration_loss = losses.symmetric_kl_loss(dist)
        behaviour = make_action_distribution(self.action_layout, mb["action_params"])
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
        mb, discounts, valid = data
        T, b = mb.rewards.shape
        with torch.no_grad():
            values_raw = self.model.denormalize_values(values.detach()).view(T, b)
            bootstrap = self.model.values({k: v[T] for k, v in mb.obs.items()})
            log_rhos = (log_probs.detach() - mb.log_probs.flatten()).view(T, b)
            vs, pg_advantages = vtrace(log_rhos, discounts, mb.rewards, values_raw, bootstrap,
                                       self.cfg.vtrace_rho, self.cfg.vtrace_c, self.cfg.vtrace_rho)
            if self.model.returns_normalizer is not None:
                self.model.returns_normalizer.update(vs.flatten() if valid is None else vs.flatten()[valid])
            targets = self.model.normalize_values(vs.flatten())
            old_values = self.model.normalize_values(mb.values.flatten())
        return pg_advantages.flatten(), targets, old_values

    def _adapt_learning_rate(self, kl: float) -> None:
        cfg = self.cfg
        if kl > 2.0 * cfg.lr_schedule_kl_threshold:
            self._set_learning_rate(max(self.learning_rate / 1.5, cfg.lr_adaptive_min))
        elif kl < 0.5 * cfg.lr_schedule_kl_threshold:
            self._set_learning_rate(min(self.learning_rate * 1.5, cfg.lr_adaptive_max))
