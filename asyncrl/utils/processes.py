"""Set-up shared by every child process asyncrl starts (no torch here: light to import)."""

from __future__ import annotations

import ctypes
import os
import signal as signals
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4


# Loaded once, at import: die_with_parent also runs between fork and exec (a subprocess's
# preexec_fn), where loading a library could deadlock on a lock another thread held at the fork.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def _prctl(option: int, value: int | bytes) -> None:
    _LIBC.prctl(option, value, 0, 0, 0)


def prepare_child_process(name: str, niceness: int = 0) -> None:
    """Names the process, leaves Ctrl+C and SIGTERM to the parent, ties its life to the
    parent's."""
    # The name shows in ps and top (15 characters at most), e.g. "asyncrl-rw0".
    _prctl(_PR_SET_NAME, name.encode()[:15])
    # Ctrl+C, and SIGTERM from scancel, `kill -TERM -<group>` or a container stop, may reach the
    # whole process group: only the parent decides how to stop (with a final checkpoint, which
    # needs its learners alive).
    signals.signal(signals.SIGINT, signals.SIG_IGN)
    signals.signal(signals.SIGTERM, signals.SIG_IGN)
    # Die with the parent, even if it is SIGKILLed.
    die_with_parent(signals.SIGKILL)
    if niceness:
        os.nice(niceness)


def reuse_freed_memory() -> None:
    """Makes malloc keep the memory this process frees for its next allocations, instead of
    handing it back to the system. By default glibc maps each block of a few MB or more afresh
    and unmaps it when freed, so each of torch's large CPU temporaries (a batch of images as
    floats, a layer's activations) pays the kernel for zero-filling its pages again, every
    training iteration: on doom_basic's learner about a seventh of its time. The cost: the process
    holds on to its peak heap."""
    _LIBC.mallopt(_M_MMAP_MAX, 0)  # no block of its own for large allocations: from the heap
    _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # and the heap's free top is not given back


def die_with_parent(signum: int) -> None:
    """The kernel sends `signum` to this process when the thread that started it exits."""
    _prctl(_PR_SET_PDEATHSIG, signum)


def process_start_time() -> float:
    """When this process started, as a time.time(), to a clock tick (10 ms): its start after
    boot (/proc/self/stat) against the time since boot. (psutil's counts from the boot time in
    whole seconds.)"""
    after_comm = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started_after_boot = int(after_comm[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot)
