"""The `processes` backend: up to max_parallel experiments at once on this machine, each a child
process, GPUs handed out through CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from asyncrl.experiment.layout import CONSOLE_FILE
from asyncrl.launcher.child import ExperimentBusy, StopSignals, note_exit, start_logged
from asyncrl.launcher.sweep import Plan, Variant
from asyncrl.utils.errors import UserError

log = logging.getLogger("asyncrl.launch")
POLL_SEC = 0.1
BUSY_RETRY_SEC = 0.5


@dataclass
class _Running:
    variant: Variant
    gpu: int | None
    started: float


class GpuSlots:
    """Experiments per GPU; a new one goes to the least busy GPU (the lowest index on a tie, so
    that GPUs fill round-robin)."""

    def __init__(self, num_gpus: int, experiments_per_gpu: int) -> None:
        self.load = [0] * num_gpus
        self.capacity = experiments_per_gpu

    def take(self) -> int | None:
        """A GPU with room, or None when every one is full."""
        if not self.load:
            return None
        gpu = min(range(len(self.load)), key=self.load.__getitem__)
        if self.load[gpu] >= self.capacity:
            return None
        self.load[gpu] += 1
        return gpu

    def give_back(self, gpu: int | None) -> None:
        if gpu is not None:
            self.load[gpu] -= 1


def gpu_devices(num_gpus: int) -> list[str]:
    """The ids to hand out: 0..num_gpus-1, or the first num_gpus of the launcher's own
    CUDA_VISIBLE_DEVICES when it has one (the GPUs it was given)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return [str(i) for i in range(num_gpus)]
    ids = [d.strip() for d in visible.split(",") if d.strip()]
    if num_gpus > len(ids):
        raise UserError(f"--num_gpus={num_gpus}, but CUDA_VISIBLE_DEVICES={visible} gives this "
                        f"launcher {len(ids)} GPU(s)")
    return ids[:num_gpus]


def run_processes(plan: Plan, todo: list[Variant], max_parallel: int, devices: list[str],
                  experiments_per_gpu: int, pause_between: float, stop: StopSignals) -> dict[str, int]:
    """Runs `todo`, each on one of the GPUs `devices` (none: no GPU assignment); returns the exit
    code of every experiment that ran. A SIGINT or SIGTERM to the launcher starts nothing more and
    is passed on to every running experiment, which saves a checkpoint and exits; this returns
    once they all have."""
    gpus = GpuSlots(len(devices), experiments_per_gpu)
    queue = list(todo)
    running: dict[subprocess.Popen, _Running] = {}
    exit_codes: dict[str, int] = {}
    next_start = 0.0
    busy: set[str] = set()  # experiments found still running from an earlier launch
    while running or (queue and not stop.stopping):
        for signum in stop.new():
            for proc in running:
                proc.send_signal(signum)
        now = time.monotonic()
        if queue and not stop.stopping and len(running) < max_parallel and now >= next_start:
            gpu = gpus.take() if devices else None
            if gpu is not None or not devices:
                variant = queue.pop(0)
                env = {} if gpu is None else {"CUDA_VISIBLE_DEVICES": devices[gpu]}
                try:
                    proc = start_logged(plan.command(variant, sys.executable), variant.exp_dir, env)
                except ExperimentBusy as e:  # it goes on once the earlier run has exited
                    if variant.name not in busy:
                        log.warning("Waiting: %s", e)
                    busy.add(variant.name)
                    gpus.give_back(gpu)
                    queue.append(variant)
                    next_start = now + BUSY_RETRY_SEC
                    continue
                except OSError as e:  # e.g. a sweep `command` that is not there
                    log.error("%s could not start: %s", variant.name, e)
                    gpus.give_back(gpu)
                    exit_codes[variant.name] = 127
                    continue
                running[proc] = _Running(variant, gpu, now)
                on_gpu = "" if gpu is None else f" on GPU {devices[gpu]}"
                log.info("Started %s%s (pid %d), output in %s", variant.name, on_gpu, proc.pid,
                         variant.exp_dir / CONSOLE_FILE)
                next_start = now + pause_between
                continue
        for proc in [p for p in running if p.poll() is not None]:
            run = running.pop(proc)
            gpus.give_back(run.gpu)
            exit_codes[run.variant.name] = proc.returncode
            seconds = time.monotonic() - run.started
            note_exit(run.variant.exp_dir, proc.returncode, seconds)
            log_exit(run.variant, proc.returncode, seconds, stop.stopping)
        time.sleep(POLL_SEC)
    return exit_codes


def log_exit(variant: Variant, returncode: int, seconds: float, stopping: bool) -> None:
    if returncode == 0:
        log.info("%s exited after %.0f s", variant.name, seconds)
    elif stopping:
        log.warning("%s was interrupted (exit code %d)", variant.name, returncode)
    else:
        log.error("%s failed with exit code %d after %.0f s: see %s", variant.name, returncode,
                  seconds, variant.exp_dir / CONSOLE_FILE)
