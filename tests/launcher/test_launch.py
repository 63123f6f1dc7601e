"""The sweep launcher: names and commands of the variants, bad input, the three backends run as a
user runs them (processes and a real local Ray instance; Slurm scripts written, executed with
bash, and submitted through stand-in sbatch/squeue), kills and relaunches, and no leftovers."""

import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from helpers import REPO

from asyncrl.envs.command_line import parse_args
from asyncrl.experiment.checkpoint import CheckpointError, load_checkpoint
from asyncrl.experiment.status_events import PolicyStatus, StatusEventWriter
from asyncrl.launcher import Sweep
from asyncrl.launcher.cli import main
from asyncrl.launcher.local import GpuSlots, gpu_devices
from asyncrl.launcher.ray_backend import ExperimentActor
from asyncrl.launcher.results import status_table
from asyncrl.launcher.sweep import load_sweep, plan_sweep
from asyncrl.launcher.watchdog import running
from asyncrl.utils.errors import UserError

EXAMPLE = REPO / "examples" / "cartpole_sweep.py"
TINY = ("--env=CartPole-v1 --num_workers=1 --num_envs_per_worker=4 --rollout=16 --batch_size=64 "
        "--num_batches_per_epoch=1 --device=cpu")


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def launcher(tmp_path: Path, *argv: str, env_update: dict | None = None, new_group: bool = False,
             output: Path | None = None) -> subprocess.Popen:
    """The launcher as a user starts it; `new_group`: in a process group of its own, as a shell
    puts a command (a Ctrl+C in the terminal signals that group); `output`: a file for what it
    prints, which can be read while it runs (default: a pipe)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env_update or {})}
    with open(output, "w") if output else contextlib.nullcontext(subprocess.PIPE) as stdout:
        return subprocess.Popen([sys.executable, "-m", "asyncrl.launch", *argv], cwd=tmp_path, env=env,
                                stdout=stdout, stderr=subprocess.STDOUT, text=True,
                                process_group=0 if new_group else None)


def launch(tmp_path: Path, *argv: str, timeout: float = 180, **kwargs) -> tuple[int, str]:
    proc = launcher(tmp_path, *argv, **kwargs)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the launcher did not finish in {timeout} s:\n{proc.communicate()[0]}")
    return proc.returncode, out


def wait_until(condition, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Until `condition()`, while the launcher `proc` (if any) runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the launcher exited early:\n{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
            pytest.fail(f"condition not reached in {timeout} s:\n{proc.communicate()[0] if proc else ''}")
        time.sleep(0.1)


def table_row(out: str, name: str) -> list[str]:
    """The cells of experiment `name`'s row in a printed status table."""
    line = next(line for line in out.splitlines() if line.startswith(name + " "))
    return re.split(r"\s{2,}", line.strip())


def processes_mentioning(text: str, since: float = 0.0) -> list[psutil.Process]:
    """Running ones (a zombie has exited: it waits for its parent, or init, to collect it)."""
    found = []
    for p in psutil.process_iter(["cmdline", "create_time", "name"]):
        try:
            line = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
            if text in line and p.info["create_time"] >= since and p.pid != os.getpid() and running(p):
                found.append(p)
        except psutil.Error:
            pass
    return found


def plot_hint(sweep_dir: Path, *names: str) -> str:
    return (f"Overlay their learning curves: python -m asyncrl.plot {' '.join(names)} "
            f"--train_dir={sweep_dir} --out={sweep_dir / 'learning_curves.png'}")


def checkpoint_steps(exp_dir: Path) -> list[int]:
    """The env steps of the experiment's checkpoints, read while it may be running."""
    steps = []
    for path in (exp_dir / "checkpoint_p0").glob("checkpoint_*.pth"):
        try:
            steps.append(load_checkpoint(path)["env_steps"])
        except CheckpointError:
            if path.exists():
                raise
            # Else the run removed it (it keeps the latest few) after the listing.
    return steps


def console(exp_dir: Path) -> str:
    return (exp_dir / "console.txt").read_text()


def command_lines(exp_dir: Path) -> list[str]:
    return json.loads((exp_dir / "config.json").read_text())["command_lines"]


# -- sweep description ----------------------------------------------------------------------------

