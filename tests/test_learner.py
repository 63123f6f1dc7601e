"""The learner on synthetic trajectories, and acting into trajectories (collector, accumulator)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from asyncrl.algo.learner import Learner
from asyncrl.algo.trajectories import Trajectories, TrajectoryAccumulator
from asyncrl.config.parser import parse_args
from asyncrl.envs.gym_envs import make_gym_env
from asyncrl.envs.vector import EnvVector
from asyncrl.runtime.collector import RolloutCollector, split_indices


def cfg_of(*argv, env="CartPole-v1"):
    return parse_args([f"--env={env}", "--num_workers=2", "--num_envs_per_worker=4",
                       "--worker_num_splits=2", "--rollout=8", "--batch_size=32",
                       "--num_batches_per_epoch=2", "--encoder_mlp_layers", "16", *argv],
                      scope="train", prog="test").config()


def collect(cfg, seed=0):
    torch.manual_seed(seed)
    envs = EnvVector(lambda i: make_gym_env(cfg.env, cfg, i), cfg.num_workers * cfg.num_envs_per_worker, seed)
    learner = Learner(cfg, envs.envs[0].observation_space, envs.action_space, torch.device("cpu"))
    return envs, learner, RolloutCollector(cfg, envs, learner.model, torch.device("cpu"))


def test_split_indices_take_each_workers_group():
    cfg = cfg_of()
    assert [s.tolist() for s in split_indices(cfg)] == [[0, 1, 4, 5], [2, 3, 6, 7]]


def test_collector_fills_time_major_trajectories():
    cfg = cfg_of()
    envs, learner, collector = collect(cfg)
    traj, episodes = collector.collect(policy_version=3)
    assert traj.obs["obs"].shape == (9, 8, 4) and traj.rewards.shape == (8, 8)
    assert traj.actions.dtype == torch.int64 and traj.action_params.shape == (8, 8, 2)
    assert torch.all(traj.policy_versions == 3)
    # obs[T] is where the envs are now: the next rollout starts from it.
    assert torch.equal(traj.obs["obs"][-1], torch.from_numpy(envs.obs["obs"]))
    # Behaviour log-probs are those of the stored actions under the stored parameters.
    logp = torch.log_softmax(traj.action_params, -1).gather(-1, traj.actions[..., None])[..., 0]
    assert torch.allclose(logp, traj.log_probs, atol=1e-5)
    assert traj.rewards.sum() == 64  # CartPole pays 1 per step


@pytest.mark.parametrize("bootstrap", [True, False])
def test_value_bootstrap_adds_discounted_value_on_truncation(bootstrap):
    cfg = cfg_of(f"--value_bootstrap={bootstrap}", "--gamma=0.5", env="MountainCar-v0")
    envs, learner, collector = collect(cfg)
    with torch.no_grad():  # a value head that predicts exactly 10 (raw units) everywhere
        learner.model.critic_head.weight.zero_()
        learner.model.critic_head.bias.fill_(10.0)
    learner.model.returns_normalizer = None
    for _ in range(25):  # a random MountainCar episode ends by its 200-step time limit
        traj, _ = collector.collect(0)
        if traj.dones.any():
            break
    t, b = (traj.dones == 1).nonzero()[0].tolist()
    assert traj.rewards[t, b].item() == pytest.approx(-1.0 + 0.5 * 10.0 if bootstrap else -1.0)
    assert torch.all(traj.rewards[traj.dones == 0] == -1.0)


def test_learner_iteration_improves_the_surrogate_and_counts_versions():
    cfg = cfg_of("--num_epochs=4", "--learning_rate=0.01")
    _, learner, collector = collect(cfg)
    acc = TrajectoryAccumulator(cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout)
    traj, _ = collector.collect(learner.policy_version)
    acc.add(traj)
    assert acc.ready()
    stats = learner.train(acc.pop_batch())
    assert learner.policy_version == 1 and learner.train_step == 4 * 2
    assert stats["policy_lag_max"] == 0.0 and stats["kl_divergence"] > 0.0
    assert np.isfinite(stats["loss"]) and stats["grad_norm"] > 0.0


@pytest.mark.parametrize("schedule", ["kl_adaptive_minibatch", "kl_adaptive_epoch"])
def test_kl_adaptive_learning_rate_moves(schedule):
    # A tiny KL threshold forces the rate down; a huge one forces it up.
    for threshold, direction in ((1e-9, -1), (1e3, +1)):
        cfg = cfg_of(f"--lr_schedule={schedule}", f"--lr_schedule_kl_threshold={threshold}",
                     "--learning_rate=0.001", "--num_epochs=2")
        _, learner, collector = collect(cfg)
        traj, _ = collector.collect(0)
        traj2, _ = collector.collect(0)
        learner.train(Trajectories.cat([traj, traj2]))
        assert np.sign(learner.learning_rate - 0.001) == direction


def test_accumulator_keeps_leftover_trajectories_for_the_next_batch():
    cfg = cfg_of()
    _, learner, collector = collect(cfg)
    acc = TrajectoryAccumulator(5)
    first, _ = collector.collect(0)
    acc.add(first)  # 8 trajectories: one batch of 5, 3 left
    batch = acc.pop_batch()
    assert batch.num_trajectories == 5 and not acc.ready()
    second, _ = collector.collect(1)
    acc.add(second)
    batch = acc.pop_batch()
    assert batch.policy_versions[0].tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(batch.rewards[:, :3], first.rewards[:, 5:])


def test_vtrace_learner_runs_and_reports_lag():
    cfg = cfg_of("--with_vtrace=true")
    _, learner, collector = collect(cfg)
    old, _ = collector.collect(0)
    learner.policy_version = 2
    new, _ = collector.collect(2)
    stats = learner.train(Trajectories.cat([old, new]))
    assert stats["policy_lag_max"] == 2.0 and stats["policy_lag_min"] == 0.0
    assert stats["policy_lag_avg"] == pytest.approx(1.0)


def test_reward_scale_and_clip_apply_to_learning_rewards_only():
    cfg = cfg_of("--reward_scale=2", "--reward_clip=1.5")
    _, _, collector = collect(cfg)
    traj, episodes = collector.collect(0)
    assert torch.all(traj.rewards == 1.5)
    assert all(e.episode_return == e.length for e in episodes)  # statistics keep raw rewards


@pytest.mark.parametrize("options", [
    ["--exploration_loss=symmetric_kl", "--exploration_loss_coeff=0.01"],
    ["--kl_loss_coeff=0.5", "--optimizer=lamb"],
    ["--shuffle_minibatches=true", "--num_epochs=2", "--normalize_returns=false"],
    ["--actor_critic_share_weights=false", "--max_grad_norm=0", "--nonlinearity=tanh"],
    ["--with_vtrace=true", "--vtrace_rho=0.5", "--vtrace_c=0.5", "--shuffle_minibatches=true"],
])
def test_learner_options_train_and_change_the_weights(options):
    cfg = cfg_of(*options)
    _, learner, collector = collect(cfg)
    before = [p.detach().clone() for p in learner.model.parameters()]
    traj, _ = collector.collect(0)
    traj2, _ = collector.collect(0)
    stats = learner.train(Trajectories.cat([traj, traj2]))
    assert all(np.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))
