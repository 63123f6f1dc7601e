"""Experiment folder lifecycle: resume with overrides, restart, overwrite, initialize_from, corrupt
files, and evaluation with asyncrl.enjoy. Runs train.main in-process with a tiny budget."""

import json

import pytest
import torch

from asyncrl import enjoy, train
from asyncrl.envs.command_line import parse_args
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.experiment.experiment import prepare_experiment

pytestmark = pytest.mark.slow

TINY = ["--env=CartPole-v1", "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=4",
        "--worker_num_splits=2",
        "--rollout=16", "--batch_size=64", "--num_batches_per_epoch=1",
        "--encoder_mlp_layers", "16", "--save_best_after=0"]


def run(tmp_path, *extra: str) -> int:
    return train.main([*TINY, f"--train_dir={tmp_path}", *extra])


def stored(tmp_path, name="exp"):
    return json.loads((tmp_path / name / "config.json").read_text())


def latest_checkpoint(tmp_path, name="exp"):
    return sorted((tmp_path / name / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]


def test_fresh_run_writes_config_checkpoint_log_and_summaries(tmp_path):
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=256") == 0
    data = stored(tmp_path)
    assert data["params"]["env"] == "CartPole-v1" and data["params"]["rollout"] == 16
    assert data["asyncrl_version"] and "--train_for_env_steps=256" in data["command_lines"][0]
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["env_steps"] >= 256 and state["policy_version"] >= 1
    for key in ("model", "optimizer", "train_step", "learning_rate", "episode_stats"):
        assert key in state
    assert any("preprocessor.normalizers.obs.mean" in k for k in state["model"])
    assert (tmp_path / "exp" / "asyncrl_log.txt").stat().st_size > 0
    assert list((tmp_path / "exp" / "summaries").glob("events.out.tfevents.*"))


def test_a_run_that_reaches_its_limit_marks_the_folder_finished_until_the_next_run(tmp_path):
    # A launcher's console.txt may be there before the first run: not a foreign folder.
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "console.txt").write_text("launcher: running python -m asyncrl.train\n")
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=256") == 0
    marker = tmp_path / "exp" / "finished.json"
    data = json.loads(marker.read_text())
    assert data["stop_reason"] == "reached train_for_env_steps=256" and data["env_steps"] >= 256
    # The next run of the folder is not finished until it reaches its own limit.
    experiment = prepare_experiment(parse_args([*TINY, f"--train_dir={tmp_path}", "--experiment=exp",
                                                "--train_for_env_steps=100000"], "train", "t"))
    experiment.close()
    assert not marker.exists()


def test_resume_continues_counters_and_applies_explicit_overrides(tmp_path):
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=256", "--gamma=0.9") == 0
    first = load_checkpoint(latest_checkpoint(tmp_path))
    # Not giving --gamma keeps the stored 0.9; giving --learning_rate overrides the stored one.
    assert train.main(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=exp",
                       "--train_for_env_steps=512", "--learning_rate=0.002"]) == 0
    second = load_checkpoint(latest_checkpoint(tmp_path))
    assert second["env_steps"] >= 512 > first["env_steps"]
    assert second["policy_version"] > first["policy_version"]
    params = stored(tmp_path)["params"]
    assert params["gamma"] == 0.9 and params["learning_rate"] == 0.002
    assert params["rollout"] == 16  # the stored value, not the CartPole preset's 32
    # The learner too: the overridden rate replaces the one the checkpoint's hyperparameters hold.
    assert second["learning_rate"] == 0.002
    assert second["hyperparameters"]["learning_rate"] == 0.002
    assert second["hyperparameters"]["gamma"] == first["hyperparameters"]["gamma"] == 0.9
    assert len(stored(tmp_path)["command_lines"]) == 2
    assert "Overriding stored learning_rate" in (tmp_path / "exp" / "asyncrl_log.txt").read_text()


def test_restart_keeps_old_folder_and_overwrite_deletes_it(tmp_path):
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=256") == 0
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=128",
               "--restart_behavior=restart") == 0
    assert (tmp_path / "exp_old1" / "config.json").exists()
    assert load_checkpoint(latest_checkpoint(tmp_path, "exp_old1"))["env_steps"] >= 256
    assert load_checkpoint(latest_checkpoint(tmp_path))["env_steps"] < 256
    marker = tmp_path / "exp" / "marker.txt"
    marker.write_text("old run")
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=128",
               "--restart_behavior=overwrite") == 0
    assert not marker.exists() and (tmp_path / "exp_old1").exists()
    assert not (tmp_path / "exp_old2").exists()


