"""The actor-critic: preprocessing -> encoder -> core -> decoder -> action parameters and value.

Observations are dicts of tensors (a Box space is the single key "obs"). The value head predicts
returns in normalized units when `normalize_returns` is on; `policy_step` returns raw values.

Each part comes from a factory that users may replace: model/encoders.py, model/core.py,
model/decoders.py. With `use_rnn` the core is recurrent and every call takes and returns the
hidden states, one flat row per agent `[N, rnn_state_size]` (the actor's, then the critic's when
they do not share weights); None stands for all-zero states (episode starts). Without it there is
no core (or a registered one without state), `rnn_state_size` is 0 and states are None throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from asyncrl.envs.spaces import ActionLayout, action_layout, obs_dict_space
from asyncrl.model.distributions import make_action_distribution
from asyncrl.model.core import make_core
from asyncrl.model.decoders import make_decoder
from asyncrl.model.encoders import make_encoder
from asyncrl.model.normalization import RunningMeanStd
from asyncrl.utils.errors import UserError


@dataclass
class PolicyOutput:
    actions: Tensor  # [N] (Discrete) or [N, K + A] (see asyncrl/envs/spaces.py)
    log_probs: Tensor  # [N]
    values: Tensor  # [N], raw (denormalized) units
    action_params: Tensor  # [N, P], the distribution the actions were drawn from
    rnn_states: Tensor | None  # [N, rnn_state_size] after this step (None: feed-forward)


class ObsPreprocessor(nn.Module):
    """(obs - obs_subtract_mean) / obs_scale, then running normalization of the chosen keys."""

    def __init__(self, cfg: Any, obs_space: gym.spaces.Dict):
        super().__init__()
        self.subtract_mean = cfg.obs_subtract_mean
        self.scale = cfg.obs_scale
        keys = sorted(obs_space.spaces)
        normalized = keys if cfg.normalize_input_keys is None else list(cfg.normalize_input_keys)
        missing = [k for k in normalized if k not in obs_space.spaces]
        if missing:
            raise UserError(f"--normalize_input_keys: no observation key {missing[0]!r} "
                            f"(this env has: {', '.join(keys)})")
        self.normalizers = nn.ModuleDict()
        if cfg.normalize_input:
            for key in normalized:
                self.normalizers[key] = RunningMeanStd(obs_space[key].shape)

    def forward(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for key, x in obs.items():
            x = x.float()
            if self.subtract_mean != 0.0:
                x = x - self.subtract_mean
            if self.scale != 1.0:
                x = x / self.scale
            if key in self.normalizers:
                x = self.normalizers[key].normalize(x)
            out[key] = x
        return out

    @torch.no_grad()
    def update_statistics(self, obs: dict[str, Tensor]) -> None:
        for key, normalizer in self.normalizers.items():
            x = obs[key].float()
            if self.subtract_mean != 0.0:
                x = x - self.subtract_mean
            normalizer.update(x / self.scale)


class _Trunk(nn.Module):
    """Encoder -> core -> decoder, each from its factory; the core may be None (the identity)."""

    def __init__(self, cfg: Any, obs_space: gym.spaces.Dict):
        super().__init__()
        self.encoder = make_encoder(cfg, obs_space)
        self.core = make_core(cfg, self.encoder.out_size)
        core_out = self.encoder.out_size if self.core is None else self.core.out_size
        self.state_size = 0 if self.core is None else self.core.state_size
        self.decoder = make_decoder(cfg, core_out)
        self.out_size = self.decoder.out_size

    def forward(self, obs: dict[str, Tensor], states: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One step of `[N]` agents: features `[N, out_size]`, next states `[N, state_size]`."""
        x = self.encoder(obs)
        if self.core is not None:
            x, states = self.core(x, states)
        return self.decoder(x), states

    def sequence(self, obs: dict[str, Tensor], states: Tensor | None,
                 dones: Tensor) -> tuple[Tensor, Tensor | None]:
        """`obs` `[T * B, ...]` (time-major, flattened), `states` `[B, state_size]`, `dones`
        `[T, B]` -> features `[T * B, out_size]` and the states after the last step."""
        if self.core is None:
            return self.forward(obs, None)
        x = self.encoder(obs)
        x, states = self.core.sequence(x.view(*dones.shape, -1), states, dones)
        return self.decoder(x.flatten(0, 1)), states


class ActionParameterization(nn.Module):
    """Features -> flat distribution parameters `[N, L + 2A]`: the logits of the categorical
    components (L of them), then the means and log-stds of the A continuous (Box) dimensions.
    adaptive_stddev, continuous_tanh_scale and initial_stddev shape the continuous part only."""

    def __init__(self, cfg: Any, layout: ActionLayout, in_size: int):
        super().__init__()
        self.num_logits = sum(layout.categories)
        self.continuous_dims = layout.continuous_dims
        self.tanh_scale = cfg.continuous_tanh_scale
        self.adaptive_stddev = cfg.adaptive_stddev
        self.log_std_offset = math.log(cfg.initial_stddev)
        if self.continuous_dims and not cfg.adaptive_stddev:
            self.head = nn.Linear(in_size, self.num_logits + self.continuous_dims)
            self.log_std = nn.Parameter(torch.full((self.continuous_dims,), self.log_std_offset))
        else:
            self.head = nn.Linear(in_size, layout.num_params)

    def forward(self, features: Tensor) -> Tensor:
        out = self.head(features)  # [N, L + 2A], or [N, L + A] without adaptive_stddev
        if not self.continuous_dims:
            return out
        L, A = self.num_logits, self.continuous_dims
        logits, means = out[:, :L], out[:, L:L + A]
        if self.adaptive_stddev:
            log_stds = out[:, L + A:] + self.log_std_offset
        else:
            log_stds = self.log_std.expand_as(means)
        if self.tanh_scale > 0:
            means = torch.tanh(means / self.tanh_scale) * self.tanh_scale
        return torch.cat([logits, means, log_stds], dim=-1)


