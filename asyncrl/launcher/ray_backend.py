"""The `ray` backend: each experiment is a Ray actor holding the experiment's CPU/GPU request; the
actor runs the training as a child process of its own and reports its exit code. Experiment
folders must be on a path every node sees (they are absolute)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal as signals
import sys
import threading
import time
from pathlib import Path
from typing import Any

from asyncrl.experiment.layout import CONSOLE_FILE
from asyncrl.launcher.child import ExperimentBusy, StopSignals, note_exit, start_logged
from asyncrl.launcher.local import BUSY_RETRY_SEC, POLL_SEC, log_exit
from asyncrl.launcher.sweep import Plan, Variant
from asyncrl.launcher.watchdog import RayWatchdog
from asyncrl.utils.errors import UserError

log = logging.getLogger("asyncrl.launch")


class ExperimentActor:
    """Runs one experiment. Threaded (two calls at once), so that `stop` reaches the child while
    `run` waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = None
        self._stop_signal: int | None = None

    def run(self, command: list[str], exp_dir: str) -> int:
        # The command's interpreter is this worker's: nodes may keep Python elsewhere.
        command = [sys.executable if command[0] == "python" else command[0], *command[1:]]
        started = time.monotonic()
        waiting = False
        while self._proc is None:
            with self._lock:
                if self._stop_signal is not None:
                    return -self._stop_signal
                try:
                    # CUDA_VISIBLE_DEVICES, when the actor has a GPU, is Ray's: the child inherits it.
                    self._proc = start_logged(command, Path(exp_dir), {})
                    continue
                except ExperimentBusy as e:  # it goes on once the earlier run has exited
                    if not waiting:
                        print(f"Waiting: {e}", flush=True)
                    waiting = True
            time.sleep(BUSY_RETRY_SEC)
        print(f"{Path(exp_dir).name}: started on {os.uname().nodename} (pid {self._proc.pid})", flush=True)
        returncode = self._proc.wait()
        note_exit(Path(exp_dir), returncode, time.monotonic() - started)
        return returncode

    def stop(self, signum: int) -> None:
        with self._lock:
            self._stop_signal = signum
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signum)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--backend=ray needs Ray: pip install 'asyncrl[ray]'") from None
    return ray


def run_ray(plan: Plan, todo: list[Variant], max_parallel: int, num_gpus: int, experiments_per_gpu: int,
            pause_between: float, address: str | None, cpus_per_job: float,
            stop: StopSignals) -> dict[str, int]:
    """Same contract as run_processes, on the Ray cluster at `address` (None: a local Ray instance
    with `num_gpus` GPUs, started for this launch and shut down at its end)."""
    ray = _import_ray()
    gpus_per_job = 1 / experiments_per_gpu if num_gpus else 0
    # A local instance ends with the launcher, even a SIGKILLed one (see watchdog.py).
    with RayWatchdog() if address is None else contextlib.nullcontext():
        _connect(ray, address, num_gpus)
        try:
            # Starting a local instance took SIGTERM over, to stop it; the launcher stops it itself.
            stop.install()
            _check_resources(ray.cluster_resources(), cpus_per_job, gpus_per_job)
            actor_class = ray.remote(ExperimentActor).options(
                num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_concurrency=2, max_restarts=0)
            return _run_actors(ray, actor_class, plan, todo, max_parallel, pause_between, stop)
        finally:
            ray.shutdown()


def _connect(ray: Any, address: str | None, num_gpus: int) -> None:
    if address is None:
        # Ray would SIGKILL an actor's child when the actor dies (the launcher was killed): left
        # alone, the child gets PARENT_DEATH_SIGNAL from the kernel, saves and exits.
        ray.init(address="local", num_gpus=num_gpus, include_dashboard=False, log_to_driver=True,
                 _system_config={"kill_child_processes_on_worker_exit": False})
        return
    try:
        ray.init(address=address, log_to_driver=True)
    except ConnectionError as e:
        raise UserError(f"--ray_address={address}: cannot connect: {e}") from None


def _check_resources(cluster: dict[str, float], cpus_per_job: float, gpus_per_job: float) -> None:
    for name, wanted in (("CPU", cpus_per_job), ("GPU", gpus_per_job)):
        if wanted > cluster.get(name, 0):
            raise UserError(f"each experiment asks Ray for {wanted:g} {name}(s) but the cluster has "
                            f"{cluster.get(name, 0):g} in all")


def _run_actors(ray: Any, actor_class: Any, plan: Plan, todo: list[Variant], max_parallel: int,
                pause_between: float, stop: StopSignals) -> dict[str, int]:
    queue = list(todo)
    running: dict[Any, tuple[Variant, Any, float]] = {}  # run() result -> (variant, actor, start)
    exit_codes: dict[str, int] = {}
    next_start = 0.0
    try:
        while running or (queue and not stop.stopping):
            for signum in stop.new():
                for _, actor, _ in running.values():
                    actor.stop.remote(signum)
            now = time.monotonic()
            if queue and not stop.stopping and len(running) < max_parallel and now >= next_start:
                variant = queue.pop(0)
                actor = actor_class.remote()
                ref = actor.run.remote(plan.command(variant, "python"), str(variant.exp_dir))
                running[ref] = (variant, actor, now)
                log.info("Submitted %s to Ray, output in %s", variant.name, variant.exp_dir / CONSOLE_FILE)
                next_start = now + pause_between
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SEC)
            for ref in done:
                variant, actor, started = running.pop(ref)
                try:
                    returncode = ray.get(ref)
                except ray.exceptions.RayError as e:
                    log.error("%s: its Ray actor failed: %s", variant.name, str(e).splitlines()[0])
                    returncode = 1
                ray.kill(actor)
                exit_codes[variant.name] = returncode
                log_exit(variant, returncode, time.monotonic() - started, stop.stopping)
    finally:
        # Only on an error of the launcher itself: every child is told to save and stop, and
        # ray.shutdown then ends the actors (a child outlives its actor only to save).
        for _, actor, _ in running.values():
            actor.stop.remote(signals.SIGINT)
    return exit_codes
