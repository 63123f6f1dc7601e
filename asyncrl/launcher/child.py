"""One experiment as a child process: its own process and session, its output appended to
console.txt in its folder, and its life tied to whoever started it (the launcher, a Ray worker)."""

from __future__ import annotations

import fcntl
import os
import shlex
import signal as signals
import subprocess
import time
from pathlib import Path
from typing import Mapping

from asyncrl.experiment.layout import CONSOLE_FILE
from asyncrl.utils.processes import die_with_parent

# What a child gets when its parent dies, even by SIGKILL: asyncrl.train saves a checkpoint and
# exits 0 on SIGTERM, so the experiment resumes from there on the next launch. Not SIGINT: the
# kernel may send it twice (to a child re-parented to a subreaper, e.g. Ray's raylet), and a
# second SIGINT interrupts the train's shutdown.
PARENT_DEATH_SIGNAL = signals.SIGTERM


def tie_to(parent: int, signum: int = PARENT_DEATH_SIGNAL):
    """A preexec_fn: the child gets `signum` when `parent` (this process) dies."""
    def preexec() -> None:
        # A child inherits the signal mask and ignored signals across exec; a Ray worker's
        # threads block SIGINT, which would make the child deaf to every request to stop.
        signals.pthread_sigmask(signals.SIG_SETMASK, set())
        for s in (signals.SIGINT, signals.SIGTERM):
            signals.signal(s, signals.SIG_DFL)
        die_with_parent(signum)
        if os.getppid() != parent:  # the parent died before the line above: no signal will come
            os._exit(1)
    return preexec


def _stamp(text: str) -> str:
    return f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] launcher: {text}\n"


class ExperimentBusy(Exception):
    """An earlier run of the experiment is still running (e.g. saving its checkpoint after its
    launcher was killed): starting another in the same folder now would mix the two."""


def start_logged(command: list[str], exp_dir: Path, env_update: Mapping[str, str]) -> subprocess.Popen:
    """Starts `command`, its stdout and stderr appended to <exp_dir>/console.txt. The child gets a
    session of its own: a Ctrl+C in the terminal reaches only the launcher, which decides how to
    stop it. Raises ExperimentBusy while an earlier run of the experiment holds console.txt."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **env_update}
    shown = " ".join(f"{k}={v}" for k, v in env_update.items())
    with open(exp_dir / CONSOLE_FILE, "a") as log:
        # The lock belongs to this open file, which is also the child's stdout: the child and every
        # process it starts hold it until the last of them exits.
        try:
            fcntl.flock(log.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExperimentBusy(f"an earlier run of {exp_dir.name} is still running (it holds "
                                 f"{exp_dir / CONSOLE_FILE})") from None
        log.write(_stamp(f"running {shown + ' ' if shown else ''}{shlex.join(command)}"))
        log.flush()
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, preexec_fn=tie_to(os.getpid()))


def note_exit(exp_dir: Path, returncode: int, seconds: float) -> None:
    with open(exp_dir / CONSOLE_FILE, "a") as log:
        log.write(_stamp(f"exited with code {returncode} after {seconds:.1f} s"))


class StopSignals:
    """While installed, SIGINT and SIGTERM are counted instead of ending the launcher; the
    loop that runs the experiments forwards each new one to them."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._forwarded = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        self.install()
        return self

    def install(self) -> None:
        """Also again after a library replaced the handlers (ray.init takes SIGTERM)."""
        for s in (signals.SIGINT, signals.SIGTERM):
            previous = signals.signal(s, self._on_signal)
            self._previous.setdefault(s, previous)

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signals.signal(s, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received.append(signum)

    @property
    def stopping(self) -> bool:
        return bool(self.received)

    def new(self) -> list[int]:
        """Signals received since the last call."""
        fresh = self.received[self._forwarded:]
        self._forwarded += len(fresh)
        return fresh
