"""Normalizers, the actor-critic's shapes and options, and encoder, core and decoder registration."""

import importlib.util
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers import REPO

from asyncrl.envs.command_line import parse_args
from asyncrl.model import core, decoders, encoders
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.model.normalization import RunningMeanStd
from asyncrl.utils.errors import UserError


def cfg_of(*argv):
    # Feed-forward unless a test asks for the core (recurrent cores: test_recurrent.py).
    return parse_args(["--env=Pendulum-v1", "--use_rnn=false", *argv], scope="train",
                      prog="test").config()


def test_running_mean_std_matches_numpy_over_several_batches():
    rms = RunningMeanStd((3,), clip=None)
    data = np.random.default_rng(0).normal(2.0, 3.0, size=(1000, 3))
    for chunk in np.array_split(data, 7):
        rms.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-3)
    x = torch.tensor([[5.0, -1.0, 2.0]])
    assert torch.allclose(rms.denormalize(rms.normalize(x)), x, atol=1e-4)


def test_statistics_of_scaled_images_are_taken_from_the_raw_bytes():
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (300, 4, 5, 3),
                                                               dtype=np.uint8))
    scaled = (images.double() - 10.0) / 255.0
    rms = RunningMeanStd((4, 5, 3))
    for chunk in images.split(64):
        rms.update(chunk, subtract=10.0, scale=255.0)
    np.testing.assert_allclose(rms.mean.numpy(), scaled.mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(rms.var.numpy(), scaled.var(0, unbiased=False).numpy(), rtol=1e-4)
    expected = ((scaled - rms.mean) / torch.sqrt(rms.var + rms.eps)).clamp(-5, 5)
    got = rms.normalize(images.float(), subtract=10.0, scale=255.0)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)


def test_normalize_clips_to_five_standard_deviations():
    rms = RunningMeanStd((1,))
    rms.update(torch.randn(1000, 1))
    assert rms.normalize(torch.tensor([[1000.0]])).item() == pytest.approx(5.0)


def test_discrete_model_shapes_shared_and_separate():
    obs_space = gym.spaces.Box(-1, 1, (4,))
    for share in ("true", "false"):
        cfg = cfg_of("--encoder_mlp_layers", "16", "8", "--decoder_mlp_layers", "6",
                     f"--actor_critic_share_weights={share}")
        model = ActorCritic(cfg, obs_space, gym.spaces.Discrete(3))
        params, values, _ = model({"obs": torch.zeros(5, 4)})
        assert params.shape == (5, 3) and values.shape == (5,)
        out = model.policy_step({"obs": torch.randn(5, 4)})
        assert out.actions.shape == (5,) and out.log_probs.shape == (5,)
        assert (model.critic_trunk is None) == (share == "true")


def test_continuous_parameterizations():
    obs_space = gym.spaces.Box(-1, 1, (3,))
    action_space = gym.spaces.Box(-2, 2, (2,))
    cfg = cfg_of("--encoder_mlp_layers", "8", "--adaptive_stddev=false", "--initial_stddev=0.5",
                 "--continuous_tanh_scale=1.5")
    model = ActorCritic(cfg, obs_space, action_space)
    params, _, _ = model({"obs": torch.randn(64, 3) * 100})
    means, log_stds = params.chunk(2, dim=1)
    assert means.abs().max() <= 1.5 + 1e-6
    assert torch.allclose(log_stds, torch.full_like(log_stds, np.log(0.5)))
    adaptive = ActorCritic(cfg_of("--initial_stddev=0.5", "--policy_initialization=xavier_uniform"),
                           obs_space, action_space)
    assert adaptive.policy_step({"obs": torch.randn(4, 3)}).actions.shape == (4, 2)


