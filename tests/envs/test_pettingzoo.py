"""`--env=pettingzoo:<module>`: PettingZoo Parallel envs as asyncrl multi-agent envs, agents out of
the game as invalid steps, one-line refusals, and a training run on mpe2's simple_spread."""

import sys
import types

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv

from helpers.harness import collect
from helpers.install_hints import assert_train_names_extra
from helpers.training_process import finish, start

from asyncrl.algo.learner import Learner
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.pettingzoo import ParallelEnvAdapter
from asyncrl.envs.registry import make_env
from asyncrl.envs.vector import EnvVector
from asyncrl.utils.errors import UserError

SPREAD = "pettingzoo:mpe2.simple_spread_v3"


def parsed(*argv: str):
    return parse_args(list(argv), scope="train", prog="test")


def pettingzoo_env(env: str, *argv: str, render_mode: str | None = None) -> gym.Env:
    args = parsed(f"--env={env}", *argv)
    cfg = args.config()
    return make_env(args.family, cfg.env, cfg, 0, render_mode=render_mode)


class EarlyExit(ParallelEnv):
    """Two agents; `leaver` terminates after `leave_at` steps, `stayer` is truncated after
    `episode_length`. Each observation is the step count; each live agent gets reward 1 a step.
    Records the actions it is given."""

    metadata = {"name": "early_exit"}
    possible_agents = ["stayer", "leaver"]

    def __init__(self, leave_at: int = 2, episode_length: int = 5, **_: object):
        self.leave_at = leave_at
        self.episode_length = episode_length
        self.given_actions: list[dict] = []
        self.agents: list[str] = []
        self.t = 0

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 100.0, (1,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def _obs(self) -> dict:
        return {a: np.array([self.t], np.float32) for a in self.agents}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.given_actions.append(dict(actions))
        self.t += 1
        obs = self._obs()
        rewards = {a: 1.0 for a in self.agents}
        terminated = {a: a == "leaver" and self.t == self.leave_at for a in self.agents}
        truncated = {a: self.t == self.episode_length for a in self.agents}
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (terminated[a] or truncated[a])]
        return obs, rewards, terminated, truncated, infos


@pytest.fixture
def fake_modules(monkeypatch):
    """Importable modules: the early-exit env, one without any env, one whose AEC env PettingZoo
    can convert (simple_spread's)."""
    from mpe2 import simple_spread_v3

    modules = {"early_exit_env": {"parallel_env": EarlyExit}, "no_env_here": {},
               "aec_spread": {"env": simple_spread_v3.env}}
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)


def test_simple_spread_has_a_row_per_agent_and_restarts_itself():
    env = pettingzoo_env(SPREAD)
    assert isinstance(env, ParallelEnvAdapter) and env.num_agents == 3
    assert env.observation_space.shape == (18,) and env.action_space == gym.spaces.Discrete(5)
    envs = EnvVector(lambda i: pettingzoo_env(SPREAD), num_envs=2, seed=0)
    assert envs.obs["obs"].shape == (6, 18)
    rows = np.arange(3, 6)  # the agents of env 1
    for _ in range(24):
        assert not envs.step(rows, np.array([1, 2, 3])).episodes
    before = envs.obs["obs"][3:].copy()
    result = envs.step(rows, np.array([0, 0, 0]))
    # mpe2's time limit (max_cycles=25) truncates every agent: final observations for bootstrapping
    assert [e.length for e in result.episodes] == [25, 25, 25] and envs.valid.all()
    assert result.truncated_indices.tolist() == [3, 4, 5] and not envs.terminated.any()
    assert result.final_obs["obs"].shape == (3, 18)
    assert not np.array_equal(result.final_obs["obs"], before)  # the last step moved them
    # ... and the env restarted itself: a fresh episode of 25 steps is under way.
    inner = envs.envs[1].parallel
    assert inner.agents == inner.possible_agents and not np.array_equal(
        envs.obs["obs"][3:], result.final_obs["obs"])


