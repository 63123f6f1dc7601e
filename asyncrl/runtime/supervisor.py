"""Process supervision: each component's event loop in a process of its own, started, watched
(liveness, heartbeats), respawned when it is a rollout worker that died or hung, and stopped."""

from __future__ import annotations

import logging
import signal as signals
import time
from typing import Any, Callable, Protocol

import psutil
import torch
from signal_slot.signal_slot import EventLoop, EventLoopObject

from asyncrl.runtime.names import ComponentName, Role
from asyncrl.utils.processes import prepare_child_process, reuse_freed_memory

log = logging.getLogger(__name__)

# A rollout worker silent for this many heartbeat intervals is considered hung and replaced.
HEARTBEAT_TIMEOUT_FACTOR = 3
SHUTDOWN_JOIN_SEC = 10.0


def set_up_torch_process() -> None:
    """For each process of a run that computes with torch: one thread (the processes share the
    cores) and freed memory kept for reuse (reuse_freed_memory)."""
    torch.set_num_threads(1)
    reuse_freed_memory()


def init_child_process(name: str, niceness: int) -> None:
    """Runs first in every worker process."""
    prepare_child_process(name, niceness)
    set_up_torch_process()


def kill_with_children(process: Any) -> None:
    """Kills a worker process and the processes it started. An env may run its simulator as a
    process of its own (ViZDoom's engine, which ignores SIGTERM), which would outlive a killed
    worker: the worker never gets to close the env. (ViZDoom's shared-memory segments in
    /dev/shm, which closing the env removes, stay behind.)"""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.kill()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by {signals.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _run_event_loop(event_loop: EventLoop, title: str, niceness: int) -> None:
    init_child_process(title, niceness)
    event_loop.exec()


class Process(Protocol):
    """What the supervisor needs of a component's process (a WorkerProcess; a fake in tests)."""

    name: str
    pid: int | None
    exitcode: int | None

    def start(self) -> None: ...

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...

    def kill(self) -> None: ...


class WorkerProcess:
    """One component's event loop, run in a process of its own. Every component is wired to the
    loop (its queue) before any process starts, so each start, a respawn's too, runs that same
    loop in a new OS process that every other component already reaches."""

    def __init__(self, component: ComponentName, context: Any, niceness: int):
        # The name the process had as signal_slot's EventLoopProcess: logs show it.
        self.name = f"{component.object_id}_process"
        self.event_loop = EventLoop(f"{self.name}_evt_loop")
        self._args = (self.event_loop, component.title, niceness)
        self._context = context
        self._process: Any = None  # the OS process of the latest start

    def start(self) -> None:
        self._process = self._context.Process(target=_run_event_loop, args=self._args,
                                              name=self.name, daemon=True)
        self._process.start()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def exitcode(self) -> int | None:
        return None if self._process is None else self._process.exitcode

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._process.join(timeout)

    def kill(self) -> None:
        self._process.kill()


class Supervisor(EventLoopObject):
    """Owns the components' processes; lives on the runner's loop, which gets the heartbeats.
    `before_respawn(component, cause)` runs when a dead rollout worker is about to be started
    again (the runner returns its trajectory slots)."""

    def __init__(self, event_loop: EventLoop, heartbeat_interval: float,
                 before_respawn: Callable[[ComponentName, str], None]):
        super().__init__(event_loop, object_id="supervisor")
        self.heartbeat_interval = heartbeat_interval
        self.before_respawn = before_respawn
        self.processes: dict[ComponentName, Process] = {}
        self.last_heartbeat: dict[str, float] = {}  # object id -> time.time() of its last beat
        self.restarts = 0  # rollout workers respawned

    def add(self, component: ComponentName, process: Process) -> None:
        self.processes[component] = process

    def start(self) -> None:
        for process in self.processes.values():
            process.start()

    def on_heartbeat(self, object_id: str, timestamp: float) -> None:
        self.last_heartbeat[object_id] = time.time()

    def warn_late_heartbeats(self) -> None:
        now = time.time()
        for object_id, last in self.last_heartbeat.items():
            if now - last > 2 * self.heartbeat_interval:
                log.warning("%s has not sent a heartbeat for %.0f s", object_id, now - last)

    def check(self, now: float | None = None) -> tuple[ComponentName, str] | None:
        """Kills hung rollout workers and respawns dead ones; returns another component that died,
        and how (the run cannot go on without it), or None."""
        now = time.time() if now is None else now
        for component, process in self.processes.items():
            respawnable = component.role is Role.ROLLOUT_WORKER
            if process.is_alive():
                silent = now - self.last_heartbeat.get(component.object_id, now)
                if respawnable and silent > HEARTBEAT_TIMEOUT_FACTOR * self.heartbeat_interval:
                    log.warning("%s sent no heartbeat for %.0f s: terminating it",
                                component.object_id, silent)
                    kill_with_children(process)
                continue
            if not respawnable:
                return component, exit_cause(process.exitcode)
            self._respawn(component, exit_cause(process.exitcode))
        return None

    def _respawn(self, component: ComponentName, cause: str) -> None:
        process = self.processes[component]
        process.join(timeout=1)
        self.before_respawn(component, cause)
        process.start()
        self.last_heartbeat[component.object_id] = time.time()  # time to start up
        self.restarts += 1

    def shutdown(self) -> None:
        """Waits for the started processes to end (they were asked to stop), kills the late."""
        processes = [p for p in self.processes.values() if p.pid is not None]  # started ones
        deadline = time.monotonic() + SHUTDOWN_JOIN_SEC
        for process in processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                log.warning("%s did not stop in time: killing it", process.name)
                kill_with_children(process)
                process.join(timeout=5)
