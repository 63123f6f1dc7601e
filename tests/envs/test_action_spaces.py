"""MultiDiscrete and Tuple actions end to end: stored actions -> env actions (start shift,
clipping, nesting), the env vector, shared-memory buffers filled by the real workers, the
learner, and tiny training runs evaluated with asyncrl.enjoy."""

import gymnasium as gym
import numpy as np
import pytest
import torch

# Importing action_envs registers --env=multidiscrete_targets and --env=tuple_targets.
from helpers.action_envs import ENVS, MultiDiscreteTargets, TupleTargets
from helpers.harness import collect

from asyncrl import enjoy, train
from asyncrl.algo.learner import Learner
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.spaces import action_layout
from asyncrl.envs.vector import BatchedEnvVector, EnvVector
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.model.distributions import make_action_distribution
from asyncrl.utils.errors import UserError

Discrete, MultiDiscrete, Box, Tuple = (gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                                       gym.spaces.Box, gym.spaces.Tuple)


def cfg_of(env, *argv):
    return parse_args([f"--env={env}", "--serial_mode=true", "--num_workers=2",
                       "--num_envs_per_worker=4", "--worker_num_splits=2", "--rollout=8",
                       "--batch_size=32", "--num_batches_per_epoch=2", "--encoder_mlp_layers", "16",
                       *argv], scope="train", prog="test").config()


def test_discrete_start_is_added_and_ints_come_out():
    assert action_layout(Discrete(3)).to_env(np.array([0, 2])) == [0, 2]
    shifted = action_layout(Discrete(3, start=-1)).to_env(np.array([0, 2]))
    assert shifted == [-1, 1] and all(type(a) is int for a in shifted)


def test_multi_discrete_start_and_shape():
    space = MultiDiscrete([3, 4], start=[1, -2])
    out = action_layout(space).to_env(np.array([[0, 3], [2, 0]]))
    np.testing.assert_array_equal(out, [[1, 1], [3, -2]])
    assert all(space.contains(a) for a in out)
    grid = MultiDiscrete([[2, 3], [4, 5]], start=[[0, 1], [2, 3]])
    (action,) = action_layout(grid).to_env(np.array([[1, 2, 3, 4]]))
    np.testing.assert_array_equal(action, [[1, 3], [5, 7]])
    assert grid.contains(action)


def test_multi_binary_is_a_two_way_component_per_bit():
    space = gym.spaces.MultiBinary([2, 3])
    layout = action_layout(space)
    assert layout.categories == (2,) * 6 and layout.action_shape == (6,)
    out = layout.to_env(np.array([[1, 0, 1, 1, 0, 0]]))
    np.testing.assert_array_equal(out, [[[1, 0, 1], [1, 0, 0]]])
    assert out.dtype == np.int8 and space.contains(out[0])


def test_dict_actions_become_dicts_in_key_order():
    space = gym.spaces.Dict({"b": Box(-1, 1, (2,)), "a": Discrete(3, start=1)})
    layout = action_layout(space)
    # The Dict's parts in its (sorted) key order: 'a' (an index), then 'b' (two values).
    assert layout.categories == (3,) and layout.continuous_dims == 2
    (action,) = layout.to_env(np.array([[2, 0.5, 9.0]], np.float32))
    assert action["a"] == 3 and action["b"].tolist() == [0.5, 1.0]
    assert space.contains(action)
    batched = layout.to_vector_env(np.array([[2, 0.5, 9.0], [0, 0, 0]], np.float32))
    assert gym.vector.utils.batch_space(space, 2).contains(batched)


def test_box_actions_are_clipped_and_keep_the_space_dtype():
    space = Box(np.array([-1.0, 0.0]), np.array([1.0, 5.0]), dtype=np.float64)
    out = action_layout(space).to_env(np.array([[3.0, -2.0], [0.5, 2.5]], np.float32))
    np.testing.assert_array_equal(out, [[1.0, 0.0], [0.5, 2.5]])
    assert out.dtype == np.float64


NESTED = Tuple((Discrete(3, start=-1), Tuple((MultiDiscrete([2, 4]), Box(-1, 1, (2,)))),
                Box(-2, 2, (1,))))
# Stored: the three indices (Discrete, then the MultiDiscrete's two), then the three values.
NESTED_STORED = np.array([[2, 1, 3, 0.5, 7.0, -3.0], [0, 0, 0, -0.25, 0.0, 1.5]], np.float32)


def test_nested_tuple_becomes_nested_tuples_in_space_order():
    space = NESTED
    first, second = action_layout(space).to_env(NESTED_STORED)
    assert first[0] == 1 and type(first[0]) is int
    np.testing.assert_array_equal(first[1][0], [1, 3])
    np.testing.assert_array_equal(first[1][1], [0.5, 1.0])  # 7.0 clipped
    np.testing.assert_array_equal(first[2], [-2.0])  # -3.0 clipped
    assert second[0] == -1 and second[1][0].tolist() == [0, 0] and second[2].tolist() == [1.5]
    assert space.contains(first) and space.contains(second)


