"""The encoder base class and the MLP encoder, with the MLP and activation helpers that the other
parts (conv.py, decoders.py) build on. encoders.py picks among the encoders."""

from __future__ import annotations

import math
from typing import Any, Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

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
