"""Convolutional encoders: each architecture's shapes, image observations through the whole
actor-critic (uint8 in, actions and values out), images mixed with vector keys, HWC images."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from asyncrl.config.params import PARAMS
from asyncrl.envs.command_line import parse_args
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.model.conv import CONV_ARCHITECTURES, ConvEncoder
from asyncrl.model.encoders import MlpEncoder

ATARI_OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
# [channels, height, width] of the conv head's output on an 84x84 image
EXPECTED_CONV_OUT = {
    "convnet_simple": (128, 4, 4),  # 84 -8/4-> 20 -4/2-> 9 -3/2-> 4
    "convnet_impala": (32, 9, 9),
    "convnet_atari": (64, 7, 7),  # 84 -> 20 -> 9 -> 7
    "resnet_impala": (32, 11, 11),  # max-pools 84 -> 42 -> 21 -> 11
}


def cfg_of(*argv):
    return parse_args(["--env=CartPole-v1", "--obs_scale=255", "--normalize_input=false", *argv],
                      scope="train", prog="test").config()


def uint8_images(n, shape=(4, 84, 84)):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def test_architecture_choices_match_the_parameter_table():
    param = next(p for p in PARAMS if p.name == "encoder_conv_architecture")
    assert set(param.choices) == set(CONV_ARCHITECTURES) == set(EXPECTED_CONV_OUT)
    assert param.default == "convnet_simple"
    assert next(p for p in PARAMS if p.name == "encoder_conv_mlp_layers").default == [512]


@pytest.mark.parametrize("arch", sorted(EXPECTED_CONV_OUT))
def test_each_architecture_output_shape_on_uint8_atari_frames(arch):
    cfg = cfg_of(f"--encoder_conv_architecture={arch}", "--encoder_conv_mlp_layers", "256")
    model = ActorCritic(cfg, ATARI_OBS, gym.spaces.Discrete(6))
    encoder = model.actor_trunk.encoder
    assert isinstance(encoder, ConvEncoder) and encoder.vector_encoder is None
    image = encoder.image_encoders[0]
    x = model.preprocessor({"obs": uint8_images(3)})["obs"]
    assert x.dtype == torch.float32 and float(x.max()) <= 1.0  # obs_scale=255 applied before
    assert image.conv_head(x).shape == (3, *EXPECTED_CONV_OUT[arch])
    assert image.conv_out_size == int(np.prod(EXPECTED_CONV_OUT[arch]))
    assert encoder({"obs": x}).shape == (3, 256) and encoder.out_size == 256


def test_empty_conv_mlp_gives_the_flattened_conv_features():
    cfg = cfg_of("--encoder_conv_architecture=convnet_atari", "--encoder_conv_mlp_layers=")
    encoder = ActorCritic(cfg, ATARI_OBS, gym.spaces.Discrete(2)).actor_trunk.encoder
    assert encoder.out_size == 64 * 7 * 7
    assert encoder({"obs": torch.rand(2, 4, 84, 84)}).shape == (2, 64 * 7 * 7)


def test_image_model_acts_and_learns_values_from_uint8_observations():
    cfg = cfg_of("--encoder_conv_architecture=convnet_atari", "--actor_critic_share_weights=false")
    model = ActorCritic(cfg, ATARI_OBS, gym.spaces.Discrete(6))
    out = model.policy_step({"obs": uint8_images(5)})
    assert out.actions.shape == (5,) and out.log_probs.shape == (5,) and out.values.shape == (5,)
    assert int(out.actions.min()) >= 0 and int(out.actions.max()) < 6
    assert torch.isfinite(out.values).all()
    params, values, _ = model({"obs": uint8_images(4)})
    (params.sum() + values.sum()).backward()
    conv = model.actor_trunk.encoder.image_encoders[0].conv_head[0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    # Conv layers are initialized like the linear ones (orthogonal, zero bias).
    assert torch.all(conv.bias == 0)


def test_input_normalization_of_images_keeps_working():
    cfg = parse_args(["--env=CartPole-v1", "--encoder_conv_architecture=convnet_impala"],
                     scope="train", prog="test").config()  # normalize_input=True
    model = ActorCritic(cfg, ATARI_OBS, gym.spaces.Discrete(3))
    model.preprocessor.update_statistics({"obs": uint8_images(16)})
    assert model.policy_step({"obs": uint8_images(2)}).actions.shape == (2,)


def test_dict_observation_mixes_an_image_and_a_vector():
    space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
                             "state": gym.spaces.Box(-1, 1, (7,), np.float32)})
    cfg = cfg_of("--encoder_conv_architecture=convnet_simple", "--encoder_conv_mlp_layers", "32",
                 "--encoder_mlp_layers", "16", "--normalize_input_keys", "state",
                 "--normalize_input=true")
    model = ActorCritic(cfg, space, gym.spaces.Box(-1, 1, (2,)))
    encoder = model.actor_trunk.encoder
    assert encoder.image_keys == ["pixels"] and isinstance(encoder.vector_encoder, MlpEncoder)
    assert encoder.vector_encoder.keys == ["state"] and encoder.out_size == 32 + 16
    obs = {"pixels": uint8_images(6, (3, 64, 64)), "state": torch.randn(6, 7)}
    out = model.policy_step(obs)
    assert out.actions.shape == (6, 2) and out.values.shape == (6,)
    # Both parts matter: changing either input changes the features.
    features = encoder(model.preprocessor(obs))
    changed = dict(obs, state=obs["state"] + 1.0)
    assert not torch.allclose(features, encoder(model.preprocessor(changed)))
    changed = dict(obs, pixels=255 - obs["pixels"])
    assert not torch.allclose(features, encoder(model.preprocessor(changed)))


def test_two_image_keys_each_get_a_conv_head():
    space = gym.spaces.Dict({"a": gym.spaces.Box(0, 255, (1, 84, 84), np.uint8),
                             "b": gym.spaces.Box(0, 255, (2, 84, 84), np.uint8)})
    model = ActorCritic(cfg_of("--encoder_conv_mlp_layers", "8"), space, gym.spaces.Discrete(2))
    assert model.actor_trunk.encoder.out_size == 16
    out = model.policy_step({"a": uint8_images(2, (1, 84, 84)), "b": uint8_images(2, (2, 84, 84))})
    assert out.actions.shape == (2,)


def test_vector_observations_keep_the_mlp_encoder():
    model = ActorCritic(cfg_of(), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    assert isinstance(model.actor_trunk.encoder, MlpEncoder)


def test_channels_last_images_compute_what_channels_first_ones_do():
    cfg = cfg_of("--encoder_conv_architecture=convnet_atari", "--encoder_conv_mlp_layers", "8")
    hwc = ActorCritic(cfg, gym.spaces.Box(0, 255, (84, 84, 4), np.uint8), gym.spaces.Discrete(2))
    chw = ActorCritic(cfg, ATARI_OBS, gym.spaces.Discrete(2))
    chw.load_state_dict(hwc.state_dict())  # the same weights: the layout is not in the model
    assert hwc.actor_trunk.encoder.image_encoders[0].conv_out_size == 64 * 7 * 7
    images = uint8_images(2)  # [2, 4, 84, 84]
    ours = hwc({"obs": images.permute(0, 2, 3, 1).contiguous()})
    theirs = chw({"obs": images})
    for a, b in zip(ours[:2], theirs[:2]):
        assert torch.allclose(a, b, atol=1e-5)


def test_an_image_too_small_for_the_conv_architecture_goes_to_the_mlp():
    space = gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)
    model = ActorCritic(cfg_of("--encoder_conv_architecture=convnet_atari"), space,
                        gym.spaces.Discrete(2))
    assert isinstance(model.actor_trunk.encoder, MlpEncoder)
    assert model.actor_trunk.encoder.in_size == 3 * 16 * 16
    assert "encoder: MLP over 'obs' (768 inputs" in "; ".join(model.describe_observations())
    assert model.policy_step({"obs": uint8_images(2, (3, 16, 16))}).actions.shape == (2,)


@pytest.mark.parametrize("arch", sorted(CONV_ARCHITECTURES))
def test_channels_last_weights_compute_what_contiguous_ones_do(arch):
    model = ActorCritic(cfg_of(f"--encoder_conv_architecture={arch}"), ATARI_OBS, gym.spaces.Discrete(6))
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    reference = ActorCritic(cfg_of(f"--encoder_conv_architecture={arch}"), ATARI_OBS, gym.spaces.Discrete(6))
    reference.load_state_dict(model.state_dict())
    reference.to(memory_format=torch.contiguous_format)
    obs = {"obs": uint8_images(3)}
    for ours, theirs in zip(model(obs)[:2], reference(obs)[:2]):  # action params, values
        assert torch.allclose(ours, theirs, atol=1e-5)
