"""Every gymnasium observation space: leaves and keys (envs/observations.py), what the model makes
of each (one-hots, bits, scaled images in either layout), and a Dict with every kind of leaf
through training, PBT, resume and enjoy."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers import HELPERS
from helpers.training_process import finish, start

from asyncrl import enjoy
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.observations import dropped_keys_warning, obs_layout
from asyncrl.envs.vector import EnvVector
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.model.actor_critic import ActorCritic, image_layout
from asyncrl.model.conv import ConvEncoder
from asyncrl.model.encoders import MlpEncoder
from asyncrl.utils.errors import UserError

Box, Discrete, MultiDiscrete, MultiBinary = (gym.spaces.Box, gym.spaces.Discrete,
                                             gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def cfg_of(*argv):
    return parse_args(["--env=CartPole-v1", "--use_rnn=false", "--encoder_mlp_layers", "8",
                       *argv], scope="train", prog="test").config()




def test_nested_dicts_and_tuples_become_keyed_leaves_and_text_is_left_out(space_envs):
    layout = obs_layout(space_envs.MixedObs.observation_space)
    # gymnasium's Dict keeps its keys sorted.
    assert layout.keys == ("flags", "goal", "grid", "nested/pair/0", "nested/pair/1", "nested/vec",
                           "speed")
    assert layout.paths["nested/pair/1"] == ("nested", "pair", 1)
    assert [key for key, _ in layout.dropped] == ["mission"]
    assert dropped_keys_warning(layout) == (
        "observation 'mission' (Text) left out: no encoder takes this space (supported: Box (any "
        "rank), Discrete, MultiDiscrete, MultiBinary, and Dicts or Tuples of these (nested too))")
    top_tuple = obs_layout(gym.spaces.Tuple((Discrete(3), Box(0, 1, (2,)))))
    assert top_tuple.keys == ("obs/0", "obs/1") and obs_layout(Discrete(3)).keys == ("obs",)


def test_nothing_usable_is_one_line():
    with pytest.raises(UserError) as info:
        obs_layout(gym.spaces.Dict({"mission": gym.spaces.Text(5)}), "Foo-v0")
    assert str(info.value).startswith("--env=Foo-v0: no usable observation: 'mission' Text(")
    assert "\n" not in str(info.value)


def test_env_vector_stores_every_leaf_as_the_env_gave_it(space_envs):
    envs = EnvVector(lambda i: space_envs.MixedObs(), 2, seed=0)
    env_obs = envs.envs[1]._obs()
    envs.layout.write(envs.obs, 1, env_obs, 1)
    assert envs.obs["goal"][1] == env_obs["goal"] and envs.obs["goal"].dtype == np.int64
    np.testing.assert_array_equal(envs.obs["grid"][1], env_obs["grid"])
    np.testing.assert_array_equal(envs.obs["nested/pair/1"][1], env_obs["nested"]["pair"][1])
    assert envs.obs["speed"].shape == (2,) and "mission" not in envs.obs
    envs.close()


def test_discrete_leaves_are_one_hot_and_bits_are_floats():
    space = gym.spaces.Dict({"d": Discrete(3, start=-1), "md": MultiDiscrete([2, 3], start=[1, 0]),
                             "bits": MultiBinary(3), "x": Box(-1, 1, (), np.float32)})
    model = ActorCritic(cfg_of(), space, Discrete(2))
    pre = model.preprocessor
    assert {k: s.shape for k, s in pre.encoder_space.spaces.items()} == {
        "d": (3,), "md": (5,), "bits": (3,), "x": (1,)}
    obs = {"d": torch.tensor([-1, 1]), "md": torch.tensor([[2, 0], [1, 2]]),
           "bits": torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.int8),
           "x": torch.tensor([0.5, -0.5])}
    out = pre(obs)
    assert out["d"].tolist() == [[1, 0, 0], [0, 0, 1]]
    # Entry 0 (2 categories, start 1) then entry 1 (3 categories, start 0).
    assert out["md"].tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]]
    assert out["bits"].tolist() == [[1, 0, 1], [0, 0, 0]] and out["bits"].dtype == torch.float32
    assert out["x"].shape == (2, 1)
    # Only the Box is normalized; a Discrete named for normalization is refused.
    assert list(pre.normalizers) == ["x"]
    with pytest.raises(UserError, match="observation 'd' is Discrete.*only Box observations are"):
        ActorCritic(cfg_of("--normalize_input_keys", "d"), space, Discrete(2))
    assert model.policy_step(obs).actions.shape == (2,)


def test_uint8_images_are_scaled_to_one_unless_a_scale_is_given():
    space = Box(0, 255, (3, 8, 8), np.uint8)
    obs = {"obs": torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)}
    for argv, expected in ((["--normalize_input=false"], 1.0),
                           (["--normalize_input=false", "--obs_scale=255"], 1.0),
                           (["--normalize_input=false", "--obs_scale=5"], 51.0),
                           (["--normalize_input=false", "--obs_subtract_mean=128"], 127.0)):
        out = ActorCritic(cfg_of(*argv), space, Discrete(2)).preprocessor(obs)["obs"]
        assert out.max().item() == pytest.approx(expected), argv
    floats = ActorCritic(cfg_of("--normalize_input=false"), Box(0, 255, (3, 8, 8)), Discrete(2))
    assert floats.preprocessor({"obs": obs["obs"].float()})["obs"].max().item() == 255.0


@pytest.mark.parametrize("shape, pixel_format, expected", [
    ((240, 320, 3), "auto", "HWC"), ((7, 7, 3), "auto", "HWC"), ((84, 84, 1), "auto", "HWC"),
    ((4, 84, 84), "auto", "CHW"), ((1, 84, 84), "auto", "CHW"),
    ((3, 64, 3), "auto", "CHW"), ((3, 64, 3), "HWC", "HWC"), ((240, 320, 3), "CHW", "CHW"),
])
def test_image_layout_rule(shape, pixel_format, expected):
    assert image_layout(shape, pixel_format) == expected


@pytest.mark.slow
def test_large_hwc_frames_train_through_the_conv_encoder_and_ambiguous_shapes_say_so():
    model = ActorCritic(cfg_of(), gym.spaces.Dict({"screen": Box(0, 255, (240, 320, 3), np.uint8),
                                                   "gamevariables": Box(-1, 1, (1,))}),
                        Discrete(3))
    assert isinstance(model.actor_trunk.encoder, ConvEncoder)
    assert model.preprocessor.encoder_space["screen"].shape == (3, 240, 320)
    described = "; ".join(model.describe_observations())
    assert "'screen' Box(0, 255, (240, 320, 3), uint8): image HWC / 255, normalized" in described
    assert "encoder: convnet_simple over 'screen'; encoder: MLP over 'gamevariables'" in described
    ambiguous = ActorCritic(cfg_of(), Box(0, 255, (3, 64, 3), np.uint8), Discrete(3))
    assert "image CHW (ambiguous: set --pixel_format)" in "; ".join(ambiguous.describe_observations())


def test_small_images_and_other_ranks_go_to_the_mlp():
    space = gym.spaces.Dict({"image": Box(0, 255, (7, 7, 3), np.uint8),
                             "volume": Box(0, 1, (2, 3, 4, 5))})
    model = ActorCritic(cfg_of(), space, Discrete(3))
    assert isinstance(model.actor_trunk.encoder, MlpEncoder)
    assert model.actor_trunk.encoder.in_size == 7 * 7 * 3 + 2 * 3 * 4 * 5


MIXED = ["--env=space_envs:MixedObs-v0", "--use_rnn=false", "--num_workers=2",
         "--num_envs_per_worker=4", "--worker_num_splits=2", "--rollout=8", "--batch_size=64",
         "--encoder_mlp_layers", "32", "--learning_rate=0.003", "--device=cpu", "--seed=3"]


@pytest.mark.slow
def test_every_kind_of_leaf_through_pbt_resume_and_enjoy(tmp_path, monkeypatch):
    # Two policies with PBT rounds from the start, in the parallel runtime.
    pbt = ["--num_policies=2", "--with_pbt=true", "--pbt_period_env_steps=2000",
           "--pbt_start_mutation=0", "--save_every_sec=5"]
    code, out = finish(start(tmp_path, *MIXED, *pbt, "--train_for_env_steps=12000",
                             script=["-m", "asyncrl.train"]), timeout=240)
    assert code == 0, out
    assert "observation 'mission' (Text) left out" in out and "'goal' Discrete(4, start=1): one-hot" in out
    first = [load_checkpoint(max((tmp_path / "exp" / f"checkpoint_p{p}").glob("checkpoint_*")))
             for p in (0, 1)]
    assert first[0]["pbt"]["next_round"] >= 4000  # PBT rounds took place
    # Resume: both policies continue from their checkpoints.
    code, out = finish(start(tmp_path, "--env=space_envs:MixedObs-v0", "--train_for_env_steps=30000",
                             script=["-m", "asyncrl.train"]), timeout=240)
    assert code == 0 and "Resumed policy 0 from env_steps=" in out, out
    last = [load_checkpoint(max((tmp_path / "exp" / f"checkpoint_p{p}").glob("checkpoint_*")))
            for p in (0, 1)]
    assert all(b["policy_version"] > a["policy_version"] for a, b in zip(first, last))
    returns = last[0]["episode_stats"]["returns"]
    assert np.mean(returns) > 4.0, out  # chance is 2 per episode: the one-hot goal was used
    config = json.loads((tmp_path / "exp" / "config.json").read_text())["params"]
    assert config["env"] == "space_envs:MixedObs-v0"
    monkeypatch.syspath_prepend(str(HELPERS))
    episodes = enjoy.evaluate(["--env=space_envs:MixedObs-v0", f"--train_dir={tmp_path}",
                               "--experiment=exp", "--max_num_episodes=5", "--device=cpu",
                               "--eval_deterministic=true"])
    assert len(episodes) == 5 and np.mean([e.episode_return for e in episodes]) > 4.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_kind_of_leaf_gives_on_the_gpu_what_it_gives_on_the_cpu():
    """Preprocessing on the device (HWC uint8 image to CHW / 255, one-hots, bits, masked logits)
    and the model after it: the same parameters and values as on the CPU, with the same weights."""
    space = gym.spaces.Dict({"screen": Box(0, 255, (60, 80, 3), np.uint8), "goal": Discrete(4),
                             "grid": MultiDiscrete([3, 5]), "flags": MultiBinary(2),
                             "speed": Box(-1.0, 1.0, (2,), np.float32),
                             "action_mask": MultiBinary(5)})
    torch.manual_seed(0)
    model = ActorCritic(cfg_of("--normalize_input=false"), space, Discrete(5))
    assert isinstance(model.actor_trunk.encoder, ConvEncoder)
    rng = np.random.default_rng(0)
    obs = {key: torch.as_tensor(np.stack([leaf.sample() for _ in range(16)]))
           for key, leaf in space.spaces.items()}
    obs["action_mask"][:, 0] = 0
    obs["action_mask"][:, 1 + rng.integers(4)] = 1  # something allowed in every row
    expected = model.policy_step(obs, deterministic=True)
    on_gpu = model.to("cuda").policy_step({k: v.to("cuda") for k, v in obs.items()},
                                          deterministic=True)
    # cuDNN's convolutions run in TF32 by default: 10 bits of mantissa, not 23.
    torch.testing.assert_close(on_gpu.action_params.cpu(), expected.action_params, atol=2e-3, rtol=1e-2)
    torch.testing.assert_close(on_gpu.values.cpu(), expected.values, atol=2e-3, rtol=1e-2)
    assert obs["action_mask"].gather(1, on_gpu.actions.cpu().view(-1, 1)).all()
    sampled = model.policy_step({k: v.to("cuda").repeat(64, *[1] * (v.dim() - 1))
                                 for k, v in obs.items()}).actions.cpu()
    assert (sampled != 0).all()  # action 0 is masked in every row
    assert obs["action_mask"].repeat(64, 1).gather(1, sampled.view(-1, 1)).all()
