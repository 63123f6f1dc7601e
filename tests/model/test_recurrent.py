"""Recurrent policies: the core's step and sequence forms, the hidden states through the rollout
and policy workers, and the learner's sequences starting from the stored states."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers.harness import collect

from asyncrl import train
from asyncrl.algo.learner import Learner
from asyncrl.algo.trajectories import from_sequences, to_sequences
from asyncrl.envs.command_line import parse_args
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.runtime.learner_worker import add_truncation_bootstrap

OBS, ACTIONS = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As in every asyncrl process: torch's GRU steps of a few rows take milliseconds instead of
    microseconds when its thread pool competes for busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cfg_of(*argv, env="CartPole-v1"):
    return parse_args([f"--env={env}", "--serial_mode=true", "--num_workers=2",
                       "--num_envs_per_worker=4", "--worker_num_splits=2", "--rollout=8",
                       "--batch_size=32", "--num_batches_per_epoch=2",
                       "--decorrelate_envs_on_one_worker=false", "--encoder_mlp_layers", "16",
                       "--use_rnn=true", "--rnn_size=8", *argv], scope="train", prog="test").config()


def step_by_step(model, obs, states, dones):
    """T calls of forward(), zeroing the state after a done as the rollout workers do."""
    params, values = [], []
    for t in range(obs.shape[0]):
        p, v, next_states = model({"obs": obs[t]}, states)
        params.append(p)
        values.append(v)
        states = next_states * (1.0 - dones[t])[:, None]
    return torch.stack(params), torch.stack(values), next_states


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("layers, share", [(1, "true"), (2, "true"), (2, "false")])
def test_sequence_gives_what_steps_give_across_episode_ends(rnn_type, layers, share):
    torch.manual_seed(0)
    cfg = cfg_of(f"--rnn_type={rnn_type}", f"--rnn_num_layers={layers}",
                 f"--actor_critic_share_weights={share}", "--decoder_mlp_layers", "5")
    model = ActorCritic(cfg, OBS, ACTIONS)
    per_trunk = (2 if rnn_type == "lstm" else 1) * layers * 8
    assert model.rnn_state_size == per_trunk * (1 if share == "true" else 2)
    T, B = 7, 3
    obs = torch.randn(T, B, 4)
    states = torch.randn(B, model.rnn_state_size)
    dones = torch.zeros(T, B)
    dones[2, 0] = dones[4, 1] = dones[5, 1] = dones[6, 2] = 1.0  # the last one changes nothing
    params, values, final = model.forward_sequence({"obs": obs}, states, dones)
    want_params, want_values, want_final = step_by_step(model, obs, states, dones)
    assert params.shape == (T * B, 3) and values.shape == (T * B,)
    torch.testing.assert_close(params.view(T, B, 3), want_params, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values.view(T, B), want_values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final, want_final, atol=1e-5, rtol=1e-5)


def test_state_resets_to_zero_after_an_episode_end():
    torch.manual_seed(0)
    model = ActorCritic(cfg_of("--rnn_type=lstm"), OBS, ACTIONS)
    T, B = 5, 2
    obs = torch.randn(T, B, 4)
    dones = torch.zeros(T, B)
    dones[1, 0] = 1.0  # env 0 starts a new episode at step 2
    a, _, _ = model.forward_sequence({"obs": obs}, torch.randn(B, model.rnn_state_size), dones)
    b, _, _ = model.forward_sequence({"obs": obs}, torch.randn(B, model.rnn_state_size), dones)
    a, b = a.view(T, B, 3), b.view(T, B, 3)
    # Before the end the initial state matters; after it, env 0 runs from zeros (None) either way.
    assert not torch.allclose(a[:2, 0], b[:2, 0]) and not torch.allclose(a[:, 1], b[:, 1])
    torch.testing.assert_close(a[2:, 0], b[2:, 0])
    fresh, _, _ = model.forward_sequence({"obs": obs[2:, :1]}, None, dones[2:, :1])
    torch.testing.assert_close(a[2:, 0], fresh)


def test_feed_forward_model_has_no_state():
    model = ActorCritic(cfg_of("--use_rnn=false"), OBS, ACTIONS)
    assert model.rnn_state_size == 0 and model.actor_trunk.core is None
    params, values, states = model({"obs": torch.randn(5, 4)})
    assert params.shape == (5, 3) and values.shape == (5,) and states is None
    assert model.policy_step({"obs": torch.randn(5, 4)}).rnn_states is None


def test_sequences_layout_round_trips():
    x = torch.arange(8 * 3).view(8, 3)  # [T, B]: x[t, b] = 3t + b
    seq = to_sequences(x, 4)  # [R, (T/R) * B]
    assert seq.shape == (4, 6)
    assert seq[:, 0].tolist() == [0, 3, 6, 9]  # trajectory 0, steps 0..3
    assert seq[:, 3].tolist() == [12, 15, 18, 21]  # trajectory 0, steps 4..7
    assert torch.equal(from_sequences(seq, 8), x)
    for recurrence in (1, 8):  # no copy
        assert to_sequences(x, recurrence).data_ptr() == x.data_ptr()


def test_workers_store_the_state_each_step_was_acted_in():
    cfg = cfg_of("--rnn_type=lstm")
    torch.manual_seed(0)
    model = ActorCritic(cfg, OBS, gym.spaces.Discrete(2))
    got = collect(cfg, rollouts=2, model=model)
    traj = got.trajectories  # [T, 16]: 8 envs, two consecutive rollouts each
    T, B = traj.rewards.shape
    states, dones = traj.rnn_states, traj.dones
    assert states.shape == (T + 1, B, model.rnn_state_size)
    # Each next state is the model's from the stored state and observation, or 0 after a done.
    with torch.no_grad():
        _, _, want = model({"obs": traj.obs["obs"][:T].flatten(0, 1)}, states[:T].flatten(0, 1))
    want = want.view(T, B, -1) * (1.0 - dones)[..., None]
    torch.testing.assert_close(states[1:], want, atol=1e-5, rtol=1e-5)
    assert dones.sum() > 0 and (states[1:][dones == 1] == 0).all()
    # The first trajectories start from zeros; the next ones from where those ended.
    first, second = traj.select(torch.arange(0, 8)), traj.select(torch.arange(8, 16))
    assert (first.rnn_states[0] == 0).all()
    for i in range(8):
        j = int((first.obs["obs"][-1, i] == second.obs["obs"][0]).all(-1).nonzero()[0, 0])
        assert torch.equal(second.rnn_states[0, j], first.rnn_states[-1, i])
    assert (second.rnn_states[0] != 0).any()


def test_truncation_bootstrap_evaluates_the_final_observation_in_the_state_before_the_reset():
    cfg = cfg_of("--value_bootstrap=true", "--gamma=0.5", "--normalize_returns=false",
                 "--rollout=50", "--batch_size=50", "--num_workers=1", "--worker_num_splits=1",
                 env="MountainCar-v0")
    torch.manual_seed(0)
    env = gym.make("MountainCar-v0")
    model = ActorCritic(cfg, env.observation_space, env.action_space)
    got = collect(cfg, rollouts=4, model=model)  # random MountainCar episodes end at 200 steps
    assert len(got.truncations) == 4
    slots = [slot for slot, _, _, _ in got.truncations]
    steps = [t for _, t, _, _ in got.truncations]
    final_states = torch.as_tensor(np.stack([s for _, _, _, s in got.truncations]))
    final_obs = torch.as_tensor(np.stack([o["obs"] for _, _, o, _ in got.truncations]))
    buffers = got.buffers
    # The state sent along is the model's after the last step; the slot holds zeros after it.
    with torch.no_grad():
        _, _, want = model({"obs": buffers.obs["obs"][slots, steps]}, buffers.rnn_states[slots, steps])
    torch.testing.assert_close(final_states, want)
    assert (buffers.rnn_states[slots, [t + 1 for t in steps]] == 0).all()
    add_truncation_bootstrap(buffers, got.truncations, model, cfg.gamma)
    bootstrap = model.values({"obs": final_obs}, final_states)
    torch.testing.assert_close(buffers.rewards[slots, steps], -1.0 + 0.5 * bootstrap)
    assert not torch.allclose(bootstrap, model.values({"obs": final_obs}))  # zeros would differ


@pytest.mark.parametrize("recurrence, vtrace, batched", [
    (1, False, False), (4, False, False), (8, False, False), (4, True, False), (4, False, True)])
def test_learner_sequences_start_from_the_stored_states(recurrence, vtrace, batched):
    """Before any update the learner's sequences (cut every `recurrence` steps, each started
    from the stored state) reproduce the behaviour policy exactly, episode ends (and the
    reset-only steps of vector envs) included."""
    cfg = cfg_of(f"--recurrence={recurrence}", f"--with_vtrace={vtrace}", "--num_epochs=2",
                 f"--batched_sampling={batched}")
    torch.manual_seed(0)
    learner = Learner(cfg, OBS, gym.spaces.Discrete(2), torch.device("cpu"))
    batch = collect(cfg, rollouts=2, model=learner.model).trajectories
    assert batch.dones.sum() > 0 and bool((~batch.valid).any()) == batched
    seqs = learner._sequences(batch, batch.valid if batched else None)
    assert seqs.resets.shape == (recurrence, batch.num_trajectories * 8 // recurrence)
    with torch.no_grad():
        params, _, _ = learner.model.forward_sequence(seqs.obs, seqs.start_states, seqs.resets)
    torch.testing.assert_close(params, seqs.action_params.flatten(0, 1), atol=1e-5, rtol=1e-5)
    before = [p.detach().clone() for p in learner.model.parameters()]
    stats = learner.train(batch)
    assert all(np.isfinite(v) for v in stats.values())
    assert learner.train_step == 2 * 4  # 2 epochs of 16 trajectories x 8 steps in 32s
    assert all(not torch.equal(a, b) for a, b in zip(before, learner.model.parameters())
               if a.requires_grad)


@pytest.mark.slow
def test_recurrent_cartpole_learns_in_parallel_and_resumes(tmp_path):
    argv = ["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=exp", "--use_rnn=true",
            "--rnn_size=32"]
    # Synchronous, so that how much is learnt in 30k steps does not depend on how fast this
    # machine acts compared with how fast it trains (asynchronously, a fast run learnt less).
    assert train.main([*argv, "--train_for_env_steps=30000", "--seed=1", "--async_rl=false"]) == 0
    state = load_checkpoint(max((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth")))
    returns = state["episode_stats"]["returns"]
    # A random policy averages ~22; by hand (seeds 1-3) the GRU reached 91-114 by 30k steps.
    assert sum(returns) / len(returns) > 50
    assert train.main([*argv, "--train_for_env_steps=32000", "--serial_mode=true"]) == 0
    resumed = load_checkpoint(max((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth")))
    assert resumed["env_steps"] >= 32000 and resumed["policy_version"] > state["policy_version"]
