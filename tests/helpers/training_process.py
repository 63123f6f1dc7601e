"""`python -m asyncrl.train` (or a script) as a subprocess, the way users run it, for tests that
signal, kill or time it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil
import pytest

from helpers import HELPERS, REPO

from asyncrl.utils.processes import die_with_parent


def start(tmp_path: Path, *argv: str, script: list[str] | None = None,
          new_session: bool = False) -> subprocess.Popen:
    """Trains in experiment `exp` under `tmp_path`; `script` replaces `-m asyncrl.train --env=CartPole-v1`.
    `new_session`: in a process group of its own, which a test may signal as a whole."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HELPERS)]),
           "PYTHONUNBUFFERED": "1"}
    command = script or ["-m", "asyncrl.train", "--env=CartPole-v1"]
    # If pytest itself is killed (a timeout), the training must not live on: its workers follow it.
    return subprocess.Popen([sys.executable, *command, f"--train_dir={tmp_path}",
                             "--experiment=exp", *argv],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=new_session,
                            preexec_fn=lambda: die_with_parent(signal.SIGKILL))


def kill_tree(proc: subprocess.Popen) -> str:
    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except psutil.NoSuchProcess:
        pass
    proc.kill()
    return proc.communicate()[0]


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """Waits for the exit; (exit code, everything it printed)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish in {timeout}s:\n{kill_tree(proc)}")
    return proc.returncode, out


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"training exited early:\n{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached in {timeout}s:\n{kill_tree(proc)}")
        time.sleep(0.1)
