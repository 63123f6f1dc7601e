"""Ends the local Ray instance of a launch when the launcher goes, even by SIGKILL.

Ray ties the head's processes (gcs_server, raylet, ...) to the launcher with a parent-death
signal, and its workers exit soon after the raylet; but the raylet's two agents
(ray::DashboardAgent, ray::RuntimeEnvAgent) first report the raylet's death to the GCS, which is
dead too, and wait 60 s for an answer (Ray 2.60: a fixed timeout) before exiting.

The watchdog is a separate process in a session of its own (a Ctrl+C in the terminal does not
reach it). While the launcher runs, it notes the launcher's descendants in the launcher's session:
Ray's processes, which Ray starts in the launcher's session. The experiments are not among them:
each runs in a session of its own (`child.start_logged`), and when its Ray worker dies it gets its
parent-death signal, saves a checkpoint and exits. Once its stdin, a pipe from the launcher,
reaches end of file (the launcher exited or was killed), the watchdog SIGKILLs the noted processes
that still run. A process is known by its PID and start time, so a reused PID is left alone.

Run as a script (`python watchdog.py LAUNCHER_PID`), it needs no installed asyncrl.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import psutil

NOTE_EVERY_SEC = 0.5  # Ray starts its processes at ray.init and each worker when it is needed
GIVE_UP_SEC = 10.0


def in_session(p: psutil.Process, session: int) -> bool:
    try:
        return os.getsid(p.pid) == session and p.pid != os.getpid()
    except ProcessLookupError:
        return False


def running(p: psutil.Process) -> bool:
    """Not exited (a zombie has: it waits only for its parent to collect its status)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def end(processes: list[psutil.Process]) -> None:
    """SIGKILLs those still running (psutil checks the start time) and waits for them to go."""
    for p in processes:
        try:
            p.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + GIVE_UP_SEC
    while any(running(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)


def watch(launcher_pid: int) -> None:
    noted: dict[int, psutil.Process] = {}
    session = os.getsid(launcher_pid)
    try:
        launcher = psutil.Process(launcher_pid)
        while True:
            # The launcher's descendants in its session: Ray's processes, not the experiments.
            noted.update((p.pid, p) for p in launcher.children(recursive=True) if in_session(p, session))
            readable, _, _ = select.select([sys.stdin], [], [], NOTE_EVERY_SEC)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                break  # end of file: the launcher is gone or done
    except psutil.NoSuchProcess:  # the launcher died between two looks
        pass
    # Again now: a child seen between its fork and its setsid is an experiment's session leader.
    end([p for p in noted.values() if in_session(p, session)])


class RayWatchdog:
    """While entered, a watchdog notes the processes this process starts in its session; at the
    exit, or when this process dies, it ends those still running."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "RayWatchdog":
        # The pipe's end here is not inheritable: only this process's exit closes it.
        self._proc = subprocess.Popen([sys.executable, __file__, str(os.getpid())],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.stdin.close()
        # Nothing of the instance outlives a launcher that returned.
        self._proc.wait()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
