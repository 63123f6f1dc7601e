"""asyncrl.scores: the reference file, a tiny suite end to end (table, JSON, plot, skipped seeds on
rerun), failures that do not stop the suite, and bad input."""

import json
import math
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asyncrl.launcher.child import StopSignals
from asyncrl.plot import Curve
from asyncrl.scores import __main__ as scores
from asyncrl.scores.references import REPO_ROOT, load_suites

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("classic", "box2d", "mujoco", "atari", "vizdoom")


def run_scores(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "asyncrl.scores", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_every_suite_loads_and_every_reference_names_its_source():
    suites = load_suites()
    assert tuple(suites) == SUITES
    assert [e.env for e in suites["classic"].envs] == [
        "CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3", "Pendulum-v1"]
    assert [e.env for e in suites["mujoco"].envs] == ["HalfCheetah-v4", "Hopper-v4", "Walker2d-v4"]
    for suite in suites.values():
        for entry in suite.envs:
            assert (REPO_ROOT / entry.config).is_file(), entry.config
            assert entry.agent_steps >= 1
            for ref in entry.references:
                assert ref.source.name and ref.source.measure
                assert ref.source.url.startswith("https://"), ref
                assert ref.agent_steps >= 1 and math.isfinite(ref.value)
    # The values the issue names, at the steps it names them.
    cartpole = {r.source.key: r for r in suites["classic"].env("CartPole-v1").references}
    assert (cartpole["cleanrl_ppo"].value, cartpole["cleanrl_ppo"].agent_steps) == (490.04, 500_000)
    assert (cartpole["rlzoo_ppo"].value, cartpole["rlzoo_ppo"].agent_steps) == (500.0, 100_000)
    pong = {r.source.key: r for r in suites["atari"].env("atari_pong").references}
    assert pong["cleanrl_ppo_atari"].value == 20.36
    assert suites["atari"].env("atari_pong").agent_steps == 10_000_000
    # ViZDoom: Sample Factory publishes no score for these three, so none is stored.
    assert all(not e.references for e in suites["vizdoom"].envs)


def test_atari_suite_counts_frames_and_passes_train_parameters_dry_run():
    result = run_scores("--suite=atari", "--seeds=2", "--envs=atari_pong", "--out=scores_out",
                        "--dry_run", "--", "--device=gpu")
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()
    assert len(commands) == 2
    for seed, command in enumerate(commands, 1):
        assert "-m asyncrl.train" in command
        assert "configs/atari_sf_gpu.yaml" in command and "--env=atari_pong" in command
        # 10M agent steps of 4 frames each: --train_for_env_steps counts frames
        assert "--train_for_env_steps=40000000" in command
        assert f"--seed={seed}" in command and f"--experiment=seed{seed}" in command
        assert "--train_dir=scores_out/atari_pong" in command and "--device=gpu" in command


@pytest.mark.slow
def test_tiny_classic_suite_writes_table_json_and_plot_then_skips_finished_seeds(tmp_path):
    out = tmp_path / "scores"
    args = ["--suite=classic", "--envs=CartPole-v1", "--seeds=2", "--steps=20000", f"--out={out}"]
    result = run_scores(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "scores.json").read_text())
    assert report["suite"] == "classic" and report["seeds"] == 2
    assert report["eval_deterministic"] is True
    [env] = report["envs"]
    assert env["env"] == "CartPole-v1" and env["agent_steps"] == 20000
    assert [s["seed"] for s in env["seeds"]] == [1, 2]
    for seed in env["seeds"]:
        assert seed["status"] == "finished", seed
        assert seed["agent_steps"] >= 20000
        assert seed["eval_episodes"] == 10 and seed["train_seconds"] > 0
        assert (out / "CartPole-v1" / f"seed{seed['seed']}" / "config.json").is_file()
    for name in ("eval_return", "train_return"):
        values = [s[name] for s in env["seeds"]]
        mean = sum(values) / 2
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        assert env[name]["mean"] == pytest.approx(mean) and env[name]["std"] == pytest.approx(std)
        assert env[name]["seeds"] == 2
    assert {r["source"] for r in env["references"]} == {"CleanRL ppo.py", "rl-baselines3-zoo PPO"}
    # Both references are at more steps than these runs took: no return of asyncrl's there.
    assert [r["asyncrl_train_return_there"] for r in env["references"]] == [None, None]
    table = (out / "scores.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| CartPole-v1 |")]
    assert len(rows) == 1
    assert f"{env['eval_return']['mean']:.1f} ± {env['eval_return']['std']:.1f}" in rows[0]
    assert "CleanRL ppo.py: 490.04 ± 6.12 at 500k" in rows[0]
    assert table in result.stdout  # printed at the end too
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = run_scores(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("(skipped)") == 2, again.stdout
    assert "training for" not in again.stdout
    assert json.loads((out / "scores.json").read_text())["envs"][0]["seeds"] == env["seeds"]


@pytest.mark.slow
def test_a_failing_run_is_reported_with_its_error_and_the_suite_goes_on(tmp_path, monkeypatch):
    classic = load_suites()["classic"]
    cartpole = classic.env("CartPole-v1")
    # Acrobot fails before training (a bad parameter for its preset), MountainCar while training
    # (a command that exits with an error), and CartPole after them still trains.
    suite = replace(classic, envs=(
        replace(classic.env("Acrobot-v1"), args=("--num_envs_per_worker=3", "--worker_num_splits=2")),
        classic.env("MountainCar-v0"), cartpole))
    monkeypatch.setattr(scores, "load_suites", lambda: {"classic": suite})
    real_command = scores.train_command

    def train_command(plan, entry, seed, frames):
        if entry.env == "MountainCar-v0":
            return [sys.executable, "-c", "import sys; print('asyncrl: error: the env exploded'); "
                    "sys.exit(3)"]
        return real_command(plan, entry, seed, frames)

    monkeypatch.setattr(scores, "train_command", train_command)
    out = tmp_path / "scores"
    code = scores.main(["--suite=classic", "--seeds=1", "--steps=3000", f"--out={out}"])
    assert code == 1
    envs = {e["env"]: e for e in json.loads((out / "scores.json").read_text())["envs"]}
    [acrobot] = envs["Acrobot-v1"]["seeds"]
    assert acrobot["status"] == "failed" and "worker_num_splits" in acrobot["error"]
    [mountaincar] = envs["MountainCar-v0"]["seeds"]
    assert mountaincar["status"] == "failed"
    assert mountaincar["error"] == "training exited with status 3: asyncrl: error: the env exploded"
    assert envs["MountainCar-v0"]["eval_return"] is None
    [cart] = envs["CartPole-v1"]["seeds"]
    assert cart["status"] == "finished"
    table = (out / "scores.md").read_text()
    assert "seed 1: failed (training exited with status 3: asyncrl: error: the env exploded)" in table


def test_jobs_train_runs_at_once_and_report_them_in_the_suites_order(tmp_path, monkeypatch):
    # Two runs must be under way together to pass the barrier; one at a time, it times out.
    two_at_once = threading.Barrier(2, timeout=20)

    def run_seed(plan, entry, seed, frames, stop):
        two_at_once.wait()
        return scores.SeedResult(seed, "failed", error=f"{entry.env} seed {seed}")

    monkeypatch.setattr(scores, "run_seed", run_seed)
    out = tmp_path / "scores"
    code = scores.main(["--suite=classic", "--envs=Acrobot-v1,CartPole-v1", "--seeds=2",
                        "--jobs=2", f"--out={out}"])
    assert code == 1  # every run "failed"
    envs = json.loads((out / "scores.json").read_text())["envs"]
    assert [(e["env"], [s["error"] for s in e["seeds"]]) for e in envs] == [
        ("Acrobot-v1", ["Acrobot-v1 seed 1", "Acrobot-v1 seed 2"]),
        ("CartPole-v1", ["CartPole-v1 seed 1", "CartPole-v1 seed 2"])]


def test_a_signal_stops_every_running_training_and_no_waiting_one_starts(tmp_path):
    stop = StopSignals()
    stop.received.append(15)  # as if SIGTERM had come while these runs were going
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    for name in ("a", "b"):  # each running process gets the signal, not only the first
        (tmp_path / name).mkdir()
        code, seconds = scores._run(sleeper, tmp_path / name, stop)
        assert code == -15 and seconds < 30
    entry = load_suites()["classic"].env("CartPole-v1")
    plan = scores.make_plan(["--suite=classic", f"--out={tmp_path / 'scores'}"])
    assert scores.run_seed(plan, entry, 1, 1, stop) is None
    assert not (tmp_path / "scores").exists()


def test_training_return_at_a_references_steps_is_the_last_point_before_them():
    curve = Curve("seed1", np.array([400, 800, 1200]), np.array([1.0, 2.0, 3.0]),
                  np.array([10.0, 20.0, 30.0]))
    assert scores.return_at(curve, 300, 4) == 30.0  # 300 agent steps = 1200 frames
    assert scores.return_at(curve, 250, 4) == 20.0
    assert scores.return_at(curve, 99, 4) is None
    assert scores.return_at(curve, 800, 1) == 20.0


@pytest.mark.parametrize("args, message", [
    (["--suite=classics"], "argument --suite: invalid choice: 'classics'"),
    (["--suite=classic", "--envs=CartPole-v2"], "--envs=CartPole-v2: CartPole-v2 not in suite classic"),
    (["--suite=classic", "--seeds=0"], "argument --seeds: 0 is not a whole number >= 1"),
    (["--suite=classic", "--steps=1.5"], "argument --steps: 1.5 is not a whole number >= 1"),
    (["--suite=classic", "--", "--seed=3"], "--seed cannot be given after --: the suite sets it"),
    (["--suite=classic", "--dry_run", "--", "--learning_rat=1"], "unknown parameter --learning_rat"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(args, message, capsys):
    assert scores.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("asyncrl.scores: error: ")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bad_input_from_the_command_line_has_no_traceback():
    result = run_scores("--suite=nope")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
