"""Reproducible runs: in serial mode a seed fixes everything, so two runs with the same seed give
bit-identical checkpoints and summaries (docs/experiments.md says what a seed fixes in parallel
mode)."""

from pathlib import Path

import pytest
import torch

from asyncrl import train
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.plot import read_events

pytestmark = pytest.mark.slow

TINY = ["--env=CartPole-v1", "--serial_mode=true", "--num_workers=2", "--num_envs_per_worker=4",
        "--rollout=16", "--batch_size=64", "--num_batches_per_epoch=2", "--num_epochs=2",
        "--shuffle_minibatches=true", "--encoder_mlp_layers", "32", "--use_rnn=true",
        "--rnn_size=16", "--device=cpu", "--train_for_env_steps=3000",
        "--eval_every_env_steps=1000", "--eval_episodes=2"]


def train_once(train_dir: Path, name: str, seed: int) -> Path:
    assert train.main([*TINY, f"--seed={seed}", f"--train_dir={train_dir}",
                       f"--experiment={name}"]) == 0
    return train_dir / name


def final_state(exp: Path) -> dict:
    return load_checkpoint(sorted((exp / "checkpoint_p0").glob("checkpoint_*.pth"))[-1])


# Measured in wall-clock time: frames per second, the learner's training samples per second.
TIMED = ("perf/", "train/samples_per_sec")


def learning_summaries(exp: Path) -> dict[str, list[tuple[int, float]]]:
    """Every summary but the timed ones: (env steps, value) of each write. Summaries are written
    on a timer, so the runs are compared at the points both wrote: evaluations (at fixed env
    steps) and the final write."""
    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((exp / "summaries").glob("events.out.tfevents.*")):
        for event in read_events(path):
            for value in event.summary.value:
                if not value.tag.startswith(TIMED):
                    series.setdefault(value.tag, []).append((event.step, value.simple_value))
    return series


def assert_same_tensors(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_serial_runs_with_the_same_seed_are_bit_identical(tmp_path):
    first, second = (train_once(tmp_path, name, seed=7) for name in ("a", "b"))
    a, b = final_state(first), final_state(second)
    assert a["env_steps"] >= 3000 and a["policy_version"] > 10
    # Weights, normalizer statistics, optimizer state, counters, episode statistics: all of it.
    assert_same_tensors(a, b)
    sa, sb = learning_summaries(first), learning_summaries(second)
    assert {"eval/return_avg", "train/loss", "episode/return_avg"} <= sa.keys()
    assert sa["eval/return_avg"] == sb["eval/return_avg"] and len(sa["eval/return_avg"]) == 2
    for tag in sa:  # the final write of each
        assert sa[tag][-1] == sb[tag][-1], tag
    # Another seed: other weights (the comparison above can fail).
    other = final_state(train_once(tmp_path, "c", seed=8))
    assert not torch.equal(a["model"][next(iter(a["model"]))], other["model"][next(iter(a["model"]))])
