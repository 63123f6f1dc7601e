"""Acting (the real rollout and policy workers on one loop) and the learner on what they collect."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers.harness import collect

from asyncrl.algo.learner import Learner
from asyncrl.algo.trajectories import Trajectories
from asyncrl.envs.command_line import parse_args
from asyncrl.experiment.checkpoint_state import RunState
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.runtime.learner_worker import add_truncation_bootstrap
from asyncrl.runtime.rollout_worker import worker_env_indices


def cfg_of(*argv, env="CartPole-v1"):
    # Feed-forward on every env (recurrent policies are tested in test_recurrent.py).
    return parse_args([f"--env={env}", "--use_rnn=false", "--serial_mode=true", "--num_workers=2",
                       "--num_envs_per_worker=4", "--worker_num_splits=2", "--rollout=8",
                       "--batch_size=32", "--num_batches_per_epoch=2",
                       "--decorrelate_envs_on_one_worker=false", "--encoder_mlp_layers", "16",
                       *argv], scope="train", prog="test").config()


def spaces(cfg):
    env = gym.make(cfg.env)
    return env.observation_space, env.action_space


def new_learner(cfg):
    return Learner(cfg, *spaces(cfg), torch.device("cpu"))


def test_worker_env_indices_split_each_workers_envs():
    cfg = cfg_of()
    assert [worker_env_indices(cfg, w, s).tolist() for w in range(2) for s in range(2)] == \
        [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_workers_fill_time_major_trajectories():
    cfg = cfg_of()
    got = collect(cfg, rollouts=1, policy_version=3)
    traj = got.trajectories
    assert traj.obs["obs"].shape == (9, 8, 4) and traj.rewards.shape == (8, 8)
    assert traj.actions.dtype == torch.int64 and traj.action_params.shape == (8, 8, 2)
    assert torch.all(traj.policy_versions == 3)
    # Behaviour log-probs are those of the stored actions under the stored parameters.
    logp = torch.log_softmax(traj.action_params, -1).gather(-1, traj.actions[..., None])[..., 0]
    assert torch.allclose(logp, traj.log_probs, atol=1e-5)
    assert traj.rewards.sum() == 64  # CartPole pays 1 per step
    # An episode end is marked where the episode statistics say one happened.
    assert traj.dones.sum() == len(got.episodes)


def test_obs_of_the_last_step_continue_in_the_next_trajectory():
    got = collect(cfg_of(), rollouts=2)
    traj = got.trajectories  # [T, 16]: 8 envs, two consecutive rollouts each
    first, second = traj.select(torch.arange(0, 8)), traj.select(torch.arange(8, 16))
    # Messages arrive per (worker, split); match trajectories by their first observation.
    continued = sum(bool((first.obs["obs"][-1, i] == second.obs["obs"][0]).all(-1).any())
                    for i in range(8))
    assert continued == 8


def test_reward_scale_and_clip_apply_to_learning_rewards_only():
    got = collect(cfg_of("--reward_scale=2", "--reward_clip=1.5"), rollouts=2)
    assert torch.all(got.trajectories.rewards == 1.5)
    assert all(e.episode_return == e.length for e in got.episodes)  # statistics keep raw rewards


@pytest.mark.slow
@pytest.mark.parametrize("bootstrap", [True, False])
def test_value_bootstrap_adds_discounted_value_on_truncation(bootstrap):
    cfg = cfg_of(f"--value_bootstrap={bootstrap}", "--gamma=0.5", "--normalize_returns=false",
                 "--rollout=50", "--batch_size=50", env="MountainCar-v0")
    model = ActorCritic(cfg, *spaces(cfg))
    with torch.no_grad():  # a value head that predicts exactly 10 everywhere
        model.critic_head.weight.zero_()
        model.critic_head.bias.fill_(10.0)
    got = collect(cfg, rollouts=4, model=model)  # a random MountainCar episode ends at 200 steps
    assert len(got.truncations) == (8 if bootstrap else 0)
    if bootstrap:
        add_truncation_bootstrap(got.buffers, got.truncations, model, cfg.gamma)
    traj = got.buffers.trajectories(torch.tensor(got.slots))
    assert traj.dones.sum() == 8
    assert torch.allclose(traj.rewards[traj.dones == 1],
                          torch.tensor(-1.0 + 0.5 * 10.0 if bootstrap else -1.0))
    assert torch.all(traj.rewards[traj.dones == 0] == -1.0)


@pytest.mark.slow
def test_learner_iteration_counts_versions_and_lag():
    cfg = cfg_of("--num_epochs=4", "--learning_rate=0.01")
    learner = new_learner(cfg)
    stats = learner.train(collect(cfg).trajectories)
    assert learner.policy_version == 1 and learner.train_step == 4 * 2
    assert stats["policy_lag_max"] == 0.0 and stats["kl_divergence"] > 0.0
    assert np.isfinite(stats["loss"]) and stats["grad_norm"] > 0.0


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["kl_adaptive_minibatch", "kl_adaptive_epoch"])
def test_kl_adaptive_learning_rate_moves(schedule):
    # A tiny KL threshold forces the rate down; a huge one forces it up.
    for threshold, direction in ((1e-9, -1), (1e3, +1)):
        cfg = cfg_of(f"--lr_schedule={schedule}", f"--lr_schedule_kl_threshold={threshold}",
                     "--learning_rate=0.001", "--num_epochs=2")
        learner = new_learner(cfg)
        learner.train(collect(cfg, rollouts=2).trajectories)
        assert np.sign(learner.learning_rate - 0.001) == direction


def _learner_worker(cfg, buffers, tmp_path, resume_state=None):
    from faster_fifo import Queue
    from signal_slot.signal_slot import EventLoop

    from asyncrl.experiment.checkpoint import CheckpointManager
    from asyncrl.config.hyperparameters import hyperparameters_of
    from asyncrl.runtime.buffers import SharedWeights
    from asyncrl.runtime.learner_worker import LearnerStart, LearnerWorker

    model = ActorCritic(cfg, *spaces(cfg))
    worker = LearnerWorker(EventLoop("test", serial_mode=True), cfg, 0, *spaces(cfg), buffers,
                           SharedWeights(model, 0), Queue(1_000_000),
                           CheckpointManager(tmp_path / "checkpoint_p0", 2),
                           LearnerStart(hyperparameters_of(cfg), resume_state))
    worker.on_start()
    return worker


@pytest.mark.slow
def test_linear_decay_follows_the_env_steps_resumes_and_scales_pbt_rates(tmp_path):
    # 2 workers x 4 envs x 8 steps: each batch of 64 transitions counts 64 env steps.
    cfg = cfg_of("--lr_schedule=linear_decay", "--learning_rate=0.01",
                 "--train_for_env_steps=256")
    got = collect(cfg, rollouts=3)
    worker = _learner_worker(cfg, got.buffers, tmp_path)
    for batch, slots in enumerate((got.slots[:8], got.slots[8:16]), start=1):
        worker.on_trajectories(slots, [])
        # Set before the batch is trained, from the 64 * batch env steps collected so far.
        assert worker.learner.learning_rate == pytest.approx(0.01 * (1 - 64 * batch / 256))
        assert all(g["lr"] == worker.learner.learning_rate
                   for g in worker.learner.optimizer.param_groups)
    assert worker.env_steps == 128
    # PBT's new rate is the base the schedule scales.
    worker.on_pbt_hyperparameters({**worker.checkpoint_state(RunState({}, None)).hyperparameters,
                                   "learning_rate": 0.02})
    assert worker.learner.learning_rate == pytest.approx(0.02 * (1 - 128 / 256))
    # A resumed run goes on where the schedule was: the stored base, the stored env steps.
    state = worker.checkpoint_state(RunState({}, None))
    resumed = _learner_worker(cfg.replace(learning_rate=0.02), got.buffers, tmp_path, state)
    assert resumed.learner.learning_rate == pytest.approx(0.02 * (1 - 128 / 256))
    resumed.on_trajectories(got.slots[16:24], [])
    assert resumed.learner.learning_rate == pytest.approx(0.02 * (1 - 192 / 256))


def test_a_loaded_kl_adaptive_rate_goes_on_and_the_others_follow_the_base_rate():
    cfg = cfg_of("--lr_schedule=kl_adaptive_minibatch", "--lr_schedule_kl_threshold=1e-9",
                 "--learning_rate=0.001")
    trained = new_learner(cfg)
    trained.train(collect(cfg).trajectories)
    state = trained.state()
    assert state.learning_rate < 0.001  # adapted down
    resumed = new_learner(cfg)
    resumed.load_state(state, "test")
    assert resumed.learning_rate == state.learning_rate
    # A constant rate is the policy's learning_rate, whatever the checkpoint's last rate was.
    constant = new_learner(cfg.replace(lr_schedule="constant", learning_rate=0.002))
    constant.load_state(state, "test")
    assert constant.learning_rate == 0.002
    assert all(g["lr"] == 0.002 for g in constant.optimizer.param_groups)


@pytest.mark.slow
def test_vtrace_learner_reports_lag_of_older_experience():
    cfg = cfg_of("--with_vtrace=true")
    learner = new_learner(cfg)
    old = collect(cfg, policy_version=0).trajectories
    new = collect(cfg, policy_version=2).trajectories
    learner.policy_version = 2
    stats = learner.train(Trajectories.cat([old, new]))
    assert stats["policy_lag_max"] == 2.0 and stats["policy_lag_min"] == 0.0
    assert stats["policy_lag_avg"] == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.parametrize("vtrace", [False, True])
def test_policy_lag_in_sgd_steps_counts_the_steps_the_iteration_took(vtrace):
    cfg = cfg_of(f"--with_vtrace={vtrace}", "--num_epochs=3")
    learner = new_learner(cfg)
    old = collect(cfg, policy_version=0).trajectories
    new = collect(cfg, policy_version=2).trajectories
    learner.policy_version = 3
    stats = learner.train(Trajectories.cat([old, new]))
    # 16 trajectories of 8 steps (twice a usual batch) in minibatches of 32 transitions (V-trace:
    # 4 whole trajectories): 4 a pass, not num_batches_per_epoch=2; 3 passes: 12 SGD steps.
    assert learner.train_step == 12
    # Half the experience is 3 versions old, half 1: in Sample Factory's unit 36 and 12 SGD steps.
    assert [stats[f"policy_lag_{k}"] for k in ("min", "avg", "max")] == [1.0, 2.0, 3.0]
    assert [stats[f"policy_lag_sgd_steps_{k}"] for k in ("min", "avg", "max")] == [12.0, 24.0, 36.0]


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    ["--exploration_loss=symmetric_kl", "--exploration_loss_coeff=0.01"],
    ["--kl_loss_coeff=0.5", "--optimizer=lamb"],
    ["--shuffle_minibatches=true", "--num_epochs=2", "--normalize_returns=false"],
    ["--actor_critic_share_weights=false", "--max_grad_norm=0", "--nonlinearity=tanh"],
    ["--with_vtrace=true", "--vtrace_rho=0.5", "--vtrace_c=0.5", "--shuffle_minibatches=true"],
])
def test_learner_options_train_and_change_the_weights(options):
    cfg = cfg_of(*options)
    learner = new_learner(cfg)
    before = [p.detach().clone() for p in learner.model.parameters()]
    stats = learner.train(collect(cfg, rollouts=2).trajectories)
    assert all(np.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))


def test_decorrelate_experience_delays_later_workers():
    got = collect(cfg_of("--decorrelate_experience_max_seconds=2.0"), recycle_slots=True)
    # Worker 1 of 2 starts 1 s late; worker 0 is not delayed.
    assert got.first_arrival["rollout_worker_1"] >= 1.0
    assert got.first_arrival["rollout_worker_0"] < got.first_arrival["rollout_worker_1"]


def test_force_envs_single_thread_limits_thread_pools():
    import threadpoolctl

    got = collect(cfg_of("--force_envs_single_thread=true"))
    try:
        pools = threadpoolctl.threadpool_info()
        assert pools and all(pool["num_threads"] == 1 for pool in pools)
    finally:
        for worker in got.workers:
            worker.thread_limits.restore_original_limits()


@pytest.mark.parametrize("decorrelate", [True, False])
def test_decorrelated_envs_start_out_of_phase(decorrelate):
    # Pendulum episodes last exactly 200 steps: without the warm-up every env ends in one step.
    cfg = cfg_of(f"--decorrelate_envs_on_one_worker={decorrelate}", "--rollout=50",
                 "--batch_size=50", "--num_workers=1", "--worker_num_splits=1", env="Pendulum-v1")
    got = collect(cfg, rollouts=4)  # 4 envs, one message of 4 trajectories per rollout
    rollouts_with_ends = {int(b) // 4 for b in (got.trajectories.dones == 1).nonzero()[:, 1]}
    assert {e.length for e in got.episodes} == {200}  # warm-up episodes are not reported
    assert (len(rollouts_with_ends) > 1) == decorrelate
