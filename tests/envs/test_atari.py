"""The Atari env family: names, preprocessing, the preset, frame-skip accounting, the error without
ale-py, and a tiny training run on Pong (in-process, serial mode)."""

import json
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import REPO
from helpers.install_hints import assert_train_names_extra

from asyncrl import enjoy, train
from asyncrl.envs.command_line import parse_args
from asyncrl.envs import atari
from asyncrl.envs.registry import env_frames_per_step, find_env_family
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.utils.errors import UserError



def cfg_of(*argv):
    return parse_args(list(argv), scope="train", prog="test").config()


def make(*argv):
    cfg = cfg_of(*argv)
    return find_env_family(cfg.env).make_env(cfg.env, cfg, 0), cfg


def test_names_map_to_ale_ids_and_typos_are_suggested():
    pytest.importorskip("ale_py")
    assert atari.ale_env_id("atari_pong") == "ALE/Pong-v5"
    assert atari.ale_env_id("atari_space_invaders") == "ALE/SpaceInvaders-v5"
    assert atari.ale_env_id("atari_spaceinvaders") == "ALE/SpaceInvaders-v5"
    assert atari.ale_env_id("atari_montezuma") == "ALE/MontezumaRevenge-v5"
    assert atari.ale_env_id("ALE/Breakout-v5") == "ALE/Breakout-v5"
    assert find_env_family("ALE/Breakout-v5").name == "atari"
    assert find_env_family("atari_breakout").name == "atari"
    assert "atari_pong" in atari.atari_names() and "atari_space_invaders" in atari.atari_names()
    with pytest.raises(UserError, match="unknown environment; similar registered envs: atari_pong"):
        find_env_family("atari_pogn")


def test_sample_factory_names_have_no_sticky_actions_and_v5_ids_keep_them():
    pytest.importorskip("ale_py")
    for name, expected in (("atari_pong", 0.0), ("ALE/Pong-v5", 0.25)):
        env, _ = make(f"--env={name}")
        try:
            assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(expected)
        finally:
            env.close()


def test_preset_and_family_parameters():
    cfg = cfg_of("--env=atari_pong")
    assert (cfg.env_frameskip, cfg.env_framestack, cfg.pixel_format) == (4, 4, "auto")
    assert cfg.summaries_use_frameskip is True and env_frames_per_step(cfg) == 4
    assert cfg.encoder_conv_architecture == "convnet_impala" and cfg.encoder_conv_mlp_layers == (512,)
    assert (cfg.obs_subtract_mean, cfg.obs_scale, cfg.normalize_input) == (0.0, 255.0, False)
    assert env_frames_per_step(cfg_of("--env=atari_pong", "--summaries_use_frameskip=false")) == 1
    assert env_frames_per_step(cfg_of("--env=CartPole-v1")) == 1
    with pytest.raises(UserError, match="unknown parameter --env_frameskip"):
        cfg_of("--env=CartPole-v1", "--env_frameskip=4")


def test_atari_pong_observations_are_stacked_uint8_frames_and_it_steps():
    pytest.importorskip("ale_py")
    env, _ = make("--env=atari_pong")
    try:
        assert env.observation_space.shape == (4, 84, 84)
        assert env.observation_space.dtype == np.uint8
        obs, _ = env.reset(seed=3)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs.max() > obs.min()
        ale = env.unwrapped.ale
        for _ in range(20):
            before = ale.getEpisodeFrameNumber()
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert ale.getEpisodeFrameNumber() - before == 4  # --env_frameskip of the preset
            assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
            assert not (terminated or truncated)
        # The stack holds the last 4 frames, oldest first: it shifts by one each step.
        previous = obs
        obs, *_ = env.step(0)
        assert np.array_equal(obs[:3], previous[1:])
    finally:
        env.close()
    # Pong waits for FIRE after a reset.
    wrappers = []
    inner = env
    while isinstance(inner, gym.Wrapper):
        wrappers.append(type(inner).__name__)
        inner = inner.env
    assert "FireReset" in wrappers and "AtariFramePreprocessing" in wrappers


