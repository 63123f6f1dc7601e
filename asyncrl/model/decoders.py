"""Decoders turn the core's outputs (the encoder's features when there is no core) `[N, in]`
into the features `[N, out_size]` that the action and value heads read.

The default is an MLP of `decoder_mlp_layers` (none: the identity). Users replace it with
`register_decoder_factory` (see examples/custom_model.py).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from asyncrl.model.mlp import mlp
from asyncrl.model.parts import checked_part


class Decoder(nn.Module):
    """Base class of decoders: subclasses set `out_size` and implement forward(x `[N, in]`)."""

    out_size: int

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class MlpDecoder(nn.Sequential):
    """Linear + activation for each of `decoder_mlp_layers`. A Sequential rather than a Decoder
    so that its parameters keep the names checkpoints have always had (`decoder.0.weight`)."""

    def __init__(self, cfg: Any, in_size: int):
        super().__init__(*mlp(in_size, cfg.decoder_mlp_layers, cfg))
        self.out_size = cfg.decoder_mlp_layers[-1] if cfg.decoder_mlp_layers else in_size


DecoderFactory = Callable[[Any, int], nn.Module]


def default_decoder_factory(cfg: Any, in_size: int) -> nn.Module:
    return MlpDecoder(cfg, in_size)


_decoder_factory: DecoderFactory = default_decoder_factory


def register_decoder_factory(factory: DecoderFactory) -> None:
    """Every model built after this call uses `factory(cfg, in_size)` as the decoder of each
    trunk (the actor's, and the critic's when they do not share weights); `in_size` is the
    core's out_size, or the encoder's when there is no core."""
    global _decoder_factory
    _decoder_factory = factory


def make_decoder(cfg: Any, in_size: int) -> nn.Module:
    return checked_part(_decoder_factory(cfg, in_size), "decoder", out_size=1)
