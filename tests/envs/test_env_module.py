"""`--env=module:EnvId`: the module is imported (registering the id), in the parallel runtime's
worker processes too, with one-line errors for a module that cannot be imported or an id it did
not register."""

import os
import subprocess
import sys

import pytest

from helpers import HELPERS, REPO

from asyncrl.envs.command_line import parse_args
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.plot import read_curve
from asyncrl.utils.errors import UserError



@pytest.fixture
def importable(helpers_on_path, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_envs.py").write_text("raise RuntimeError('boom: no licence\\nsecond line')\n")


def test_module_env_id_is_imported_and_made(importable):
    parsed = parse_args(["--env=custom_envs:Corridor-v0"], scope="train", prog="test")
    cfg, family = parsed.config(), parsed.family
    env = family.make_env(cfg.env, cfg, 0)
    assert type(env.unwrapped).__name__ == "Corridor" and family.name == "gymnasium"
    # A module:id of a family with presets gets that family's defaults.
    cartpole = parse_args(["--env=gymnasium:CartPole-v1"], scope="train", prog="test").config()
    assert cartpole.num_envs_per_worker == 32 and cartpole.env == "gymnasium:CartPole-v1"


@pytest.mark.parametrize("env, message", [
    ("no_such_module_xyz:Foo-v0", "--env=no_such_module_xyz:Foo-v0: cannot import module "
     "no_such_module_xyz (ModuleNotFoundError: No module named 'no_such_module_xyz')"),
    ("broken_envs:Foo-v0", "cannot import module broken_envs (RuntimeError: boom: no licence)"),
    ("custom_envs:Corridr-v0", "--env=custom_envs:Corridr-v0: no env Corridr-v0 is registered "
     "after importing custom_envs; similar registered envs: Corridor-v0"),
    (":Corridor-v0", "expected module:EnvId"),
    ("custom_envs:", "expected module:EnvId"),
])
def test_module_env_errors_are_one_line(importable, env, message):
    with pytest.raises(UserError) as info:
        parse_args([f"--env={env}"], scope="train", prog="test")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_parallel_workers_build_the_module_env(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HELPERS)])}
    result = subprocess.run(
        [sys.executable, "-m", "asyncrl.train", "--env=custom_envs:Corridor-v0",
         f"--train_dir={tmp_path}", "--experiment=exp", "--num_workers=2",
         "--num_envs_per_worker=4", "--rollout=16", "--batch_size=64", "--device=cpu",
         "--encoder_mlp_layers", "16", "--train_for_env_steps=1000", "--episode_counter=true"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    checkpoint = max((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth"))
    stats = load_checkpoint(checkpoint)["episode_stats"]
    assert stats["lengths"] and set(stats["lengths"]) == {5}  # Corridor's, stepped in the workers
    # Its custom statistics came along from the workers: right_moves is each episode's return.
    assert stats["extra"]["right_moves"] == stats["returns"]
    assert stats["extra"]["half_right"] == [r / 2 for r in stats["returns"]]
    assert max(stats["extra"]["episode_number"]) >= 1
    # ... and into the summaries, under episode_extra/.
    right_moves = read_curve(tmp_path / "exp", "episode_extra/right_moves").values
    returns = read_curve(tmp_path / "exp", "episode/return_avg").values
    assert right_moves.tolist() == pytest.approx(returns.tolist())
