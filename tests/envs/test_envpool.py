"""EnvPool as the vector backend of batched sampling (`--env_backend=envpool`): the same frames as
the built-in Atari preprocessing where they should match (and the documented differences where
not), spaces and dtypes, seeds, time limits, what it refuses, a tiny training run, and the
install hint without envpool."""

import json
import sys

import numpy as np
import pytest

from asyncrl import train
from asyncrl.benchmark.plan import make_plan
from asyncrl.benchmark.raw import run_raw
from asyncrl.envs.command_line import parse_args
from asyncrl.envs import atari, envpool_backend
from asyncrl.envs.registry import find_env_family, make_vector_env
from asyncrl.envs.vector import BatchedEnvVector
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.utils.errors import UserError

pytest.importorskip("ale_py")
pytest.importorskip("envpool")

BACKEND = ("--batched_sampling=true", "--env_backend=envpool")
# Without the Atari family preset's life episodes and sign rewards: the raw game.
ATARI_GAMES = ("--episodic_life=false", "--clip_reward_sign=false",
               "--use_record_episode_statistics=false")
ENVPOOL = (*BACKEND, *ATARI_GAMES)


def cfg_of(*argv):
    return parse_args(list(argv), scope="train", prog="test").config()


def vector_of(cfg, first=0, num_envs=1):
    return make_vector_env(find_env_family(cfg.env), cfg.env, cfg, first, num_envs)


def fixed_starts(monkeypatch):
    """One no-op and no FIRE at reset on both sides, so that both start from the same emulator
    state: the built-in family's no-op count is 1..NOOP_MAX and EnvPool's 1..noop_max (less one
    for its FIRE)."""
    monkeypatch.setattr(atari, "NOOP_MAX", 1)
    monkeypatch.setattr(atari, "needs_fire_reset", lambda env: False)
    real = envpool_backend.envpool_config

    def config(*args):
        task, config = real(*args)
        return task, {**config, "use_fire_reset": False}

    monkeypatch.setattr(envpool_backend, "envpool_config", config)


@pytest.mark.slow
@pytest.mark.parametrize("game, frameskip, framestack, pixel_format", [
    ("atari_pong", 4, 4, "CHW"),
    ("atari_breakout", 3, 2, "HWC"),
])
def test_same_actions_give_the_same_frames_within_one_grey_level(monkeypatch, game, frameskip,
                                                                 framestack, pixel_format):
    fixed_starts(monkeypatch)
    argv = (f"--env={game}", f"--env_frameskip={frameskip}", f"--env_framestack={framestack}",
            f"--pixel_format={pixel_format}", "--seed=0")
    cfg = cfg_of(*argv, *ATARI_GAMES)
    builtin = find_env_family(cfg.env).make_env(cfg.env, cfg, 0)
    pool = vector_of(cfg_of(*argv, *ENVPOOL))
    try:
        ours, _ = builtin.reset(seed=0)
        theirs, _ = pool.reset()
        np.testing.assert_array_equal(ours, theirs[0])
        rng = np.random.default_rng(0)
        differing = []
        for _ in range(3000):
            action = int(rng.integers(builtin.action_space.n))
            ours, reward, terminated, truncated, _ = builtin.step(action)
            theirs, rewards, terminateds, truncateds, _ = pool.step(np.array([action]))
            assert (reward, terminated, truncated) == (rewards[0], terminateds[0], truncateds[0])
            difference = np.abs(ours.astype(np.int16) - theirs[0])
            if terminated:
                # The game ended within the frame skip: EnvPool shows the screen of the last
                # complete one (documented), never learnt from.
                break
            assert difference.max() <= 1  # the resize's rounding
            differing.append(np.count_nonzero(difference) / difference.size)
        assert terminated, "a game played with random actions ends within 3000 steps"
        assert np.mean(differing) < 1e-3
    finally:
        builtin.close()
        pool.close()