class ActorCritic(nn.Module):
    def __init__(self, cfg: Any, obs_space: gym.Space, action_space: gym.Space):
        super().__init__()
        obs_space = obs_dict_space(obs_space)
        self.action_space = action_space
        self.action_layout = action_layout(action_space)
        self.preprocessor = ObsPreprocessor(cfg, obs_space)
        self.returns_normalizer = RunningMeanStd((), clip=None) if cfg.normalize_returns else None
        self.actor_trunk = _Trunk(cfg, obs_space)
        self.critic_trunk = None if cfg.actor_critic_share_weights else _Trunk(cfg, obs_space)
        self.action_parameterization = ActionParameterization(cfg, self.action_layout,
                                                              self.actor_trunk.out_size)
        critic_in = (self.critic_trunk or self.actor_trunk).out_size
        self.rnn_state_size = self.actor_trunk.state_size + (
            0 if self.critic_trunk is None else self.critic_trunk.state_size)
        self.critic_head = nn.Linear(critic_in, 1)
        _initialize(self, cfg)
        # Convolution weights in channels-last layout: oneDNN's convolutions (and cuDNN's with
        # tensor cores) run them faster; other layers and the checkpoint format are unaffected.
        self.to(memory_format=torch.channels_last)

    def forward(self, obs: dict[str, Tensor],
                rnn_states: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step: raw observations `[N, ...]` and states `[N, rnn_state_size]` -> (action
        params `[N, P]`, normalized values `[N]`, next states `[N, rnn_state_size]`)."""
        x = self.preprocessor(obs)
        states = self._states(rnn_states, next(iter(x.values())))
        return self._heads(lambda trunk, s: trunk(x, s), states)

    def forward_sequence(self, obs: dict[str, Tensor], rnn_states: Tensor | None,
                         dones: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Sequences: raw observations `[T, B, ...]`, initial states `[B, rnn_state_size]` and
        `dones` `[T, B]` (the state is zeroed after a step where an episode ended) -> (action
        params `[T * B, P]`, normalized values `[T * B]`, time-major; the states after step T-1).
        Gives what T calls of forward() with those resets give, in one pass."""
        x = self.preprocessor({k: v.flatten(0, 1) for k, v in obs.items()})
        states = self._states(rnn_states, dones[0])
        return self._heads(lambda trunk, s: trunk.sequence(x, s, dones), states)

    def _states(self, rnn_states: Tensor | None, like: Tensor) -> Tensor | None:
        """The given states, zeros for None (`like`: any tensor with the agents as rows)."""
        if self.rnn_state_size == 0 or rnn_states is not None:
            return rnn_states
        return torch.zeros((like.shape[0], self.rnn_state_size), device=like.device)

    def _heads(self, run, states: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """`run(trunk, trunk_states) -> (features, trunk_states)` for each trunk, then the heads."""
        actor_states, critic_states = states, None
        if states is not None and self.critic_trunk is not None:
            actor_states, critic_states = states.split(
                [self.actor_trunk.state_size, self.critic_trunk.state_size], dim=1)
        actor_features, actor_states = run(self.actor_trunk, actor_states)
        if self.critic_trunk is None:
            critic_features, next_states = actor_features, actor_states
        else:
            critic_features, critic_states = run(self.critic_trunk, critic_states)
            next_states = None if states is None else torch.cat([actor_states, critic_states], 1)
        return (self.action_parameterization(actor_features),
                self.critic_head(critic_features)[:, 0], next_states)

    def denormalize_values(self, values: Tensor) -> Tensor:
        return values if self.returns_normalizer is None else self.returns_normalizer.denormalize(values)

    def normalize_values(self, values: Tensor) -> Tensor:
        return values if self.returns_normalizer is None else self.returns_normalizer.normalize(values)

    @torch.no_grad()
    def policy_step(self, obs: dict[str, Tensor], rnn_states: Tensor | None = None,
                    deterministic: bool = False) -> PolicyOutput:
        """Acting: actions for a batch of observations `[N, ...]` in states `[N,
        rnn_state_size]` (None: zeros), and the next states (no statistics are updated)."""
        action_params, values, next_states = self(obs, rnn_states)
        dist = make_action_distribution(self.action_layout, action_params)
        actions = dist.deterministic() if deterministic else dist.sample()
        return PolicyOutput(actions=actions, log_probs=dist.log_prob(actions),
                            values=self.denormalize_values(values), action_params=action_params,
                            rnn_states=next_states)

    @torch.no_grad()
    def values(self, obs: dict[str, Tensor], rnn_states: Tensor | None = None) -> Tensor:
        """Raw (denormalized) value estimates `[N]` of observations `[N, ...]` in states `[N,
        rnn_state_size]` (None: zeros)."""
        return self.denormalize_values(self(obs, rnn_states)[1])


def _initialize(model: nn.Module, cfg: Any) -> None:
    """Fully connected and convolutional layers (as Sample Factory does); biases start at 0."""
    if cfg.policy_initialization == "torch_default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if cfg.policy_initialization == "orthogonal":
                nn.init.orthogonal_(module.weight, gain=cfg.policy_init_gain)
            else:
                nn.init.xavier_uniform_(module.weight, gain=cfg.policy_init_gain)
            nn.init.zeros_(module.bias)