def test_pixel_format_hwc_and_framestack_reach_the_model():
    pytest.importorskip("ale_py")
    env, cfg = make("--env=atari_breakout", "--pixel_format=HWC", "--env_framestack=2",
                    "--env_frameskip=2", "--encoder_conv_mlp_layers", "16")
    try:
        assert env.observation_space.shape == (84, 84, 2)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (84, 84, 2) and obs.flags["C_CONTIGUOUS"]
        model = ActorCritic(cfg, env.observation_space, env.action_space)
        out = model.policy_step({"obs": torch.from_numpy(obs)[None]})
        assert out.actions.shape == (1,) and 0 <= int(out.actions[0]) < env.action_space.n
    finally:
        env.close()


def test_area_resize_averages_boxes():
    resize = atari.AreaResize((210, 160), 84)
    assert np.all(resize(np.full((210, 160), 77, np.uint8)) == 77)
    halves = np.zeros((210, 160), np.uint8)
    halves[105:] = 200  # 105 rows = 42 output rows of 2.5 rows each
    out = resize(halves)
    assert out.shape == (84, 84) and out.dtype == np.uint8
    assert np.all(out[:42] == 0) and np.all(out[42:] == 200)
    stripe = np.zeros((210, 160), np.uint8)
    stripe[:, 0] = 210  # output column 0 covers source columns [0, 1.905)
    assert resize(stripe)[0, 0] == round(210 / (160 / 84))
    weights = atari.area_resize_matrix(210, 84)
    assert np.allclose(weights.sum(axis=1), 1.0) and np.allclose(weights.sum(axis=0), 84 / 210)


@pytest.mark.parametrize("src_shape,size", [((210, 160), 84), ((250, 160), 84), ((100, 90), 64),
                                            ((84, 84), 84)])
def test_area_resize_rounds_the_exact_box_averages(src_shape, size):
    """Against the box averages computed pixel by pixel in float64: each output pixel's source
    box [i * src/size, (i+1) * src/size) in both axes, partial pixels by their overlap."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, src_shape, dtype=np.uint8)

    def boxes(src):
        scale = src / size
        return [(i * scale, (i + 1) * scale) for i in range(size)]

    def overlap(lo, hi, j):
        return max(0.0, min(hi, j + 1) - max(lo, j))

    expected = np.zeros((size, size))
    for i, (top, bottom) in enumerate(boxes(src_shape[0])):
        for k, (left, right) in enumerate(boxes(src_shape[1])):
            rows = range(int(top), min(int(np.ceil(bottom)), src_shape[0]))
            cols = range(int(left), min(int(np.ceil(right)), src_shape[1]))
            total = sum(overlap(top, bottom, r) * overlap(left, right, c) * float(frame[r, c])
                        for r in rows for c in cols)
            expected[i, k] = total / ((bottom - top) * (right - left))
    out = atari.AreaResize(src_shape, size)(frame)
    assert np.abs(out - expected).max() <= 0.5 + 1e-3


def test_frame_stack_matches_gymnasiums():
    """Same observations as gymnasium's FrameStackObservation (padding with the reset's frame)
    through resets, and each returned stack is the caller's own array."""
    def env():
        return gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, max_episode_steps=7)
    ours, theirs = atari.FrameStack(env(), 3), gym.wrappers.FrameStackObservation(env(), 3)
    assert ours.observation_space == theirs.observation_space
    kept = []
    for seed in (1, 2):
        a, _ = ours.reset(seed=seed)
        b, _ = theirs.reset(seed=seed)
        assert np.array_equal(a, b)
        for step in range(7):
            a, _, _, truncated, _ = ours.step(step % 2)
            b, *_ = theirs.step(step % 2)
            assert np.array_equal(a, b)
            kept.append((a, a.copy()))
        assert truncated
    assert all(np.array_equal(a, copy) for a, copy in kept)