def test_grid_gives_readable_names_folders_and_exact_commands(tmp_path):
    base = "--env=CartPole-v1 --num_workers=1 --rollout=16"
    sweep = Sweep(name="lrbs", base=base, grid={"learning_rate": [0.001, 0.0003], "batch_size": [64, 128]})
    plan = plan_sweep(sweep, tmp_path)
    assert [v.name for v in plan.variants] == ["lr0.001_bs64", "lr0.001_bs128", "lr0.0003_bs64",
                                               "lr0.0003_bs128"]
    variant = plan.variants[1]
    assert variant.exp_dir == tmp_path.resolve() / "lrbs" / "lr0.001_bs128"
    assert plan.command(variant, "/py") == [
        "/py", "-m", "asyncrl.train", *shlex.split(base), "--learning_rate=0.001", "--batch_size=128",
        f"--train_dir={tmp_path.resolve() / 'lrbs'}", "--experiment=lr0.001_bs128"]


def test_explicit_variants_combine_with_the_grid_and_short_names_resolve_clashes(tmp_path):
    sweep = Sweep(name="s", base=TINY, grid={"seed": [1, 2]}, short={"with_vtrace": "vt"},
                  variants=[{"with_vtrace": True, "encoder_mlp_layers": [64, 64]},
                            {"adam_beta1": 0.8, "adam_beta2": 0.99}])
    plan = plan_sweep(sweep, tmp_path)
    # adam_beta1 and adam_beta2 share the initials "ab": both are written in full.
    assert [v.name for v in plan.variants] == [
        "vtTrue_eml64-64_seed1", "vtTrue_eml64-64_seed2",
        "adam_beta10.8_adam_beta20.99_seed1", "adam_beta10.8_adam_beta20.99_seed2"]
    assert "--encoder_mlp_layers=64,64" in plan.variants[0].args
    assert plan.param_names == ["with_vtrace", "encoder_mlp_layers", "seed", "adam_beta1", "adam_beta2"]


def test_yaml_sweep_takes_its_name_from_the_file(tmp_path):
    path = write_yaml(tmp_path / "tiny.yaml", f"base: {TINY}\ngrid:\n  learning_rate: [0.001, 0.01]\n")
    plan = plan_sweep(load_sweep(str(path)), tmp_path)
    assert plan.name == "tiny" and [v.name for v in plan.variants] == ["lr0.001", "lr0.01"]


def test_status_table_shows_the_latest_status_event_of_each_experiment(tmp_path):
    plan = plan_sweep(Sweep(name="s", base=TINY, grid={"seed": [1, 2, 3]}), tmp_path)
    running, silent, _ = plan.variants
    for variant in (running, silent):
        variant.exp_dir.mkdir(parents=True)
        (variant.exp_dir / "config.json").write_text(json.dumps({"params": {}}))
    cfg = parse_args(["--env=CartPole-v1", "--experiment=seed1"], "train", "t").config()
    writer = StatusEventWriter(running.exp_dir / "status.jsonl", frames_per_step=1)
    writer.run_started(cfg, env_steps=0, resumed=False)
    for env_steps, fps, avg in ((4096, 800.0, None), (12288, 1638.4, 21.25)):
        writer.status(env_steps, fps, [PolicyStatus(
            policy=0, env_steps=env_steps, version=3, episodes=9, returns_averaged=9,
            avg_return=avg, best_metric=None, policy_lag_versions=None, policy_lag_sgd_steps=None,
            policy_lag_max_versions=None, policy_lag_max_sgd_steps=None, dropped_trajectories=0,
            eval_return=None, eval_env_steps=None)])
    out = status_table(plan)
    assert re.split(r"\s{2,}", out.splitlines()[1])[-3:] == ["latest env steps", "fps", "latest return"]
    assert table_row(out, "seed1") == ["seed1", "1", "unfinished", "-", "-", "-", "12,288", "1,638",
                                       "21.2"]
    assert table_row(out, "seed2")[-3:] == ["-", "-", "-"]  # started, no status yet
    assert table_row(out, "seed3")[2:] == ["not started", "-", "-", "-", "-", "-", "-"]


