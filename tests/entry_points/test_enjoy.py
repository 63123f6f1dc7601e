"""asyncrl.enjoy: per-episode output, the summary, --json and --save_video (headless mp4)."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from asyncrl import enjoy, train
from asyncrl.envs.registry import EnvFamily, make_env
from asyncrl.utils import video
from asyncrl.utils.errors import UserError

imageio = pytest.importorskip("imageio.v2")  # the 'video' extra, in the 'test' extra too

TINY = ["--env=CartPole-v1", "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=8",
        "--worker_num_splits=1", "--rollout=16", "--batch_size=128", "--num_batches_per_epoch=1",
        "--encoder_mlp_layers", "16"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("runs")
    assert train.main([*TINY, f"--train_dir={train_dir}", "--experiment=cp",
                       "--train_for_env_steps=1024"]) == 0
    return ["--env=CartPole-v1", f"--train_dir={train_dir}", "--experiment=cp", "--seed=5"]


def read_video(path):
    reader = imageio.get_reader(path)
    try:
        return reader.count_frames(), reader.get_data(0), reader.get_meta_data()["fps"]
    finally:
        reader.close()


@pytest.mark.slow
def test_video_and_json_of_a_tiny_cartpole_experiment(experiment, tmp_path, capsys):
    report_path = tmp_path / "eval.json"
    episodes = enjoy.evaluate([*experiment, "--max_num_episodes=3", "--save_video=true",
                               f"--json={report_path}"])
    out = capsys.readouterr().out
    returns = [e.episode_return for e in episodes]
    assert len(episodes) == 3 and all(e.episode_return == e.length for e in episodes)
    assert f"episode 3: return {returns[2]:.2f}, length {episodes[2].length}" in out
    assert f"mean return over 3 episodes: {np.mean(returns):.2f} (std {np.std(returns):.2f}" in out

    report = json.loads(report_path.read_text())
    assert [e["return"] for e in report["episodes"]] == returns
    assert [e["length"] for e in report["episodes"]] == [e.length for e in episodes]
    summary = report["summary"]
    assert summary["episodes"] == 3 and summary["return_mean"] == pytest.approx(np.mean(returns))
    assert summary["return_min"] == min(returns) and summary["return_max"] == max(returns)
    assert report["env_frames"] == sum(e.length for e in episodes)
    assert report["checkpoint"]["env_steps"] >= 1024

    # Each episode's first frame (after its reset) and one frame per step.
    frames, first, fps = read_video(report["video"])
    assert report["video"].endswith("cp/replay.mp4") and "video: " in out
    assert frames == sum(e.length for e in episodes) + 3
    assert first.shape == (400, 600, 3) and first.std() > 0 and fps == 50  # CartPole's render_fps
    assert not list(Path(report["video"]).parent.glob("tmp_*"))  # no partial file left


@pytest.mark.slow
def test_video_of_the_first_episode_only_with_a_name_and_fps(experiment, capsys):
    episodes = enjoy.evaluate([*experiment, "--max_num_episodes=2", "--save_video=true",
                               "--video_frames=-1", "--video_name=first", "--fps=10"])
    path = capsys.readouterr().out.split("video: ")[1].split(" (")[0]
    assert path.endswith("cp/first.mp4")
    frames, _, fps = read_video(path)
    assert frames == episodes[0].length + 1 and fps == 10
    enjoy.evaluate([*experiment, "--max_num_episodes=1", "--save_video=true",
                    "--video_frames=7", "--video_name=seven.mp4"])
    assert read_video(path.replace("first.mp4", "seven.mp4"))[0] == 7


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--json=/no/such/folder/eval.json"], "--json=/no/such/folder/eval.json: folder "
                                           "/no/such/folder does not exist"),
    (["--save_video=true", "--video_frames=0"], "--video_frames=0 records nothing"),
    (["--save_video=true", "--video_name=a/b.mp4"], "must be a file name"),
])
def test_bad_evaluation_options(experiment, argv, message):
    with pytest.raises(UserError, match=message):
        enjoy.evaluate([*experiment, *argv])


@pytest.mark.slow
def test_missing_video_extra_is_one_line(experiment, monkeypatch, capsys):
    real_find_spec = video.importlib.util.find_spec
    monkeypatch.setattr(video.importlib.util, "find_spec",
                        lambda name: None if name == "imageio_ffmpeg" else real_find_spec(name))
    assert enjoy.main([*experiment, "--save_video=true"]) == 2
    assert capsys.readouterr().err == ("asyncrl: error: --save_video needs imageio-ffmpeg, which "
                                       "is not installed: pip install 'asyncrl[video]'\n")


class Blind(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}
    observation_space = gym.spaces.Box(0, 1, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def render(self):
        return None


def test_envs_that_cannot_render_are_one_line_errors():
    plain = EnvFamily(name="plain", matches=lambda name: name == "plain",
                      make_env=lambda name, cfg, i: gym.make("CartPole-v1"))
    with pytest.raises(UserError, match="the make_env of env family plain takes no render_mode"):
        make_env(plain, "plain", None, 0, render_mode="rgb_array")
    budget = video.VideoBudget(max_frames=10)
    with pytest.raises(UserError, match="made its env with render_mode=None, not rgb_array"):
        video.FrameRecorder(gym.make("CartPole-v1"), "CartPole-v1", budget)
    with pytest.raises(UserError, match="rendered NoneType , not an rgb_array frame"):
        video.FrameRecorder(Blind(render_mode="rgb_array"), "Blind", budget).reset()


@pytest.mark.slow
def test_mujoco_renders_off_screen():
    pytest.importorskip("mujoco")
    from asyncrl.envs.command_line import parse_args

    video.check_video_support()  # MuJoCo renders with EGL: no display needed
    parsed = parse_args(["--env=mujoco_halfcheetah"], scope="enjoy", prog="test")
    env = make_env(parsed.family, "mujoco_halfcheetah", parsed.config(), 0, render_mode="rgb_array")
    budget = video.VideoBudget(max_frames=2)
    recorder = video.FrameRecorder(env, "mujoco_halfcheetah", budget)
    recorder.reset(seed=0)
    recorder.step(env.action_space.sample())
    frames = budget.take()
    assert len(frames) == 2 and frames[0].shape == (480, 480, 3) and frames[1].std() > 0
    recorder.close()
