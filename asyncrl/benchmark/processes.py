"""Watching processes: a command run in its own session with its output, the peak RSS and the
CPU time of its process tree by role, and nothing left behind (processes, shared memory)."""

from __future__ import annotations

import math
import re
import signal as signals
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import psutil

from asyncrl.benchmark.figures import Result, Tick, steady_window
from asyncrl.runtime.names import ComponentName, Role
from asyncrl.utils.processes import die_with_parent

RSS_POLL_SEC = 0.5
START_ALLOWANCE_SEC = 180.0  # process start and stop, beyond --seconds
STOP_GRACE_SEC = 30.0


# -- a training process, watched --------------------------------------------------------------
class TreeUsage:
    """What a set of processes uses, sampled every RSS_POLL_SEC: the peak of their summed RSS
    (pages shared between processes count once per process, as `ps` shows them) and, at each
    sample, each one's name and CPU time."""

    def __init__(self) -> None:
        self.peak = 0
        self._last = -math.inf
        self.cpu_samples: list[CpuSample] = []

    def due(self) -> bool:
        return time.monotonic() - self._last >= RSS_POLL_SEC

    def poll(self, processes: Iterable[psutil.Process]) -> None:
        self._last = time.monotonic()
        total = 0
        cpu: dict[int, tuple[str, float]] = {}
        for p in processes:
            try:
                with p.oneshot():
                    total += p.memory_info().rss
                    times = p.cpu_times()
                    cpu[p.pid] = (_name_for_role(p), times.user + times.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak = max(self.peak, total)
        self.cpu_samples.append(CpuSample(self._last, cpu))

    def peak_mib(self) -> float | None:
        return self.peak / 2**20 if self.peak else None


@dataclass
class CpuSample:
    time: float  # time.monotonic()
    seconds: dict[int, tuple[str, float]]  # pid -> (process name, CPU seconds so far)


_ROLES = ((Role.LEARNER, "learner"), (Role.POLICY_WORKER, "policy workers"),
          (Role.ROLLOUT_WORKER, "rollout workers"))


def _role(name: str) -> str:
    """The role a process name (asyncrl's process title) names; "runner" for any other."""
    component = ComponentName.from_title(name)
    return next((role for kind, role in _ROLES if component is not None and component.role is kind),
                "runner")


def _name_for_role(process: psutil.Process) -> str:
    """The process's name, or for a process an env started (ViZDoom's engine) the name of the
    asyncrl worker that started it: env stepping counts where the env is."""
    name = process.name()
    if ComponentName.from_title(name) is None:
        try:
            parent = process.parent()
        except psutil.Error:
            return name
        worker = None if parent is None else ComponentName.from_title(parent.name())
        if worker is not None and worker.role is Role.ROLLOUT_WORKER:
            return parent.name()
    return name


def cpu_seconds_between(samples: Sequence[CpuSample], start: float, end: float
                        ) -> tuple[float, dict[str, float]] | None:
    """CPU seconds each role (`_role` of the process name; "runner" for any other process) used
    between the first sample at or after `start` and the last one at or before `end`, and the
    time between those two samples; None without two samples in between. A process that started
    or ended in between counts from its start or up to its last sample."""
    inside = [s for s in samples if start <= s.time <= end]
    if len(inside) < 2:
        return None
    first = inside[0].seconds
    last: dict[int, tuple[str, float]] = {}
    for sample in inside:
        last.update(sample.seconds)
    by_role: dict[str, float] = {}
    for pid, (name, seconds) in last.items():
        role = _role(name)
        by_role[role] = by_role.get(role, 0.0) + seconds - first.get(pid, (name, 0.0))[1]
    return inside[-1].time - inside[0].time, by_role


def add_cpu_per_frame(result: Result, ticks: Sequence[Tick], finished: Finished,
                      by_role: bool = True) -> None:
    """Sets `result`'s CPU time per env frame in the steady window of its ticks (and per asyncrl
    role), from the CPU samples of the run's processes: what a frame costs, which moves less with
    the machine's load than frames/s do, and so the most frames/s the cores allow at that cost."""
    window = steady_window(ticks)
    if window is None or not result.after_startup_frames_per_sec:
        return
    used = cpu_seconds_between(finished.cpu_samples, window[0].time, window[1].time)
    if used is None:
        return
    elapsed, roles = used
    frames = result.after_startup_frames_per_sec * elapsed
    result.cpu_us_per_frame = sum(roles.values()) / frames * 1e6
    if by_role:
        order = [role for _, role in _ROLES] + ["runner"]
        result.cpu_us_per_frame_by_role = {role: roles[role] / frames * 1e6
                                           for role in order if role in roles}


@dataclass
class Finished:
    returncode: int
    lines: list[str]
    peak_rss_mib: float | None
    times: list[float] = field(default_factory=list)  # time.monotonic() each line arrived
    cpu_samples: list[CpuSample] = field(default_factory=list)
    started: float = 0.0  # time.monotonic() when the process was started
    started_wall: float = 0.0  # time.time() then

    def monotonic(self, wall_time: float) -> float:
        """The time.monotonic() of a time.time() during the run (what a program writes down)."""
        return self.started + wall_time - self.started_wall


def _die_with_benchmark() -> None:
    # If the benchmark is killed, the run stops as on Ctrl+C (and stops its own workers).
    die_with_parent(signals.SIGINT)
    # A benchmark started in the background (`... &`, nohup) has SIGINT ignored, and the run would
    # inherit that and never see the SIGINT that stops it cleanly.
    signals.signal(signals.SIGINT, signals.SIG_DFL)


def run_watched(command: list[str], env: dict[str, str], cwd: Path, time_limit: float,
                stop_after: tuple[re.Pattern, float] | None = None) -> Finished:
    """Runs `command` in its own session, collects its output and the peak RSS of its process
    tree, and leaves no process behind. It gets one SIGINT (a clean stop) on Ctrl+C here, after
    `time_limit`, and, with `stop_after=(pattern, seconds)`, `seconds` after its first output
    line that matches `pattern` (for programs whose own time limit does not work)."""
    started, started_wall = time.monotonic(), time.time()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            errors="replace", start_new_session=True,
                            preexec_fn=_die_with_benchmark)
    lines: list[str] = []
    times: list[float] = []

    def read() -> None:
        for line in proc.stdout:
            times.append(time.monotonic())
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    tree: dict[int, psutil.Process] = {proc.pid: root}
    usage = TreeUsage()
    deadline = time.monotonic() + time_limit
    stop_at, scanned = math.inf, 0
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if usage.due():
                try:
                    for child in root.children(recursive=True):
                        tree.setdefault(child.pid, child)
                except psutil.NoSuchProcess:
                    pass
                usage.poll(tree.values())
            while stop_after is not None and scanned < len(lines):
                if stop_after[0].search(lines[scanned]):
                    stop_at = now + stop_after[1]
                    stop_after = None
                scanned += 1
            if now >= stop_at:
                proc.send_signal(signals.SIGINT)
                stop_at = math.inf
            if now > deadline:
                lines.append(f"(the benchmark stopped it after {time_limit:.0f} s)")
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            _stop(proc)
        _reap([p for pid, p in tree.items() if pid != proc.pid])
        reader.join(timeout=5)
    return Finished(proc.returncode, lines, usage.peak_mib(), times, usage.cpu_samples, started,
                    started_wall)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (the run saves and exits), then SIGKILL if it takes longer than STOP_GRACE_SEC."""
    proc.send_signal(signals.SIGINT)
    try:
        proc.wait(timeout=STOP_GRACE_SEC)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _reap(processes: list[psutil.Process]) -> None:
    """Children that outlived their parent get a moment to finish their own cleanup (shared
    memory), then SIGTERM, then SIGKILL."""
    _, alive = psutil.wait_procs(processes, timeout=5)
    for send in (psutil.Process.terminate, psutil.Process.kill):
        for p in alive:
            try:
                send(p)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(alive, timeout=5)


def tail(lines: Sequence[str], n: int = 1) -> str:
    """The last `n` lines of a program's output that are not blank, on one line."""
    useful = [strip_ansi(line).strip() for line in lines if line.strip()]
    return " | ".join(useful[-n:]) if useful else "no output"


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


SHM = Path("/dev/shm")


def shm_segments(prefix: str) -> set[Path]:
    return set(SHM.glob(f"{prefix}*")) if SHM.is_dir() else set()


def remove_orphaned_segments(segments: Iterable[Path]) -> None:
    """Removes the shared-memory segments no process maps any more (what a killed process left);
    one still mapped belongs to a process that is running."""
    segments = set(segments)
    if not segments:
        return
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped.update(line.split(maxsplit=5)[5].strip() for line in maps.read_text().splitlines()
                          if line.count(" ") >= 5 and "/dev/shm/" in line)
        except (OSError, IndexError):
            continue
    for segment in segments:
        if str(segment) not in mapped:
            segment.unlink(missing_ok=True)