def test_each_frame_is_the_resized_max_of_the_last_two_emulator_screens():
    """Against a grayscale ALE env stepped by hand: same seed, same no-ops, FIRE, then each
    action repeated 4 frames; the newest stacked frame is the area resize of the pixelwise max
    of the screens of the third and fourth frame."""
    pytest.importorskip("ale_py")
    env, _ = make("--env=atari_pong")
    reference = gym.make("ALE/Pong-v5", frameskip=1, obs_type="grayscale",
                         repeat_action_probability=0.0)
    resize = atari.AreaResize((210, 160), 84)
    try:
        obs, _ = env.reset(seed=5)
        reference.reset(seed=5)
        noops = int(reference.unwrapped.np_random.integers(1, atari.NOOP_MAX + 1))
        for _ in range(noops):
            reference.step(0)
        actions = [1, 2] + [int(a) for a in np.random.default_rng(0).integers(6, size=40)]
        for i, action in enumerate(actions):
            if i >= 2:  # FireReset's two steps (FIRE, then RIGHT) are part of the reset
                obs, *_ = env.step(action)
            screens = [reference.step(action)[0] for _ in range(4)]
            if i >= 1:  # the reset's observation is the frame after RIGHT
                assert np.array_equal(obs[-1], resize(np.maximum(screens[2], screens[3])))
    finally:
        env.close()
        reference.close()


def _preprocessing(env):
    while not isinstance(env, atari.AtariFramePreprocessing):
        env = env.env
    return env


def _pong_preprocessing(record_below: bool) -> atari.AtariFramePreprocessing:
    env = gym.make("ALE/Pong-v5", frameskip=1, obs_type="ram", repeat_action_probability=0.0)
    if record_below:  # a wrapper that must see every frame
        env = gym.wrappers.RecordEpisodeStatistics(env)
    return atari.AtariFramePreprocessing(env, frame_skip=4)


@pytest.mark.slow
def test_stepping_the_emulator_directly_gives_the_same_transitions_as_env_step():
    """Frames are stepped on the emulator itself when only gymnasium's checks are below the
    preprocessing; with a wrapper below that must see every frame (RecordEpisodeStatistics here)
    they go through env.step. Same seed, same actions, through a whole episode: the same
    observations, rewards, ends and info."""
    pytest.importorskip("ale_py")
    direct, through = _pong_preprocessing(False), _pong_preprocessing(True)
    assert direct.steps_emulator_directly and not through.steps_emulator_directly
    # The family's env, with its RecordEpisodeStatistics above the preprocessing, steps directly.
    family_env, cfg = make("--env=atari_pong")
    assert cfg.use_record_episode_statistics and _preprocessing(family_env).steps_emulator_directly
    family_env.close()
    try:
        obs_a, _ = direct.reset(seed=3)
        obs_b, _ = through.reset(seed=3)
        assert np.array_equal(obs_a, obs_b)
        rewards = 0.0
        for action in np.random.default_rng(1).integers(6, size=5000).tolist():
            a = direct.step(action)
            b = through.step(action)
            assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
            assert a[4] == {k: v for k, v in b[4].items() if k != "episode"}
            rewards += a[1]
            if a[2] or a[3]:
                break
        assert a[2] and rewards != 0.0  # a whole game of Pong, points scored
        assert b[4]["episode"]["r"] == rewards  # the statistics below still saw every frame
    finally:
        direct.close()
        through.close()


