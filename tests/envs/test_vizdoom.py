"""The doom env family (Sample Factory's ViZDoom envs, envs/vizdoom.py): names and refusals, spaces,
Sample Factory's settings, reward scale and shaping, episode statistics, the preset, the error
without vizdoom, and a short training run that ends by itself and is evaluated with a video."""

import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from gymnasium.spaces import Discrete, Tuple
from helpers import REPO
from helpers.install_hints import assert_train_names_extra

from asyncrl import enjoy, train
from asyncrl.envs.command_line import parse_args
from asyncrl.envs import vizdoom as doom
from asyncrl.envs.registry import env_frames_per_step, find_env_family
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.runtime.supervisor import kill_with_children
from asyncrl.utils.errors import UserError
from asyncrl.utils.processes import prepare_child_process

pytestmark = pytest.mark.slow

# A layout and model small enough for a test run of a few seconds.
TINY = ["--device=cpu", "--num_workers=1", "--num_envs_per_worker=4", "--worker_num_splits=1",
        "--rollout=16", "--batch_size=64", "--rnn_size=32", "--encoder_conv_mlp_layers", "32"]

# Sample Factory's action spaces (sf_examples/vizdoom/doom/action_space.py and doom_utils.py).
SF_ACTION_SPACES = {
    "doom_basic": Discrete(4),
    "doom_defend_the_center": Tuple((Discrete(3), Discrete(2))),
    "doom_defend_the_center_flat_actions": Discrete(4),
    "doom_defend_the_line": Tuple((Discrete(3), Discrete(2))),
    "doom_health_gathering": Discrete(5),
    "doom_health_gathering_supreme": Discrete(5),
    "doom_my_way_home": Tuple((Discrete(3), Discrete(3))),
    "doom_my_way_home_flat_actions": Discrete(5),
    "doom_deadly_corridor": Tuple((Discrete(3), Discrete(3), Discrete(3), Discrete(2))),
}


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the engine makes a _vizdoom folder in the working directory


def cfg_of(*argv):
    return parse_args(list(argv), scope="train", prog="test").config()


@pytest.fixture
def make():
    """make(name, *argv): an env of the family as asyncrl.train makes it, closed after the test."""
    pytest.importorskip("vizdoom")
    envs = []

    def make_env(name, *argv):
        envs.append(find_env_family(name).make_env(name, cfg_of(f"--env={name}", *argv), 0))
        return envs[-1]

    yield make_env
    for env in envs:
        env.close()


def play(env, policy, seed):
    """One episode: (return, length, terminated, truncated, info of the last step)."""
    env.reset(seed=seed)
    total, length = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(policy())
        total, length = total + reward, length + 1
        if terminated or truncated:
            return total, length, terminated, truncated, info


def engines_in(folder):
    """ViZDoom engines running in `folder` (an engine's working directory is its creator's)."""
    return [p for p in psutil.process_iter(["name", "cwd"])
            if p.info["name"] == "vizdoom" and p.info["cwd"] == str(folder)]


def random_episodes(env, count=10):
    """Episodes of uniformly random actions with seeds 0, 1, ...: (return, terminated, info)."""
    env.action_space.seed(0)
    for seed in range(count):
        total, _, terminated, _, info = play(env, env.action_space.sample, seed)
        yield total, terminated, info


@pytest.mark.parametrize("name", sorted(SF_ACTION_SPACES))
def test_spaces_of_each_env_are_sample_factorys(make, name):
    env = make(name)
    assert env.action_space == SF_ACTION_SPACES[name]
    assert env.observation_space.shape == (72, 128, 3) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        assert env.observation_space.contains(obs) and obs.std() > 0
        obs, *_ = env.step(env.action_space.sample())
    assert [str(b).split(".")[-1] for b in env._game.get_available_buttons()] == \
        list(doom.SCENARIOS[name].buttons)
    assert set(SF_ACTION_SPACES) == set(doom.SCENARIOS)


