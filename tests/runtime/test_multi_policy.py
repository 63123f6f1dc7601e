"""Several policies in one run: rows assigned to policies, experience routed to each policy's own
learner, per-policy checkpoints, summaries, evaluation and refusals."""

import json

import numpy as np
import pytest
import torch

from helpers.training_process import finish, start

from asyncrl import enjoy, plot
from asyncrl.envs.command_line import parse_args
from asyncrl.config.validate import validate_for_env
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.runtime.rollout_worker import row_policies
from asyncrl.utils.errors import UserError


def cfg_of(*argv, env="CartPole-v1"):
    return parse_args([f"--env={env}", *argv], "train", "test").config()


def test_envs_or_agents_take_turns_among_policies():
    cfg = cfg_of("--num_policies=3", "--num_workers=2", "--num_envs_per_worker=3")
    assert row_policies(cfg).tolist() == [0, 1, 2, 0, 1, 2]
    two = cfg_of("--num_policies=2", "--num_workers=1", "--num_envs_per_worker=3")
    # Two agents per env: mixed, an env's agents act for different policies; else envs take turns.
    assert row_policies(two, agents_per_env=2).tolist() == [0, 1, 0, 1, 0, 1]
    unmixed = cfg_of("--num_policies=2", "--num_workers=1", "--num_envs_per_worker=3",
                     "--pbt_mix_policies_in_one_env=False")
    assert row_policies(unmixed, agents_per_env=2).tolist() == [0, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("argv, agents, message", [
    (["--num_policies=5", "--num_workers=2", "--num_envs_per_worker=2"], 1,
     "--num_policies=5 needs at least as many envs as policies"),
    (["--num_policies=3", "--num_workers=1", "--num_envs_per_worker=1"], 2,
     "--num_policies=3 needs at least as many agents as policies"),
    (["--num_policies=2", "--async_rl=False", "--num_envs_per_worker=3", "--worker_num_splits=1"], 1,
     "to divide evenly among the policies"),
])
def test_policies_without_envs_are_refused(argv, agents, message):
    """Refused at once, or once the env's number of agents is known."""
    with pytest.raises(UserError, match=message):
        validate_for_env(cfg_of(*argv, env="rendezvous"), agents)


def test_with_pbt_needs_a_population():
    with pytest.raises(UserError, match="--with_pbt=True needs a population"):
        cfg_of("--with_pbt=True")


@pytest.mark.slow
def test_each_policy_learns_from_its_own_experience(tmp_path):
    """Policy 1 cannot learn (learning rate 0): if any of policy 0's experience, weights or
    statistics reached it (or the other way round), the two would not part ways."""
    code, out = finish(start(
        tmp_path, "--serial_mode=False", "--num_policies=2", "--num_workers=2",
        "--num_envs_per_worker=4", "--rollout=32", "--batch_size=512", "--seed=1",
        "--policy_initial_hyperparameters", "1:learning_rate=0", "--train_for_env_steps=25000",
        "--experiment_summaries_interval=1"), timeout=240)
    assert code == 0, out
    assert "Stopped: reached train_for_env_steps=25000" in out
    states = [load_checkpoint(sorted((tmp_path / "exp" / f"checkpoint_p{p}").glob("checkpoint_*"))[-1])
              for p in (0, 1)]
    returns = [np.mean(state["episode_stats"]["returns"]) for state in states]
    assert returns[0] > 60 and returns[1] < 35, (returns, out)
    assert states[0]["hyperparameters"]["learning_rate"] == 3e-3
    assert states[1]["hyperparameters"]["learning_rate"] == 0.0
    assert all(state["env_steps"] >= 25000 for state in states)
    assert states[1]["policy_version"] > 0  # it trained (on its own experience), learning nothing
    curves = plot.read_curves(tmp_path / "exp")
    assert [c.label for c in curves] == ["exp p0", "exp p1"]
    config = json.loads((tmp_path / "exp" / "config.json").read_text())["params"]
    assert config["num_policies"] == 2

    episodes = enjoy.evaluate(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=exp",
                               "--policy_index=0", "--max_num_episodes=3", "--device=cpu"])
    assert np.mean([e.episode_return for e in episodes]) > 60
    with pytest.raises(UserError, match="--policy_index=2 is out of range"):
        enjoy.evaluate(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=exp",
                        "--policy_index=2"])


@pytest.mark.slow
def test_resume_keeps_the_number_of_policies(tmp_path):
    code, out = finish(start(tmp_path, "--serial_mode=True", "--num_policies=2", "--num_workers=1",
                             "--num_envs_per_worker=2", "--worker_num_splits=1", "--rollout=16",
                             "--batch_size=32", "--train_for_env_steps=200"))
    assert code == 0, out
    code, out = finish(start(tmp_path, "--num_policies=3"))
    assert code == 2 and "--num_policies=3 cannot change that on resume" in out


@pytest.mark.slow
def test_device_gpu_without_cuda_warns_once_for_the_whole_run(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device=gpu uses it")
    code, out = finish(start(tmp_path, "--serial_mode=False", "--device=gpu", "--num_policies=2",
                             "--policy_workers_per_policy=2", "--num_workers=2",
                             "--num_envs_per_worker=2", "--worker_num_splits=1", "--rollout=16",
                             "--batch_size=32", "--train_for_env_steps=200"))
    assert code == 0, out
    assert out.count("--device=gpu but CUDA is not available: running on the CPU") == 1, out
