"""The actor-critic: preprocessing -> encoder -> core -> decoder -> action parameters and value.

Observations are dicts of tensors, one per leaf of the env's observation space
(envs/observations.py; a Box space is the single key "obs"). ObsPreprocessor turns them into the
float tensors encoders take; an `action_mask` key masks the logits of the discrete actions instead
(model/distributions.py, `mask_logits`). The value head predicts returns in normalized units when
`normalize_returns` is on; `policy_step` returns raw values.

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
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asyncrl.envs.observations import ACTION_MASK_KEY, obs_dict_space, one_line
from asyncrl.envs.spaces import ActionLayout, action_layout
from asyncrl.model.distributions import ActionMasking, make_action_distribution
from asyncrl.model.core import make_core
from asyncrl.model.decoders import make_decoder
from asyncrl.model.encoders import make_encoder
from asyncrl.model.normalization import RunningMeanStd
from asyncrl.utils.errors import UserError

PIXEL_FORMATS = ("auto", "CHW", "HWC")


@dataclass
class PolicyOutput:
    actions: Tensor  # [N] (Discrete) or [N, K + A] (see asyncrl/envs/spaces.py)
    log_probs: Tensor  # [N]
    values: Tensor  # [N], raw (denormalized) units
    action_params: Tensor  # [N, P], the distribution the actions were drawn from
    rnn_states: Tensor | None  # [N, rnn_state_size] after this step (None: feed-forward)


def image_layout(shape: tuple[int, ...], pixel_format: str) -> str:
    """'CHW' or 'HWC' for an image observation of `shape` (rank 3). --pixel_format=auto: channels
    last when the last dimension is smaller than the first ((240, 320, 3), (7, 7, 3)), else
    channels first ((4, 84, 84)); equal ones are ambiguous and read as CHW (`describe` says so)."""
    if pixel_format != "auto":
        return pixel_format
    return "HWC" if shape[-1] < shape[0] else "CHW"


@dataclass(frozen=True)
class _Input:
    """How one observation leaf becomes an encoder input."""

    key: str
    kind: str  # "box", "discrete" (Discrete or MultiDiscrete) or "bits" (MultiBinary)
    subtract: float = 0.0
    scale: float = 1.0
    channels_last: bool = False  # an HWC image, handed on as a [N, C, H, W] view
    scalar: bool = False  # a rank-0 Box, handed on as [N, 1]
    note: str = ""  # what happens to it, for `describe`


class ObsPreprocessor(nn.Module):
    """Raw observation leaves -> the float tensors encoders take, described by `encoder_space`
    (a Dict of Box spaces):

    - Box: (x - obs_subtract_mean) / obs_scale, then running normalization of the chosen keys.
      With the defaults obs_subtract_mean=0 and obs_scale=1, uint8 leaves (8-bit images) are
      divided by 255; any other value applies to every Box as given. Images (rank 3) go on
      channels first: an HWC image as a `[N, C, H, W]` view of channels-last memory, which the
      convolutions take without a copy. A rank-0 Box becomes `[N, 1]`.
    - Discrete: a one-hot `[N, n]`; MultiDiscrete: the one-hots of its entries concatenated
      `[N, sum(nvec)]`; MultiBinary: its bits as floats. These are not normalized.
    - `action_mask` is no encoder input: ActorCritic masks the action logits with it."""

    def __init__(self, cfg: Any, obs_space: gym.spaces.Dict):
        super().__init__()
        keys = [k for k in obs_space.spaces if k != ACTION_MASK_KEY]
        if not keys:
            raise UserError(f"no observation besides '{ACTION_MASK_KEY}': the policy would see "
                            "nothing")
        boxes = [k for k in keys if isinstance(obs_space[k], gym.spaces.Box)]
        normalized = boxes if cfg.normalize_input_keys is None else list(cfg.normalize_input_keys)
        for key in normalized:
            if key not in obs_space.spaces:
                raise UserError(f"--normalize_input_keys: no observation key {key!r} "
                                f"(this env has: {', '.join(keys)})")
            if key not in boxes:
                raise UserError(f"--normalize_input_keys: observation {key!r} is "
                                f"{one_line(obs_space[key])}; only Box observations are normalized")
        self.normalizers = nn.ModuleDict()
        if cfg.normalize_input:
            for key in normalized:
                self.normalizers[key] = RunningMeanStd(obs_space[key].shape)
        self.inputs = [self._input(cfg, key, obs_space[key]) for key in keys]
        self.encoder_space = gym.spaces.Dict(
            {i.key: self._encoder_leaf(i, obs_space[i.key]) for i in self.inputs})
        # Discrete and MultiDiscrete leaves: the largest number of categories, each entry's
        # start and the real categories among the padded one-hots (buffers that follow the model
        # to its device, outside the state_dict: they come from the env's space).
        self._one_hot_sizes: dict[str, int] = {}
        for j, i in enumerate(self.inputs):
            if i.kind != "discrete":
                continue
            space = obs_space[i.key]
            self._one_hot_sizes[i.key] = int(_category_counts(space).max())
            self.register_buffer(f"_start_{j}", torch.as_tensor(np.asarray(space.start)).reshape(-1),
                                 persistent=False)
            self.register_buffer(f"_columns_{j}", _one_hot_columns(space), persistent=False)

    @staticmethod
    def _input(cfg: Any, key: str, space: gym.Space) -> _Input:
        if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
            return _Input(key, "discrete", note="one-hot")
        if isinstance(space, gym.spaces.MultiBinary):
            return _Input(key, "bits", note="bits as floats")
        subtract, scale, note = cfg.obs_subtract_mean, cfg.obs_scale, ""
        if space.dtype == np.uint8 and subtract == 0.0 and scale == 1.0:
            scale, note = 255.0, "/ 255"
        elif subtract != 0.0 or scale != 1.0:
            note = f"(x - {subtract:g}) / {scale:g}"
        channels_last = False
        if len(space.shape) == 3:
            layout = image_layout(space.shape, cfg.pixel_format)
            channels_last = layout == "HWC"
            ambiguous = cfg.pixel_format == "auto" and space.shape[0] == space.shape[-1]
            note = " ".join(filter(None, [
                f"image {layout}" + (" (ambiguous: set --pixel_format)" if ambiguous else ""), note]))
        return _Input(key, "box", float(subtract), float(scale), channels_last,
                      scalar=len(space.shape) == 0, note=note)

    @staticmethod
    def _encoder_leaf(i: _Input, space: gym.Space) -> gym.spaces.Box:
        if i.kind == "discrete":
            shape: tuple[int, ...] = (int(np.sum(_category_counts(space))),)
        elif i.kind == "bits":
            shape = tuple(space.shape)
        elif i.scalar:
            shape = (1,)
        elif i.channels_last:
            h, w, c = space.shape
            shape = (c, h, w)
        else:
            shape = tuple(space.shape)
        return gym.spaces.Box(-np.inf, np.inf, shape, np.float32)

    def forward(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for j, i in enumerate(self.inputs):
            x = obs[i.key]
            if i.kind == "box":
                if i.key in self.normalizers:  # scaled and normalized in one pass
                    x = self.normalizers[i.key].normalize(x.float(), i.subtract, i.scale)
                else:
                    x = self._scaled(i, x)
                if i.scalar:
                    x = x[:, None]
                elif i.channels_last:
                    x = x.permute(0, 3, 1, 2)
            elif i.kind == "discrete":
                x = self._one_hot(j, i.key, x)
            else:
                x = x.float()
            out[i.key] = x
        return out

    @staticmethod
    def _scaled(i: _Input, x: Tensor) -> Tensor:
        x = x.float()
        if i.subtract != 0.0:
            x = x - i.subtract
        return x / i.scale if i.scale != 1.0 else x

    def _one_hot(self, j: int, key: str, x: Tensor) -> Tensor:
        """`[N]` or `[N, *nvec.shape]` category values of input j -> `[N, sum of the sizes]`."""
        indices = x.reshape(x.shape[0], -1).long() - getattr(self, f"_start_{j}")  # [N, K]
        one_hot = F.one_hot(indices, self._one_hot_sizes[key]).float().flatten(1)  # [N, K * n_max]
        columns = getattr(self, f"_columns_{j}")
        return one_hot if columns is None else one_hot[:, columns]

    @torch.no_grad()
    def update_statistics(self, obs: dict[str, Tensor]) -> None:
        for i in self.inputs:
            if i.key in self.normalizers:
                self.normalizers[i.key].update(obs[i.key], i.subtract, i.scale)

    def describe(self, obs_space: gym.spaces.Dict) -> list[str]:
        """Each key, its space and what becomes of it: lines for the run's log."""
        lines = [f"'{i.key}' {one_line(obs_space[i.key])}"
                 + (f": {i.note}" if i.note else "")
                 + (", normalized" if i.key in self.normalizers else "") for i in self.inputs]
        if ACTION_MASK_KEY in obs_space.spaces:
            lines.append(f"'{ACTION_MASK_KEY}' {one_line(obs_space[ACTION_MASK_KEY])}: masks the "
                         "action logits")
        return lines