def test_initialize_from_copies_weights_with_counters_at_zero(tmp_path):
    assert run(tmp_path, "--experiment=src", "--train_for_env_steps=512") == 0
    source = load_checkpoint(latest_checkpoint(tmp_path, "src"))
    assert run(tmp_path, "--experiment=dst", "--initialize_from=src", "--train_for_env_steps=1",
               "--learning_rate=0") == 0
    state = load_checkpoint(latest_checkpoint(tmp_path, "dst"))
    assert state["env_steps"] < source["env_steps"]
    assert state["policy_version"] == 1  # one iteration from zero, not the source's counter
    for name, tensor in source["model"].items():
        if "normalizer" not in name:  # the learner updated the statistics on its one batch
            assert torch.equal(tensor, state["model"][name]), name
    # A checkpoint path works too.
    assert run(tmp_path, "--experiment=dst2", f"--initialize_from={latest_checkpoint(tmp_path, 'src')}",
               "--train_for_env_steps=1") == 0


def test_initialize_from_incompatible_architecture_is_a_clear_error(tmp_path, capsys):
    assert run(tmp_path, "--experiment=src", "--train_for_env_steps=128") == 0
    code = train.main([*TINY, f"--train_dir={tmp_path}", "--experiment=dst",
                       "--initialize_from=src", "--encoder_mlp_layers", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this model" in err and "shape" in err
    assert not (tmp_path / "dst").exists()
    assert train.main([*TINY, f"--train_dir={tmp_path}", "--experiment=x",
                       "--initialize_from=nothing_here"]) == 2
    assert "no experiment 'nothing_here'" in capsys.readouterr().err


def test_corrupt_config_is_an_error_and_left_untouched(tmp_path, capsys):
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=128") == 0
    config = tmp_path / "exp" / "config.json"
    config.write_text("{not json")
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=256") == 2
    assert "cannot read" in capsys.readouterr().err
    assert config.read_text() == "{not json"


def test_corrupt_checkpoint_is_an_error_never_a_fresh_start(tmp_path, capsys):
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=128") == 0
    path = latest_checkpoint(tmp_path)
    path.write_bytes(b"garbage")
    before = sorted(p.name for p in (tmp_path / "exp").rglob("*"))
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=256") == 2
    assert "cannot load checkpoint" in capsys.readouterr().err
    assert path.read_bytes() == b"garbage"
    assert sorted(p.name for p in (tmp_path / "exp").rglob("*")) == before


def test_resume_with_another_env_is_refused(tmp_path, capsys):
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=128") == 0
    assert train.main(["--env=Acrobot-v1", f"--train_dir={tmp_path}", "--experiment=exp"]) == 2
    assert "was trained on --env=CartPole-v1" in capsys.readouterr().err


def test_env_dependent_error_leaves_nothing_on_disk(tmp_path, capsys):
    code = train.main(["--env=Pendulum-v1", f"--train_dir={tmp_path}", "--experiment=exp",
                       "--exploration_loss=symmetric_kl"])
    assert code == 2 and "needs a discrete action space" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_best_checkpoint_and_enjoy(tmp_path, capsys):
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=2048",
               "--save_best_every_sec=1") == 0
    assert list((tmp_path / "exp" / "checkpoint_p0").glob("best_*.pth"))
    capsys.readouterr()
    for kind in ("latest", "best"):
        episodes = enjoy.evaluate(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=exp",
                                   "--max_num_episodes=3", f"--load_checkpoint_kind={kind}",
                                   "--eval_deterministic=true"])
        assert len(episodes) == 3 and all(e.episode_return >= 1 for e in episodes)
    out = capsys.readouterr().out
    assert "episode 3: return" in out and "mean return over 3 episodes" in out
    assert enjoy.main(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=none"]) == 2


def test_continuous_actions_train(tmp_path):
    assert train.main(["--env=Pendulum-v1", f"--train_dir={tmp_path}", "--experiment=pend",
                       "--num_workers=1", "--num_envs_per_worker=2", "--rollout=8",
                       "--batch_size=16", "--encoder_mlp_layers", "8", "--with_vtrace=true",
                       "--adaptive_stddev=false", "--continuous_tanh_scale=2",
                       "--train_for_env_steps=64", "--device=gpu"]) == 0
    state = load_checkpoint(latest_checkpoint(tmp_path, "pend"))
    assert state["env_steps"] >= 64 and "action_parameterization.log_std" in state["model"]


def test_wandb_offline_logs_the_run_and_resume_continues_it(tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # installed by the 'test' extra, so CI runs this
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=256", "--with_wandb=true") == 0
    run_id = (tmp_path / "exp" / "wandb_run_id").read_text()
    files = list((tmp_path / "exp" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1 and run_id in files[0].name
    assert b"episode/return_avg" in files[0].read_bytes()
    assert run(tmp_path, "--experiment=exp", "--train_for_env_steps=512") == 0
    assert (tmp_path / "exp" / "wandb_run_id").read_text() == run_id


def test_milestones_and_keep_checkpoints(tmp_path):
    assert run(tmp_path, "--experiment=exp", "--train_for_seconds=3", "--save_every_sec=1",
               "--save_milestones_sec=1", "--keep_checkpoints=1") == 0
    folder = tmp_path / "exp" / "checkpoint_p0"
    assert len(list(folder.glob("checkpoint_*.pth"))) == 1
    assert len(list((folder / "milestones").glob("checkpoint_*.pth"))) >= 2
