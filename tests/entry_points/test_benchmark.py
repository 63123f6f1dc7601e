"""`python -m asyncrl.benchmark`: a short real run (raw stepping and asyncrl, no Sample Factory),
bad input, and the parsing of each system's output."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers import REPO

from asyncrl.benchmark.__main__ import main
from asyncrl.benchmark.asyncrl_run import asyncrl_result, asyncrl_ticks
from asyncrl.benchmark.figures import Result, add_time_to_target
from asyncrl.benchmark.learner_limit import random_obs, run_learner_limit
from asyncrl.benchmark.plan import NO_STEP_LIMIT, make_plan
from asyncrl.benchmark.processes import (CpuSample, Finished, _name_for_role, add_cpu_per_frame,
                                         cpu_seconds_between, remove_orphaned_segments,
                                         shm_segments)
from asyncrl.benchmark.raw import action_sampler, run_raw
from asyncrl.benchmark.report import format_table, report
from asyncrl.benchmark.sample_factory import (sf_arguments, sf_atari_name, sf_device, sf_example,
                                              sf_result, sf_ticks)
from asyncrl.benchmark.sf_install import SF_ATARI, SF_DOOM, SF_GYM, SfUnavailable
from asyncrl.utils.errors import UserError



@pytest.mark.slow
def test_short_run_reports_raw_and_asyncrl_frames_per_second(tmp_path):
    # 11 s: two status lines (every 5 s) that count frames, for the steady-state figures
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp)}
    proc = subprocess.run(
        [sys.executable, "-m", "asyncrl.benchmark", "--seconds=11", "--json", "out.json", "--",
         "--num_workers=1", "--num_envs_per_worker=4", "--batch_size=64", "--rollout=16"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads((tmp_path / "out.json").read_text())
    raw, ours = figures["results"]["raw stepping"], figures["results"]["asyncrl"]
    assert raw["env_frames_per_sec"] > 0 and ours["env_frames_per_sec"] > 0
    assert ours["peak_rss_mib"] > 0
    assert raw["cpu_us_per_frame"] > 0  # the stepping workers' CPU time, start-up left out
    # The run's processes used CPU: some per frame, the most in the rollout workers and learner.
    roles = ours["cpu_us_per_frame_by_role"]
    assert {"learner", "policy workers", "rollout workers"} <= set(roles)
    assert ours["cpu_us_per_frame"] == pytest.approx(sum(roles.values())) and all(
        us >= 0 for us in roles.values())
    assert ours["cpu_bound_frames_per_sec"] == pytest.approx(
        figures["usable_cores"] * 1e6 / ours["cpu_us_per_frame"])
    assert ours["ratio_to_raw"] == pytest.approx(ours["env_frames_per_sec"] /
                                                 raw["env_frames_per_sec"])
    assert (figures["num_workers"], figures["num_envs_per_worker"]) == (1, 4)
    # Not stopped by the CartPole preset's step budget: it runs for --seconds.
    assert f"--train_for_env_steps={NO_STEP_LIMIT}" in ours["command"]
    assert "lag (versions)" in proc.stdout and "lag (SGD steps)" in proc.stdout
    assert "raw stepping" in proc.stdout and "peak RSS (MiB)" in proc.stdout
    assert not list(temp.glob("asyncrl-bench-*"))  # the temporary train dir is gone


@pytest.mark.parametrize("argv, message", [
    (["--seconds=0"], "--seconds"),
    (["--env=CartPol-v1"], "unknown environment"),
    (["--", "--lerning_rate=0.01"], "did you mean --learning_rate"),
    (["--", "--experiment=mine"], "--experiment cannot be given after --"),
    (["--", "--train_for_seconds=5"], "use --seconds"),
    (["--", "--train_for_env_steps=5000"], "every system runs for --seconds"),
    (["--num_workers=3", "--", "--num_workers=2"], "disagree"),
    (["--", "--batch_size=100"], "multiple of --rollout"),
    (["--json", "/no/such/folder/out.json"], "does not exist"),
    (["--target_return=nan"], "not a finite number"),
    (["--target_return=high"], "not a number"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("asyncrl: error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_bad_input_from_the_command_line_exits_2():
    proc = subprocess.run([sys.executable, "-m", "asyncrl.benchmark", "--seconds=-1"],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("asyncrl: error: argument --seconds")


def test_layout_applies_to_every_system():
    plan = make_plan(["--seconds=5", "--", "--num_workers=3", "--num_envs_per_worker=8",
                      "--batch_size=4096", "--encoder_mlp_layers", "64", "64"])
    assert (plan.num_workers, plan.num_envs_per_worker) == (3, 8)
    assert plan.train_args.count("--num_workers=3") == 1
    default = make_plan([])
    assert (default.num_workers, default.num_envs_per_worker) == (2, 32)
    assert default.train_args == ["--num_workers=2", "--num_envs_per_worker=32"]

    args = sf_arguments(plan.cfg, {"num_workers", "num_envs_per_worker", "batch_size",
                                   "encoder_mlp_layers", "learning_rate", "device", "seed",
                                   "decorrelate_experience_max_seconds"})
    assert "--num_workers=3" in args and "--batch_size=4096" in args
    # Whole floats go as ints: some of Sample Factory's parameters are int where asyncrl's are float.
    assert "--decorrelate_experience_max_seconds=0" in args
    i = args.index("--encoder_mlp_layers")
    assert args[i + 1:i + 3] == ["64", "64"]
    # The CartPole preset's learning rate goes too; the device is the benchmark's to set; None
    # values (seed) are left to Sample Factory's defaults; parameters it lacks are not passed.
    assert "--learning_rate=0.003" in args
    assert not any(a.startswith(("--device", "--seed", "--gamma")) for a in args)
    # Nor the CartPole preset's step budget, which would end a run before --seconds.
    assert sf_arguments(plan.cfg, {"train_for_env_steps", "num_workers"}) == ["--num_workers=3"]
    # The core goes as resolved (the CartPole preset is feed-forward, as Sample Factory's example).
    rnn = {"use_rnn", "rnn_type", "rnn_size", "rnn_num_layers", "recurrence"}
    assert set(sf_arguments(plan.cfg, rnn)) == {"--use_rnn=False", "--rnn_type=gru",
                                                "--rnn_size=512", "--rnn_num_layers=1",
                                                "--recurrence=-1"}
    recurrent = make_plan(["--", "--use_rnn=true", "--rnn_size=64", "--recurrence=8"])
    assert {"--use_rnn=True", "--rnn_size=64", "--recurrence=8"} <= set(
        sf_arguments(recurrent.cfg, rnn))


def test_sample_factory_batched_sampling_is_asyncrls_unless_given():
    assert make_plan([]).sf_batched_sampling is False
    assert make_plan(["--", "--batched_sampling=True"]).sf_batched_sampling is True
    assert make_plan(["--sf_batched_sampling=true"]).sf_batched_sampling is True
    assert make_plan(["--sf_batched_sampling=false", "--", "--batched_sampling=True"]
                     ).sf_batched_sampling is False
    # Only the option says it: a second --batched_sampling from the mapping would override it.
    plan = make_plan(["--sf_batched_sampling=true"])
    assert sf_arguments(plan.cfg, {"batched_sampling", "num_workers"}) == ["--num_workers=2"]


def test_each_env_runs_in_sample_factorys_example_that_has_it():
    assert sf_example("CartPole-v1") == (SF_GYM, "CartPole-v1")
    assert sf_example("doom_basic") == (SF_DOOM, "doom_basic")
    assert SF_DOOM.module == "sf_examples.vizdoom.train_vizdoom" and "vizdoom==1.3.2" in SF_DOOM.packages
    if importlib.util.find_spec("ale_py"):  # the atari extra
        assert sf_example("atari_pong") == (SF_ATARI, "atari_pong")
    with pytest.raises(SfUnavailable, match="not Pendulum-v1"):
        sf_example("Pendulum-v1")
    # Its models take channels-first images: asyncrl's pixel_format is not handed on.
    plan = make_plan(["--env=doom_basic", "--seconds=60", "--sample_factory", "--",
                      "--pixel_format=HWC"])
    assert plan.sample_factory and plan.cfg.env_frameskip == 4
    assert sf_arguments(plan.cfg, {"pixel_format", "env_frameskip"}) == ["--env_frameskip=4"]


def test_learner_limit_times_training_on_random_batches():
    plan = make_plan(["--seconds=1", "--learner_limit", "--", "--num_workers=1",
                      "--num_envs_per_worker=4", "--batch_size=64", "--rollout=16",
                      "--num_batches_per_epoch=2"])
    limit = run_learner_limit(plan)
    assert limit.error is None and limit.seconds >= 1
    assert limit.env_steps % 128 == 0  # whole batches of 2 x 64 samples (CartPole: 1 frame each)
    summary = json.loads(json.dumps(report(plan, [limit])))
    row = summary["results"]["learner limit"]
    assert row["samples_per_sec"] > 0 and row["env_frames_per_sec"] == row["samples_per_sec"]
    assert "learner limit" in format_table(summary)


def test_learner_limit_ratio_and_atari_names():
    plan = make_plan(["--learner_limit"])
    rows = report(plan, [Result("asyncrl", env_frames_per_sec=700.0,
                                after_startup_frames_per_sec=800.0),
                         Result("learner limit", env_frames_per_sec=1000.0)])["results"]
    assert rows["asyncrl"]["ratio_to_learner_limit"] == pytest.approx(0.7)
    assert rows["asyncrl"]["after_startup_ratio_to_learner_limit"] == pytest.approx(0.8)
    assert "0.70 (0.80)" in format_table({"results": rows})
    assert sf_atari_name("CartPole-v1") is None
    obs = random_obs(gym.spaces.Box(0, 255, (4, 2), np.uint8), (3, 5), np.random.default_rng(0))
    assert obs.shape == (3, 5, 4, 2) and obs.dtype == np.uint8


def status_event(time, env_steps, fps, avg_return=None, lag_versions=None, lag_sgd_steps=None):
    """A status event as the runner writes it (asyncrl.experiment.status_events)."""
    return {"event": "status", "time": time, "env_steps": env_steps, "agent_steps": env_steps,
            "fps": fps, "policies": [{"policy": 0, "avg_return": avg_return,
                                      "policy_lag_versions": lag_versions,
                                      "policy_lag_sgd_steps": lag_sgd_steps}]}


def test_reads_asyncrls_figures_from_its_status_events():
    events = [
        {"event": "start", "time": 99.0, "env_steps": 0},
        status_event(100.0, 0, 0.0),
        status_event(105.0, 100000, 31000.0, 50.0, 1.7, 27.2),
        status_event(109.0, 260000, 32000.0, 55.0, 1.6, 25.6),
        {"event": "summary", "time": 110.0, "stop_reason": "reached train_for_seconds=10",
         "env_steps": 300000, "seconds": 10.1, "fps": 29703.0},
    ]
    r = asyncrl_result(events, 0)
    assert (r.env_frames_per_sec, r.env_steps, r.seconds) == (29703, 300000, 10.1)
    assert (r.last_10s_frames_per_sec, r.policy_lag_versions, r.policy_lag_sgd_steps) == (32000, 1.6, 25.6)
    # from the first status event that counts frames to the last: 160000 frames in 4 s
    assert r.after_startup_frames_per_sec == pytest.approx(40000)
    assert asyncrl_result(events[2:3] + events[4:], 0).after_startup_frames_per_sec is None
    # A run that failed wrote no summary: the error is the end of its output.
    failed = asyncrl_result(events[:3], 1, ["Traceback ...\n", "RuntimeError: boom\n"])
    assert failed.env_frames_per_sec is None and "code 1: RuntimeError: boom" in failed.error
    assert asyncrl_result(events[:3], 0).error is not None  # no summary: not a whole run


def test_table_shows_policy_lag_in_both_units():
    summary = report(make_plan([]), [
        Result("asyncrl", env_frames_per_sec=5000.0, policy_lag_versions=3.5,
               policy_lag_sgd_steps=56.0),
        Result("Sample Factory 2.1.1", env_frames_per_sec=2000.0, policy_lag_sgd_steps=21.9)])
    rows = [re.split(r"\s{2,}", line.strip()) for line in format_table(summary).splitlines()]
    ours, theirs = dict(zip(rows[0], rows[2])), dict(zip(rows[0], rows[3]))
    assert (ours["lag (versions)"], ours["lag (SGD steps)"]) == ("3.5", "56.0")
    # Sample Factory counts a policy version per SGD step: it has only the second figure.
    assert (theirs["lag (versions)"], theirs["lag (SGD steps)"]) == ("-", "21.9")


def test_parses_sample_factory_output():
    lines = [
        "\x1b[36m[2026-11-25 16:14:43,887][13048] Fps is (10 sec: 10649.7, 60 sec: 10485.8, 300 "
        "sec: 10485.8). Total num frames: 262144. Throughput: 0: 10316.8. Samples: 257920. "
        "Policy #0 lag: (min: 7.0, avg: 8.3, max: 15.0)\x1b[0m\n",
        "[2026-11-25 16:14:51,540][13048] Collected {0: 360448}, FPS: 8891.5\n",
    ]
    r = sf_result(lines, 2)
    assert (r.env_frames_per_sec, r.env_steps) == (8891.5, 360448)
    # Sample Factory's policy versions are SGD steps
    assert (r.last_10s_frames_per_sec, r.policy_lag_versions, r.policy_lag_sgd_steps) == (10649.7, None, 8.3)
    assert r.after_startup_frames_per_sec is None  # one status line only
    earlier = ("[2026-11-25 16:14:38,887][13048] Fps is (10 sec: 9000.0, 60 sec: 9000.0, 300 "
               "sec: 9000.0). Total num frames: 212992. Throughput: 0: 9000.0. Samples: 210000. "
               "Policy #0 lag: (min: 7.0, avg: 8.0, max: 15.0)\n")
    r = sf_result([earlier, *lines], 2, [50.0, 55.0, 63.0])
    assert r.after_startup_frames_per_sec == pytest.approx((262144 - 212992) / 5.0)
    assert "no env steps" in sf_result(["[...] Collected {}, FPS: 0.0\n"], 2).error
    assert "code 1" in sf_result(["ImportError: no module\n"], 1).error


def test_cpu_per_frame_in_the_steady_window():
    # t=100 before the window; the window is t=101..109 (the first and last counted status lines).
    samples = [
        CpuSample(100.0, {1: ("python", 1.0), 2: ("asyncrl-learn0", 1.0)}),
        CpuSample(101.0, {1: ("python", 1.5), 2: ("asyncrl-learn0", 2.0), 3: ("asyncrl-rw0", 0.5)}),
        # rollout worker 0 died and rollout worker 1 was born in between
        CpuSample(105.0, {1: ("python", 1.6), 2: ("asyncrl-learn0", 5.0), 3: ("asyncrl-rw0", 2.5),
                          4: ("asyncrl-rw1", 0.5)}),
        CpuSample(109.0, {1: ("python", 1.7), 2: ("asyncrl-learn0", 8.0), 4: ("asyncrl-rw1", 2.0),
                          5: ("asyncrl-pw0-0", 1.0)}),
        CpuSample(110.0, {1: ("python", 9.0), 2: ("asyncrl-learn0", 99.0)}),
    ]
    elapsed, roles = cpu_seconds_between(samples, 101.0, 109.5)
    assert elapsed == 8.0
    assert roles == pytest.approx({"runner": 0.2, "learner": 6.0, "rollout workers": 4.0,
                                   "policy workers": 1.0})
    assert cpu_seconds_between(samples, 101.5, 108.0) is None  # one sample inside

    # The status events' times are wall-clock: the run started at 1000.0 by time.time() and at
    # 90.0 by time.monotonic().
    events = [status_event(1010.5, 0, 0.0), status_event(1011.0, 1000, 1.0),
              status_event(1019.0, 9000, 1.0)]
    finished = Finished(0, [], None, [], samples, started=90.0, started_wall=1000.0)
    result = Result("asyncrl", after_startup_frames_per_sec=1000.0)  # 8,000 frames in 8 s
    add_cpu_per_frame(result, asyncrl_ticks(events, finished.monotonic), finished)
    assert result.cpu_us_per_frame == pytest.approx(11.2 / 8000 * 1e6)
    assert list(result.cpu_us_per_frame_by_role) == ["learner", "policy workers",
                                                     "rollout workers", "runner"]
    assert result.cpu_us_per_frame_by_role["learner"] == pytest.approx(750.0)

    plan = make_plan(["--learner_limit"])
    summary = report(plan, [result, Result("learner limit", env_frames_per_sec=1000.0)])
    ours = summary["results"]["asyncrl"]
    assert ours["cpu_bound_frames_per_sec"] == pytest.approx(summary["usable_cores"] * 1e6 / 1400)
    assert ours["cpu_bound_ratio_to_learner_limit"] == pytest.approx(
        ours["cpu_bound_frames_per_sec"] / 1000.0)
    table = format_table(summary)
    assert "1400.0" in table and "learner 750.0, policy workers 125.0" in table


def test_time_to_a_target_return_counts_from_process_start_for_both_systems():
    ours = [status_event(1008.0, 0, 0.0), status_event(1013.0, 4096, 800.0, -1.2),
            status_event(1058.6, 98304, 2200.0, 0.5), status_event(1063.0, 120000, 2200.0, 0.7)]
    finished = Finished(0, [], None, [], started=100.0, started_wall=1000.0)
    ticks = asyncrl_ticks(ours, finished.monotonic)
    result = Result("asyncrl")
    add_time_to_target(result, ticks, finished.started, 0.5)
    assert (result.seconds_to_target, result.frames_at_target) == (pytest.approx(58.6), 98304)
    never = Result("asyncrl")
    add_time_to_target(never, ticks, finished.started, 0.8)
    add_time_to_target(result, ticks, finished.started, None)
    assert never.seconds_to_target is None and never.frames_at_target is None

    # Sample Factory prints its frames and its average reward on two lines
    theirs = ["[2026-12-04 13:00:00,000][1] Fps is (10 sec: 1300.0, 60 sec: 1300.0, 300 sec: "
              "1300.0). Total num frames: 200704. Throughput: 0: 1300.0. Samples: 50176. Policy #0 "
              "lag: (min: 0.0, avg: 1.5, max: 3.0)\n",
              "[2026-12-04 13:00:00,001][1] Avg episode reward: [(0, '0.498')]\n",
              "[2026-12-04 13:00:05,000][1] Fps is (10 sec: 1300.0, 60 sec: 1300.0, 300 sec: "
              "1300.0). Total num frames: 206848. Throughput: 0: 1300.0. Samples: 51712. Policy #0 "
              "lag: (min: 0.0, avg: 1.5, max: 3.0)\n",
              "[2026-12-04 13:00:05,001][1] Avg episode reward: [(0, '0.512')]\n"]
    finished = Finished(2, theirs, None, [320.0, 320.0, 325.0, 325.1], started=100.0)
    result = Result("Sample Factory 2.1.1")
    add_time_to_target(result, sf_ticks(finished.lines, finished.times), finished.started, 0.5)
    assert (result.seconds_to_target, result.frames_at_target) == (pytest.approx(225.1), 206848)

    summary = report(make_plan(["--target_return=0.5"]), [
        Result("asyncrl", env_frames_per_sec=2000.0, seconds_to_target=58.6,
               frames_at_target=98304),
        Result("Sample Factory 2.1.1", env_frames_per_sec=1000.0)])
    rows = [re.split(r"\s{2,}", line.strip()) for line in format_table(summary).splitlines()]
    assert rows[0][-1] == "return 0.5 at"
    assert rows[2][-1] == "59 s (98,304 frames)" and rows[3][-1] == "not reached"
    assert summary["target_return"] == 0.5


def test_segments_a_killed_process_left_are_removed_and_those_in_use_are_kept():
    import mmap

    orphan = Path(f"/dev/shm/asyncrl-test-orphan-{os.getpid()}")
    in_use = Path(f"/dev/shm/asyncrl-test-in-use-{os.getpid()}")
    for path in (orphan, in_use):
        path.write_bytes(b"\0" * 4096)
    try:
        with in_use.open("r+b") as f, mmap.mmap(f.fileno(), 4096) as mapped:
            assert shm_segments("asyncrl-test-") == {orphan, in_use}
            remove_orphaned_segments({orphan, in_use})
            assert not orphan.exists() and in_use.exists()
            mapped[0] = 1
    finally:
        orphan.unlink(missing_ok=True)
        in_use.unlink(missing_ok=True)


def test_processes_an_env_starts_count_with_their_rollout_worker():
    class Proc:
        def __init__(self, name, parent=None):
            self._name, self._parent = name, parent

        def name(self):
            return self._name

        def parent(self):
            return self._parent

    worker = Proc("asyncrl-rw1")
    assert _name_for_role(Proc("vizdoom", worker)) == "asyncrl-rw1"
    assert _name_for_role(Proc("python", Proc("bash"))) == "python"
    assert _name_for_role(worker) == "asyncrl-rw1"


@pytest.mark.slow
def test_raw_stepping_counts_the_cpu_of_processes_its_envs_start(helpers_on_path):
    from child_process_envs import STEP_CPU_SEC

    plan = make_plan(["--env=child_process_envs:InChildProcess-v0", "--seconds=2",
                      "--num_workers=1", "--num_envs_per_worker=2"])
    result = run_raw(plan)
    # Each step's work is done in the env's own process, so counted it is most of a frame's CPU
    # (the worker's own CPU is a twentieth of it; the CPU is sampled between polls, so a part).
    assert result.env_steps > 100
    assert result.cpu_us_per_frame >= 0.5 * STEP_CPU_SEC * 1e6


@pytest.mark.parametrize("space", [
    gym.spaces.Discrete(3, start=-1),
    gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32),
    gym.spaces.Box(np.array([0.0, -np.inf]), np.array([1.0, np.inf]), dtype=np.float64),
    gym.spaces.MultiDiscrete([2, 5]),
    gym.spaces.MultiBinary(3),
    gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))),
])
def test_random_actions_are_valid_for_every_env(space):
    actions = action_sampler(space, 7, np.random.default_rng(0))()
    assert len(actions) == 7 and all(space.contains(a) for a in actions)


def test_sf_python_replaces_the_cached_venv_and_needs_sample_factory(tmp_path):
    plan = make_plan(["--sample_factory", f"--sf_python={sys.executable}", "--",
                      "--worker_num_splits=2"])
    assert plan.sf_python == Path(sys.executable)
    assert sf_arguments(plan.cfg, {"worker_num_splits"}) == ["--worker_num_splits=2"]
    assert make_plan(["--sample_factory"]).sf_python is None
    with pytest.raises(UserError, match="no such executable file"):
        make_plan(["--sample_factory", f"--sf_python={tmp_path / 'python'}"])
    with pytest.raises(UserError, match="give both"):
        make_plan([f"--sf_python={sys.executable}"])


def test_sample_factory_runs_on_the_device_asyncrl_uses():
    assert sf_device("cpu") == "cpu"
    assert sf_device("gpu") == ("gpu" if torch.cuda.is_available() else "cpu")