@pytest.mark.parametrize("sweep, message", [
    (Sweep("s", TINY + " --experiment=x", grid={"seed": [1]}), "--experiment cannot be set in a sweep"),
    (Sweep("s", TINY + " --seed=3", grid={"seed": [1]}), "--seed is both in the sweep's base command"),
    (Sweep("s", TINY, grid={"seed": 1}), "seed must have a non-empty list of values"),
    (Sweep("s", TINY, grid={"lerning_rate": [1]}), "did you mean --learning_rate?"),
    (Sweep("s", TINY.replace("--batch_size=64", ""), grid={"batch_size": [50]}), "variant bs50"),
    (Sweep("s", TINY, grid={"env_name": ["a/b", "a-b"]}), "both named 'ena-b'"),
    (Sweep("s", TINY, grid={"seed": [1]}, variants=[{"seed": 2}]), "--seed is both in the sweep grid"),
    (Sweep("my sweep", TINY), "sweep name 'my sweep'"),
])
def test_bad_sweeps_are_one_line_user_errors(tmp_path, sweep, message):
    with pytest.raises(UserError) as error:
        plan_sweep(sweep, tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_bad_command_lines_print_one_line_and_exit_2_touching_nothing(tmp_path):
    code, out = launch(tmp_path, f"--run={EXAMPLE}", "--slurm_time=10")
    assert code == 2
    assert out == ("asyncrl.launch: error: --slurm_time applies only to --backend=slurm, not to "
                   "--backend=processes\n")
    bad_yaml = write_yaml(tmp_path / "bad.yaml", "base: --env=CartPole-v1\ngrids: {}\n")
    for argv, message in [
        ([f"--run={bad_yaml}"], "unknown key 'grids'"),
        ([f"--run={tmp_path / 'none.py'}"], "no such sweep file"),
        ([f"--run={EXAMPLE}", "--max_parallel=0"], "--max_parallel=0 must be at least 1"),
        ([f"--run={EXAMPLE}", "--experiments_per_gpu=2"], "--experiments_per_gpu needs --num_gpus > 0"),
        ([f"--status={EXAMPLE}", "--backend=ray"], "--backend applies to a launch"),
        ([f"--run={EXAMPLE}", "--ray_address=10.0.0.1:6379"], "--ray_address applies only to "
                                                               "--backend=ray"),
        (["--status=nothing"], "not a sweep file"),
    ]:
        assert main(argv) == 2
    assert not (tmp_path / "train_dir").exists()


def test_gpus_fill_round_robin_up_to_experiments_per_gpu(monkeypatch):
    gpus = GpuSlots(num_gpus=2, experiments_per_gpu=2)
    assert [gpus.take() for _ in range(5)] == [0, 1, 0, 1, None]
    gpus.give_back(1)
    assert gpus.take() == 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_devices(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")  # the launcher's own share of the GPUs
    assert gpu_devices(2) == ["3", "5"]
    with pytest.raises(UserError, match="--num_gpus=4, but CUDA_VISIBLE_DEVICES=3,5,6"):
        gpu_devices(4)


# -- the example on every backend -----------------------------------------------------------------

def test_example_dry_run_prints_the_same_commands_for_every_backend(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = {}
    for backend in ("processes", "ray"):
        assert main([f"--run={EXAMPLE}", f"--backend={backend}", "--dry_run"]) == 0
        printed[backend] = [line for line in capsys.readouterr().out.splitlines()
                            if line.startswith(sys.executable)]
    assert not (tmp_path / "train_dir").exists()  # a dry run changes nothing
    assert main([f"--status={EXAMPLE}"]) == 0
    out = capsys.readouterr().out
    assert "0 of 4 finished, 0 unfinished, 4 not started" in out
    assert out.splitlines()[-1].startswith("No learning curves yet")
    assert printed["processes"] == printed["ray"] and len(printed["ray"]) == 4
    assert "--learning_rate=0.003 --batch_size=1024" in printed["ray"][3]

    assert main([f"--run={EXAMPLE}", "--backend=slurm", "--dry_run", "--slurm_partition=gpu",
                 "--slurm_gpus_per_job=1", "--slurm_cpus_per_job=8", "--slurm_time=2:00:00"]) == 0
    submit_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sbatch")]
    sweep_dir = tmp_path / "train_dir" / "cartpole_lr_bs"
    scripts = sorted((sweep_dir / "slurm").glob("*.sbatch"))
    assert len(scripts) == 4 and submit_lines == [f"sbatch --parsable {s}" for s in
                                                  (sweep_dir / "slurm" / f"{n}.sbatch" for n in (
                                                      "lr0.0003_bs256", "lr0.0003_bs1024",
                                                      "lr0.003_bs256", "lr0.003_bs1024"))]
    text = (sweep_dir / "slurm" / "lr0.003_bs1024.sbatch").read_text()
    for directive in ("--job-name=cartpole_lr_bs/lr0.003_bs1024", "--partition=gpu", "--gres=gpu:1",
                      "--cpus-per-task=8", "--time=2:00:00", "--signal=B:INT@120",
                      f"--output={sweep_dir / 'lr0.003_bs1024' / 'console.txt'}"):
        assert f"#SBATCH {directive}\n" in text
    assert f"\nexec {printed['processes'][3]}\n" in text


@pytest.mark.slow
def test_slurm_script_runs_its_experiment_under_bash_and_the_sweep_then_skips_it(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = write_yaml(tmp_path / "one.yaml", f"name: one\nbase: {TINY} --train_for_env_steps=256\n"
                                              "grid: {seed: [7]}\n")
    setup = tmp_path / "setup.sh"
    setup.write_text("echo setup ran from $(pwd)\n")
    assert main([f"--run={sweep}", "--backend=slurm", "--dry_run", f"--slurm_setup={setup}"]) == 0
    script = tmp_path / "train_dir" / "one" / "slurm" / "seed7.sbatch"
    assert f"\ncd {tmp_path}\necho setup ran from $(pwd)\nexec " in script.read_text()
    ran = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, cwd="/")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"setup ran from {tmp_path}" in ran.stdout  # the script works where it was written
    assert "Stopped: reached train_for_env_steps=256" in ran.stdout
    capsys.readouterr()
    assert main([f"--run={sweep}", "--backend=slurm", "--dry_run"]) == 0
    assert "sbatch" not in capsys.readouterr().out  # finished: no script to submit
    assert main(["--status=one"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 finished" in out, out
    name, seed, state, steps, *_ = table_row(out, "seed7")
    assert (seed, state) == ("7", "finished") and int(steps.replace(",", "")) >= 256
    # The last three columns are the run's latest status event's: here its summary.
    latest_steps, fps, _ = table_row(out, "seed7")[-3:]
    assert latest_steps == steps and float(fps.replace(",", "")) > 0
    # The table ends with the command that overlays the runs' curves; it works as printed.
    sweep_dir = tmp_path / "train_dir" / "one"
    assert out.splitlines()[-1] == plot_hint(sweep_dir, "seed7")
    command = shlex.split(out.splitlines()[-1].split(": ", 1)[1])
    ran = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert ran.returncode == 0 and "seed7: 1 point up to" in ran.stdout, ran.stdout + ran.stderr
    assert (sweep_dir / "learning_curves.png").stat().st_size > 0


@pytest.mark.slow
def test_slurm_submits_with_sbatch_and_does_not_submit_a_queued_job_twice(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Stand-ins for Slurm's commands: sbatch records its arguments and answers a job id, squeue
    # lists job 1001 as still queued.
    (bin_dir / "sbatch").write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/calls\n'
                                    f'echo $((1000 + $(wc -l < {tmp_path}/calls)))\n')
    (bin_dir / "squeue").write_text("#!/bin/bash\necho 1001\necho 77\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    sweep = write_yaml(tmp_path / "two.yaml", f"name: two\nbase: {TINY}\ngrid: {{seed: [1, 2]}}\n")
    path = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    code, out = launch(tmp_path, f"--run={sweep}", "--backend=slurm", "--pause_between=0", env_update=path)
    assert code == 0, out
    slurm_dir = tmp_path / "train_dir" / "two" / "slurm"
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"--parsable {slurm_dir / 'seed1.sbatch'}", f"--parsable {slurm_dir / 'seed2.sbatch'}"]
    assert (slurm_dir / "seed1.jobid").read_text() == "1001\n"
    code, out = launch(tmp_path, f"--run={sweep}", "--backend=slurm", "--pause_between=0", env_update=path)
    assert code == 0 and "seed1 is already queued as Slurm job 1001" in out, out
    assert (tmp_path / "calls").read_text().splitlines()[2:] == [f"--parsable {slurm_dir / 'seed2.sbatch'}"]

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, out = launch(fresh, f"--run={sweep}", "--backend=slurm", env_update={"PATH": "/usr/bin:/bin"})
    assert code == 2 and out.startswith("asyncrl.launch: error: --backend=slurm: sbatch is not on PATH")
    assert len(out.splitlines()) == 1 and not (fresh / "train_dir").exists()


# -- processes: kills, relaunches, no leftovers -------------------------------------------------

@pytest.mark.slow
def test_processes_sweep_survives_sigkill_and_ctrl_c_and_completes_without_redoing_runs(tmp_path):
    shm_before = set(os.listdir("/dev/shm"))
    # One at a time: "short" finishes in the first launch; "long" (a limit of 5 s per run) is
    # killed with the launcher a second into its run, resumed and stopped by Ctrl+C, resumed again
    # and then finishes.
    sweep = write_yaml(tmp_path / "kr.yaml", f"name: kr\nbase: {TINY} --save_every_sec=1\nvariants:\n"
                       "  - {train_for_env_steps: 1000}\n  - {train_for_seconds: 5}\n")
    sweep_dir = tmp_path / "train_dir" / "kr"
    short, long = sweep_dir / "tfes1000", sweep_dir / "tfs5"
    argv = (f"--run={sweep}", "--max_parallel=1", "--pause_between=0", "--num_gpus=2")

    proc = launcher(tmp_path, *argv)
    wait_until(lambda: (short / "finished.json").exists() and checkpoint_steps(long), proc)
    proc.kill()  # SIGKILL: the launcher cannot forward anything; the kernel tells the child
    proc.communicate()
    wait_until(lambda: "Stopped: SIGTERM received" in console(long), timeout=60)
    wait_until(lambda: not processes_mentioning(str(sweep_dir)), timeout=60)
    assert not (long / "finished.json").exists()
    saved = max(checkpoint_steps(long))
    assert "launcher: running CUDA_VISIBLE_DEVICES=0 " in console(short)

    proc = launcher(tmp_path, *argv, new_group=True)
    wait_until(lambda: max(checkpoint_steps(long)) > saved, proc)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C in a terminal: the launcher's process group
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert "1 finished already (skipped), 1 to run" in out and "Stopped by SIGINT" in out
    assert table_row(out, "tfs5")[:4] == ["tfs5", "-", "5", "unfinished"]
    assert "Stopped: SIGINT received" in console(long) and "exited with code 0" in console(long)

    code, out = launch(tmp_path, *argv)
    assert code == 0, out
    assert "2 of 2 finished" in out and plot_hint(sweep_dir, "tfes1000", "tfs5") in out
    assert len(command_lines(short)) == 1 and console(short).count("launcher: running") == 1
    assert len(command_lines(long)) == 3 and console(long).count("Resumed from env_steps=") == 2
    assert "Stopped: reached train_for_seconds=5" in console(long)
    assert not processes_mentioning(str(sweep_dir)) and set(os.listdir("/dev/shm")) <= shm_before


@pytest.mark.slow
def test_relaunch_waits_for_a_run_still_running_from_an_earlier_launch(tmp_path):
    sweep = write_yaml(tmp_path / "w.yaml", f"name: w\nbase: {TINY} --train_for_env_steps=256\n"
                                            "grid: {seed: [1]}\n")
    exp_dir = tmp_path / "train_dir" / "w" / "seed1"
    exp_dir.mkdir(parents=True)
    output = tmp_path / "launcher.txt"
    # As a run from an earlier launch that is still saving its checkpoint holds it.
    with open(exp_dir / "console.txt", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        proc = launcher(tmp_path, f"--run={sweep}", "--pause_between=0", output=output)
        wait_until(lambda: "Waiting: an earlier run of seed1 is still running" in output.read_text(), proc)
        assert "launcher: running" not in console(exp_dir)
    assert proc.wait(timeout=120) == 0, output.read_text()
    assert "1 of 1 finished" in output.read_text() and console(exp_dir).count("launcher: running") == 1



@pytest.mark.slow
def test_ray_actor_waits_for_a_run_still_running_and_gives_up_when_stopped(tmp_path, capfd):
    actor = ExperimentActor()  # the class itself: its waiting needs no Ray
    command = ["python", "-c", "print('ran')"]
    with open(tmp_path / "console.txt", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = concurrent.futures.ThreadPoolExecutor(1).submit(actor.run, command, str(tmp_path))
        wait_until(lambda: "Waiting: an earlier run of" in capfd.readouterr().out)
    assert result.result(timeout=60) == 0 and "ran\n" in console(tmp_path)

    stopped = ExperimentActor()
    with open(tmp_path / "console.txt", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = concurrent.futures.ThreadPoolExecutor(1).submit(stopped.run, command, str(tmp_path))
        stopped.stop(signal.SIGINT)
        assert result.result(timeout=60) == -signal.SIGINT
    assert console(tmp_path).count("ran\n") == 1


# -- ray: a real local instance -------------------------------------------------------------------

def name_of(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.NoSuchProcess:  # e.g. a process of the experiment that just finished
        return ""


def end_survivors(processes: list[psutil.Process], timeout: float) -> list[str]:
    """Waits up to `timeout` s for `processes` to exit; kills those still running (the test
    started them) and returns what they were."""
    deadline = time.monotonic() + timeout
    while any(running(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in processes if running(p)]
    described = [f"{p.pid} {name_of(p)}" for p in survivors]
    for p in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return described


@pytest.mark.slow
def test_ray_sweep_survives_sigkill_and_ctrl_c_and_completes_without_redoing_runs(tmp_path):
    pytest.importorskip("ray")
    started = time.time()
    shm_before = set(os.listdir("/dev/shm"))
    # One at a time on a local Ray instance: "done" finishes in the first launch; "long" (10 s of
    # training in all) is killed with the launcher a second into its run, resumed and stopped by
    # Ctrl+C, resumed again and then finishes.
    sweep = write_yaml(tmp_path / "r.yaml", f"name: r\nbase: {TINY} --save_every_sec=1\nvariants:\n"
                       "  - {train_for_env_steps: 512}\n  - {train_for_seconds: 10}\n"
                       "short: {train_for_env_steps: steps, train_for_seconds: secs}\n")
    sweep_dir = tmp_path / "train_dir" / "r"
    done, long = sweep_dir / "steps512", sweep_dir / "secs10"
    argv = (f"--run={sweep}", "--backend=ray", "--max_parallel=1", "--pause_between=0",
            "--ray_cpus_per_job=1")

    proc = launcher(tmp_path, *argv)
    wait_until(lambda: (done / "finished.json").exists() and checkpoint_steps(long), proc, timeout=180)
    # Everything it started: Ray's head processes, agents and workers, the experiments.
    tree = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(name_of(p) for p in tree)
    assert "raylet" in names and "ray::ExperimentActor" in names and "ray::DashboardAgent" in names
    proc.kill()
    proc.communicate()
    assert not end_survivors(tree, timeout=20)
    assert not processes_mentioning("ray::", since=started) and set(os.listdir("/dev/shm")) <= shm_before
    # Its Ray worker gone, the experiment got its parent-death signal and saved.
    assert "Stopped: SIGTERM received" in console(long) and not (long / "finished.json").exists()
    saved = max(checkpoint_steps(long))

    # Ctrl+C in a terminal signals the launcher's whole process group (Ray's head processes too).
    proc = launcher(tmp_path, *argv, new_group=True)
    wait_until(lambda: max(checkpoint_steps(long)) > saved, proc, timeout=180)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert "1 finished already (skipped), 1 to run" in out and "Submitted secs10 to Ray" in out
    assert "Stopped by SIGINT" in out and table_row(out, "secs10")[3] == "unfinished"
    # The child of a Ray worker hears the signal (a worker's threads block SIGINT: not inherited).
    assert "Stopped: SIGINT received" in console(long) and "exited with code 0" in console(long)

    code, out = launch(tmp_path, *argv)
    assert code == 0, out
    assert "2 of 2 finished" in out
    assert len(command_lines(done)) == 1 and console(done).count("launcher: running") == 1
    assert len(command_lines(long)) == 3 and console(long).count("Resumed from env_steps=") == 2
    assert "Stopped: reached train_for_seconds=10" in console(long)
    time.sleep(1)
    assert not processes_mentioning("ray::", since=started), out
    assert not processes_mentioning(str(tmp_path)) and set(os.listdir("/dev/shm")) <= shm_before
