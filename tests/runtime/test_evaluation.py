"""Evaluation during training (--eval_every_env_steps): snapshots played on eval envs of their own
(with --eval_env_kwargs), eval/... summaries, the status line and the log, and the best checkpoint
chosen by the evaluation's return; in serial and in parallel mode."""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from asyncrl import train
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.vector import EnvVector
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.plot import read_curve
from asyncrl.runtime.evaluation import EpisodePlayer, episode_quotas
from asyncrl.runtime.progress import next_multiple
from asyncrl.utils.errors import UserError

TINY = ["--env=CartPole-v1", "--num_workers=2", "--num_envs_per_worker=4", "--rollout=16",
        "--batch_size=64", "--num_batches_per_epoch=2", "--encoder_mlp_layers", "16",
        "--use_rnn=false", "--seed=1", "--device=cpu"]
EVAL = ["--eval_every_env_steps=1024", "--eval_episodes=3", "--eval_deterministic=true",
        "--eval_env_kwargs=max_episode_steps=20", "--save_best_metric=eval/return",
        "--save_best_after=0"]


def run(tmp_path: Path, *argv: str) -> tuple[Path, str]:
    assert train.main([*TINY, *EVAL, f"--train_dir={tmp_path}", "--experiment=exp", *argv]) == 0
    exp = tmp_path / "exp"
    return exp, (exp / "asyncrl_log.txt").read_text()


def evaluations(log: str) -> list[tuple[int, float, int, float]]:
    """(env steps, return, episodes, length) of each evaluation the log reports."""
    pattern = (r"evaluation at env_steps=(\d+) \(policy_version=\d+, deterministic actions\): "
               r"return ([-\d.]+) .* over (\d+) episodes, length ([\d.]+)")
    return [(int(s), float(r), int(n), float(length))
            for s, r, n, length in re.findall(pattern, log)]


@pytest.mark.slow
@pytest.mark.parametrize("serial", [True, False])
def test_evaluations_are_logged_summarized_and_choose_the_best_checkpoint(tmp_path, serial):
    exp, log = run(tmp_path, f"--serial_mode={serial}", "--train_for_env_steps=5000")
    evals = evaluations(log)
    final = load_checkpoint(sorted((exp / "checkpoint_p0").glob("checkpoint_*.pth"))[-1])
    # One evaluation per 1024 env steps that a report crossed (serial mode plays them inline;
    # in parallel mode the last ones may not have come back before the stop).
    assert 1 <= len(evals) <= final["env_steps"] // 1024
    steps = [s for s, *_ in evals]
    assert steps == sorted(steps) and all(s >= 1024 * (i + 1) for i, s in enumerate(steps))
    # Each played 3 whole episodes of the eval envs (--eval_env_kwargs: 20 steps at most; the
    # training envs' episodes are longer than that once the policy learns a little).
    assert all(n == 3 and 1 <= length <= 20 for _, _, n, length in evals)
    # TensorBoard has the same numbers, at the env steps of the evaluated snapshots.
    curve = read_curve(exp, "eval/return_avg")
    assert list(curve.env_steps) == steps
    assert np.allclose(curve.values, [r for _, r, *_ in evals], atol=0.01)
    assert max(read_curve(exp, "eval/length_avg").values) <= 20
    # The best checkpoint is the snapshot of the best evaluation (the first of equals; the values
    # of the summaries, which the log rounds to 2 places).
    best_return, best_steps = max(zip(curve.values, curve.env_steps), key=lambda e: (e[0], -e[1]))
    (best,) = (exp / "checkpoint_p0").glob("best_*.pth")
    assert f"_{best_steps}_eval_return_{best_return:.3f}.pth" in best.name
    state = load_checkpoint(best)
    assert state["env_steps"] == best_steps
    assert f"last evaluation eval_return={evals[-1][1]:.1f} (at {evals[-1][0]} env steps)" in log


@pytest.mark.slow
def test_resumed_run_evaluates_at_the_next_multiple(tmp_path):
    assert next_multiple(0, 1024) == 1024 and next_multiple(1024, 1024) == 2048
    assert next_multiple(3000, 1024) == 3072
    run(tmp_path, "--serial_mode=true", "--train_for_env_steps=1500")
    exp, log = run(tmp_path, "--serial_mode=true", "--train_for_env_steps=3500")
    second_run = log[log.index("Resumed from env_steps="):]
    steps = [s for s, *_ in evaluations(second_run)]
    assert steps and steps[0] >= 2048 and steps[0] < 3072 + 1024


def cfg_of(*argv: str):
    return parse_args(list(argv), scope="train", prog="test").config()


@pytest.mark.parametrize("argv, message", [
    (["--save_best_metric=eval/return"], "--save_best_metric=eval/return needs evaluations during "
                                         "training: set --eval_every_env_steps"),
    (["--eval_env_kwargs=max_episode_steps=20"], "--eval_env_kwargs is for evaluations during "
                                                 "training"),
    (["--eval_every_env_steps=100", "--eval_env_kwargs=oops"], "--eval_env_kwargs=oops: 'oops' is "
                                                               "not key=value"),
])
def test_evaluation_parameters_are_checked(argv, message):
    with pytest.raises(UserError, match=re.escape(message)):
        cfg_of("--env=CartPole-v1", *argv)


@pytest.mark.slow
def test_eval_envs_that_the_policy_cannot_play_are_refused_before_training(tmp_path, capsys):
    code = train.main(["--env=FrozenLake-v1", f"--train_dir={tmp_path}", "--experiment=exp",
                       "--serial_mode=true", "--eval_every_env_steps=100",
                       "--eval_env_kwargs=map_name=8x8"])
    assert code == 2
    # The last line: a logging handler of an earlier test may complain about its closed stream.
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("asyncrl: error: --eval_env_kwargs=map_name=8x8 gives envs other "
                          "observation or action spaces (Discrete(64), Discrete(4)) than the "
                          "training envs' (Discrete(16), Discrete(4))")


def test_each_eval_env_plays_its_share_of_the_episodes():
    """Episodes of 1 step in env 0 and of 6 steps in env 1: 4 episodes are 2 of each (the first 4
    to end would all be env 0's), and env 0 stops once it has played its 2."""
    assert list(episode_quotas(10, 4)) == [3, 3, 2, 2] and list(episode_quotas(2, 4)) == [1, 1, 0, 0]
    cfg = cfg_of("--env=CartPole-v1", "--rnn_size=8", "--encoder_mlp_layers", "8")
    lengths = (1, 6)  # a random CartPole policy needs more steps than that to fail
    envs = EnvVector(lambda i: gym.make("CartPole-v1", max_episode_steps=lengths[i]), 2, seed=0)
    model = ActorCritic(cfg, envs.envs[0].observation_space, envs.action_space)  # recurrent
    player = EpisodePlayer(model, envs, torch.device("cpu"), deterministic=False)
    try:
        episodes = list(player.episodes(4))
    finally:
        envs.close()
    assert sorted((e.row, e.length) for e in episodes) == [(0, 1), (0, 1), (1, 6), (1, 6)]
    assert player.steps == 12

