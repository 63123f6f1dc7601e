"""Encoders turn a dict of (normalized) observation tensors into one feature vector `[N, out_size]`.

What an encoder receives is described by a Dict of Box spaces (`ObsPreprocessor.encoder_space`):
float tensors, images channels first `[N, C, H, W]`, Discrete observations as one-hots.

The default factory picks a convolutional encoder for the images the conv architecture can take
(model/conv.py) and an MLP for the rest.

Users replace the default with `register_encoder_factory` (see examples/custom_encoder.py).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

from asyncrl.model.parts import checked_part

_ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def activation(cfg: Any) -> nn.Module:
    return _ACTIVATIONS[cfg.nonlinearity]()


def mlp(in_size: int, layer_sizes: Sequence[int], cfg: Any) -> nn.Sequential:
    """Linear + activation for each size; an empty `layer_sizes` gives the identity."""
    layers: list[nn.Module] = []
    for size in layer_sizes:
        layers += [nn.Linear(in_size, size), activation(cfg)]
        in_size = size
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Base class of encoders: subclasses set `out_size` and implement forward(obs_dict)."""

    out_size: int

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError


class MlpEncoder(Encoder):
    """Flattens each observation key, concatenates them and applies `encoder_mlp_layers`."""

    def __init__(self, cfg: Any, obs_space: gym.spaces.Dict):
        super().__init__()
        self.keys = sorted(obs_space.spaces)
        self.in_size = sum(math.prod(obs_space[k].shape) for k in self.keys)
        self.net = mlp(self.in_size, cfg.encoder_mlp_layers, cfg)
        self.out_size = cfg.encoder_mlp_layers[-1] if cfg.encoder_mlp_layers else self.in_size

    def describe(self) -> str:
        return (f"encoder: MLP over {', '.join(repr(k) for k in self.keys)} ({self.in_size} "
                f"inputs -> {self.out_size} features)")

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        flat = [obs[k].flatten(start_dim=1) for k in self.keys]
        return self.net(flat[0] if len(flat) == 1 else torch.cat(flat, dim=1))


EncoderFactory = Callable[[Any, gym.spaces.Dict], Encoder]


def default_encoder_factory(cfg: Any, obs_space: gym.spaces.Dict) -> Encoder:
    """Images (rank 3, channels first) at least as large as --encoder_conv_architecture takes go
    through a convolutional encoder (model/conv.py), every other key through the MLP encoder
    (smaller images flattened); with several keys the features are concatenated."""
    from asyncrl.model.conv import ConvEncoder, conv_image_keys

    image_keys = conv_image_keys(cfg, obs_space)
    if image_keys:
        return ConvEncoder(cfg, obs_space, image_keys)
    return MlpEncoder(cfg, obs_space)


_encoder_factory: EncoderFactory = default_encoder_factory


def register_encoder_factory(factory: EncoderFactory) -> None:
    """Every model built after this call uses `factory(cfg, obs_space)` as its encoder."""
    global _encoder_factory
    _encoder_factory = factory


def make_encoder(cfg: Any, obs_space: gym.spaces.Dict) -> Encoder:
    return checked_part(_encoder_factory(cfg, obs_space), "encoder", out_size=1)
