"""The examples run as a user runs them, with their own parameters and components."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

from asyncrl.experiment.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow



def run_script(name: str, tmp_path: Path, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "examples" / name), *argv], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=timeout)


def run_example(name: str, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """A tiny training run of the example."""
    return run_script(name, tmp_path, f"--train_dir={tmp_path}", "--num_workers=1",
                      "--num_envs_per_worker=4", "--rollout=16", "--batch_size=64",
                      "--num_batches_per_epoch=1", *argv)


def assert_evaluates(name: str, tmp_path: Path, experiment: str) -> None:
    """The example's `enjoy` plays the trained experiment with the model the script registers."""
    result = run_script(name, tmp_path, "enjoy", "--env=CartPole-v1", f"--experiment={experiment}",
                        f"--train_dir={tmp_path}", "--max_num_episodes=2")
    assert result.returncode == 0, result.stderr
    assert "mean return over 2 episodes" in result.stdout


def test_custom_env_family_with_its_own_parameter(tmp_path):
    result = run_example("custom_env.py", tmp_path, "--env=noisy_cartpole", "--noise_std=0.05",
                         "--experiment=noisy", "--train_for_env_steps=256")
    assert result.returncode == 0, result.stderr
    params = json.loads((tmp_path / "noisy" / "config.json").read_text())["params"]
    assert params["noise_std"] == 0.05
    bad = run_example("custom_env.py", tmp_path, "--env=noisy_cartpole", "--noise_std=-1")
    assert bad.returncode == 2 and "--noise_std=-1.0 is too small" in bad.stderr


def test_custom_encoder(tmp_path):
    result = run_example("custom_encoder.py", tmp_path, "--env=CartPole-v1", "--experiment=enc",
                         "--train_for_env_steps=256")
    assert result.returncode == 0, result.stderr
    assert "Stopped: reached train_for_env_steps=256" in result.stdout
    checkpoint = next((tmp_path / "enc" / "checkpoint_p0").glob("checkpoint_*.pth"))
    assert "actor_trunk.encoder.hidden.weight" in load_checkpoint(checkpoint)["model"]
    assert_evaluates("custom_encoder.py", tmp_path, "enc")


def test_custom_core_and_decoder_train_and_evaluate(tmp_path):
    result = run_example("custom_model.py", tmp_path, "--env=CartPole-v1", "--experiment=model",
                         "--use_rnn=true", "--rnn_size=8", "--actor_critic_share_weights=false",
                         "--train_for_env_steps=256")
    assert result.returncode == 0, result.stderr
    assert "Stopped: reached train_for_env_steps=256" in result.stdout
    checkpoint = next((tmp_path / "model" / "checkpoint_p0").glob("checkpoint_*.pth"))
    weights = load_checkpoint(checkpoint)["model"]
    for trunk in ("actor_trunk", "critic_trunk"):
        assert weights[f"{trunk}.core.keep_logit"].shape == (8,)
        assert f"{trunk}.decoder.norm.weight" in weights
    assert_evaluates("custom_model.py", tmp_path, "model")


def test_time_to_target_reports_when_the_average_return_is_reached(tmp_path):
    # As the docs run it: a preset file and a seed after --.
    result = run_script("time_to_target.py", tmp_path, "--target=100", "--min_episodes=10",
                        "--limit=100", "--", f"--config={REPO / 'configs' / 'cartpole.yaml'}",
                        "--seed=1", f"--train_dir={tmp_path}", timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "target 100.0 reached after" in result.stdout
    assert "Stopped: SIGINT received" in result.stdout  # the run was stopped as Ctrl+C stops it


def test_pbt_benchmark_compares_a_population_with_independent_runs(tmp_path):
    result = run_script("pbt_benchmark.py", tmp_path, "--seconds=3", "--pbt_period_env_steps=2000",
                        f"--train_dir={tmp_path / 'pbt_benchmark'}", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PBT population, average return of the last 100 episodes per policy: " in result.stdout
    assert "best policy: PBT " in result.stdout
    # Both sides ran for their time, not to the CartPole preset's step budget.
    log = (tmp_path / "pbt_benchmark" / "pbt.log").read_text()
    assert "Stopped: reached train_for_seconds=3" in log
