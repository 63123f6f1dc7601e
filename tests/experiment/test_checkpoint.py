import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO

from asyncrl.experiment.checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
    save_checkpoint_atomic,
)
from asyncrl.utils.errors import UserError



class _RunsCodeOnLoad:
    """Unpickling this calls os.mkdir(marker): the kind of payload weights_only must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


class _FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def _state(value: float = 0.0) -> dict:
    return {"weights": torch.full((4,), value), "train_step": int(value)}


def _trained_model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # One step so the optimizer state holds per-parameter tensors, not just hyperparameters.
    model(torch.randn(5, 3)).pow(2).mean().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_model_optimizer_and_scalars(tmp_path):
    model, optimizer = _trained_model_and_optimizer()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "train_step": 1234,
        "env_steps": 5_000_000,
        "best_reward": -12.75,
    }
    path = tmp_path / "ckpt.pth"
    save_checkpoint_atomic(state, path)

    loaded = load_checkpoint(path)

    assert loaded["train_step"] == 1234
    assert loaded["env_steps"] == 5_000_000
    assert loaded["best_reward"] == -12.75
    fresh_model, fresh_optimizer = _trained_model_and_optimizer()
    torch.nn.init.zeros_(fresh_model[0].weight)
    fresh_model.load_state_dict(loaded["model"])
    fresh_optimizer.load_state_dict(loaded["optimizer"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[name], tensor)
    original_adam = optimizer.state_dict()["state"]
    restored_adam = fresh_optimizer.state_dict()["state"]
    assert original_adam.keys() == restored_adam.keys()
    for index, param_state in original_adam.items():
        for key, tensor in param_state.items():
            assert torch.equal(restored_adam[index][key], tensor)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"], "temp file left behind"


def test_load_refuses_pickle_that_runs_code(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _RunsCodeOnLoad(marker)}, path)

    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)

    assert not marker.exists()
    message = str(excinfo.value)
    assert message.startswith(f"cannot load checkpoint {path}: ")
    assert "\n" not in message
    # The file really carries a code payload: an unrestricted load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:10], id="truncated-header"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"not a checkpoint, just some text\n" * 100, id="garbage"),
        pytest.param(lambda data: bytes(reversed(data)), id="scrambled"),
    ],
)
def test_damaged_file_raises_one_line_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "ckpt.pth"
    save_checkpoint_atomic({"model": {"w": torch.randn(1000)}}, path)
    path.write_bytes(damage(path.read_bytes()))

    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)

    message = str(excinfo.value)
    assert message.startswith(f"cannot load checkpoint {path}: ")
    assert "\n" not in message
    assert isinstance(excinfo.value, UserError)


def test_non_dict_and_missing_files_raise_checkpoint_error(tmp_path):
    not_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_dict)
    with pytest.raises(CheckpointError, match="expected a dict, got list"):
        load_checkpoint(not_dict)
    with pytest.raises(CheckpointError, match="No such file"):
        load_checkpoint(tmp_path / "missing.pth")


def test_failed_save_keeps_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint_atomic(_state(1.0), path)

    with pytest.raises(RuntimeError, match="cannot pickle this"):
        save_checkpoint_atomic({"weights": torch.zeros(4), "broken": _FailsToPickle()}, path)

    assert torch.equal(load_checkpoint(path)["weights"], torch.full((4,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_regular_checkpoints_keep_newest_by_train_step_not_mtime(tmp_path):
    manager = CheckpointManager(tmp_path, keep_checkpoints=3)
    for step in (1, 2, 3):
        manager.save(_state(step), train_step=step, env_steps=step * 100)
    # Make mtimes disagree with train_step: step 1 looks newest, step 3 oldest.
    now = time.time()
    for step, age in ((1, 100), (2, 200), (3, 300)):
        os.utime(tmp_path / f"checkpoint_{step:09d}_{step * 100}.pth", (now - age, now - age))

    newest = manager.save(_state(4), train_step=4, env_steps=400)

    assert [p.name for p in manager.all_checkpoints()] == [
        "checkpoint_000000002_200.pth",
        "checkpoint_000000003_300.pth",
        "checkpoint_000000004_400.pth",
    ]
    assert newest == tmp_path / "checkpoint_000000004_400.pth"
    assert manager.latest() == newest
    assert load_checkpoint(manager.latest())["train_step"] == 4


def test_train_step_order_survives_outgrowing_the_name_padding(tmp_path):
    manager = CheckpointManager(tmp_path, keep_checkpoints=1)
    manager.save(_state(), train_step=999_999_999, env_steps=1)
    bigger = manager.save(_state(), train_step=1_000_000_000, env_steps=2)

    assert manager.all_checkpoints() == [bigger]


def test_best_keeps_one_file_and_milestones_are_never_pruned(tmp_path):
    manager = CheckpointManager(tmp_path, keep_checkpoints=1)
    for step in range(1, 6):
        manager.save(_state(step), train_step=step, env_steps=step * 10)
        manager.save_milestone(_state(step), train_step=step, env_steps=step * 10)
        best = manager.save_best(_state(step), step, step * 10, "reward", -10.0 + step)

    assert best.name == "best_000000005_50_reward_-5.000.pth"
    assert sorted(p.name for p in tmp_path.glob("best_*")) == [best.name]
    assert manager.best() == best
    assert [p.name for p in manager.all_checkpoints()] == ["checkpoint_000000005_50.pth"]
    assert sorted(p.name for p in (tmp_path / "milestones").iterdir()) == [
        f"checkpoint_{step:09d}_{step * 10}.pth" for step in range(1, 6)
    ]
    assert manager.load("best")["train_step"] == 5


def test_load_returns_none_without_checkpoints_and_best_falls_back_to_latest(tmp_path, caplog):
    manager = CheckpointManager(tmp_path, keep_checkpoints=2)
    assert manager.latest() is None and manager.best() is None
    assert manager.load("latest") is None
    assert manager.load("best") is None

    manager.save(_state(7), train_step=7, env_steps=70)
    with caplog.at_level(logging.WARNING, logger="asyncrl.experiment.checkpoint"):
        state = manager.load("best")

    assert state["train_step"] == 7
    assert any(
        r.levelno == logging.WARNING and "checkpoint_000000007_70.pth" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(UserError, match="unknown checkpoint kind"):
        manager.load("newest")


def test_corrupt_chosen_checkpoint_raises_instead_of_falling_back(tmp_path):
    manager = CheckpointManager(tmp_path, keep_checkpoints=3)
    manager.save(_state(1), train_step=1, env_steps=10)
    latest = manager.save(_state(2), train_step=2, env_steps=20)
    best = manager.save_best(_state(1), 1, 10, "reward", 3.0)
    latest.write_bytes(latest.read_bytes()[:100])
    best.write_bytes(b"garbage")

    for kind, broken in (("latest", latest), ("best", best)):
        with pytest.raises(CheckpointError) as excinfo:
            manager.load(kind)
        message = str(excinfo.value)
        assert str(broken) in message
        assert "--restart_behavior=restart" in message
        assert "\n" not in message


def test_stale_temp_files_are_removed_by_the_owner(tmp_path):
    (tmp_path / "milestones").mkdir()
    stale = [
        tmp_path / ".checkpoint_000000003_30.pth.k2j4x9.tmp",
        tmp_path / "milestones" / ".checkpoint_000000002_20.pth.a8b7c6.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    kept = [tmp_path / "notes.txt", tmp_path / ".hidden"]
    for path in kept:
        path.write_text("user file")
    save_checkpoint_atomic(_state(1), tmp_path / "checkpoint_000000001_10.pth")

    manager = CheckpointManager(tmp_path, keep_checkpoints=2)
    assert all(path.exists() for path in stale)  # merely looking changes nothing
    manager.remove_stale_temp_files()

    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert [p.name for p in manager.all_checkpoints()] == ["checkpoint_000000001_10.pth"]


def test_keep_checkpoints_must_be_positive(tmp_path):
    with pytest.raises(UserError, match="keep_checkpoints"):
        CheckpointManager(tmp_path, keep_checkpoints=0)


# 8 MB of float32: writing and fsyncing it takes most of each save, so most kills land mid-write.
_PAYLOAD_NUMEL = 2_000_000


def _payload(version: int) -> torch.Tensor:
    # Every element differs between versions, so a mix of two writes cannot pass as either.
    return torch.arange(_PAYLOAD_NUMEL, dtype=torch.float32) + version * _PAYLOAD_NUMEL


# Importing torch takes seconds, so one spawned host pays for it once and forks a fresh writer
# process per path read from stdin. Each writer saves the two _payload versions in turn until
# killed; the host reports its pid, each completed save, and how it ended.
_WRITER_HOST = f"""
import os
import sys
import traceback
from pathlib import Path

