"""The parameter table, the parser it generates, the immutable Config and every bad-input case."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

from asyncrl.config.params import PARAMS, Param
from asyncrl.envs.command_line import parse_args
from asyncrl.config.validate import resolved_recurrence
from asyncrl.envs.registry import EnvFamily, register_env_family, _FAMILIES
from asyncrl.envs.gym_envs import CARTPOLE_DEFAULTS, make_gym_env
from asyncrl.utils.errors import UserError



def cfg_of(*argv: str, scope: str = "train"):
    return parse_args(list(argv), scope=scope, prog="test").config()


def test_table_has_unique_names_and_valid_defaults():
    names = [p.name for p in PARAMS]
    assert len(names) == len(set(names))
    cfg = cfg_of("--env=Pendulum-v1")  # no preset: every table default must pass its own checks
    assert cfg.learning_rate == 1e-4 and cfg.batch_size == 1024 and cfg.gamma == 0.99


def test_both_spellings_booleans_and_lists():
    cfg = cfg_of("--env", "Pendulum-v1", "--learning_rate", "0.01", "--gamma=0.9",
                 "--normalize_input=FALSE", "--with_vtrace", "1", "--shuffle_minibatches=True",
                 "--encoder_mlp_layers", "32", "16", "--decoder_mlp_layers=8,4", "--seed=None",
                 "--train_for_env_steps=1e6")
    assert cfg.learning_rate == 0.01 and cfg.gamma == 0.9
    assert cfg.normalize_input is False and cfg.with_vtrace is True and cfg.shuffle_minibatches
    assert cfg.encoder_mlp_layers == (32, 16) and cfg.decoder_mlp_layers == (8, 4)
    assert cfg.seed is None and cfg.train_for_env_steps == 1_000_000


def test_config_is_immutable_and_replace_makes_a_new_one():
    cfg = cfg_of("--env=CartPole-v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.learning_rate = 1.0
    changed = cfg.replace(learning_rate=0.5)
    assert changed.learning_rate == 0.5 and cfg.learning_rate != 0.5
    assert isinstance(cfg.to_dict()["encoder_mlp_layers"], list)


def test_recurrence_follows_the_core_unless_given():
    assert resolved_recurrence(cfg_of("--env=Pendulum-v1")) == 32  # use_rnn by default
    assert resolved_recurrence(cfg_of("--env=Pendulum-v1", "--use_rnn=false")) == 1
    assert resolved_recurrence(cfg_of("--env=Pendulum-v1", "--recurrence=8")) == 8
    # The presets keep their feed-forward policies; the memory task's is a GRU.
    for env in ("CartPole-v1", "ALE/Pong-v5", "mujoco_halfcheetah", "rendezvous"):
        assert not cfg_of(f"--env={env}").use_rnn, env
    memory = cfg_of("--env=memory_cue")
    assert memory.use_rnn and memory.rnn_type == "gru" and resolved_recurrence(memory) == 32


def test_env_family_preset_overrides_defaults_and_cli_overrides_preset():
    cfg = cfg_of("--env=CartPole-v1")
    assert cfg.encoder_mlp_layers == tuple(CARTPOLE_DEFAULTS["encoder_mlp_layers"])
    assert cfg.learning_rate == CARTPOLE_DEFAULTS["learning_rate"]
    assert cfg_of("--env=CartPole-v1", "--learning_rate=0.5").learning_rate == 0.5


def test_family_extra_params_and_overrides():
    family = EnvFamily(
        name="test_family", matches=lambda n: n == "my_cartpole",
        make_env=lambda name, cfg, i: make_gym_env("CartPole-v1", cfg, i),
        extra_params=(Param("my_difficulty", int, 3, "Difficulty", "my env", minimum=1),),
        default_overrides={"gamma": 0.5})
    register_env_family(family)
    try:
        cfg = cfg_of("--env=my_cartpole", "--my_difficulty=7")
        assert cfg.my_difficulty == 7 and cfg.gamma == 0.5
        with pytest.raises(UserError, match="my_difficulty"):
            cfg_of("--env=my_cartpole", "--my_difficulty=0")
        with pytest.raises(UserError, match="unknown parameter --my_difficulty"):
            cfg_of("--env=CartPole-v1", "--my_difficulty=7")
    finally:
        _FAMILIES.remove(family)


def test_scope_separates_train_and_enjoy_parameters():
    assert cfg_of("--env=CartPole-v1", "--max_num_episodes=3", scope="enjoy").max_num_episodes == 3
    with pytest.raises(UserError, match="unknown parameter --max_num_episodes"):
        cfg_of("--env=CartPole-v1", "--max_num_episodes=3")


@pytest.mark.parametrize("argv, message", [
    (["--env=CartPole-v1", "--batch_size=abc"], "--batch_size=abc is not an integer"),
    (["--env=CartPole-v1", "--gamma=1.5"], "--gamma=1.5 is too large (maximum 1)"),
    (["--env=CartPole-v1", "--num_workers=0"], "--num_workers=0 is too small (minimum 1)"),
    (["--env=CartPole-v1", "--device=tpu"], "--device=tpu is not allowed (choose from: gpu, cpu)"),
    (["--env=CartPole-v1", "--normalize_input=maybe"], "is not a boolean (use true/false or 1/0)"),
    (["--env=CartPole-v1", "--lerning_rate=0.1"], "did you mean --learning_rate?"),
    (["--env=CartPol-v1"], "unknown environment; similar registered envs: CartPole-v1"),
    (["--learning_rate=0.1"], "--env is required"),
    (["--env=CartPole-v1", "--num_envs_per_worker=3", "--worker_num_splits=2"],
     "--num_envs_per_worker=3 must be divisible by --worker_num_splits=2"),
    (["--env=CartPole-v1", "--batch_size=100", "--rollout=32"], "must be a multiple of --rollout"),
    (["--env=CartPole-v1", "--num_workers=2", "--policy_workers_per_policy=3"],
     "--policy_workers_per_policy=3 must not exceed --num_workers=2"),
    (["--env=CartPole-v1", "--lr_adaptive_min=0.1", "--lr_adaptive_max=0.01"], "must not exceed"),
    (["--env=CartPole-v1", "--experiment=a/b"], "must be a plain folder name"),
    (["--env=CartPole-v1", "--async_rl=false", "--num_envs_per_worker=6", "--worker_num_splits=1",
      "--batch_size=64", "--rollout=32", "--num_batches_per_epoch=1"],
     "--async_rl=False needs each training batch to hold whole splits of envs"),
    (["--env=CartPole-v1", "stray"], "unexpected argument 'stray'"),
    (["--env=CartPole-v1", "--use_rnn=true", "--recurrence=5"],
     "--rollout=32 must be a multiple of --recurrence=5"),
    (["--env=CartPole-v1", "--recurrence=0"], "--recurrence=0 is not allowed"),
    (["--env=CartPole-v1", "--recurrence=-2"], "--recurrence=-2 is too small (minimum -1)"),
    (["--env=CartPole-v1", "--rnn_type=rnn"], "--rnn_type=rnn is not allowed (choose from: gru, lstm)"),
    (["--env=CartPole-v1", "--rnn_size=0"], "--rnn_size=0 is too small (minimum 1)"),
    (["--env=CartPole-v1", "--ppo_clip_value=nan"], "--ppo_clip_value=nan is not allowed (a finite number is)"),
    (["--env=CartPole-v1", "--learning_rate=inf"], "--learning_rate=inf is not allowed (a finite number is)"),
])
def test_bad_input_is_one_clear_error(argv, message):
    with pytest.raises(UserError) as info:
        cfg_of(*argv)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def run_cli(module: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["--env=CartPole-v1", "--gamma=2"],
    ["--env=CartPol-v1"],
    ["--env=CartPole-v1", "--lerning_rate=1"],
    ["--env=CartPole-v1", "--num_envs_per_worker=3", "--worker_num_splits=2"],
])
def test_cli_bad_input_exit_2_one_line_nothing_on_disk(tmp_path, argv):
    result = run_cli("asyncrl.train", *argv, "--train_dir=runs", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asyncrl: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_help_lists_groups_and_preset_defaults(tmp_path):
    result = run_cli("asyncrl.train", "--env=CartPole-v1", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "reinforcement learning:" in text and "--with_vtrace" in text
    assert "--encoder_mlp_layers" in text and "(default: 64 64)" in text
    assert list(tmp_path.iterdir()) == []


def test_parameter_reference_page_is_generated_from_the_table():
    from asyncrl.config.docs import PAGE, parameters_page

    text = PAGE.read_text()
    assert text == parameters_page(), "stale: run python -m asyncrl.config.docs --write"
    for p in PARAMS:
        assert f"`--{p.name}`" in text