def test_env_kwargs_render_mode_and_seed_reach_the_parallel_env():
    env = pettingzoo_env(SPREAD, "--env_kwargs=N=2,max_cycles=4", render_mode="rgb_array")
    assert env.num_agents == 2 and env.observation_space.shape == (12,)
    first, _ = env.reset(seed=3)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3
    for _ in range(3):
        assert not any(env.step([0, 0])[3])
    assert all(env.step([0, 0])[3])
    again, _ = env.reset(seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_an_agent_that_left_is_inactive_until_the_next_episode(fake_modules):
    envs = EnvVector(lambda i: pettingzoo_env("pettingzoo:early_exit_env"), num_envs=1, seed=0)
    inner = envs.envs[0].parallel
    rows, episodes, valid, rewards = np.arange(2), [], [], []
    for _ in range(7):
        episodes += envs.step(rows, np.array([1, 0])).episodes
        valid.append(envs.valid.tolist())
        rewards.append(envs.rewards.tolist())
    # Steps 3-5 of the first episode are not the leaver's; the next episode has it back.
    assert [v[1] for v in valid] == [True, True, False, False, False, True, True]
    assert all(v[0] for v in valid) and [r[1] for r in rewards[2:5]] == [0.0, 0.0, 0.0]
    assert [a.keys() for a in inner.given_actions] == [
        {"stayer", "leaver"}] * 2 + [{"stayer"}] * 3 + [{"stayer", "leaver"}] * 2
    # Each episode once: the leaver's of 2 steps (return 2) ends first, the stayer's of 5 later
    # (the leaver's inactive steps count for nothing), then the leaver's next one.
    assert [(e.row, e.length, e.episode_return) for e in episodes] == [
        (1, 2, 2.0), (0, 5, 5.0), (1, 2, 2.0)]


def test_inactive_steps_are_invalid_in_the_trajectories(fake_modules):
    cfg = parsed("--env=pettingzoo:early_exit_env", "--num_workers=1", "--num_envs_per_worker=1",
                 "--worker_num_splits=1", "--rollout=8", "--batch_size=16",
                 "--encoder_mlp_layers", "8", "--rnn_size=8").config()
    traj = collect(cfg, rollouts=1).trajectories
    assert traj.valid[:, 0].all()  # the stayer
    assert traj.valid[:, 1].tolist() == [True, True, False, False, False, True, True, False]
    assert traj.dones[:, 1].tolist() == [0, 1, 0, 0, 0, 0, 1, 0]
    env = EarlyExit()
    learner = Learner(cfg, env.observation_space("stayer"), env.action_space("stayer"),
                      torch.device("cpu"))
    assert np.isfinite(learner.train(traj)["loss"])  # the invalid steps are left out


def test_a_convertible_aec_env_is_converted(fake_modules):
    env = pettingzoo_env("pettingzoo:aec_spread")
    assert env.num_agents == 3 and len(env.reset(seed=0)[0]) == 3
    assert len(env.step([0, 0, 0])[1]) == 3


@pytest.mark.parametrize("env, message", [
    ("pettingzoo:mpe2.simple_adversary_v3", "--env=pettingzoo:mpe2.simple_adversary_v3: agents "
     "adversary_0 and agent_0 have different observation spaces (Box(-inf, inf, (8,), float32) "
     "and Box(-inf, inf, (10,), float32)), but asyncrl needs one for all agents: pad them with "
     "SuperSuit's pad_observations_v0 / pad_action_space_v0"),
    ("pettingzoo:no_env_here", "--env=pettingzoo:no_env_here: module no_env_here has no "
     "parallel_env (PettingZoo's Parallel API) and no AEC env"),
    ("pettingzoo:pettingzoo.classic.connect_four_v3", "--env=pettingzoo:pettingzoo.classic."
     "connect_four_v3 is a turn-based AEC env"),
    ("pettingzoo:no_such_module_xyz", "--env=pettingzoo:no_such_module_xyz: cannot import module "
     "no_such_module_xyz (ModuleNotFoundError: No module named 'no_such_module_xyz')"),
    ("pettingzoo:", "--env=pettingzoo:: expected pettingzoo:<module>"),
])
@pytest.mark.filterwarnings("ignore:The old environment creation API:DeprecationWarning")
def test_envs_asyncrl_cannot_step_are_refused_in_one_line(fake_modules, env, message):
    with pytest.raises(UserError) as info:
        pettingzoo_env(env)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("package", ["pettingzoo", "mpe2"])
def test_missing_pettingzoo_names_the_extra(monkeypatch, tmp_path, capsys, package):
    monkeypatch.setitem(sys.modules, package, None)
    assert_train_names_extra(SPREAD, "pettingzoo", tmp_path, capsys)


@pytest.mark.slow
def test_simple_spread_trains_end_to_end(tmp_path):
    code, out = finish(start(
        tmp_path, "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=4",
        "--worker_num_splits=1", "--rollout=16", "--batch_size=192", "--num_batches_per_epoch=1",
        "--encoder_mlp_layers", "32", "--rnn_size=16", "--device=cpu",
        "--train_for_env_steps=3000", script=["-m", "asyncrl.train", f"--env={SPREAD}"]))
    assert code == 0, out
    assert list((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth")), out
