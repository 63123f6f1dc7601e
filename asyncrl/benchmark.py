"""`python -m asyncrl.benchmark [--env=CartPole-v1] [--seconds=30] [options] [-- asyncrl params]`

Measures, one after another on the same cores, how many env frames per second
  (a) raw stepping reaches: worker processes stepping their envs with random actions, nothing else;
  (b) asyncrl training reaches: `python -m asyncrl.train` in a subprocess, plus its policy lag
      (in policy versions and in SGD steps, the unit of Sample Factory's figure),
      the peak RSS of its process tree and the CPU time its processes spend per env frame once
      started (learner, policy workers, rollout workers), and so the most frames/s the cores
      allow at that cost;
  (c) optionally (`--learner_limit`) the learner alone: training iterations on random batches of
      the training-batch shape, in this process, as env frames per second;
  (d) optionally (`--sample_factory`) Sample Factory 2.1.1 with the same configuration and on the
      same device, installed once into a cached virtual environment (for Atari envs:
      sf_examples.atari.train_atari, with ale-py added to that environment; for the doom_* envs:
      sf_examples.vizdoom.train_vizdoom, with vizdoom added) or given by `--sf_python`, with
      the same figures but the CPU time per role.
and prints a table (and `--json PATH`). The parameters after `--` go to asyncrl (and to Sample
Factory where it has a parameter of that name).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import signal as signals
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import gymnasium as gym
import numpy as np
import psutil

from asyncrl.envs.command_line import parse_args
from asyncrl.envs.registry import env_frames_per_step, find_env_family, make_vector_env
from asyncrl.runtime.names import ComponentName, Role
from asyncrl.utils.arguments import OneLineParser, parse_bool, split_at_double_dash
from asyncrl.utils.errors import UserError
from asyncrl.utils.processes import die_with_parent, prepare_child_process

SF_VERSION = "2.1.1"
# The CPU build on this machine's disk; any other version makes pip download a CUDA build.
SF_TORCH = "torch==2.13.0"
SF_ENVS = ("CartPole-v1",)  # what sf_examples.train_gym_env registers
# Sample Factory's Atari example needs ale-py; 0.9.1 is the newest that works with its gymnasium
# 0.29.1 and ships the ROMs. It registers the envs only when imported (no gymnasium plugin).
SF_ATARI_PACKAGES = ("ale-py==0.9.1", "gymnasium==0.29.1")
# Its ViZDoom example needs vizdoom (the engine, Freedoom and the maps it does not ship itself);
# 1.3.2 is the version asyncrl's doom family is measured with.
SF_DOOM_PACKAGES = ("vizdoom==1.3.2", "gymnasium==0.29.1")
RSS_POLL_SEC = 0.5
START_ALLOWANCE_SEC = 180.0  # process start and stop, beyond --seconds
STOP_GRACE_SEC = 30.0

# Parameters the benchmark sets itself (and how), not accepted after `--`.
_OWN = {"env": "give --env before --", "experiment": "it uses a temporary name",
        "train_dir": "it uses a temporary folder", "train_for_seconds": "use --seconds",
        "train_for_env_steps": "every system runs for --seconds"}
# No step limit, whatever the env's preset says (CartPole's ends its runs at 300,000 env steps):
# each system runs for --seconds. Sample Factory's own default is the same.
NO_STEP_LIMIT = 10_000_000_000
# asyncrl parameters that are not passed to Sample Factory although it has one of the same name.
# batched_sampling is --sf_batched_sampling's (by default asyncrl's value).
_NOT_FOR_SF = {"env", "experiment", "train_dir", "train_for_seconds", "train_for_env_steps",
               "restart_behavior", "device", "with_wandb", "batched_sampling",
               # Its models take channels-first images only, which its Doom envs make by default
               # (pixel_format=CHW); HWC or asyncrl's 'auto' would hand them channels-last ones.
               "pixel_format"}


@dataclass
class Result:
    system: str
    env_frames_per_sec: float | None = None  # over the whole run, as the system reports it
    last_10s_frames_per_sec: float | None = None  # from its last status line: without start-up
    # between its first status line that counts frames and its last: the steady state
    after_startup_frames_per_sec: float | None = None
    env_steps: int | None = None
    seconds: float | None = None
    # The average of its last status line. asyncrl counts a policy version per training
    # iteration, Sample Factory one per SGD step: the SGD steps are the figure to compare.
    policy_lag_versions: float | None = None  # asyncrl only
    policy_lag_sgd_steps: float | None = None
    samples_per_sec: float | None = None  # learner limit: training samples (agent steps) per second
    peak_rss_mib: float | None = None
    # CPU time of all its processes per env frame, in the steady window (after start-up)
    cpu_us_per_frame: float | None = None
    cpu_us_per_frame_by_role: dict[str, float] | None = None  # asyncrl: learner, ... workers
    # --target_return: seconds from process start to the first status line at or above it, and
    # the env frames then
    seconds_to_target: float | None = None
    frames_at_target: int | None = None
    error: str | None = None
    command: list[str] | None = None


# -- the command line -------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not >= 1")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m asyncrl.benchmark", allow_abbrev=False,
        usage="python -m asyncrl.benchmark [options] [-- asyncrl train parameters]",
        description="Env frames per second of raw env stepping, asyncrl training and optionally "
                    "Sample Factory, one after another on the same cores.")
    parser.add_argument("--env", default="CartPole-v1",
                        help="Env id or env family name, as for asyncrl.train "
                             "(default: %(default)s)")
    parser.add_argument("--seconds", type=_positive_int, default=30,
                        help="Length of each measurement in seconds (default: %(default)s)")
    parser.add_argument("--num_workers", type=_positive_int, default=None,
                        help="Processes, for every system (default: the value after --, else 2)")
    parser.add_argument("--num_envs_per_worker", type=_positive_int, default=None,
                        help="Envs per process, for every system (default: the value after --, "
                             "else 32)")
    parser.add_argument("--learner_limit", action="store_true",
                        help="Also time the learner alone on random batches of the training-batch "
                             "shape (its samples/s, and that in env frames/s)")
    parser.add_argument("--sample_factory", action="store_true",
                        help=f"Also run Sample Factory {SF_VERSION} (installed once into "
                             f"{_sf_venv_dir()})")
    parser.add_argument("--sf_python", metavar="PATH", default=None,
                        help="A Python that already has Sample Factory (and its example's "
                             "packages: ale-py for Atari, vizdoom for doom_*), used instead of "
                             "the cached virtual environment: for a machine without internet access or with its own CUDA build of "
                             "torch (default: install into the cached one)")
    parser.add_argument("--sf_batched_sampling", type=parse_bool, default=None, metavar="BOOL",
                        help="Sample Factory's --batched_sampling (default: asyncrl's "
                             "--batched_sampling, so that both run the same configuration)")
    parser.add_argument("--target_return", type=_finite_float, default=None, metavar="X",
                        help="Also report, for each training run, the seconds from its process "
                             "start to its first status line whose average episode return (over "
                             "the last 100 episodes, as each system reports it) is X or more, and "
                             "its env frames then (default: none)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="Also write the figures to this JSON file")
    return parser


@dataclass(frozen=True)
class Plan:
    env: str
    seconds: int
    num_workers: int
    num_envs_per_worker: int
    train_args: list[str]  # asyncrl.train arguments, without env, experiment, folder and time
    cfg: Any  # the resolved asyncrl Config of the training run
    learner_limit: bool
    sample_factory: bool
    sf_batched_sampling: bool
    sf_python: Path | None
    json_path: Path | None
    target_return: float | None


def make_plan(argv: Sequence[str]) -> Plan:
    argv, extras = split_at_double_dash(argv)
    args = build_parser().parse_args(argv)
    given = {a[2:].split("=", 1)[0] for a in extras if a.startswith("--")}
    for name, instead in _OWN.items():
        if name in given:
            raise UserError(f"--{name} cannot be given after --: the benchmark sets it ({instead})")
    parsed = parse_args(["--env", args.env, *extras], scope="train",
                        prog="python -m asyncrl.train")
    given = {**parsed.preset, **parsed.explicit}  # after --, on the command line or in --config
    layout = {}
    for name, default in (("num_workers", 2), ("num_envs_per_worker", 32)):
        ours, theirs = getattr(args, name), given.get(name)
        if ours is not None and theirs is not None and ours != theirs:
            where = "in the --config after --" if name not in parsed.explicit else "after --"
            raise UserError(f"--{name}={ours} and --{name}={theirs} {where} disagree: give it "
                            f"once (it applies to every system)")
        layout[name] = next(v for v in (ours, theirs, default) if v is not None)
    # The layout goes to asyncrl.train unless the parameters after -- already say it.
    layout_args = [f"--{name}={value}" for name, value in layout.items() if name not in given]
    cfg = parse_args(["--env", args.env, *layout_args, *extras], scope="train",
                     prog="python -m asyncrl.train").config()
    json_path = Path(args.json) if args.json else None
    sf_python = Path(args.sf_python) if args.sf_python else None
    if sf_python is not None and not args.sample_factory:
        raise UserError("--sf_python is the Python for --sample_factory's run: give both")
    if sf_python is not None and not (sf_python.is_file() and os.access(sf_python, os.X_OK)):
        raise UserError(f"--sf_python={args.sf_python}: no such executable file")
    if json_path is not None and not json_path.parent.is_dir():
        raise UserError(f"--json={args.json}: folder {json_path.parent} does not exist")
    return Plan(env=args.env, seconds=args.seconds, train_args=[*layout_args, *extras], cfg=cfg,
                learner_limit=args.learner_limit,
                sample_factory=args.sample_factory,
                sf_batched_sampling=(cfg.batched_sampling if args.sf_batched_sampling is None
                                     else args.sf_batched_sampling),
                sf_python=sf_python, json_path=json_path, target_return=args.target_return,
                **layout)


# -- (a) raw env stepping ---------------------------------------------------------------------
def action_sampler(space: Any, num_envs: int, rng: np.random.Generator) -> Callable[[], list]:
    """Random actions for all `num_envs` envs at once, drawn by numpy in one call per step."""
    if isinstance(space, gym.spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n)
        return lambda: rng.integers(low, high, size=num_envs).tolist()
    if isinstance(space, gym.spaces.MultiDiscrete):
        low, high = space.start, space.start + space.nvec
        return lambda: list(rng.integers(low, high, size=(num_envs, *space.shape),
                                         dtype=space.dtype))
    if isinstance(space, gym.spaces.MultiBinary):
        return lambda: list(rng.integers(0, 2, size=(num_envs, *space.shape), dtype=space.dtype))
    if isinstance(space, gym.spaces.Box):
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
            return lambda: list(rng.uniform(low, high, size=(num_envs, *space.shape))
                                .astype(space.dtype))
        return lambda: list(np.clip(rng.standard_normal((num_envs, *space.shape)), low, high)
                            .astype(space.dtype))
    return lambda: [space.sample() for _ in range(num_envs)]  # any other space, env by env


def _raw_worker(index: int, plan: Plan, messages: Any, go: Any, stop: Any) -> None:
    prepare_child_process(f"asyncrl-bench{index}")
    try:
        family = find_env_family(plan.env)
        n = plan.num_envs_per_worker
        if plan.cfg.batched_sampling:  # one vector env of all n, as a batched rollout worker has
            vector = make_vector_env(family, plan.env, plan.cfg, index * n, n)
            vector.reset()
            sample = action_sampler(vector.single_action_space, n, np.random.default_rng())
            envs = [vector]

            def step_all() -> None:
                vector.step(np.asarray(sample()))
        else:
            envs = [family.make_env(plan.env, plan.cfg, index * n + i) for i in range(n)]
            for env in envs:
                env.reset()
            sample = action_sampler(envs[0].action_space, n, np.random.default_rng())

            def step_all() -> None:
                for env, action in zip(envs, sample()):
                    _, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        env.reset()
        frames = n * env_frames_per_step(plan.cfg)  # counted as asyncrl.train counts env steps
        messages.put(("ready", index, None))
        go.wait()
        steps = 0
        start = time.monotonic()
        deadline = start + plan.seconds
        while not stop.value and time.monotonic() < deadline:
            step_all()
            steps += frames
        elapsed = time.monotonic() - start
        for env in envs:
            env.close()
        messages.put(("done", index, (steps, elapsed)))
    except Exception as e:
        messages.put(("error", index, f"{type(e).__name__}: {e}"))
        raise


def run_raw(plan: Plan) -> Result:
    """Raw stepping in `num_workers` processes; they start stepping together once all are ready."""
    ctx = mp.get_context("fork")
    messages, go, stop = ctx.SimpleQueue(), ctx.Event(), ctx.RawValue("b", 0)
    processes = [ctx.Process(target=_raw_worker, args=(i, plan, messages, go, stop),
                             name=f"raw_worker_{i}", daemon=True)
                 for i in range(plan.num_workers)]
    ready: set[int] = set()
    done: dict[int, tuple[int, float]] = {}
    usage = TreeUsage()
    stepping: list[float] = []  # when the workers were told to start and when the last ended
    deadline = time.monotonic() + plan.seconds + START_ALLOWANCE_SEC

    def drain() -> None:
        while not messages.empty():
            kind, index, payload = messages.get()
            if kind == "error":
                raise RuntimeError(f"raw stepping worker {index} failed: {payload}")
            if kind == "ready":
                ready.add(index)
            else:
                done[index] = payload

    try:
        for p in processes:
            p.start()
        watched = [psutil.Process(p.pid) for p in processes]
        while len(done) < len(processes):
            drain()
            if len(ready) == len(processes) and not go.is_set():
                stepping.append(time.monotonic())
                usage.poll(watched)  # the CPU time of start-up is not stepping's
                go.set()
            for i, p in enumerate(processes):
                if not p.is_alive() and i not in done:
                    drain()  # its last message may have come in since
                    if i not in done:
                        raise RuntimeError(f"raw stepping worker {i} exited with code "
                                           f"{p.exitcode} before reporting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw stepping did not finish within "
                                   f"{plan.seconds + START_ALLOWANCE_SEC:.0f} s")
            if usage.due() or len(done) == len(processes):
                usage.poll(watched)
            time.sleep(0.05)
        stepping.append(time.monotonic())
    finally:
        stop.value = 1
        go.set()  # workers still waiting to start see the stop flag at once
        for p in processes:
            if p.pid is not None:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)
    steps = sum(s for s, _ in done.values())
    result = Result(system="raw stepping",
                    env_frames_per_sec=sum(s / max(t, 1e-9) for s, t in done.values()),
                    env_steps=steps, seconds=max(t for _, t in done.values()),
                    peak_rss_mib=usage.peak_mib())
    # CPU time per frame while stepping (threads of the workers, e.g. EnvPool's, included)
    used = cpu_seconds_between(usage.cpu_samples, *stepping)
    if used is not None and steps:
        result.cpu_us_per_frame = sum(used[1].values()) / steps * 1e6
    return result


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
    if not name.startswith("asyncrl-"):
        try:
            parent = process.parent()
        except psutil.Error:
            return name
        if parent is not None and parent.name().startswith("asyncrl-rw"):
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


@dataclass
class Finished:
    returncode: int
    lines: list[str]
    peak_rss_mib: float | None
    times: list[float] = field(default_factory=list)  # time.monotonic() each line arrived
    cpu_samples: list[CpuSample] = field(default_factory=list)
    started: float = 0.0  # time.monotonic() when the process was started


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
    started = time.monotonic()
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
    return Finished(proc.returncode, lines, usage.peak_mib(), times, usage.cpu_samples, started)


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


def _tail(lines: Sequence[str], n: int = 1) -> str:
    useful = [_strip_ansi(line).strip() for line in lines if line.strip()]
    return " | ".join(useful[-n:]) if useful else "no output"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _last_match(pattern: re.Pattern, lines: Sequence[str]) -> re.Match | None:
    for line in reversed(lines):
        match = pattern.search(_strip_ansi(line))
        if match:
            return match
    return None


def steady_window(pattern: re.Pattern, lines: Sequence[str], times: Sequence[float]
                  ) -> tuple[tuple[float, int], tuple[float, int]] | None:
    """(arrival time, frames) of the first status line whose frame count (`pattern`'s group 1) is
    above 0 and of the last one: the steady state, without the start-up that the whole-run
    figure includes. None without two such lines."""
    counted = []
    for line, arrived in zip(lines, times):
        match = pattern.search(_strip_ansi(line))
        if match and int(match.group(1)) > 0:
            counted.append((arrived, int(match.group(1))))
    if len(counted) < 2 or counted[-1][0] <= counted[0][0]:
        return None
    return counted[0], counted[-1]


def rate_after_startup(pattern: re.Pattern, lines: Sequence[str],
                       times: Sequence[float]) -> float | None:
    """Frames/s in the steady window (`steady_window`), timed by when the lines arrived."""
    window = steady_window(pattern, lines, times)
    if window is None:
        return None
    (t0, frames0), (t1, frames1) = window
    return (frames1 - frames0) / (t1 - t0)


def add_cpu_per_frame(result: Result, pattern: re.Pattern, finished: Finished,
                      by_role: bool = True) -> None:
    """Sets `result`'s CPU time per env frame in the steady window (and per asyncrl role), from
    the CPU samples of the run's processes: what a frame costs, which moves less with the
    machine's load than frames/s do, and so the most frames/s the cores allow at that cost."""
    window = steady_window(pattern, finished.lines, finished.times)
    if window is None or not result.after_startup_frames_per_sec:
        return
    used = cpu_seconds_between(finished.cpu_samples, window[0][0], window[1][0])
    if used is None:
        return
    elapsed, roles = used
    frames = result.after_startup_frames_per_sec * elapsed
    result.cpu_us_per_frame = sum(roles.values()) / frames * 1e6
    if by_role:
        order = [role for _, role in _ROLES] + ["runner"]
        result.cpu_us_per_frame_by_role = {role: roles[role] / frames * 1e6
                                           for role in order if role in roles}


def add_time_to_target(result: Result, frames: re.Pattern, returns: re.Pattern,
                       finished: Finished, target: float | None) -> None:
    """Sets `result`'s seconds from process start to the first line whose average return
    (`returns`' group 1) is `target` or more, and the env frames of the latest line matching
    `frames` (group 1) up to it; leaves them None without a target or if it was not reached."""
    if target is None:
        return
    latest = 0
    for line, arrived in zip(finished.lines, finished.times):
        text = _strip_ansi(line)
        if (match := frames.search(text)) is not None:
            latest = int(match.group(1))
        if (match := returns.search(text)) is None:
            continue
        try:
            value = float(match.group(1))
        except ValueError:  # "n/a" before the first episode ends
            continue
        if value >= target:
            result.seconds_to_target, result.frames_at_target = arrived - finished.started, latest
            return


def _float_or_none(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


# -- (b) asyncrl ------------------------------------------------------------------------------
_ASYNCRL_SUMMARY = re.compile(r"Stopped: .*?(\d+) env steps in ([\d.]+) s \(([\d.]+) env steps/s "
                              r"this run\)")
_ASYNCRL_STATUS = re.compile(r"env_steps=\d+ fps=(\S+) .* policy_lag=(\S+)(?: versions \((\S+) SGD steps)?")
_ASYNCRL_FRAMES = re.compile(r"env_steps=(\d+) fps=")
_ASYNCRL_RETURN = re.compile(r" avg_return=(\S+) \(last")


def run_asyncrl(plan: Plan, workdir: Path) -> Result:
    command = [sys.executable, "-m", "asyncrl.train", f"--env={plan.env}",
               "--experiment=asyncrl_benchmark", f"--train_dir={workdir}",
               f"--train_for_seconds={plan.seconds}", f"--train_for_env_steps={NO_STEP_LIMIT}",
               *plan.train_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    finished = run_watched(command, env, Path.cwd(), plan.seconds + START_ALLOWANCE_SEC)
    result = asyncrl_result(finished.lines, finished.returncode, finished.times)
    result.command, result.peak_rss_mib = command, finished.peak_rss_mib
    add_cpu_per_frame(result, _ASYNCRL_FRAMES, finished)
    add_time_to_target(result, _ASYNCRL_FRAMES, _ASYNCRL_RETURN, finished, plan.target_return)
    return result


def asyncrl_result(lines: Sequence[str], returncode: int, times: Sequence[float] = ()) -> Result:
    """The figures in the output of `python -m asyncrl.train`, whose lines arrived at `times`."""
    result = Result(system="asyncrl")
    summary = _last_match(_ASYNCRL_SUMMARY, lines)
    if returncode != 0 or summary is None:
        result.error = f"asyncrl.train exited with code {returncode}: {_tail(lines)}"
        return result
    result.env_steps, result.seconds = int(summary.group(1)), float(summary.group(2))
    result.env_frames_per_sec = float(summary.group(3))
    status = _last_match(_ASYNCRL_STATUS, lines)
    if status:
        result.last_10s_frames_per_sec = _float_or_none(status.group(1))
        result.policy_lag_versions = _float_or_none(status.group(2))
        result.policy_lag_sgd_steps = _float_or_none(status.group(3))
    result.after_startup_frames_per_sec = rate_after_startup(_ASYNCRL_FRAMES, lines, times)
    return result


# -- (c) the learner alone ---------------------------------------------------------------------
def random_obs(space: gym.Space, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """`shape` + the space's shape of random observations in the space."""
    if isinstance(space, gym.spaces.Box):
        if np.issubdtype(space.dtype, np.integer):
            info = np.iinfo(space.dtype)
            low = np.clip(space.low, info.min, info.max).astype(np.int64)
            high = np.clip(space.high, info.min, info.max).astype(np.int64)
            return rng.integers(low, high, size=(*shape, *space.shape), endpoint=True,
                                dtype=np.int64).astype(space.dtype)
        if space.dtype == np.bool_:
            return rng.integers(0, 2, size=(*shape, *space.shape)).astype(np.bool_)
        values = rng.standard_normal((*shape, *space.shape))
        return np.clip(values, space.low, space.high).astype(space.dtype)
    flat = [space.sample() for _ in range(int(np.prod(shape)))]
    return np.asarray(flat).reshape(*shape, *np.asarray(flat[0]).shape)


def random_batch(learner: Any, obs_space: gym.Space, rollout: int, num_trajectories: int,
                 rng: np.random.Generator) -> Any:
    """Trajectories of the training-batch shape: random observations, rewards and dones; actions,
    log-probabilities, distribution parameters and values from the learner's own (untrained) model,
    so that they are valid and consistent."""
    import torch

    from asyncrl.algo.trajectories import Trajectories
    from asyncrl.envs.observations import obs_dict_space

    T, B = rollout, num_trajectories
    obs = {key: torch.as_tensor(random_obs(space, (T + 1, B), rng))
           for key, space in obs_dict_space(obs_space).spaces.items()}
    acted = learner.model.policy_step({k: v[:T].flatten(0, 1).to(learner.device)
                                       for k, v in obs.items()})

    def steps(t: Any) -> Any:  # [T * B, ...] -> [T, B, ...]
        return t.detach().cpu().reshape(T, B, *t.shape[1:])

    return Trajectories(
        obs=obs, actions=steps(acted.actions), log_probs=steps(acted.log_probs),
        action_params=steps(acted.action_params), values=steps(acted.values),
        rewards=torch.as_tensor(rng.uniform(-1.0, 1.0, (T, B)), dtype=torch.float32),
        dones=torch.as_tensor(rng.random((T, B)) < 0.01, dtype=torch.float32),
        valid=torch.ones((T, B), dtype=torch.bool),
        policy_versions=torch.zeros((T, B), dtype=torch.int64),
        rnn_states=(torch.zeros((T + 1, B, learner.model.rnn_state_size))
                    if learner.model.rnn_state_size else None))


def run_learner_limit(plan: Plan) -> Result:
    """`Learner.train` on one random batch of the training-batch shape, again and again for
    `seconds` after one warm-up iteration, with one torch thread as in asyncrl.train."""
    import torch

    from asyncrl.algo.learner import Learner
    from asyncrl.utils.device import resolve_device

    cfg = plan.cfg
    env = find_env_family(plan.env).make_env(plan.env, cfg, 0)
    try:
        obs_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner = Learner(cfg, obs_space, action_space, resolve_device(cfg.device))
        batch = random_batch(learner, obs_space, cfg.rollout,
                             cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout,
                             np.random.default_rng(0 if cfg.seed is None else cfg.seed))
        learner.train(batch)  # warm-up: allocations, optimizer state
        samples_per_batch = batch.rollout * batch.num_trajectories
        samples, start = 0, time.monotonic()
        while True:
            learner.train(batch)
            samples += samples_per_batch
            elapsed = time.monotonic() - start
            if elapsed >= plan.seconds:
                break
    finally:
        torch.set_num_threads(threads)
    per_sec = samples / elapsed
    frames = env_frames_per_step(cfg)  # counted as asyncrl.train counts env steps
    return Result(system="learner limit", env_frames_per_sec=per_sec * frames,
                  env_steps=samples * frames, seconds=elapsed, samples_per_sec=per_sec)


# -- (d) Sample Factory -----------------------------------------------------------------------
def _sf_venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "asyncrl-bench" / "sf-venv"


class SfUnavailable(Exception):
    """Sample Factory cannot be installed or run here; the message says why, in one line."""


@dataclass(frozen=True)
class SfExample:
    """One of Sample Factory's examples: the program that trains with it, and the packages it
    needs beyond Sample Factory's own (installed into the cached venv on first use, then checked
    by `check`, Python code that must print torch's version last)."""

    name: str
    module: str = ""  # run as `python -m module`; empty: through `launcher`, a script
    launcher: str = ""
    packages: tuple[str, ...] = ()
    check: str = ""


# Sample Factory's Atari example, with ale-py imported first in every process: its processes are
# spawned, and a spawned process imports the main script again (not a `-m` module's code).
_SF_ATARI_LAUNCHER = """import sys

import ale_py  # noqa: F401  registers the ALE envs with gymnasium

from sf_examples.atari.train_atari import main

if __name__ == "__main__":
    sys.exit(main())
"""
SF_GYM = SfExample("gym", module="sf_examples.train_gym_env")
SF_ATARI = SfExample(
    "atari", launcher=_SF_ATARI_LAUNCHER, packages=SF_ATARI_PACKAGES,
    check="import ale_py, cv2, gymnasium, torch; gymnasium.make('PongNoFrameskip-v4'); "
          "print(torch.__version__)")
# Its processes are spawned too, but its envs are registered in a context they inherit.
SF_DOOM = SfExample(
    "doom", module="sf_examples.vizdoom.train_vizdoom", packages=SF_DOOM_PACKAGES,
    check="import torch; from sf_examples.vizdoom.doom.doom_utils import doom_env_by_name, "
          "make_doom_env_impl; from sf_examples.vizdoom.doom.doom_params import "
          "default_doom_cfg; env = make_doom_env_impl(doom_env_by_name('doom_basic'), "
          "cfg=default_doom_cfg()); env.reset(); env.close(); print(torch.__version__)")


def ensure_sf_venv(venv: Path, example: SfExample = SF_GYM) -> Path:
    """The Python of a virtual environment with Sample Factory, created on first use, with the
    packages of `example` (added on first use)."""
    python = venv / "bin" / "python"
    marker = venv / "asyncrl-bench-ready"
    if not (marker.exists() and python.exists()):
        _install_sf(venv, python, marker)
    if example.packages and not (venv / f"asyncrl-bench-{example.name}-ready").exists():
        _install_sf_example(venv, python, example)
    return python


def _run_install_steps(steps: list[list[str]], install_log: Path) -> None:
    with open(install_log, "a") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            code = subprocess.call(step, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
            if code != 0:
                raise SfUnavailable(f"'{' '.join(step[1:])}' failed with exit code {code} "
                                    f"(see {install_log})")


def _install_sf_example(venv: Path, python: Path, example: SfExample) -> None:
    install_log = venv.parent / "sf-install.log"
    print(f"Installing {' '.join(example.packages)} into {venv} for Sample Factory's "
          f"{example.name} example (once; log in {install_log})", flush=True)
    # torch pinned again so that resolving cannot replace it.
    _run_install_steps([[str(python), "-m", "pip", "install", *example.packages, SF_TORCH]],
                       install_log)
    # In the venv's folder: vizdoom writes files into the working directory.
    check = subprocess.run([str(python), "-c", example.check], capture_output=True, text=True,
                           timeout=120, cwd=venv)
    printed = check.stdout.split()
    if check.returncode != 0 or not printed or not printed[-1].startswith("2.13.0"):
        raise SfUnavailable(f"{' '.join(example.packages)} for Sample Factory's {example.name} "
                            f"example does not work: "
                            f"{_tail((check.stdout + check.stderr).splitlines())}")
    (venv / f"asyncrl-bench-{example.name}-ready").write_text(f"{' '.join(example.packages)}\n")


def _install_sf(venv: Path, python: Path, marker: Path) -> None:
    install_log = venv.parent / "sf-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"Installing Sample Factory {SF_VERSION} into {venv} (once; log in {install_log})",
          flush=True)
    steps = [
        # torch first, pinned again below so that resolving Sample Factory cannot replace it.
        [str(python), "-m", "pip", "install", SF_TORCH],
        [str(python), "-m", "pip", "install", f"sample-factory=={SF_VERSION}", SF_TORCH],
    ]
    if not python.exists():
        steps.insert(0, [sys.executable, "-m", "venv", str(venv)])
    _run_install_steps(steps, install_log)
    check = subprocess.run(
        [str(python), "-c", "import sample_factory, torch, gymnasium; "
         "print(torch.__version__, gymnasium.__version__)"],
        capture_output=True, text=True, timeout=120)
    versions = check.stdout.split()
    if check.returncode != 0 or not versions or not versions[0].startswith("2.13.0"):
        raise SfUnavailable(f"the installed Sample Factory does not import with torch 2.13.0: "
                            f"{_tail((check.stdout + check.stderr).splitlines())}")
    marker.write_text(f"sample-factory {SF_VERSION}, torch {versions[0]}, "
                      f"gymnasium {versions[1]}\n")


_SF_PARAM = re.compile(r"^\s+--([a-z][a-z0-9_]*)", re.MULTILINE)
_SF_SUMMARY = re.compile(r"Collected \{(?:0: (\d+))?\}, FPS: ([\d.]+)")
_SF_STATUS = re.compile(r"Fps is \(10 sec: (\S+), .* Policy #0 lag: \(min: \S+, avg: ([-\d.]+)")
_SF_FRAMES = re.compile(r"Fps is \(.*\)\. Total num frames: (\d+)")
# Logged when its main loop starts, which is when its FPS clock starts.
_SF_RETURN = re.compile(r"Avg episode reward: \[\(0, '(\S+)'\)")
_SF_START = re.compile(r"Starting all processes")


def sf_arguments(cfg: Any, sf_params: set[str]) -> list[str]:
    """The asyncrl configuration as Sample Factory arguments, for the parameters it knows."""
    args = []
    for name, value in cfg.to_dict().items():
        if name not in sf_params or name in _NOT_FOR_SF or name.startswith("wandb_"):
            continue
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # some of its parameters are int where asyncrl's are float
        if isinstance(value, list):
            args += [f"--{name}", *map(str, value)]
        else:
            args.append(f"--{name}={value}")
    return args


def sf_atari_name(env_name: str) -> str | None:
    """Sample Factory's name of an Atari env (`atari_pong`), None if `env_name` is not one."""
    from asyncrl.envs.atari import ALIASES, PREFIX, ale_env_id, is_atari_name

    if not is_atari_name(env_name):
        return None
    game = ale_env_id(env_name)[len("ALE/"):-len("-v5")].lower()
    short = {v: k for k, v in ALIASES.items()}.get(game, game)
    return PREFIX + short  # Sample Factory's spelling, but for a few of its own (atari_asteroid)


def sf_example(env_name: str) -> tuple[SfExample, str]:
    """Sample Factory's example that has `env_name`, and the env's name there."""
    from asyncrl.envs.vizdoom import SCENARIOS

    if env_name in SF_ENVS:
        return SF_GYM, env_name
    if env_name in SCENARIOS:
        return SF_DOOM, env_name  # the same names
    atari = sf_atari_name(env_name)
    if atari is not None:
        return SF_ATARI, atari
    raise SfUnavailable(f"sf_examples.train_gym_env only registers {', '.join(SF_ENVS)}, "
                        f"sf_examples.atari the Atari games and sf_examples.vizdoom the doom_* "
                        f"envs, not {env_name}")


def run_sample_factory(plan: Plan, workdir: Path) -> Result:
    example, sf_env = sf_example(plan.env)
    python = plan.sf_python or ensure_sf_venv(_sf_venv_dir(), example)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
    if example.launcher:
        launcher = workdir / f"train_{example.name}.py"
        launcher.write_text(example.launcher)
        program = [str(python), str(launcher)]
    else:
        program = [str(python), "-m", example.module]
    help_text = subprocess.run([*program, f"--env={sf_env}", "--help"], capture_output=True,
                               text=True, env=env, cwd=workdir, timeout=120)
    sf_params = set(_SF_PARAM.findall(help_text.stdout))
    if help_text.returncode != 0 or not sf_params:
        raise SfUnavailable(f"{' '.join(program[1:])} --help failed: "
                            f"{_tail((help_text.stdout + help_text.stderr).splitlines())}")
    command = [*program, f"--env={sf_env}",
               "--experiment=sf_benchmark", f"--train_dir={workdir}",
               f"--train_for_seconds={plan.seconds}", f"--device={sf_device(plan.cfg.device)}",
               f"--batched_sampling={plan.sf_batched_sampling}",
               *sf_arguments(plan.cfg, sf_params)]
    # Its --train_for_seconds never fires (2.1.1 does not advance the clock it checks): the
    # benchmark stops it with SIGINT (a clean stop) `seconds` after its main loop started.
    segments_before = shm_segments(_VIZDOOM_SEGMENT)
    finished = run_watched(command, env, workdir, plan.seconds + START_ALLOWANCE_SEC,
                           stop_after=(_SF_START, plan.seconds))
    remove_orphaned_segments(shm_segments(_VIZDOOM_SEGMENT) - segments_before)
    result = sf_result(finished.lines, finished.returncode, finished.times)
    result.command, result.peak_rss_mib = command, finished.peak_rss_mib
    add_cpu_per_frame(result, _SF_FRAMES, finished, by_role=False)  # its names are not asyncrl's
    add_time_to_target(result, _SF_FRAMES, _SF_RETURN, finished, plan.target_return)
    return result


# ViZDoom's engines and their controllers talk through message queues in /dev/shm, which the
# engine of an env that is never closed leaves behind: Sample Factory's stop kills some.
_VIZDOOM_SEGMENT = "ViZDoom"
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


def sf_device(asyncrl_device: str) -> str:
    """Sample Factory's --device for the device asyncrl uses: both on the GPU or both on the CPU
    (Sample Factory stops where --device=gpu finds no CUDA; asyncrl falls back to the CPU)."""
    from asyncrl.utils.device import describe_device

    return "gpu" if describe_device(asyncrl_device).startswith("cuda") else "cpu"


def sf_result(lines: Sequence[str], returncode: int, times: Sequence[float] = ()) -> Result:
    """The figures in the output of a Sample Factory run, whose lines arrived at `times`."""
    result = Result(system=f"Sample Factory {SF_VERSION}")
    summary = _last_match(_SF_SUMMARY, lines)
    # It exits with 2 (ExperimentStatus.INTERRUPTED) after the SIGINT that ends the run.
    if returncode not in (0, 2) or summary is None:
        result.error = f"Sample Factory exited with code {returncode}: {_tail(lines)}"
        return result
    if summary.group(1) is None:
        result.error = ("Sample Factory collected no env steps (its workers take several seconds "
                        "to start: give a longer --seconds)")
        return result
    result.env_steps, result.env_frames_per_sec = int(summary.group(1)), float(summary.group(2))
    if result.env_frames_per_sec > 0:
        result.seconds = result.env_steps / result.env_frames_per_sec
    status = _last_match(_SF_STATUS, lines)
    if status:
        result.last_10s_frames_per_sec = _float_or_none(status.group(1))
        result.policy_lag_sgd_steps = _float_or_none(status.group(2))  # its versions are SGD steps
    result.after_startup_frames_per_sec = rate_after_startup(_SF_FRAMES, lines, times)
    return result


# -- report -----------------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def usable_cores() -> int:
    """The cores this process (and so the runs it starts) may run on."""
    return len(os.sched_getaffinity(0))


def report(plan: Plan, results: list[Result]) -> dict[str, Any]:
    by_system = {r.system: r for r in results}
    raw = by_system.get("raw stepping")
    ours = by_system.get("asyncrl")
    sf = next((r for r in results if r.system.startswith("Sample Factory")), None)
    limit = by_system.get("learner limit")
    raw_fps = raw.env_frames_per_sec if raw else None
    limit_fps = limit.env_frames_per_sec if limit else None
    cores = usable_cores()
    rows = []
    for r in results:
        mine = r is ours
        # The most frames/s these cores allow at the run's CPU cost per frame.
        bound = _ratio(cores * 1e6, r.cpu_us_per_frame)
        rows.append({
            **asdict(r),
            "ratio_to_raw": _ratio(r.env_frames_per_sec, raw_fps),
            "ratio_to_sample_factory": (_ratio(r.env_frames_per_sec, sf.env_frames_per_sec)
                                        if mine and sf is not None else None),
            "ratio_to_learner_limit": (_ratio(r.env_frames_per_sec, limit_fps)
                                       if mine and limit is not None else None),
            # The same ratios in the steady state (the limit has no start-up of its own).
            "after_startup_ratio_to_sample_factory": (
                _ratio(r.after_startup_frames_per_sec, sf.after_startup_frames_per_sec)
                if mine and sf is not None else None),
            "after_startup_ratio_to_learner_limit": (
                _ratio(r.after_startup_frames_per_sec, limit_fps)
                if mine and limit is not None else None),
            "cpu_bound_frames_per_sec": bound,
            "cpu_bound_ratio_to_learner_limit": (_ratio(bound, limit_fps)
                                                 if mine and limit is not None else None),
        })
    return {
        "env": plan.env, "seconds": plan.seconds, "num_workers": plan.num_workers,
        "num_envs_per_worker": plan.num_envs_per_worker, "asyncrl_args": plan.train_args,
        "target_return": plan.target_return,
        "cpu_count": os.cpu_count(), "usable_cores": cores, "date": time.strftime("%Y-%m-%d"),
        "results": {r["system"]: r for r in rows},
    }


def format_table(summary: dict[str, Any]) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def ratios(r: dict[str, Any], to: str) -> str:  # "whole run (after start-up)"
        whole, steady = r[f"ratio_to_{to}"], r[f"after_startup_ratio_to_{to}"]
        return num(whole, ".2f") if steady is None else f"{num(whole, '.2f')} ({steady:.2f})"

    target = summary.get("target_return")

    def to_target(r: dict[str, Any]) -> str:
        if r["system"] in ("raw stepping", "learner limit"):
            return "-"
        if r["seconds_to_target"] is None:
            return "not reached"
        return f"{r['seconds_to_target']:.0f} s ({r['frames_at_target']:,} frames)"

    header = ("system", "env frames/s", "after start-up", "x raw", "asyncrl/SF", "asyncrl/limit",
              "last 10 s", "lag (versions)", "lag (SGD steps)", "CPU us/frame", "peak RSS (MiB)",
              *([f"return {target:g} at"] if target is not None else []))
    body = []
    for r in summary["results"].values():
        if r["error"]:
            body.append((r["system"], "failed", "", "", "", "", "", "", "", "",
                         num(r["peak_rss_mib"], ".0f"), *([""] if target is not None else [])))
            continue
        body.append((r["system"], num(r["env_frames_per_sec"], ",.0f"),
                     num(r["after_startup_frames_per_sec"], ",.0f"),
                     num(r["ratio_to_raw"], ".2f"), ratios(r, "sample_factory"),
                     ratios(r, "learner_limit"),
                     num(r["last_10s_frames_per_sec"], ",.0f"), num(r["policy_lag_versions"], ".1f"),
                     num(r["policy_lag_sgd_steps"], ".1f"),
                     num(r["cpu_us_per_frame"], ".1f"), num(r["peak_rss_mib"], ".0f"),
                     *([to_target(r)] if target is not None else [])))
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ours = summary["results"].get("asyncrl")
    if ours and not ours["error"] and ours["cpu_us_per_frame_by_role"]:
        parts = ", ".join(f"{role} {us:.1f}" for role, us in
                          ours["cpu_us_per_frame_by_role"].items())
        bound = (f"at that cost {summary['usable_cores']} cores make at most "
                 f"{ours['cpu_bound_frames_per_sec']:,.0f} env frames/s")
        if ours["cpu_bound_ratio_to_learner_limit"] is not None:
            bound += f", {ours['cpu_bound_ratio_to_learner_limit']:.2f} of the learner limit"
        lines.append(f"asyncrl's CPU per env frame after start-up: {parts} "
                     f"({ours['cpu_us_per_frame']:.1f} us in all); {bound}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        plan = make_plan(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"asyncrl: error: {e}", file=sys.stderr)
        return 2
    previous = signals.signal(signals.SIGTERM, _interrupt)  # cleans up as on Ctrl+C
    workdir = Path(tempfile.mkdtemp(prefix="asyncrl-bench-"))
    try:
        results = run_all(plan, workdir)
    except KeyboardInterrupt:
        print("asyncrl.benchmark: interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        signals.signal(signals.SIGTERM, previous)
    summary = report(plan, results)
    print()
    print(format_table(summary))
    if plan.json_path is not None:
        plan.json_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"Figures written to {plan.json_path}")
    return 1 if any(r.error for r in results if not r.system.startswith("Sample")) else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_all(plan: Plan, workdir: Path) -> list[Result]:
    layout = f"{plan.num_workers} worker(s) x {plan.num_envs_per_worker} envs of {plan.env}"
    parts = 2 + plan.learner_limit + plan.sample_factory
    results: list[Result] = []
    print(f"[1/{parts}] raw stepping, random actions: {layout}, {plan.seconds} s", flush=True)
    try:
        results.append(run_raw(plan))
    except RuntimeError as e:
        results.append(Result(system="raw stepping", error=str(e)))
    _print_result(results[-1])

    print(f"[2/{parts}] asyncrl training: {layout}, {plan.seconds} s; asyncrl.train "
          f"{' '.join(plan.train_args)}", flush=True)
    (workdir / "asyncrl").mkdir()
    results.append(run_asyncrl(plan, workdir / "asyncrl"))
    _print_result(results[-1])

    if plan.learner_limit:
        batch = plan.cfg.batch_size * plan.cfg.num_batches_per_epoch
        print(f"[3/{parts}] learner limit: Learner.train on random batches of {batch} samples "
              f"({batch // plan.cfg.rollout} x {plan.cfg.rollout} steps), {plan.seconds} s",
              flush=True)
        try:
            results.append(run_learner_limit(plan))
        except Exception as e:  # reported in the table; the other figures still count
            results.append(Result(system="learner limit", error=f"{type(e).__name__}: {e}"))
        _print_result(results[-1])

    if plan.sample_factory:
        print(f"[{parts}/{parts}] Sample Factory {SF_VERSION} training: {layout}, {plan.seconds} s",
              flush=True)
        (workdir / "sf").mkdir()
        try:
            results.append(run_sample_factory(plan, workdir / "sf"))
            _print_result(results[-1])
        except (SfUnavailable, OSError, subprocess.SubprocessError) as e:
            print(f"    Sample Factory: not run: {e}", flush=True)
    return results


def _print_result(r: Result) -> None:
    if r.error:
        print(f"    {r.system}: failed: {r.error}", flush=True)
        return
    detail = ""
    if r.env_steps is not None and r.seconds is not None:
        detail = f" ({r.env_steps} env steps in {r.seconds:.1f} s)"
    if r.samples_per_sec is not None:
        detail += f", {r.samples_per_sec:,.0f} samples/s"
    print(f"    {r.system}: {r.env_frames_per_sec:,.0f} env frames/s{detail}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
