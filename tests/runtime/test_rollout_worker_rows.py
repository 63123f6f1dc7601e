"""The rows of the trajectory buffers a rollout worker fills: those of its splits, which the
runner hands back to the slot pools when the worker is respawned."""

import numpy as np
import pytest

from asyncrl.envs.command_line import parse_args
from asyncrl.runtime.rollout_worker import worker_env_indices, worker_rows


@pytest.mark.parametrize("agents", [1, 2])
def test_a_workers_rows_are_those_of_its_splits(agents):
    cfg = parse_args(["--env=CartPole-v1", "--num_workers=3", "--num_envs_per_worker=4",
                      "--worker_num_splits=2"], "train", "test").config()
    everything = np.arange(3 * 4 * agents)
    for w in range(3):
        splits = np.concatenate([worker_env_indices(cfg, w, s, agents) for s in range(2)])
        assert everything[worker_rows(cfg, w, agents)].tolist() == splits.tolist()
    assert worker_rows(cfg, 1, agents) == slice(4 * agents, 8 * agents)
