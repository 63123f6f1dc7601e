"""Encoders turn a dict of (normalized) observation tensors into one feature vector `[N, out_size]`.

What an encoder receives is described by a Dict of Box spaces (`ObsPreprocessor.encoder_space`):
float tensors, images channels first `[N, C, H, W]`, Discrete observations as one-hots.

The default factory picks a convolutional encoder for the images the conv architecture can take
(model/conv.py) and an MLP for the rest.

Users replace the default with `register_encoder_factory` (see examples/custom_encoder.py).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym

from asyncrl.model.conv import ConvEncoder, conv_image_keys
from asyncrl.model.mlp import Encoder, MlpEncoder
from asyncrl.model.parts import checked_part

EncoderFactory = Callable[[Any, gym.spaces.Dict], Encoder]


def default_encoder_factory(cfg: Any, obs_space: gym.spaces.Dict) -> Encoder:
    """Images (rank 3, channels first) at least as large as --encoder_conv_architecture takes go
    through a convolutional encoder (model/conv.py), every other key through the MLP encoder
    (smaller images flattened); with several keys the features are concatenated."""
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
