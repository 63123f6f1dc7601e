"""The parallel runtime as users run it: learning, worker crashes, env crashes, signals, cleanup."""

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import fields
from pathlib import Path

import gymnasium as gym
import numpy as np
import psutil
import pytest
import torch

from helpers import HELPERS
from helpers.training_process import finish, wait_for
from helpers.training_process import start as start_training

from asyncrl.algo.trajectories import Trajectories
from asyncrl.envs.observations import obs_dict_space
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.experiment.layout import LOG_FILE
from asyncrl.launcher.watchdog import running
from asyncrl.runtime.buffers import PinnedStaging, TrajectoryBuffers
from asyncrl.runtime.progress import _lag

# asyncrl.train with an env that raises or hangs on demand (see the script's docstring). Its
# family has no preset: the policy is recurrent, so env crashes, hangs and respawns meet the
# hidden states too (CartPole's preset is feed-forward).
FLAKY = [str(HELPERS / "flaky_env_train.py"), "--env=flaky_cartpole"]
TINY = ["--num_workers=2", "--num_envs_per_worker=4", "--rollout=16", "--batch_size=64",
        "--num_batches_per_epoch=1", "--encoder_mlp_layers", "16", "--rnn_size=16"]


def start(tmp_path: Path, *argv: str, script: list[str] | None = None,
          new_session: bool = False) -> subprocess.Popen:
    return start_training(tmp_path, "--serial_mode=false", *argv, script=script,
                          new_session=new_session)


def workers_of(proc: subprocess.Popen) -> dict[str, psutil.Process]:
    return {p.name(): p for p in psutil.Process(proc.pid).children()}


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


