"""`--batched_sampling`: splits stepped as gymnasium vector envs, autoreset-only steps left out of
learning, vector env failures contained."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers.harness import collect

from asyncrl.algo.learner import Learner
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.vector import BatchedEnvVector, EnvFailureLimit
from asyncrl.utils.errors import UserError

NEXT_STEP, SAME_STEP = gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP


class Countdown(gym.Env):
    """obs = [steps taken]; reward = 1 + action; terminates after `length` steps."""

    observation_space = gym.spaces.Box(0, 100, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int):
        self.length = length
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0 + action, self.t == self.length, False, {}


def countdowns(lengths, mode=NEXT_STEP, time_limit=None):
    def make(first, n):
        def env(i):
            e = Countdown(lengths[first + i])
            return e if time_limit is None else gym.wrappers.TimeLimit(e, time_limit)
        return gym.vector.SyncVectorEnv([lambda i=i: env(i) for i in range(n)], autoreset_mode=mode)
    return make


def test_next_step_autoreset_marks_the_reset_step_invalid():
    envs = BatchedEnvVector(countdowns([2, 3]), num_envs=2, num_splits=1, seed=0)
    both, ones = np.arange(2), np.ones(2, dtype=np.int64)
    flags = []
    for _ in range(4):
        result = envs.step(both, ones)
        flags.append((envs.valid.tolist(), envs.terminated.tolist(), envs.rewards.tolist()))
        if result.episodes:
            assert [(e.episode_return, e.length) for e in result.episodes] == \
                [(4.0, 2)] if len(flags) == 2 else [(6.0, 3)]
    assert flags == [
        ([True, True], [False, False], [2.0, 2.0]),
        ([True, True], [True, False], [2.0, 2.0]),
        ([False, True], [False, True], [0.0, 2.0]),  # env 0 only resets: no transition
        ([True, False], [False, False], [2.0, 0.0]),
    ]
    assert envs.obs["obs"][:, 0].tolist() == [1.0, 0.0]


@pytest.mark.parametrize("mode", [NEXT_STEP, SAME_STEP])
def test_time_limit_ends_keep_the_last_observation(mode):
    envs = BatchedEnvVector(countdowns([10, 10, 10, 10], mode, time_limit=3), num_envs=4,
                            num_splits=2, seed=0)
    split = np.arange(2, 4)
    for _ in range(2):
        assert len(envs.step(split, np.zeros(2)).truncated_indices) == 0
    result = envs.step(split, np.zeros(2))
    assert result.truncated_indices.tolist() == [2, 3]
    assert result.final_obs["obs"][:, 0].tolist() == [3.0, 3.0]
    assert envs.truncated[2:].all() and not envs.terminated[2:].any()
    assert [(e.episode_return, e.length) for e in result.episodes] == [(3.0, 3), (3.0, 3)]
    assert envs.obs["obs"][0, 0] == 0.0  # the other split was not stepped


@pytest.mark.slow
def test_cartpole_uses_gymnasiums_array_implementation():
    cfg = parse_args(["--env=CartPole-v1", "--batched_sampling=true", "--num_envs_per_worker=8",
                      "--worker_num_splits=2", "--decorrelate_envs_on_one_worker=false"],
                     scope="train", prog="test").config()
    got = collect(cfg, rollouts=3)
    traj = got.trajectories
    assert type(got.workers[0].envs.vectors[0].unwrapped).__name__ == "CartPoleVectorEnv"
    assert traj.rewards.shape == (cfg.rollout, 2 * 8 * 3)
    # Every step after an episode end only resets the env: invalid, with reward 0.
    after_end = torch.zeros_like(traj.valid)
    after_end[1:] = traj.dones[:-1] == 1
    assert traj.dones.sum() > 0
    assert torch.equal(traj.valid[1:], ~after_end[1:])
    assert torch.all(traj.rewards[~traj.valid] == 0)
    assert all(e.episode_return == e.length for e in got.episodes)


class Exploding(Countdown):
    def step(self, action):
        raise RuntimeError("boom")


def test_vector_env_that_raises_is_recreated_until_the_limit():
    def make(first, n):
        return gym.vector.SyncVectorEnv([lambda: Exploding(5)] * n)
    envs = BatchedEnvVector(make, num_envs=2, num_splits=1, seed=0, max_failures=2)
    for _ in range(2):
        envs.step(np.arange(2), np.zeros(2))
        assert envs.terminated.all() and (envs.rewards == 0).all()
    with pytest.raises(EnvFailureLimit, match="failed 3 times in a row"):
        envs.step(np.arange(2), np.zeros(2))


def test_vector_env_without_autoreset_is_refused():
    def make(first, n):
        return gym.vector.SyncVectorEnv([lambda: Countdown(3)] * n,
                                        autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    with pytest.raises(UserError, match="autoreset disabled"):
        BatchedEnvVector(make, num_envs=2, num_splits=1, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("vtrace", [False, True])
def test_invalid_steps_do_not_affect_learning(vtrace):
    cfg = parse_args(["--env=CartPole-v1", "--batched_sampling=true", "--num_envs_per_worker=8",
                      "--rollout=16", "--batch_size=256", "--num_batches_per_epoch=2",
                      "--num_epochs=2",
                      f"--with_vtrace={vtrace}", "--shuffle_minibatches=false",
                      "--decorrelate_envs_on_one_worker=false"],
                     scope="train", prog="test").config()
    batch = collect(cfg, rollouts=4).trajectories
    assert not batch.valid.all()
    garbled = batch.select(torch.arange(batch.num_trajectories))
    invalid = ~garbled.valid
    garbled.rewards[invalid] = 1000.0
    garbled.actions[invalid] = 1 - garbled.actions[invalid]
    garbled.log_probs[invalid] = -5.0
    env = gym.make("CartPole-v1")
    weights = []
    for data in (batch, garbled):
        torch.manual_seed(0)
        learner = Learner(cfg, env.observation_space, env.action_space, torch.device("cpu"))
        learner.train(data)
        weights.append(torch.cat([p.detach().flatten() for p in learner.model.parameters()]))
    assert torch.equal(weights[0], weights[1])