import torch
from asyncrl.experiment.checkpoint import save_checkpoint_atomic

n = {_PAYLOAD_NUMEL}
payloads = [torch.arange(n, dtype=torch.float32) + version * n for version in (0, 1)]
host = os.getpid()
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            path = Path(line.strip())
            saves = 0
            while os.getppid() == host:  # a writer must not outlive its host
                version = saves % 2
                save_checkpoint_atomic({{"version": version, "payload": payloads[version]}}, path)
                saves += 1
                print("saved", flush=True)
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    print("writer", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("reaped", os.waitstatus_to_exitcode(status), flush=True)
"""

_KILLS = 8
_SAVES_BEFORE_KILL = 2


@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_complete_checkpoint(tmp_path):
    rng = random.Random(20240601)
    stderr_path = tmp_path / "host_stderr.txt"
    with open(stderr_path, "wb") as stderr:
        host = subprocess.Popen(
            [sys.executable, "-c", _WRITER_HOST],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    # A hung host would block readline forever; killing it turns that into EOF.
    watchdog = threading.Timer(60.0, host.kill)
    watchdog.start()

    def read_report() -> list[str]:
        line = host.stdout.readline()
        assert line, f"writer host exited: {stderr_path.read_text()}"
        return line.decode().split()

    live_writer = None  # a writer's pid, held only while it runs, so the pid cannot be reused
    try:
        interrupted_writes = 0
        for index in range(_KILLS):
            path = tmp_path / f"run{index}" / "checkpoint.pth"
            path.parent.mkdir()
            host.stdin.write(f"{path}\n".encode())
            host.stdin.flush()
            saves = 0
            while live_writer is None or saves < _SAVES_BEFORE_KILL:
                report = read_report()
                if report[0] == "reaped":
                    live_writer = None
                    pytest.fail(f"writer died by itself: {stderr_path.read_text()}")
                if report[0] == "writer":
                    live_writer = int(report[1])
                else:
                    saves += 1
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(live_writer, signal.SIGKILL)
            live_writer = None
            while (report := read_report())[0] != "reaped":
                pass
            assert int(report[1]) == -signal.SIGKILL

            state = load_checkpoint(path)
            assert state["version"] in (0, 1)
            assert torch.equal(state["payload"], _payload(state["version"]))
            interrupted_writes += any(path.parent.glob(".*.tmp"))
        # Otherwise every kill fell between writes and the test proved nothing.
        assert interrupted_writes > 0
    finally:
        watchdog.cancel()
        if live_writer is not None and host.poll() is None:
            os.kill(live_writer, signal.SIGKILL)
        # Closing stdin ends the host's loop once it has reaped its writer.
        with contextlib.suppress(BrokenPipeError):
            host.stdin.close()
        try:
            host.wait(timeout=10)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait()
        host.stdout.close()
