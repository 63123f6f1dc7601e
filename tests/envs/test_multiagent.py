"""Multi-agent envs: a row per agent in the env vector and the buffers; the rendezvous env trains."""

import numpy as np
import pytest
import torch

from helpers.harness import collect
from helpers.training_process import finish, start

from asyncrl.envs.command_line import parse_args
from asyncrl.envs.rendezvous import Rendezvous
from asyncrl.envs.vector import EnvVector
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.runtime.rollout_worker import worker_env_indices

RENDEZVOUS = ["-m", "asyncrl.train", "--env=rendezvous"]


def test_each_agent_has_a_row_and_its_own_episodes():
    envs = EnvVector(lambda i: Rendezvous(episode_length=3), num_envs=2, seed=0)
    assert envs.agents_per_env == 2 and envs.obs["obs"].shape == (4, 2)
    # Each agent sees itself first, then its partner.
    assert np.array_equal(envs.obs["obs"][0], envs.obs["obs"][1][::-1])
    rows = np.arange(2, 4)  # both agents of env 1
    for _ in range(2):
        result = envs.step(rows, np.array([2, 0]))  # agent 0 right, agent 1 left
        assert not result.episodes
    before = envs.obs["obs"][2:].copy()
    result = envs.step(rows, np.array([1, 1]))
    assert [e.length for e in result.episodes] == [3, 3]
    assert result.episodes[0].episode_return == result.episodes[1].episode_return
    # A time limit: the last observations are kept for bootstrapping, the env restarted itself.
    assert result.truncated_indices.tolist() == [2, 3]
    assert np.array_equal(result.final_obs["obs"], before)
    assert envs.truncated[2:].all() and not envs.truncated[:2].any()


def test_agents_fill_buffer_rows_of_their_worker_and_split():
    cfg = parse_args(["--env=rendezvous", "--num_workers=2", "--num_envs_per_worker=4",
                      "--worker_num_splits=2", "--rollout=8", "--batch_size=32"],
                     scope="train", prog="test").config()
    assert worker_env_indices(cfg, 1, 1, agents_per_env=2).tolist() == [12, 13, 14, 15]
    traj = collect(cfg, rollouts=1).trajectories
    assert traj.rewards.shape == (8, 16)  # 2 workers x 4 envs x 2 agents
    # Trajectories come in row order: partners side by side, sharing every reward and seeing
    # each other's position where they see their own.
    assert torch.equal(traj.rewards[:, 0::2], traj.rewards[:, 1::2])
    assert torch.equal(traj.obs["obs"][:, 0::2], traj.obs["obs"][:, 1::2].flip(-1))


@pytest.mark.slow
def test_rendezvous_agents_learn_to_meet(tmp_path):
    code, out = finish(start(tmp_path, "--serial_mode=false", "--train_for_env_steps=120000",
                             "--seed=1", script=RENDEZVOUS))
    assert code == 0, out
    checkpoint = max((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth"))
    returns = load_checkpoint(checkpoint)["episode_stats"]["returns"]
    # Random walkers average about -9 over an episode; agents that meet get close to 0.
    assert sum(returns) / len(returns) > -3.0, out


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--batched_sampling=true"], "does not support multi-agent envs"),
    (["--async_rl=false", "--num_envs_per_worker=3", "--worker_num_splits=1", "--rollout=8",
      "--batch_size=24", "--num_batches_per_epoch=1"], "x 2 agents per env = 6"),
])
def test_multiagent_specific_bad_input_is_refused(tmp_path, args, message):
    code, out = finish(start(tmp_path, "--train_for_env_steps=1000", *args, script=RENDEZVOUS))
    assert code == 2 and message in out, out
    assert not (tmp_path / "exp").exists()
