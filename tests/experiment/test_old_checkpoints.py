"""Checkpoints written by earlier versions still resume and play. The experiments in
old_checkpoints/ were written by asyncrl 0.1.0 (commit d4360ae) with these command lines:

    python -m asyncrl.train --env=CartPole-v1 --serial_mode=true --num_workers=1
        --num_envs_per_worker=8 --worker_num_splits=1 --rollout=16 --batch_size=128
        --num_batches_per_epoch=1 --encoder_mlp_layers 16 --experiment=cartpole_v1
        --train_for_env_steps=1024 --seed=1
    (the same) --use_rnn=true --rnn_size=16 --num_policies=2 --with_pbt=true
        --pbt_start_mutation=256 --pbt_period_env_steps=256 --experiment=cartpole_pbt_rnn_v1
        --train_for_env_steps=2048 --seed=1

Only config.json and the checkpoints are kept (a few KB each)."""

import json
import shutil
from pathlib import Path

import pytest

from asyncrl import enjoy, train
from asyncrl.experiment.checkpoint import CheckpointManager, load_checkpoint

OLD = Path(__file__).parent / "old_checkpoints"


def _copy(name: str, train_dir: Path) -> Path:
    shutil.copytree(OLD / name, train_dir / name)
    return train_dir / name


def _latest(exp_dir: Path, policy: int = 0) -> dict:
    return load_checkpoint(CheckpointManager(exp_dir / f"checkpoint_p{policy}", 10).latest())


@pytest.mark.slow
def test_a_version_1_checkpoint_resumes_its_counters_and_enjoy_plays_it(tmp_path, capsys):
    exp_dir = _copy("cartpole_v1", tmp_path)
    old = _latest(exp_dir)
    assert train.main(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=cartpole_v1",
                       "--train_for_env_steps=2048"]) == 0
    new = _latest(exp_dir)
    assert new["env_steps"] >= 2048
    assert new["policy_version"] > old["policy_version"] and new["train_step"] > old["train_step"]
    assert new["episode_stats"]["episodes"] > old["episode_stats"]["episodes"]
    assert "Resumed from env_steps=1024, policy_version=8" in (exp_dir / "asyncrl_log.txt").read_text()

    shutil.rmtree(exp_dir)
    _copy("cartpole_v1", tmp_path)
    report = tmp_path / "eval.json"
    episodes = enjoy.evaluate(["--env=CartPole-v1", f"--train_dir={tmp_path}",
                               "--experiment=cartpole_v1", "--max_num_episodes=2", f"--json={report}"])
    assert len(episodes) == 2
    assert json.loads(report.read_text())["checkpoint"] == {"kind": "latest", "env_steps": 1024,
                                                            "policy_version": 8}


@pytest.mark.slow
def test_a_version_1_population_resumes_its_hyperparameters_and_pbt_clock(tmp_path):
    exp_dir = _copy("cartpole_pbt_rnn_v1", tmp_path)
    old = [_latest(exp_dir, p) for p in range(2)]
    assert train.main(["--env=CartPole-v1", f"--train_dir={tmp_path}",
                       "--experiment=cartpole_pbt_rnn_v1", "--train_for_env_steps=2560"]) == 0
    for p in range(2):
        new = _latest(exp_dir, p)
        assert new["env_steps"] >= 2560 and new["policy_version"] > old[p]["policy_version"]
        assert new["pbt"]["next_round"] > old[p]["pbt"]["next_round"]
    log = (exp_dir / "asyncrl_log.txt").read_text()
    assert "policy 1 from env_steps=2048, policy_version=16" in log
    # The stored hyperparameters (PBT mutated policy 1's value_loss_coeff), not the config's.
    assert "Policy 1 hyperparameters: " in log and "value_loss_coeff=0.337961" in log


@pytest.mark.slow
def test_a_resume_reads_each_checkpoint_once(tmp_path, monkeypatch):
    import torch

    from asyncrl.experiment.checkpoint_state import CheckpointState

    exp_dir = _copy("cartpole_pbt_rnn_v1", tmp_path)
    read, parsed = [], []
    torch_load, from_dict = torch.load, CheckpointState.from_dict.__func__

    def counting_load(path, *args, **kwargs):
        read.append(Path(path))
        return torch_load(path, *args, **kwargs)

    def counting_from_dict(cls, state, source):
        parsed.append(source)
        return from_dict(cls, state, source)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(CheckpointState, "from_dict", classmethod(counting_from_dict))
    # PBT's next round is beyond this run's end: no share file is read either.
    assert train.main(["--env=CartPole-v1", f"--train_dir={tmp_path}",
                       "--experiment=cartpole_pbt_rnn_v1", "--train_for_env_steps=2100"]) == 0
    assert sorted(p.relative_to(exp_dir).as_posix() for p in read) == [
        "checkpoint_p0/checkpoint_000000064_2048.pth", "checkpoint_p1/checkpoint_000000064_2048.pth"]
    assert len(parsed) == 2