def test_doom_basic_scales_rewards_by_a_hundredth_and_truncates_at_the_timeout(make):
    env = make("doom_basic")
    # Idle: -1 a tic for the scenario's 300 tics (75 steps of 4), then the timeout.
    total, length, terminated, truncated, info = play(env, lambda: 0, seed=3)
    assert (length, terminated, truncated) == (75, False, True)
    assert env._game.get_total_reward() == -300.0 and total == pytest.approx(-3.0)
    assert info["episode_extra_stats"] == {"kills": 0.0, "ammo": 50.0}
    # At random the monster dies sooner or later: +101, scaled like every other reward.
    for total, terminated, info in random_episodes(env):
        assert total == pytest.approx(0.01 * env._game.get_total_reward())
        if info["episode_extra_stats"]["kills"] == 1.0:
            assert terminated and info["episode_extra_stats"]["ammo"] < 50
            break
    else:
        pytest.fail("no kill in 10 random episodes")


def test_gathering_shaping_adds_one_per_medkit_and_reports_the_scenario_return(make):
    env = make("doom_health_gathering_supreme")
    env.reset(seed=0)
    # Sample Factory's .cfg: +0.01 a tic alive, no death penalty (vizdoom's own: 1 and 100).
    assert (env._game.get_living_reward(), env._game.get_death_penalty()) == (0.01, 0.0)
    for total, terminated, info in random_episodes(env):
        stats = info["episode_extra_stats"]
        assert set(stats) == {"health", "deaths", "scenario_return"}
        assert stats["scenario_return"] == pytest.approx(env._game.get_total_reward())
        assert stats["deaths"] == float(terminated) and (stats["health"] <= 0) == terminated
        medkits = total - stats["scenario_return"]
        assert medkits == pytest.approx(round(medkits))  # a whole number of +1s
        if medkits >= 1:
            break
    else:
        pytest.fail("no medkit in 10 random episodes")


def test_fights_report_kills_health_ammo_and_deaths(make):
    env = make("doom_defend_the_center")
    _, _, terminated, _, info = play(env, lambda: (1, 1), seed=0)  # turn left, shoot
    stats = info["episode_extra_stats"]
    assert set(stats) == {"kills", "health", "ammo", "deaths"}
    assert stats["kills"] >= 1 and stats["ammo"] < 26
    assert stats["deaths"] == float(terminated)


def test_channels_first_is_the_same_picture(make):
    hwc, chw = make("doom_basic"), make("doom_basic", "--pixel_format=CHW")
    assert chw.observation_space.shape == (3, 72, 128)
    a, _ = hwc.reset(seed=7)
    b, _ = chw.reset(seed=7)
    for action in (1, 1, 3, 2):
        assert np.array_equal(np.moveaxis(b, 0, -1), a)
        a, *_ = hwc.step(action)
        b, *_ = chw.step(action)


def test_nearest_resize_picks_opencvs_pixels():
    assert doom.nearest_indices(120, 72)[:6].tolist() == [0, 1, 3, 5, 6, 8]
    assert doom.nearest_indices(160, 128)[:6].tolist() == [0, 1, 2, 3, 5, 6]


