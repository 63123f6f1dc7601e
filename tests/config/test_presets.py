"""Preset files (`--config=preset.yaml`): precedence, scopes, errors naming the file, resume, and
every file in configs/."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO

from asyncrl import train
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.atari import ATARI_DEFAULTS
from asyncrl.envs.gym_envs import CARTPOLE_DEFAULTS
from asyncrl.envs.vizdoom import DOOM_DEFAULTS
from asyncrl.utils.errors import UserError

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def preset(tmp_path: Path, text: str, name: str = "preset.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def parsed(*argv: str, scope: str = "train"):
    return parse_args(list(argv), scope=scope, prog="test")


def test_precedence_defaults_family_preset_command_line(tmp_path):
    path = preset(tmp_path, "env: CartPole-v1\nlearning_rate: 3e-3\nnum_epochs: 2\n"
                            "encoder_mlp_layers: [32, 16]\ntrain_for_env_steps: 1e6\n")
    cfg = parsed(f"--config={path}", "--num_epochs=3").config()
    assert cfg.env == "CartPole-v1"
    assert cfg.learning_rate == 0.003  # YAML reads 3e-3 as a string: converted like the CLI does
    assert cfg.num_epochs == 3  # the command line beats the file
    assert cfg.encoder_mlp_layers == (32, 16)  # the file beats the CartPole preset's 64 64
    assert cfg.train_for_env_steps == 1_000_000
    assert cfg.rollout == CARTPOLE_DEFAULTS["rollout"]  # the family preset beats the table
    assert cfg.gae_lambda == 0.95  # the table default
    # --env on the command line beats the file's env (and brings that env's defaults).
    assert parsed(f"--config={path}", "--env=Pendulum-v1").config().rollout == 32


def test_a_preset_serves_train_and_enjoy(tmp_path):
    path = preset(tmp_path, "env: CartPole-v1\nsave_best_after: 5\nmax_num_episodes: 3\n")
    train_args, enjoy_args = parsed(f"--config={path}"), parsed(f"--config={path}", scope="enjoy")
    assert train_args.preset == {"env": "CartPole-v1", "save_best_after": 5}
    assert enjoy_args.preset == {"env": "CartPole-v1", "max_num_episodes": 3}
    assert enjoy_args.config().max_num_episodes == 3


@pytest.mark.parametrize("text, message", [
    ("env: CartPole-v1\nlerning_rate: 0.1\n", "unknown parameter lerning_rate; did you mean "
                                              "learning_rate?"),
    ("env: CartPole-v1\nbatch_size: abc\n", "--batch_size=abc is not an integer"),
    ("env: CartPole-v1\ngamma: 1.5\n", "--gamma=1.5 is too large (maximum 1)"),
    ("env: CartPole-v1\ndevice: tpu\n", "--device=tpu is not allowed (choose from: gpu, cpu)"),
    ("env: CartPole-v1\nnormalize_input: maybe\n", "is not a boolean"),
    ("env: CartPole-v1\nencoder_mlp_layers: [64, 0]\n", "--encoder_mlp_layers=0 is too small"),
    ("env: CartPole-v1\nencoder_mlp_layers: {a: 1}\n", "must be a list of int"),
    ("env: CartPole-v1\nlearning_rate: null\n", "--learning_rate cannot be null"),
    ("env: CartPole-v1\nmax_num_episodes: 0\n", "--max_num_episodes=0 is too small"),  # enjoy-only
    ("env: CartPol-v1\n", "unknown environment"),
    ("env: [1]\n", "--env must be a string"),
    ("- env: CartPole-v1\n", "a preset is a mapping of parameter names to values"),
    ("env: CartPole-v1\n  gamma: 0.9\n", "not valid YAML"),
    ("env: CartPole-v1\nenv_frameskip: 4\n", "unknown parameter env_frameskip"),  # not Atari
])
def test_bad_preset_is_one_clear_error_naming_the_file(tmp_path, text, message):
    path = preset(tmp_path, text)
    with pytest.raises(UserError) as info:
        parsed(f"--config={path}").config()
    assert message in str(info.value)
    if "unknown environment" not in message:
        assert str(info.value).startswith(path)
    assert "\n" not in str(info.value)


def test_missing_preset_file(tmp_path):
    with pytest.raises(UserError, match="--config=nope.yaml: cannot read it"):
        parsed("--env=CartPole-v1", "--config=nope.yaml")


def test_empty_preset_and_env_from_command_line(tmp_path):
    path = preset(tmp_path, "# nothing yet\n")
    assert parsed(f"--config={path}", "--env=CartPole-v1").preset == {}
    with pytest.raises(UserError, match="--env is required"):
        parsed(f"--config={path}")


def run_cli(module: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_cli_bad_preset_exits_2_with_one_line_and_nothing_on_disk(tmp_path):
    (tmp_path / "p.yaml").write_text("env: CartPole-v1\nlerning_rate: 0.1\n")
    result = run_cli("asyncrl.train", "--config=p.yaml", "--train_dir=runs", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("asyncrl: error: p.yaml: unknown parameter lerning_rate; "
                                     "did you mean learning_rate?")
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]


@pytest.mark.slow
def test_help_shows_the_preset_values_as_defaults(tmp_path):
    (tmp_path / "p.yaml").write_text("env: CartPole-v1\nencoder_mlp_layers: [8, 4]\n")
    result = run_cli("asyncrl.enjoy", "--config=p.yaml", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "(default: 8 4)" in " ".join(result.stdout.split()) and "--config PATH" in result.stdout


@pytest.mark.slow
def test_masked_maze_preset_trains_and_evaluates_as_the_docs_say(tmp_path):
    # From the repository root, as docs/environments.md runs it: the preset names the env by
    # module (examples.masked_maze), which the workers import again.
    runs = f"--train_dir={tmp_path}"
    trained = run_cli("asyncrl.train", "--config=configs/masked_maze.yaml", "--experiment=maze",
                      runs, "--train_for_env_steps=4096", cwd=REPO)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "Stopped: reached train_for_env_steps=4096" in trained.stdout
    played = run_cli("asyncrl.enjoy", "--env=examples.masked_maze:MaskedMaze-v0",
                     "--experiment=maze", runs, "--eval_deterministic=true", "--max_num_episodes=5",
                     cwd=REPO)
    assert played.returncode == 0, played.stdout + played.stderr
    assert "mean return over 5 episodes" in played.stdout and "invalid_moves 0," in played.stdout


@pytest.mark.slow
@pytest.mark.parametrize("preset, experiment, steps", [
    ("frozenlake", "frozenlake", 4096), ("minigrid_doorkey", "doorkey", 2048),
    ("mpe2_simple_spread", "simple_spread", 4800), ("vizdoom_basic", "vizdoom_basic", 1024)])
def test_environment_presets_train_as_the_docs_say(tmp_path, preset, experiment, steps):
    """docs/environments.md's learning-results commands, on a budget of a few batches: each
    preset builds its env family, trains and stops by itself with its summary."""
    trained = run_cli("asyncrl.train", f"--config=configs/{preset}.yaml", f"--experiment={experiment}",
                      f"--train_dir={tmp_path}", f"--train_for_env_steps={steps}", cwd=REPO)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert f"Stopped: reached train_for_env_steps={steps}" in trained.stdout
    assert "average return" in trained.stdout
    assert (tmp_path / experiment / "config.json").exists()


def test_there_are_preset_files():
    assert {"cartpole.yaml", "atari_pong.yaml", "pendulum.yaml", "lunarlander.yaml",
            "mujoco_halfcheetah.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_file_in_configs_parses_and_validates(path):
    settings = yaml.safe_load(path.read_text())
    assert isinstance(settings, dict) and "env" in settings
    for scope in ("train", "enjoy"):
        args = parsed(f"--config={path}", scope=scope)
        cfg = args.config()
        for name in args.preset:  # every value of the file lands, as YAML wrote it
            expected = tuple(settings[name]) if isinstance(settings[name], list) else settings[name]
            assert getattr(cfg, name) == expected, name


@pytest.mark.parametrize("name, defaults", [("cartpole.yaml", CARTPOLE_DEFAULTS),
                                            ("atari_pong.yaml", ATARI_DEFAULTS),
                                            ("doom_basic.yaml", DOOM_DEFAULTS)])
def test_shipped_presets_equal_the_family_presets(name, defaults):
    args = parsed(f"--config={REPO / 'configs' / name}")
    family_cfg = parsed(f"--env={args.preset['env']}").config().to_dict()
    assert args.config().to_dict() == family_cfg
    assert set(args.preset) == {"env", *defaults}


TINY = ["--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=4",
        "--worker_num_splits=2", "--rollout=16", "--batch_size=64", "--num_batches_per_epoch=1",
        "--encoder_mlp_layers", "16"]


@pytest.mark.slow
def test_resume_with_a_preset_overrides_stored_values_like_the_command_line(tmp_path):
    first = preset(tmp_path, "env: CartPole-v1\ngamma: 0.9\nlearning_rate: 0.002\n", "a.yaml")
    assert train.main([f"--config={first}", f"--train_dir={tmp_path}", "--experiment=exp",
                       "--train_for_env_steps=128", *TINY]) == 0
    data = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert data["params"]["gamma"] == 0.9 and data["params"]["learning_rate"] == 0.002
    assert f"--config={first}" in data["command_lines"][0]

    # Resumed without --config: the stored values stay.
    assert train.main(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=exp",
                       "--train_for_env_steps=256"]) == 0
    assert json.loads((tmp_path / "exp" / "config.json").read_text())["params"]["gamma"] == 0.9

    # Resumed with another preset: its values override the stored ones, the command line its.
    second = preset(tmp_path, "env: CartPole-v1\ngamma: 0.8\nlearning_rate: 0.001\n", "b.yaml")
    assert train.main([f"--config={second}", f"--train_dir={tmp_path}", "--experiment=exp",
                       "--train_for_env_steps=384", "--learning_rate=0.0005"]) == 0
    data = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert data["params"]["gamma"] == 0.8 and data["params"]["learning_rate"] == 0.0005
    assert data["params"]["rollout"] == 16  # stored; neither file nor command line says it
    assert len(data["command_lines"]) == 3 and f"--config={second}" in data["command_lines"][2]
    log = (tmp_path / "exp" / "asyncrl_log.txt").read_text()
    assert f"Overriding stored gamma=0.9 with 0.8 from --config={second}" in log
    assert "Overriding stored learning_rate=0.002 with 0.0005 from the command line" in log