def final_return(tmp_path: Path) -> float:
    checkpoint = sorted((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
    returns = load_checkpoint(checkpoint)["episode_stats"]["returns"]
    return sum(returns) / len(returns)


@pytest.mark.slow
@pytest.mark.parametrize("layout", [
    ["--worker_num_splits=1"],
    ["--worker_num_splits=2", "--policy_workers_per_policy=2", "--with_vtrace=true"],
    ["--async_rl=false"],
    ["--serial_mode=true", "--worker_num_splits=2"],
    ["--batched_sampling=true", "--worker_num_splits=2", "--with_vtrace=true"],
])
def test_cartpole_learns(tmp_path, layout):
    code, out = finish(start(tmp_path, "--train_for_env_steps=150000", "--seed=3", *layout))
    assert code == 0, out
    assert final_return(tmp_path) > 150, out
    assert "Stopped: reached train_for_env_steps=150000" in out


@pytest.mark.slow
def test_killed_rollout_worker_is_respawned_and_training_continues(tmp_path):
    proc = start(tmp_path, *TINY, "--train_for_seconds=1000000")
    wait_for(lambda: "asyncrl-rw1" in workers_of(proc), proc)
    time.sleep(2)
    victim = workers_of(proc)["asyncrl-rw1"]
    victim.kill()
    # One look at the processes per check: the killed worker may be reaped between two looks.
    wait_for(lambda: workers_of(proc).get("asyncrl-rw1", victim).pid != victim.pid, proc)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc)
    assert code == 0, out
    died = re.search(r"rollout_worker_1 died \(killed by SIGKILL\) at policy_version=(\d+): "
                     r"respawning it", out)
    assert died, out
    assert "1 rollout worker restart(s)" in out
    # Training went on after the restart: the learner kept producing versions.
    checkpoint = sorted((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
    assert load_checkpoint(checkpoint)["policy_version"] > int(died.group(1)) + 10


@pytest.mark.slow
@pytest.mark.parametrize("die_by, cause", [("segfault", "killed by SIGSEGV"),
                                           ("exit", "exit code 3")])
def test_worker_whose_env_ends_its_process_is_respawned(tmp_path, die_by, cause):
    code, out = finish(start(tmp_path, *TINY, "--die_at_step=300", f"--die_by={die_by}",
                             "--train_for_env_steps=6000", script=FLAKY))
    assert code == 0, out
    assert re.search(rf"rollout_worker_0 died \({cause}\) at policy_version=\d+: respawning it", out)
    restarts = re.search(r"Stopped: reached train_for_env_steps=6000\..* (\d+) rollout worker "
                         r"restart\(s\)", out)
    assert restarts and int(restarts.group(1)) >= 1, out


@pytest.mark.slow
def test_env_exception_is_contained_and_the_env_recreated(tmp_path):
    code, out = finish(start(tmp_path, *TINY, "--fail_every=30", "--train_for_env_steps=4000",
                             script=FLAKY))
    assert code == 0, out
    assert "raised in step (failure 1 in a row): recreating it" in out
    assert "RuntimeError: simulated env crash" in out  # the traceback is logged
    assert "Stopped: reached train_for_env_steps=4000" in out


@pytest.mark.slow
def test_env_that_always_fails_stops_the_run_with_a_clear_error(tmp_path):
    # Env 0, which asyncrl steps once at start-up, is healthy: env 1 fails in the workers.
    code, out = finish(start(tmp_path, *TINY, "--fail_every=1", "--healthy_envs=1",
                             "--max_consecutive_env_failures=3", script=FLAKY))
    assert code == 1, out
    assert "failed 4 times in a row in step (limit --max_consecutive_env_failures=3)" in out


@pytest.mark.slow
def test_env_that_fails_at_its_first_step_is_one_line_at_start_up(tmp_path):
    code, out = finish(start(tmp_path, *TINY, "--fail_every=1", script=FLAKY))
    assert code == 2 and out.count("\n") == 1, out
    assert out.startswith("asyncrl: error: --env=flaky_cartpole: env 0: step() raised "
                          "RuntimeError: simulated env crash at step 1 (at flaky_env_train.py:"), out
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum, whole_group", [(signal.SIGINT, False), (signal.SIGTERM, True)])
def test_a_stop_signal_saves_and_leaves_no_child_process_and_no_shared_memory(tmp_path, signum,
                                                                             whole_group):
    """SIGINT to the main process (Ctrl+C), or SIGTERM to every process of the run at once
    (scancel, `kill -TERM -<group>`): the workers leave the stop to the main process."""
    before = shm_entries()
    proc = start(tmp_path, *TINY, "--train_for_seconds=1000000", new_session=whole_group)
    wait_for(lambda: len(workers_of(proc)) == 4, proc)
    children = list(workers_of(proc).values())
    time.sleep(2)
    cores = psutil.cpu_count()
    assert workers_of(proc)["asyncrl-rw1"].cpu_affinity() == [1 % cores]  # pinned by default
    if whole_group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    code, out = finish(proc, timeout=30)
    assert code == 0, out
    assert f"{signal.Signals(signum).name} received" in out and "Saved checkpoint" in out
    assert not [c for c in children if running(c)]
    assert shm_entries() <= before


@pytest.mark.slow
def test_sigterm_again_while_stopping_still_ends_with_the_summary(tmp_path):
    """SIGTERM often comes more than once (Ray, scancel, container stops): further ones while the
    run stops must not end it before it has shut down and written its summary."""
    proc = start(tmp_path, *TINY, "--train_for_seconds=1000000")
    wait_for(lambda: len(workers_of(proc)) == 4, proc)
    time.sleep(1)
    log_file = tmp_path / "exp" / LOG_FILE
    deadline = time.monotonic() + 30
    # Through the stop, the shutdown and the summary: until the summary's last line is out.
    while "average return" not in log_file.read_text() and time.monotonic() < deadline:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.01)
    code, out = finish(proc, timeout=30)
    assert code == 0, out
    assert "SIGTERM received again: already stopping" in out
    assert "Stopped: SIGTERM received" in out and "average return" in out


@pytest.mark.slow
def test_sigkill_of_the_runner_ends_every_child(tmp_path):
    proc = start(tmp_path, *TINY, "--train_for_seconds=1000000")
    wait_for(lambda: len(workers_of(proc)) == 4, proc)
    children = list(workers_of(proc).values())
    proc.kill()
    proc.communicate()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive


@pytest.mark.slow
def test_experience_older_than_max_policy_lag_is_dropped(tmp_path):
    code, out = finish(start(tmp_path, *TINY, "--max_policy_lag=0", "--num_batches_to_accumulate=4",
                             "--train_for_env_steps=20000"))
    assert code == 0, out
    dropped = int(re.search(r"(\d+) trajectories dropped for policy lag", out).group(1))
    assert dropped > 0


@pytest.mark.slow
@pytest.mark.parametrize("serial", ["false", "true"])
def test_sync_mode_has_exactly_zero_policy_lag(tmp_path, serial):
    code, out = finish(start(tmp_path, *TINY, "--async_rl=false", f"--serial_mode={serial}",
                             "--train_for_env_steps=4000"))
    assert code == 0, out
    assert ("policy lag 0.0 versions (0.0 SGD steps, Sample Factory's unit; max 0.0 versions, "
            "0.0 SGD steps) in the last batch") in out


def test_policy_lag_text_gives_both_units():
    stats = {"policy_lag_avg": 3.5, "policy_lag_sgd_steps_avg": 56.0, "policy_lag_max": 5.0,
             "policy_lag_sgd_steps_max": 80.0}
    assert _lag(stats) == "3.5 versions (56.0 SGD steps, Sample Factory's unit)"
    assert _lag(stats, with_max=True) == ("3.5 versions (56.0 SGD steps, Sample Factory's unit; "
                                          "max 5.0 versions, 80.0 SGD steps)")
    assert _lag({}) == "n/a"  # before the first training iteration


@pytest.mark.slow
def test_status_line_and_timings_are_reported_and_kept(tmp_path):
    code, out = finish(start(tmp_path, *TINY, "--train_for_seconds=6"))
    assert code == 0, out
    assert re.search(r"env_steps=\d+ fps=\d+ avg_return=\S+ \(last \d+ of \d+ episodes\) "
                     r"policy_version=\d+ policy_lag=[\d.]+ versions \([\d.]+ SGD steps, "
                     r"Sample Factory's unit\)", out), out
    assert re.search(r"Time of rollout_worker_0 over \d+ s: env_step \d+%", out)
    timings = json.loads((tmp_path / "exp" / "timings.json").read_text())
    assert timings["learner_p0"]["train"] > 0 and timings["policy_worker_p0_0"]["inference"] > 0


@pytest.mark.slow
def test_hung_rollout_worker_is_terminated_and_respawned(tmp_path):
    proc = start(tmp_path, *TINY, "--hang_at_step=100", "--heartbeat_interval=1",
                 "--train_for_seconds=1000000", script=FLAKY)
    wait_for(lambda: "respawning" in (tmp_path / "exp" / "asyncrl_log.txt").read_text()
             if (tmp_path / "exp" / "asyncrl_log.txt").exists() else False, proc, timeout=60)
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc)
    assert code == 0, out
    assert re.search(r"rollout_worker_0 sent no heartbeat for \d+ s: terminating it", out)
    assert "rollout_worker_0 died (killed by SIGKILL)" in out


@pytest.mark.slow
def test_dead_policy_worker_ends_the_run_with_a_final_checkpoint(tmp_path):
    proc = start(tmp_path, *TINY, "--train_for_seconds=1000000")
    wait_for(lambda: "asyncrl-pw0-0" in workers_of(proc), proc)
    time.sleep(2)
    workers_of(proc)["asyncrl-pw0-0"].kill()
    code, out = finish(proc)
    assert code == 1, out
    assert "policy_worker_p0_0 died (killed by SIGKILL): stopping the run" in out
    assert "Saved checkpoint" in out.split("policy_worker_p0_0 died")[1]


@pytest.mark.slow
def test_dead_learner_ends_the_run_and_every_other_policy_saves_a_final_checkpoint(tmp_path):
    proc = start(tmp_path, *TINY, "--num_policies=2", "--train_for_seconds=1000000")
    wait_for(lambda: "asyncrl-learn1" in workers_of(proc), proc)
    time.sleep(2)
    workers = workers_of(proc)
    workers["asyncrl-learn1"].kill()
    code, out = finish(proc)
    assert code == 1, out
    assert "learner_p1 died (killed by SIGKILL): stopping the run" in out
    after = out.split("learner_p1 died")[1]
    # policy 0 is checkpointed; policy 1's state died with its learner
    assert "Saved checkpoint checkpoint_p0/" in after and "checkpoint_p1/" not in after
    assert not [p for p in workers.values() if running(p)]


def random_buffers() -> TrajectoryBuffers:
    buffers = TrajectoryBuffers(obs_dict_space(gym.spaces.Box(0, 255, (4, 8, 8), np.uint8)),
                                gym.spaces.Discrete(3), rollout=5, num_slots=6, num_envs=2,
                                rnn_state_size=4)
    generator = torch.Generator().manual_seed(0)
    for tensor in buffers._tensors().values():
        if tensor.dtype == torch.bool:
            tensor.copy_(torch.rand(tensor.shape, generator=generator) > 0.5)
        else:
            tensor.copy_(torch.randint(0, 200, tensor.shape, generator=generator))
    return buffers


def test_trajectories_are_the_slots_time_major_and_the_arrays_share_the_tensors_memory():
    buffers = random_buffers()
    slots = [4, 1, 2]
    batch = buffers.trajectories(torch.tensor(slots))
    tensors = buffers._tensors()
    for name, field_name in [("obs/obs", "obs"), ("actions", "actions"), ("rnn_states", "rnn_states"),
                             ("valid", "valid"), ("policy_versions", "policy_versions")]:
        got = getattr(batch, field_name)
        got = got["obs"] if isinstance(got, dict) else got
        assert torch.equal(got, tensors[name][slots].transpose(0, 1)) and got.is_contiguous()
        assert got.dtype == tensors[name].dtype
    buffers.arrays["rewards"][slots, 3] = 7.5  # the workers write through the numpy views
    assert torch.equal(buffers.rewards[slots, 3], torch.full((3,), 7.5))
    assert torch.equal(buffers.trajectories(torch.tensor(slots)).rewards[3], torch.full((3,), 7.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_staging_sends_the_same_time_major_batches_to_the_device():
    """The learner's path to a GPU (gather into pinned memory, asynchronous copy, transpose on
    the device) gives what the CPU path gives, batch after batch through the same buffers."""
    buffers = random_buffers()
    staging = PinnedStaging(torch.device("cuda"))
    for slots in ([4, 1, 2], [0, 5], [3, 1, 2, 5]):
        expected = buffers.trajectories(torch.tensor(slots))
        got = buffers.trajectories(torch.tensor(slots), staging)
        for name in [f.name for f in fields(Trajectories)]:
            want, have = getattr(expected, name), getattr(got, name)
            pairs = [(want[k], have[k]) for k in want] if isinstance(want, dict) else [(want, have)]
            for w, h in pairs:
                assert h.device.type == "cuda" and h.is_contiguous(), name
                assert torch.equal(h.cpu(), w), name
    assert all(b.is_pinned() for b in staging.buffers.values())