def test_names_sample_factory_has_but_vizdoom_cannot_make_are_one_line_errors(tmp_path, capsys):
    for name in ("doom_two_colors_easy", "doom_battle", "doom_deathmatch_bots", "doom_duel"):
        family = find_env_family(name)
        with pytest.raises(UserError, match=f"--env={name} is not available: "):
            family.make_env(name, cfg_of(f"--env={name}"), 0)
    assert train.main(["--env=doom_battle", f"--train_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "comes with Sample Factory's examples" in err
    with pytest.raises(UserError, match="similar registered envs: doom_basic"):
        find_env_family("doom_basik")


def test_preset_repeats_actions_four_tics_and_counts_frames():
    cfg = cfg_of("--env=doom_basic")
    assert cfg.env_frameskip == 4 and env_frames_per_step(cfg) == 4
    assert (cfg.encoder_conv_architecture, cfg.use_rnn, cfg.rnn_type) == ("convnet_simple", True, "gru")
    assert (cfg.exploration_loss, cfg.obs_scale) == ("symmetric_kl", 255.0)
    assert cfg_of("--env=doom_basic", "--env_frameskip=2").env_frameskip == 2


def test_missing_vizdoom_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # import vizdoom raises ImportError
    assert_train_names_extra("doom_basic", "vizdoom", tmp_path, capsys)


def test_short_doom_basic_run_ends_by_itself_and_plays_a_video(tmp_path):
    pytest.importorskip("vizdoom")
    imageio = pytest.importorskip("imageio.v2")  # the 'video' extra
    runs = [f"--train_dir={tmp_path}", "--experiment=basic"]
    assert train.main(["--env=doom_basic", *runs, "--train_for_env_steps=2048", *TINY]) == 0
    checkpoint = sorted((tmp_path / "basic" / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
    env_steps = load_checkpoint(checkpoint)["env_steps"]
    assert env_steps >= 2048 and env_steps % 4 == 0  # 4 frames an agent step
    episodes = enjoy.evaluate(["--env=doom_basic", *runs, "--max_num_episodes=1",
                               "--save_video=true"])
    assert len(episodes) == 1 and set(episodes[0].extra) == {"kills", "ammo"}
    reader = imageio.get_reader(tmp_path / "basic" / "replay.mp4")
    try:  # the engine's 160x120 screen, a frame after the reset and one a step
        assert reader.count_frames() == episodes[0].length + 1
        assert reader.get_data(0).shape == (120, 160, 3)
    finally:
        reader.close()


@pytest.mark.parametrize("preset, experiment", [("doom_health_gathering_supreme", "doom_hgs"),
                                                ("doom_defend_the_center", "doom_dtc")])
def test_scenario_presets_train_as_the_docs_say(tmp_path, preset, experiment):
    """docs/vizdoom.md's commands, on a tiny layout and a budget of a few batches instead of 30
    minutes."""
    pytest.importorskip("vizdoom")
    path = REPO / "configs" / f"{preset}.yaml"
    assert cfg_of(f"--config={path}").train_for_seconds == 1800
    assert train.main([f"--config={path}", f"--experiment={experiment}", f"--train_dir={tmp_path}",
                       "--train_for_env_steps=1024", *TINY]) == 0
    assert (tmp_path / experiment / "config.json").exists()
    # Stopping this early, actions still arrive after the stop: they must not restart engines.
    assert engines_in(tmp_path) == []


def _hold_an_engine(engines):
    """A worker's life: an env with a running engine, ignoring SIGTERM as workers do."""
    prepare_child_process("test-doom-worker")
    env = find_env_family("doom_basic").make_env("doom_basic", cfg_of("--env=doom_basic"), 0)
    env.reset(seed=0)
    engines.put(([child.pid for child in psutil.Process().children()], env._game.get_instance_id()))
    time.sleep(60)


def test_a_killed_worker_takes_its_engines_with_it():
    """The engine is a process of its own that would outlive a killed worker (a worker that did
    not stop in time, or sent no heartbeat): the runner kills the worker's children with it."""
    pytest.importorskip("vizdoom")
    ctx = multiprocessing.get_context("fork")
    engines = ctx.Queue()
    worker = ctx.Process(target=_hold_an_engine, args=(engines,), daemon=True)
    worker.start()
    pids, instance = engines.get(timeout=30)
    assert len(pids) == 1 and psutil.pid_exists(pids[0])
    kill_with_children(worker)
    worker.join(timeout=5)
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)],
                                 timeout=5)
    assert not alive and not worker.is_alive()
    for segment in Path("/dev/shm").glob(f"ViZDoom*{instance}"):  # left behind by the kill
        segment.unlink()