def test_life_episodes_sign_rewards_and_the_game_score_are_those_of_the_builtin_family(monkeypatch):
    fixed_starts(monkeypatch)
    argv = ("--env=atari_breakout", "--seed=0")  # the family preset: life episodes, sign rewards
    cfg = cfg_of(*argv)
    assert cfg.episodic_life and cfg.clip_reward_sign and cfg.use_record_episode_statistics
    builtin = find_env_family(cfg.env).make_env(cfg.env, cfg, 0)
    pool = vector_of(cfg_of(*argv, *BACKEND))
    try:
        builtin.reset(seed=0)
        pool.reset()
        rng = np.random.default_rng(0)
        terminated, score, steps, clipped = False, 0.0, 0, set()
        while not terminated:  # the same game up to the first life lost
            action = int(rng.integers(builtin.action_space.n))
            ours, reward, terminated, truncated, info = builtin.step(action)
            theirs, rewards, terminateds, truncateds, infos = pool.step(np.array([action]))
            assert (reward, terminated, truncated) == (rewards[0], terminateds[0], truncateds[0])
            assert np.abs(ours.astype(np.int16) - theirs[0]).max() <= 1
            score, steps = score + float(infos["reward"][0]), steps + 1
            clipped.add(float(rewards[0]))
        assert "episode" not in info and "episode" not in infos  # the game goes on
        # From here the lives restart differently (documented); the pool plays on alone.
        lives_lost = 1
        for _ in range(5000):
            theirs, rewards, terminateds, truncateds, infos = pool.step(
                np.array([int(rng.integers(4))]))
            score, steps = score + float(infos["reward"][0]), steps + 1
            clipped.add(float(rewards[0]))
            if "episode" in infos:
                break
            lives_lost += int(terminateds[0])
        assert infos["_episode"][0] and infos["terminated"][0]
        assert lives_lost == 4  # of Breakout's 5 lives; losing the last ends the game
        assert clipped <= {-1.0, 0.0, 1.0}
        # The whole game's score (unclipped) and its length in agent steps
        assert (infos["episode"]["r"][0], infos["episode"]["l"][0]) == (score, steps)
        assert score > 0
    finally:
        builtin.close()
        pool.close()


@pytest.mark.parametrize("pixel_format", ["auto", "HWC"])
def test_spaces_and_dtypes_are_those_of_the_builtin_family(pixel_format):
    argv = ("--env=atari_breakout", "--batched_sampling=true", f"--pixel_format={pixel_format}")
    builtin, pool = vector_of(cfg_of(*argv), num_envs=2), vector_of(cfg_of(*argv, *ENVPOOL),
                                                                    num_envs=2)
    try:
        assert pool.single_observation_space == builtin.single_observation_space
        assert pool.single_action_space == builtin.single_action_space
        assert pool.observation_space == builtin.observation_space
        assert pool.action_space == builtin.action_space
        for vector in (builtin, pool):
            obs, _ = vector.reset()
            assert obs in vector.observation_space
            obs, rewards, terminated, truncated, _ = vector.step(np.array([1, 3]))
            assert obs.dtype == np.uint8 and obs in vector.observation_space
            assert rewards.shape == (2,) and np.issubdtype(rewards.dtype, np.floating)
            assert terminated.dtype == truncated.dtype == np.bool_
    finally:
        builtin.close()
        pool.close()


def test_env_i_is_seeded_seed_plus_i_and_ale_v5_ids_keep_sticky_actions():
    # Sticky actions make the frames depend on the seed.
    cfg = cfg_of("--env=ALE/Breakout-v5", "--seed=5", *ENVPOOL)
    assert envpool_backend.envpool_config("atari", cfg.env, cfg)[1][
        "repeat_action_probability"] == 0.25
    assert envpool_backend.envpool_config("atari", "atari_breakout", cfg)[1][
        "repeat_action_probability"] == 0.0
    three, one = vector_of(cfg, first=0, num_envs=3), vector_of(cfg, first=2)
    try:
        a, _ = three.reset()
        b, _ = one.reset()
        same, other_seeds_differ, rng = [], False, np.random.default_rng(0)
        for _ in range(100):
            action = int(rng.integers(4))
            a, *_ = three.step(np.full(3, action))
            b, *_ = one.step(np.array([action]))
            same.append(bool((a[2] == b[0]).all()))
            other_seeds_differ |= not (a[0] == a[2]).all()
        assert all(same) and other_seeds_differ
        # A reset with another seed makes the pool again, seeded with it.
        three.reset(seed=7)
        assert three.pool.config["seed"] == 7
    finally:
        three.close()
        one.close()


