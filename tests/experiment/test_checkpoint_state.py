"""The checkpoint schema: what a file holds, its version, and the errors for files it cannot read."""

from pathlib import Path

import pytest
import torch

from asyncrl.algo.learner import LearnerState
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.experiment.checkpoint_state import (CHECKPOINT_VERSION, CheckpointState, RunState,
                                                 SharedPolicy)
from asyncrl.utils.errors import UserError

OLD = Path(__file__).parent / "old_checkpoints"
OLD_SINGLE = OLD / "cartpole_v1" / "checkpoint_p0" / "checkpoint_000000032_1024.pth"
OLD_PBT = OLD / "cartpole_pbt_rnn_v1" / "checkpoint_p1" / "checkpoint_000000064_2048.pth"


def _state(pbt_next_round=None, hyperparameters=None):
    learner = LearnerState(model={"w": torch.ones(2)}, optimizer={"state": {}, "param_groups": []},
                           policy_version=3, train_step=12, learning_rate=1e-3)
    run = RunState(episode_stats={"returns": [1.0]}, best_metric=2.5, pbt_next_round=pbt_next_round)
    return CheckpointState(learner, env_steps=640, hyperparameters=hyperparameters, run=run)


@pytest.mark.parametrize("path", [OLD_SINGLE, OLD_PBT])
def test_files_of_asyncrl_0_1_0_have_the_keys_written_today_but_the_version(path):
    old = load_checkpoint(path)
    state = CheckpointState.from_dict(old, str(path))
    written = state.to_dict()
    assert list(written) == [*old, "checkpoint_version"]
    assert written["checkpoint_version"] == CHECKPOINT_VERSION == 1
    for key in old:
        if key not in ("model", "optimizer"):
            assert written[key] == old[key]
    assert all(torch.equal(written["model"][k], v) for k, v in old["model"].items())


def test_the_old_population_checkpoint_holds_its_pbt_clock_and_mutated_hyperparameters():
    state = CheckpointState.from_dict(load_checkpoint(OLD_PBT), "old")
    assert state.run.pbt_next_round == 2048 and state.env_steps == 2048
    assert state.learner.policy_version == 16 and state.learner.train_step == 64
    assert state.hyperparameters["value_loss_coeff"] == pytest.approx(0.337961, abs=1e-6)


def test_round_trip_and_optional_parts():
    bare = _state()
    assert CheckpointState.from_dict(bare.to_dict(), "x") == bare
    assert "pbt" not in bare.to_dict() and "hyperparameters" not in bare.to_dict()
    full = _state(pbt_next_round=3000, hyperparameters={"gamma": 0.99})
    assert full.to_dict()["pbt"] == {"next_round": 3000}
    assert CheckpointState.from_dict(full.to_dict(), "x") == full


def test_a_newer_version_is_a_one_line_error():
    state = {**_state().to_dict(), "checkpoint_version": CHECKPOINT_VERSION + 1}
    with pytest.raises(UserError) as err:
        CheckpointState.from_dict(state, "the checkpoint of train_dir/x")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("the checkpoint of train_dir/x has checkpoint version 2;")
    assert "upgrade asyncrl" in message


@pytest.mark.parametrize("key", ["optimizer", "env_steps", "episode_stats", "best_metric"])
def test_a_missing_part_is_named(key):
    state = _state().to_dict()
    del state[key]
    with pytest.raises(UserError, match=f"^x is incomplete: it has no '{key}'$"):
        CheckpointState.from_dict(state, "x")


def test_a_pbt_share_file_round_trips(tmp_path):
    from asyncrl.experiment.checkpoint import save_checkpoint_atomic

    shared = SharedPolicy(model={"w": torch.arange(3.0)}, optimizer={"state": {}, "param_groups": []})
    save_checkpoint_atomic(shared.to_dict(), tmp_path / "share.pth")
    read = SharedPolicy.read(tmp_path / "share.pth")
    assert torch.equal(read.model["w"], shared.model["w"]) and read.optimizer == shared.optimizer