def test_episodic_life_sign_rewards_and_the_games_score():
    """With the preset, a Space Invaders life lost ends the episode while the game goes on, the
    learner sees rewards of -1, 0 or +1, and the statistics get the whole game's score once, at
    its end: the sum of the game's raw rewards (read below the wrappers)."""
    pytest.importorskip("ale_py")
    env, cfg = make("--env=atari_space_invaders")
    assert (cfg.episodic_life, cfg.clip_reward_sign, cfg.use_record_episode_statistics) == \
        (True, True, True)
    raw: list[float] = []  # every reward the frame skipping returns, in order
    preprocessing = _preprocessing(env)
    step = preprocessing.step

    def spy(action):
        out = step(action)
        raw.append(out[1])
        return out

    preprocessing.step = spy
    rng = np.random.default_rng(5)
    try:
        env.reset(seed=5)
        lives_at_start = env.unwrapped.ale.lives()
        rewards, lives_at_ends = [], []
        for _ in range(5000):
            _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            rewards.append(reward)
            if terminated or truncated:
                lives_at_ends.append(env.unwrapped.ale.lives())
                if "episode" in info:
                    break
                env.reset()  # a life lost: the game goes on
    finally:
        env.close()
    assert set(rewards) <= {0.0, 1.0} and max(raw) >= 5  # invaders are worth 5 to 30 points
    # One episode per life; only the last one ends the game, and only it is recorded.
    assert lives_at_start == 3 and lives_at_ends == [2, 1, 0]
    assert info["episode"]["r"] == sum(raw) > sum(rewards)


def test_life_episodes_and_sign_rewards_need_the_games_score():
    with pytest.raises(UserError, match=r"--episodic_life=True needs "
                                        r"--use_record_episode_statistics=True.*--episodic_life=False"):
        make("--env=atari_pong", "--use_record_episode_statistics=false",
             "--clip_reward_sign=false")
    with pytest.raises(UserError, match=r"--episodic_life=True --clip_reward_sign=True needs"):
        make("--env=atari_pong", "--use_record_episode_statistics=false")


def test_an_experiment_stored_before_life_episodes_resumes_as_it_trained():
    """A config.json written before --episodic_life and --clip_reward_sign existed lacks them:
    on resume they are off, as they were then, not the family preset's newer setting."""
    parsed = parse_args(["--env=atari_pong"], scope="train", prog="test")
    assert parsed.config().episodic_life and parsed.config().clip_reward_sign  # a new experiment
    stored = {name: value for name, value in parsed.config().to_dict().items()
              if name not in ("episodic_life", "clip_reward_sign")}
    stored["use_record_episode_statistics"] = False
    resumed = parsed.config(stored)
    assert not resumed.episodic_life and not resumed.clip_reward_sign
    assert not resumed.use_record_episode_statistics


def test_missing_ale_py_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py raises ImportError
    atari._register_ale_envs.cache_clear()
    try:
        assert_train_names_extra("atari_pong", "atari", tmp_path, capsys)
    finally:
        atari._register_ale_envs.cache_clear()