@pytest.mark.parametrize("space,stored", [
    (NESTED, NESTED_STORED),
    (Discrete(3, start=2), np.array([0, 2])),
    (MultiDiscrete([3, 4], start=[1, -2]), np.array([[0, 3], [2, 0]])),
    (Box(-1, 1, (2,)), np.array([[3.0, -0.5], [0.0, -4.0]], np.float32)),
])
def test_vector_env_actions_are_the_batched_form_of_the_per_env_actions(space, stored):
    layout = action_layout(space)
    batched = layout.to_vector_env(stored)
    assert gym.vector.utils.batch_space(space, 2).contains(batched)
    per_env = list(gym.vector.utils.iterate(gym.vector.utils.batch_space(space, 2), batched))
    expected = layout.to_env(stored)
    for got, want in zip(per_env, expected):
        assert gym.spaces.utils.flatten(space, got).tolist() == \
            gym.spaces.utils.flatten(space, want).tolist()


def test_env_vector_steps_tuple_actions_and_warms_up():
    envs = EnvVector(lambda i: TupleTargets(seed=i), 2, seed=0)
    obs = envs.obs["obs"]  # [2, 4]: one-hot choice, then the target position
    choices, positions = obs[:, :3].argmax(1), obs[:, 3].astype(np.float64)
    # Env 0: the right choice and position; env 1: a position far out of bounds (clipped to 1).
    stored = np.stack([choices, [positions[0], 9.0]], axis=1).astype(np.float32)
    envs.step(np.arange(2), stored)
    np.testing.assert_allclose(envs.rewards, [1.5, 1.5 - abs(1.0 - positions[1])], atol=1e-6)
    envs.warm_up([3, 2])  # random actions drawn from the env's own space
    # No env raised (a failed env is replaced by a fresh one, whose step count starts at 0).
    assert [env.steps for env in envs.envs] == [4, 3]
    envs.close()


class TwoAgentTupleTargets(gym.Env):
    """Two TupleTargets played side by side, in Sample Factory's multi-agent convention."""

    is_multiagent, num_agents = True, 2
    action_space, observation_space = TupleTargets.action_space, TupleTargets.observation_space

    def __init__(self):
        self.agents = [TupleTargets(seed=0), TupleTargets(seed=1)]

    def reset(self, *, seed=None, options=None):
        return [agent.reset(seed=seed)[0] for agent in self.agents], [{}, {}]

    def step(self, actions):
        results = [agent.step(a) for agent, a in zip(self.agents, actions)]
        obs, rewards, terminated, truncated, _ = zip(*results)
        for agent, done in zip(self.agents, terminated):
            if done:  # multi-agent envs start each agent's next episode themselves
                agent.reset()
        return list(obs), list(rewards), list(terminated), list(truncated), [{}, {}]


def test_multi_agent_env_gets_a_tuple_action_per_agent():
    envs = EnvVector(lambda i: TwoAgentTupleTargets(), 1, seed=0)
    obs = envs.obs["obs"]  # [2 agents, 4]
    stored = np.stack([obs[:, :3].argmax(1), obs[:, 3]], axis=1).astype(np.float32)
    envs.step(np.arange(2), stored)
    np.testing.assert_allclose(envs.rewards, [1.5, 1.5], atol=1e-6)
    envs.warm_up([3])
    assert [agent.steps for agent in envs.envs[0].agents] == [4, 4]  # no agent raised
    envs.close()


def test_batched_env_vector_steps_tuple_actions_and_warms_up():
    def make_vector(first, n):
        return gym.vector.SyncVectorEnv([lambda i=i: TupleTargets(seed=first + i) for i in range(n)])

    envs = BatchedEnvVector(make_vector, 4, 2, seed=0)
    obs = envs.obs["obs"][:2]  # split 0
    choices, positions = obs[:, :3].argmax(1), obs[:, 3].astype(np.float64)
    stored = np.stack([choices, [positions[0], -9.0]], axis=1).astype(np.float32)
    envs.step(np.arange(2), stored)
    np.testing.assert_allclose(envs.rewards[:2], [1.5, 1.5 - abs(-1.0 - positions[1])], atol=1e-6)
    envs.warm_up([3, 3, 2, 2])
    assert envs.failures.tolist() == [0, 0]
    assert [env.steps for v in envs.vectors for env in v.envs] == [4, 4, 2, 2]
    envs.close()