def test_tuple_parameterization_shapes_only_its_box_part():
    # Tuple(Discrete(3), Box(2)): params are 3 logits, 2 means, 2 log-stds.
    obs_space = gym.spaces.Box(-1, 1, (3,))
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(-2, 2, (2,))))
    fixed = ActorCritic(cfg_of("--encoder_mlp_layers", "8", "--adaptive_stddev=false",
                               "--initial_stddev=0.5", "--continuous_tanh_scale=1.5"),
                        obs_space, action_space)
    assert fixed.action_parameterization.head.out_features == 3 + 2
    assert fixed.action_parameterization.log_std.shape == (2,)
    params, _, _ = fixed({"obs": torch.randn(64, 3) * 100})
    logits, means, log_stds = params.split([3, 2, 2], dim=1)
    assert means.abs().max() <= 1.5 + 1e-6 and logits.abs().max() > 1.5  # tanh on means only
    assert torch.allclose(log_stds, torch.full_like(log_stds, np.log(0.5)))
    # Adaptive: the head's log-stds are offset by log(initial_stddev); zero features (zero
    # observations, zero biases) give logits 0, means 0 and exactly that offset.
    adaptive = ActorCritic(cfg_of("--encoder_mlp_layers", "8", "--initial_stddev=0.5"),
                           obs_space, action_space)
    params, _, _ = adaptive({"obs": torch.zeros(2, 3)})
    expected = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, np.log(0.5), np.log(0.5)]] * 2, dtype=torch.float32)
    torch.testing.assert_close(params, expected)
    out = adaptive.policy_step({"obs": torch.randn(4, 3)})
    assert out.actions.shape == (4, 3) and out.actions.dtype == torch.float32
    assert out.actions[:, 0].eq(out.actions[:, 0].round()).all()


def test_multi_discrete_model_outputs_integer_actions_per_component():
    model = ActorCritic(cfg_of("--encoder_mlp_layers", "8"), gym.spaces.Box(-1, 1, (3,)),
                        gym.spaces.MultiDiscrete([2, 5], start=[3, 3]))
    assert model.action_parameterization.head.out_features == 7
    out = model.policy_step({"obs": torch.randn(100, 3)})
    assert out.actions.shape == (100, 2) and out.actions.dtype == torch.int64
    assert out.actions.min() >= 0 and out.actions[:, 0].max() <= 1 and out.actions[:, 1].max() <= 4
    deterministic = model.policy_step({"obs": torch.randn(4, 3)}, deterministic=True)
    assert deterministic.actions.shape == (4, 2)


def test_orthogonal_initialization_with_gain():
    cfg = cfg_of("--encoder_mlp_layers", "16", "--policy_init_gain=2.0")
    model = ActorCritic(cfg, gym.spaces.Box(-1, 1, (16,)), gym.spaces.Discrete(2))
    weight = model.actor_trunk.encoder.net[0].weight
    assert torch.allclose(weight @ weight.T, 4.0 * torch.eye(16), atol=1e-4)
    assert torch.all(model.actor_trunk.encoder.net[0].bias == 0)


def test_output_layers_take_their_own_gains_as_cleanrl_initializes_them():
    cfg = cfg_of("--encoder_mlp_layers", "16", "--policy_init_gain=1.4142135",
                 "--policy_head_init_gain=0.01", "--value_head_init_gain=1.0",
                 "--actor_critic_share_weights=false")
    model = ActorCritic(cfg, gym.spaces.Box(-1, 1, (16,)), gym.spaces.Discrete(4))
    for trunk in (model.actor_trunk, model.critic_trunk):
        hidden = trunk.encoder.net[0].weight
        assert torch.allclose(hidden @ hidden.T, 2.0 * torch.eye(16), atol=1e-4)
    policy_head = model.action_parameterization.head.weight  # [4, 16]: rows orthogonal
    assert torch.allclose(policy_head @ policy_head.T, 1e-4 * torch.eye(4), atol=1e-8)
    value_head = model.critic_head.weight  # [1, 16]
    assert torch.allclose(value_head.norm(), torch.tensor(1.0), atol=1e-5)
    logits = model.policy_step({"obs": torch.rand(8, 16) * 2 - 1}).action_params
    assert logits.abs().max() < 0.05  # near-uniform first policy, whatever the observation
    default = ActorCritic(cfg_of("--encoder_mlp_layers", "16"), gym.spaces.Box(-1, 1, (16,)),
                          gym.spaces.Discrete(4)).action_parameterization.head.weight
    assert torch.allclose(default @ default.T, torch.eye(4), atol=1e-4)


