"""The actor-critic: preprocessing -> encoder -> core -> decoder -> action parameters and value.

Observations are dicts of tensors (a Box space is the single key "obs"). The value head predicts
returns in normalized units when `normalize_returns` is on; `policy_step` returns raw values.
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
from asyncrl.model.encoders import make_encoder, mlp
from asyncrl.model.normalization import RunningMeanStd
from asyncrl.utils.errors import UserError


@dataclass
class PolicyOutput:
    actions: Tensor  # [N] (Discrete) or [N, K + A] (see asyncrl/envs/spaces.py)
    log_probs: Tensor  # [N]
    values: Tensor  # [N], raw (denormalized) units
    action_params: Tensor  # [N, P], the distribution the actions were drawn from


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
    """Encoder -> core -> decoder. The core is the identity until recurrent cores arrive."""

    def __init__(self, cfg: Any, obs_space: gym.spaces.Dict):
        super().__init__()
        self.encoder = make_encoder(cfg, obs_space)
        self.core = nn.Identity()
        self.decoder = mlp(self.encoder.out_size, cfg.decoder_mlp_layers, cfg)
        self.out_size = cfg.decoder_mlp_layers[-1] if cfg.decoder_mlp_layers else self.encoder.out_size

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        return self.decoder(self.core(self.encoder(obs)))


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
        self.critic_head = nn.Linear(critic_in, 1)
        _initialize(self, cfg)
        # Convolution weights in channels-last layout: oneDNN's convolutions (and cuDNN's with
        # tensor cores) run them faster; other layers and the checkpoint format are unaffected.
        self.to(memory_format=torch.channels_last)

    def forward(self, obs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Raw observations `[N, ...]` -> (action params `[N, P]`, normalized values `[N]`)."""
        x = self.preprocessor(obs)
        actor_features = self.actor_trunk(x)
        critic_features = actor_features if self.critic_trunk is None else self.critic_trunk(x)
        return self.action_parameterization(actor_features), self.critic_head(critic_features)[:, 0]

    def denormalize_values(self, values: Tensor) -> Tensor:
        return values if self.returns_normalizer is None else self.returns_normalizer.denormalize(values)

    def normalize_values(self, values: Tensor) -> Tensor:
        return values if self.returns_normalizer is None else self.returns_normalizer.normalize(values)

    @torch.no_grad()
    def policy_step(self, obs: dict[str, Tensor], deterministic: bool = False) -> PolicyOutput:
        """Acting: actions for a batch of observations (no statistics are updated)."""
        action_params, values = self(obs)
        dist = make_action_distribution(self.action_layout, action_params)
        actions = dist.deterministic() if deterministic else dist.sample()
        return PolicyOutput(actions=actions, log_probs=dist.log_prob(actions),
                            values=self.denormalize_values(values), action_params=action_params)

    @torch.no_grad()
    def values(self, obs: dict[str, Tensor]) -> Tensor:
        """Raw (denormalized) value estimates `[N]`."""
        return self.denormalize_values(self(obs)[1])


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