def _category_counts(space: gym.Space) -> np.ndarray:
    """`[K]` the number of categories of each entry of a Discrete (K = 1) or MultiDiscrete."""
    if isinstance(space, gym.spaces.Discrete):
        return np.array([int(space.n)])
    return np.asarray(space.nvec).reshape(-1).astype(np.int64)


def _one_hot_columns(space: gym.spaces.MultiDiscrete) -> Tensor | None:
    """Columns of the padded one-hots `[K * n_max]` that are real categories; None when every
    entry has n_max categories."""
    counts = _category_counts(space)
    n_max = int(counts.max())
    if (counts == n_max).all():
        return None
    return torch.as_tensor([k * n_max + c for k, n in enumerate(counts) for c in range(n)])


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
        self.obs_space = obs_space
        self.action_space = action_space
        self.action_layout = action_layout(action_space)
        self.masking = (ActionMasking(self.action_layout, obs_space[ACTION_MASK_KEY])
                        if ACTION_MASK_KEY in obs_space.spaces else None)
        if self.masking is not None and cfg.exploration_loss == "symmetric_kl":
            raise UserError("--exploration_loss=symmetric_kl does not take action masks (its "
                            "uniform prior would include masked actions): use "
                            "--exploration_loss=entropy")
        self.preprocessor = ObsPreprocessor(cfg, obs_space)
        self.returns_normalizer = RunningMeanStd((), clip=None) if cfg.normalize_returns else None
        encoder_space = self.preprocessor.encoder_space
        self.actor_trunk = _Trunk(cfg, encoder_space)
        self.critic_trunk = None if cfg.actor_critic_share_weights else _Trunk(cfg, encoder_space)
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
        return self._masked(obs, *self._heads(lambda trunk, s: trunk(x, s), states))

    def forward_sequence(self, obs: dict[str, Tensor], rnn_states: Tensor | None,
                         dones: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Sequences: raw observations `[T, B, ...]`, initial states `[B, rnn_state_size]` and
        `dones` `[T, B]` (the state is zeroed after a step where an episode ended) -> (action
        params `[T * B, P]`, normalized values `[T * B]`, time-major; the states after step T-1).
        Gives what T calls of forward() with those resets give, in one pass."""
        flat = {k: v.flatten(0, 1) for k, v in obs.items()}
        x = self.preprocessor(flat)
        states = self._states(rnn_states, dones[0])
        return self._masked(flat, *self._heads(lambda trunk, s: trunk.sequence(x, s, dones), states))

    def _masked(self, obs: dict[str, Tensor], params: Tensor, values: Tensor,
                states: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The heads' output with the logits an `action_mask` forbids at -inf."""
        if self.masking is not None:
            params = self.masking(params, obs[ACTION_MASK_KEY])
        return params, values, states

    def describe_observations(self) -> list[str]:
        """Each observation key and what the model does with it (for the run's log)."""
        lines = self.preprocessor.describe(self.obs_space)
        encoder = self.actor_trunk.encoder
        describe = getattr(encoder, "describe", None)
        return lines + ([describe()] if describe is not None else [])

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


def load_weights(model: ActorCritic, model_state: dict[str, Tensor], source: str) -> None:
    """Weights and normalizer statistics; a checkpoint of another architecture is a UserError."""
    own = model.state_dict()
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
    model.load_state_dict(model_state)


def _initialize(model: ActorCritic, cfg: Any) -> None:
    """Fully connected and convolutional layers (as Sample Factory does), then the output layers
    again where they have a gain of their own; biases start at 0."""
    if cfg.policy_initialization == "torch_default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _initialize_layer(module, cfg.policy_initialization, cfg.policy_init_gain)
    heads = ((model.action_parameterization.head, cfg.policy_head_init_gain),
             (model.critic_head, cfg.value_head_init_gain))
    for head, gain in heads:
        if gain is not None:
            _initialize_layer(head, cfg.policy_initialization, gain)


def _initialize_layer(layer: nn.Linear | nn.Conv2d, scheme: str, gain: float) -> None:
    if scheme == "orthogonal":
        nn.init.orthogonal_(layer.weight, gain=gain)
    else:
        nn.init.xavier_uniform_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
