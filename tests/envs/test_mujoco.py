"""The MuJoCo env family (names, Sample Factory's preset, the error without mujoco, a tiny
training run) and the one-line error for gymnasium's other optional env groups (Box2D)."""

import json
import sys

import pytest
from helpers.install_hints import assert_train_names_extra

from asyncrl import train
from asyncrl.envs.command_line import parse_args
from asyncrl.envs import mujoco
from asyncrl.envs.registry import find_env_family
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.utils.errors import UserError


def cfg_of(*argv):
    return parse_args(list(argv), scope="train", prog="test").config()


def test_short_names_and_raw_ids_belong_to_the_family_and_typos_are_suggested():
    # gymnasium registers its MuJoCo ids whether or not mujoco is installed.
    assert mujoco.mujoco_env_id("mujoco_halfcheetah") == "HalfCheetah-v5"
    assert mujoco.mujoco_env_id("mujoco_walker") == "Walker2d-v5"
    assert mujoco.mujoco_env_id("Ant-v4") == "Ant-v4"
    for name in ("mujoco_halfcheetah", "mujoco_humanoid", "Hopper-v5", "Humanoid-v5", "Ant-v4"):
        assert find_env_family(name).name == "mujoco", name
    assert find_env_family("Pendulum-v1").name == "gymnasium"
    with pytest.raises(UserError, match="similar registered envs: mujoco_halfcheetah"):
        find_env_family("mujoco_halfcheeta")


def test_preset_is_sample_factorys_and_the_command_line_overrides_it():
    cfg = cfg_of("--env=mujoco_halfcheetah")
    assert cfg.encoder_mlp_layers == (64, 64) and cfg.nonlinearity == "tanh"
    assert (cfg.learning_rate, cfg.kl_loss_coeff, cfg.value_loss_coeff) == (0.00295, 0.1, 1.3)
    assert (cfg.batch_size, cfg.num_batches_per_epoch, cfg.num_epochs, cfg.rollout) == (1024, 4, 2, 64)
    assert cfg.adaptive_stddev is False and cfg.policy_initialization == "torch_default"
    assert cfg.async_rl is False and cfg.value_bootstrap is True
    assert cfg_of("--env=HalfCheetah-v5").kl_loss_coeff == 0.1  # raw ids get the preset too
    assert cfg_of("--env=mujoco_ant", "--learning_rate=1e-4").learning_rate == 1e-4
    assert cfg_of("--env=Pendulum-v1").kl_loss_coeff == 0.0


def test_missing_mujoco_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mujoco", None)  # import mujoco raises ImportError
    mujoco._require_mujoco.cache_clear()
    try:
        assert_train_names_extra("mujoco_hopper", "mujoco", tmp_path, capsys)
    finally:
        mujoco._require_mujoco.cache_clear()


def test_missing_box2d_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    # gymnasium imports its Box2D envs on first use: make it import them again, without Box2D.
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "Box2D", None)
    assert_train_names_extra("LunarLander-v3", "box2d", tmp_path, capsys)


@pytest.mark.slow
def test_tiny_halfcheetah_training_run_uses_the_preset(tmp_path):
    pytest.importorskip("mujoco")
    argv = ["--env=mujoco_halfcheetah", f"--train_dir={tmp_path}", "--experiment=cheetah",
            "--serial_mode=true", "--device=cpu", "--num_workers=1", "--num_envs_per_worker=2",
            "--rollout=16", "--batch_size=32", "--train_for_env_steps=256"]
    assert train.main(argv) == 0
    params = json.loads((tmp_path / "cheetah" / "config.json").read_text())["params"]
    assert params["kl_loss_coeff"] == 0.1 and params["learning_rate"] == 0.00295
    state = load_checkpoint(sorted((tmp_path / "cheetah" / "checkpoint_p0").glob("checkpoint_*.pth"))[-1])
    assert state["env_steps"] >= 256 and state["policy_version"] >= 2
    # adaptive_stddev=False: one learned log-std per action dimension (HalfCheetah has 6).
    assert tuple(state["model"]["action_parameterization.log_std"].shape) == (6,)