@pytest.mark.parametrize("env,batched", [("multidiscrete_targets", "false"),
                                         ("tuple_targets", "false"), ("tuple_targets", "true")])
def test_workers_store_flat_actions_that_reproduce_their_log_probs(env, batched):
    cfg = cfg_of(env, "--decorrelate_envs_on_one_worker=false", f"--batched_sampling={batched}")
    got = collect(cfg, rollouts=2)
    traj = got.trajectories
    layout = action_layout(ENVS[env].action_space)
    assert traj.actions.shape == (8, 16, 2)  # [T, B, K + A]
    assert traj.actions.dtype == (torch.int64 if env == "multidiscrete_targets" else torch.float32)
    assert traj.action_params.shape == (8, 16, layout.num_params)
    indices = traj.actions[..., 0]
    assert torch.equal(indices, indices.round()) and indices.min() >= 0 and indices.max() <= 2
    dist = make_action_distribution(layout, traj.action_params.flatten(0, 1))
    torch.testing.assert_close(dist.log_prob(traj.actions.flatten(0, 1)), traj.log_probs.flatten())
    # Every action was inside the space: an env raises otherwise, is recreated and its episode
    # is not reported. Each of the 8 envs finished its first 8-step episode, and one by one (not
    # batched, where the step after an episode end only resets the env) also its second.
    assert len(got.episodes) == (8 if batched == "true" else 16)
    assert all(e.length == 8 for e in got.episodes)


@pytest.mark.slow
def test_learner_trains_multi_discrete_with_symmetric_kl_and_refuses_it_for_box_parts():
    cfg = cfg_of("multidiscrete_targets", "--exploration_loss=symmetric_kl", "--kl_loss_coeff=0.1",
                 "--with_vtrace=true")
    learner = Learner(cfg, MultiDiscreteTargets.observation_space, MultiDiscreteTargets.action_space,
                      torch.device("cpu"))
    stats = learner.train(collect(cfg, model=learner.model).trajectories)
    assert stats["exploration_loss"] > 0 and np.isfinite(stats["loss"])
    with pytest.raises(UserError, match=r"symmetric_kl needs a discrete action space .*Tuple\("):
        Learner(cfg, TupleTargets.observation_space, TupleTargets.action_space, torch.device("cpu"))


def test_unsupported_action_space_is_one_line_exit_2_and_nothing_on_disk(tmp_path, capsys):
    assert train.main(["--env=matrix_actions", f"--train_dir={tmp_path}", "--experiment=exp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unsupported action space Box(0.0, 1.0, (2, 2), float32)" in err
    assert "supported are Discrete, MultiDiscrete, MultiBinary, 1-D Box, and Tuples or Dicts" in err
    assert not (tmp_path / "exp").exists()


def average_return(tmp_path, name):
    checkpoint = sorted((tmp_path / name / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
    returns = load_checkpoint(checkpoint)["episode_stats"]["returns"]
    return sum(returns) / len(returns)


# Feed-forward, as these settings were tuned (the table's default is a 512-unit GRU core).
TRAIN = ["--use_rnn=false", "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=16",
         "--worker_num_splits=1", "--rollout=8", "--batch_size=128", "--encoder_mlp_layers", "32",
         "--learning_rate=0.003", "--device=cpu", "--seed=1", "--train_for_env_steps=10000"]


@pytest.mark.slow
@pytest.mark.parametrize("env,options,chance,trained,deterministic", [
    # Chance: 4.67 (1/3 + 1/4 per step); the best is 16.
    ("multidiscrete_targets", ["--with_vtrace=true", "--exploration_loss=symmetric_kl",
                               "--kl_loss_coeff=0.1"], 4.67, 10.0, 15.0),
    # Chance: about 1.4 with the initial policy; the best is 12. A policy that always makes the
    # right choice but does not follow the target position scores at most 10 on average.
    ("tuple_targets", [], 1.4, 6.0, 10.5),
    ("dict_targets", [], 1.4, 6.0, 10.5),
    # Chance: 4; the best is 8.
    ("multibinary_targets", [], 4.0, 6.0, 7.5),
])
def test_tiny_training_run_learns_and_enjoy_plays_it(tmp_path, capsys, env, options, chance,
                                                     trained, deterministic):
    assert train.main([f"--env={env}", f"--train_dir={tmp_path}", "--experiment=exp", *TRAIN,
                       *options]) == 0
    assert average_return(tmp_path, "exp") > trained > chance
    capsys.readouterr()
    episodes = enjoy.evaluate([f"--env={env}", f"--train_dir={tmp_path}", "--experiment=exp",
                               "--max_num_episodes=5", "--eval_deterministic=true"])
    assert len(episodes) == 5 and sum(e.episode_return for e in episodes) / 5 > deterministic
    assert "mean return over 5 episodes" in capsys.readouterr().out