def test_the_time_limit_counts_agent_steps_and_truncated_episodes_keep_their_last_frame():
    # 40 emulator frames are 10 agent steps of 4 frames, as ALE's max_num_frames_per_episode
    cfg = cfg_of("--env=atari_pong", "--env_kwargs=max_num_frames_per_episode=40", "--seed=0",
                 *ENVPOOL)
    envs = BatchedEnvVector(lambda i, n: vector_of(cfg, i, n), 2, 1, seed=0)
    try:
        for t in range(10):
            result = envs.step(np.arange(2), np.zeros(2, dtype=np.int64))
            last = envs.obs["obs"].copy()
        assert envs.truncated.all() and not envs.terminated.any()
        assert list(result.truncated_indices) == [0, 1]
        np.testing.assert_array_equal(result.final_obs["obs"], last)
        assert [(e.episode_return, e.length) for e in result.episodes] == [(0.0, 10)] * 2
        envs.step(np.arange(2), np.zeros(2, dtype=np.int64))  # the reset step: made no transition
        assert not envs.valid.any()
    finally:
        envs.close()


@pytest.mark.parametrize("argv, message", [
    (["--env=atari_pong", "--env_backend=envpool"], "needs --batched_sampling=True"),
    (["--env=CartPole-v1", *BACKEND], "(env family cartpole) has no EnvPool backend"),
    (["--env=atari_pong", *BACKEND, "--use_record_episode_statistics=false"],
     "needs --use_record_episode_statistics=True"),
    (["--env=atari_pong", *ENVPOOL, "--env_kwargs=obs_type=rgb"],
     "obs_type is not taken with --env_backend=envpool"),
])
def test_what_envpool_cannot_do_is_one_line_before_the_run(argv, message, tmp_path, capsys):
    assert train.main([*argv, f"--train_dir={tmp_path}", "--experiment=x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_a_game_envpool_lacks_is_refused(monkeypatch):
    ids = {k: v for k, v in envpool_backend.envpool_task_ids().items() if k != "pong-v5"}
    monkeypatch.setattr(envpool_backend, "envpool_task_ids", lambda: ids)
    with pytest.raises(UserError, match="EnvPool has no Atari game ALE/Pong-v5 .*builtin"):
        cfg_of("--env=atari_pong", *ENVPOOL)


def test_ale_names_map_to_envpool_ids_whatever_their_case():
    cfg = cfg_of("--env=atari_tic_tac_toe_3d", *ENVPOOL)  # ALE's TicTacToe3D-v5
    assert envpool_backend.envpool_config("atari", cfg.env, cfg)[0] == "TicTacToe3d-v5"


def test_threads_are_the_workers_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(envpool_backend.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert envpool_backend.pool_threads(num_envs=16, num_workers=2) == 8
    assert envpool_backend.pool_threads(num_envs=4, num_workers=2) == 4
    assert envpool_backend.pool_threads(num_envs=16, num_workers=32) == 1
    monkeypatch.setattr(envpool_backend.os, "sched_getaffinity", lambda pid: {3})  # pinned
    assert envpool_backend.pool_threads(num_envs=16, num_workers=2) == 1


@pytest.mark.slow
def test_tiny_pong_training_run_with_envpool_ends_by_itself(tmp_path):
    # the family preset's life episodes, sign rewards and game scores
    argv = ["--env=atari_pong", f"--train_dir={tmp_path}", "--experiment=pong", *BACKEND]
    assert train.main([*argv, "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=4",
                       "--worker_num_splits=2", "--rollout=16", "--batch_size=32",
                       "--num_batches_per_epoch=1", "--train_for_env_steps=512"]) == 0
    params = json.loads((tmp_path / "pong" / "config.json").read_text())["params"]
    assert params["env_backend"] == "envpool"
    checkpoint = sorted((tmp_path / "pong" / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
    state = load_checkpoint(checkpoint)
    assert state["policy_version"] >= 1 and state["env_steps"] >= 512


@pytest.mark.slow
def test_benchmark_raw_stepping_steps_envpool_and_times_its_threads():
    plan = make_plan(["--env=atari_pong", "--seconds=2", "--num_workers=2",
                     "--num_envs_per_worker=16", "--", *ENVPOOL])
    vector = vector_of(plan.cfg, num_envs=16)  # what each raw stepping worker makes
    vector.close()
    assert isinstance(vector, envpool_backend.EnvPoolVector)
    result = run_raw(plan)
    assert result.env_frames_per_sec > 0 and result.cpu_us_per_frame > 0
    assert result.env_steps % (16 * 4) == 0  # whole steps of 16 envs, 4 frames each


def test_missing_envpool_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "envpool", None)  # import envpool raises ImportError
    assert train.main(["--env=atari_pong", *ENVPOOL, f"--train_dir={tmp_path}",
                       "--experiment=x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'asyncrl[envpool]'" in err, err
    assert not (tmp_path / "x").exists()