def test_output_layer_gains_need_an_initialization_that_takes_a_gain():
    with pytest.raises(UserError, match="--policy_head_init_gain is a gain of the orthogonal"):
        cfg_of("--policy_initialization=torch_default", "--policy_head_init_gain=0.01")


def test_input_normalization_and_keys():
    cfg = cfg_of("--obs_subtract_mean=1", "--obs_scale=2", "--normalize_input=false")
    model = ActorCritic(cfg, gym.spaces.Box(-5, 5, (2,)), gym.spaces.Discrete(2))
    x = model.preprocessor({"obs": torch.tensor([[3.0, 5.0]])})["obs"]
    assert torch.equal(x, torch.tensor([[1.0, 2.0]]))
    with pytest.raises(UserError, match="no observation key 'pixels'"):
        ActorCritic(cfg_of("--normalize_input_keys", "pixels"), gym.spaces.Box(-1, 1, (2,)),
                    gym.spaces.Discrete(2))


def test_registered_encoder_factory_is_used():
    class Tiny(encoders.Encoder):
        def __init__(self, cfg, obs_space):
            super().__init__()
            self.linear = torch.nn.Linear(4, 7)
            self.out_size = 7

        def forward(self, obs):
            return self.linear(obs["obs"])

    encoders.register_encoder_factory(Tiny)
    try:
        model = ActorCritic(cfg_of(), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
        assert isinstance(model.actor_trunk.encoder, Tiny)
        assert model.critic_head.in_features == 7
        recurrent = ActorCritic(cfg_of("--use_rnn=true", "--rnn_size=5"), gym.spaces.Box(-1, 1, (4,)),
                                gym.spaces.Discrete(2))
        assert recurrent.actor_trunk.core.rnn.input_size == 7
        assert recurrent.critic_head.in_features == 5
    finally:
        encoders.register_encoder_factory(encoders.default_encoder_factory)


def example_module(name: str):
    """A script of examples/ as a module (examples/ is not a package)."""
    path = REPO / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def custom_model():
    """The core and decoder of examples/custom_model.py, registered for the test only."""
    example = example_module("custom_model")
    core.register_core_factory(example.LeakyMemoryCore)
    decoders.register_decoder_factory(example.NormDecoder)
    yield example
    core.register_core_factory(core.default_core_factory)
    decoders.register_decoder_factory(decoders.default_decoder_factory)


def test_registered_core_and_decoder_are_used_in_both_trunks(custom_model):
    cfg = cfg_of("--use_rnn=true", "--rnn_size=6", "--encoder_mlp_layers", "8",
                 "--decoder_mlp_layers", "5", "--actor_critic_share_weights=false")
    model = ActorCritic(cfg, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    for trunk in (model.actor_trunk, model.critic_trunk):
        assert isinstance(trunk.core, custom_model.LeakyMemoryCore)
        assert isinstance(trunk.decoder, custom_model.NormDecoder)
        assert trunk.core.inp.in_features == 8 and trunk.decoder.hidden.in_features == 12
    assert model.rnn_state_size == 6 + 6  # the actor's memory, then the critic's
    assert model.critic_head.in_features == 5
    assert {"actor_trunk.core.keep_logit", "critic_trunk.decoder.norm.weight"} <= set(model.state_dict())
    out = model.policy_step({"obs": torch.randn(3, 4)})
    assert out.rnn_states.shape == (3, 12) and out.rnn_states.abs().sum() > 0


@pytest.mark.parametrize("share", ["true", "false"])
def test_custom_recurrent_core_sequence_gives_what_steps_give(custom_model, share):
    torch.manual_seed(0)
    cfg = cfg_of("--use_rnn=true", "--rnn_size=6", "--encoder_mlp_layers", "8",
                 f"--actor_critic_share_weights={share}")
    model = ActorCritic(cfg, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3))
    T, B = 6, 3
    obs, states = torch.randn(T, B, 4), torch.randn(B, model.rnn_state_size)
    dones = torch.zeros(T, B)
    dones[1, 0] = dones[3, 1] = dones[4, 1] = dones[5, 2] = 1.0  # the last one changes nothing
    params, values, final = model.forward_sequence({"obs": obs}, states, dones)
    step_states = states
    for t in range(T):  # as the rollout workers act: the state is zeroed after a done
        step_params, step_values, next_states = model({"obs": obs[t]}, step_states)
        torch.testing.assert_close(params.view(T, B, 3)[t], step_params)
        torch.testing.assert_close(values.view(T, B)[t], step_values)
        step_states = next_states * (1.0 - dones[t])[:, None]
    torch.testing.assert_close(final, next_states)


class _Stateless(core.Core):
    def __init__(self, cfg, in_size):
        super().__init__()
        self.linear = torch.nn.Linear(in_size, 3)
        self.out_size, self.state_size = 3, 0

    def forward(self, x, states):
        return self.linear(x), None


def test_stateless_registered_core_keeps_the_policy_feed_forward():
    core.register_core_factory(_Stateless)
    try:
        model = ActorCritic(cfg_of(), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
        assert model.rnn_state_size == 0 and model.critic_head.in_features == 3
        params, values, states = model.forward_sequence({"obs": torch.randn(4, 2, 4)}, None,
                                                        torch.zeros(4, 2))
        assert params.shape == (8, 2) and values.shape == (8,) and states is None
    finally:
        core.register_core_factory(core.default_core_factory)


class _NoSizes(torch.nn.Module):
    def __init__(self, cfg, in_size):
        super().__init__()
        self.out_size = 4


class _NoSequence(_NoSizes):
    def __init__(self, cfg, in_size):
        super().__init__(cfg, in_size)
        self.state_size = 4


@pytest.mark.parametrize("register, factory, argv, message", [
    (core.register_core_factory, _NoSizes, ["--use_rnn=true"],
     "a registered core must set an integer attribute state_size >= 0 (_NoSizes.state_size is None)"),
    (core.register_core_factory, _NoSequence, ["--use_rnn=true"],
     "a registered core must implement sequence(x, states, dones) (_NoSequence does not; "),
    (core.register_core_factory, lambda cfg, in_size: torch.nn.Linear(in_size, 2), ["--use_rnn=true"],
     "a registered core must set an integer attribute out_size >= 1 (Linear.out_size is None)"),
    (core.register_core_factory, lambda cfg, in_size: "gru", [],
     "a registered core factory must return a torch.nn.Module, not str"),
    (core.register_core_factory, lambda cfg, in_size: example_module("custom_model")
     .LeakyMemoryCore(cfg, in_size), ["--use_rnn=false", "--rnn_size=4"],
     "the core LeakyMemoryCore keeps a state (state_size=4) but --use_rnn=False"),
    (decoders.register_decoder_factory, lambda cfg, in_size: torch.nn.Linear(in_size, 2), [],
     "a registered decoder must set an integer attribute out_size >= 1"),
])
def test_registered_factory_results_are_checked(register, factory, argv, message):
    default = (core.default_core_factory if register is core.register_core_factory
               else decoders.default_decoder_factory)
    register(factory)
    try:
        with pytest.raises(UserError, match=re.escape(message)):
            ActorCritic(cfg_of(*argv), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    finally:
        register(default)