@pytest.mark.slow
def test_tiny_pong_training_run_counts_frames_and_evaluates(tmp_path, capsys):
    pytest.importorskip("ale_py")
    argv = ["--env=atari_pong", f"--train_dir={tmp_path}", "--experiment=pong"]
    assert train.main([*argv, "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=2",
                       "--rollout=16", "--batch_size=32", "--train_for_env_steps=64"]) == 0
    params = json.loads((tmp_path / "pong" / "config.json").read_text())["params"]
    assert params["env_frameskip"] == 4 and params["encoder_conv_architecture"] == "convnet_impala"
    checkpoint = sorted((tmp_path / "pong" / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
    state = load_checkpoint(checkpoint)
    assert state["policy_version"] >= 1
    # One training batch is 4 x 32 transitions (preset num_batches_per_epoch=4): 4 frames each.
    assert state["env_steps"] >= 4 * 128 and state["env_steps"] % 4 == 0
    assert any(k.endswith("image_encoders.0.conv_head.0.weight") for k in state["model"])
    # The summary counts frames and agent steps.
    log = (tmp_path / "pong" / "asyncrl_log.txt").read_text()
    frames, agent_steps = map(int, re.search(r"Stopped: .* (\d+) env steps in .*\), (\d+) agent "
                                             r"steps", log).groups())
    assert frames == state["env_steps"] and agent_steps == frames // 4
    assert enjoy.main([*argv, "--max_num_frames=40", "--device=cpu", "--save_video=true",
                       "--video_frames=6"]) == 0
    assert "no episode finished within 40 frames" in capsys.readouterr().out
    imageio = pytest.importorskip("imageio.v2")
    reader = imageio.get_reader(tmp_path / "pong" / "replay.mp4")
    assert reader.count_frames() == 6 and reader.get_data(5).shape == (210, 160, 3)  # in color
    reader.close()


@pytest.mark.slow
def test_sample_factory_gpu_preset_trains_synchronously_with_a_decaying_rate(tmp_path, monkeypatch):
    """docs/atari.md's command for configs/atari_sf_gpu.yaml on a budget of two small batches (in
    serial mode, on the CPU, rollouts of 32 and minibatches of 64 instead of 128 and 256):
    Sample Factory's setup builds, trains synchronously on a batch of each of its 8 envs' rollouts
    and decays the learning rate to 0 at train_for_env_steps."""
    pytest.importorskip("ale_py")
    argv = ["--config=configs/atari_sf_gpu.yaml", "--env=atari_breakout", "--experiment=breakout",
            f"--train_dir={tmp_path}", "--train_for_env_steps=2048", "--serial_mode=true",
            "--device=cpu", "--rollout=32", "--batch_size=64"]
    exp = tmp_path / "breakout"
    params = train_from_the_repository(monkeypatch, argv, exp)
    assert (params["encoder_conv_architecture"], params["async_rl"], params["lr_schedule"]) == \
        ("convnet_atari", False, "linear_decay")
    assert (params["episodic_life"], params["clip_reward_sign"], params["normalize_input"]) == \
        (True, True, True)
    state = load_checkpoint(sorted((exp / "checkpoint_p0").glob("checkpoint_*.pth"))[-1])
    # Two batches of 8 x 32 agent steps (1,024 frames each), 4 epochs x 4 SGD steps each.
    assert (state["env_steps"], state["train_step"], state["policy_version"]) == (2048, 32, 2)
    # The second batch was trained at 2,048 of 2,048 frames: the end of the schedule.
    assert state["learning_rate"] == 0.0



@pytest.mark.slow
def test_sample_factory_gpu_preset_on_the_cpu_stops_by_time(tmp_path, monkeypatch):
    """docs/atari.md's 30-minute Pong run of configs/atari_sf_gpu.yaml on a CPU machine, cut to a
    few seconds: --device=cpu overrides the preset's GPU, --seed is kept, and the run stops
    by itself on train_for_seconds with the frames it made recorded."""
    pytest.importorskip("ale_py")
    argv = ["--config=configs/atari_sf_gpu.yaml", "--device=cpu", "--seed=1",
            "--train_for_seconds=6", "--experiment=pong_sf", f"--train_dir={tmp_path}",
            "--serial_mode=true", "--rollout=32", "--batch_size=64"]
    exp = tmp_path / "pong_sf"
    params = train_from_the_repository(monkeypatch, argv, exp)
    assert (params["env"], params["device"], params["seed"]) == ("atari_pong", "cpu", 1)
    finished = json.loads((exp / "finished.json").read_text())
    assert finished["stop_reason"] == "reached train_for_seconds=6"
    assert finished["env_steps"] > 0 and finished["env_steps"] % (8 * 32 * 4) == 0


def train_from_the_repository(monkeypatch, argv: list[str], exp: Path) -> dict:
    """Trains from the repository root, where the docs' preset paths start; returns the stored
    parameters of the experiment `exp`."""
    monkeypatch.chdir(REPO)
    assert train.main(argv) == 0
    return json.loads((exp / "config.json").read_text())["params"]
