"""(d) Sample Factory with the same configuration and on the same device, and its figures, read
from its log (another program's output: its wording is its own)."""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Sequence

from asyncrl.benchmark.figures import Result, Tick, add_time_to_target, rate_after_startup
from asyncrl.benchmark.plan import Plan
from asyncrl.benchmark.processes import (START_ALLOWANCE_SEC, add_cpu_per_frame,
                                         remove_orphaned_segments, run_watched, shm_segments,
                                         strip_ansi, tail)
from asyncrl.benchmark.sf_install import (SF_ATARI, SF_DOOM, SF_GYM, SF_VERSION, SfExample,
                                          SfUnavailable, ensure_sf_venv, sf_venv_dir)

SF_ENVS = ("CartPole-v1",)  # what sf_examples.train_gym_env registers
# ViZDoom's engines and their controllers talk through message queues in /dev/shm, which the
# engine of an env that is never closed leaves behind: Sample Factory's stop kills some.
_VIZDOOM_SEGMENT = "ViZDoom"
# asyncrl parameters that are not passed to Sample Factory although it has one of the same name.
# batched_sampling is --sf_batched_sampling's (by default asyncrl's value).
_NOT_FOR_SF = {"env", "experiment", "train_dir", "train_for_seconds", "train_for_env_steps",
               "restart_behavior", "device", "with_wandb", "batched_sampling",
               # Its models take channels-first images only, which its Doom envs make by default
               # (pixel_format=CHW); HWC or asyncrl's 'auto' would hand them channels-last ones.
               "pixel_format"}

_SF_PARAM = re.compile(r"^\s+--([a-z][a-z0-9_]*)", re.MULTILINE)
_SF_SUMMARY = re.compile(r"Collected \{(?:0: (\d+))?\}, FPS: ([\d.]+)")
_SF_STATUS = re.compile(r"Fps is \(10 sec: (\S+), .* Policy #0 lag: \(min: \S+, avg: ([-\d.]+)")
_SF_FRAMES = re.compile(r"Fps is \(.*\)\. Total num frames: (\d+)")
_SF_RETURN = re.compile(r"Avg episode reward: \[\(0, '(\S+)'\)")
# Logged when its main loop starts, which is when its FPS clock starts.
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
    python = plan.sf_python or ensure_sf_venv(sf_venv_dir(), example)
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
                            f"{tail((help_text.stdout + help_text.stderr).splitlines())}")
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
    ticks = sf_ticks(finished.lines, finished.times)
    add_cpu_per_frame(result, ticks, finished, by_role=False)  # its names are not asyncrl's
    add_time_to_target(result, ticks, finished.started, plan.target_return)
    return result


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
        result.error = f"Sample Factory exited with code {returncode}: {tail(lines)}"
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
    result.after_startup_frames_per_sec = rate_after_startup(sf_ticks(lines, times))
    return result


def sf_ticks(lines: Sequence[str], times: Sequence[float]) -> list[Tick]:
    """Its progress in its output, whose lines arrived at `times`: a tick for each status line
    (its frames) and for each average reward (on a line of its own, after the status line)."""
    ticks = []
    for line, arrived in zip(lines, times):
        text = strip_ansi(line)
        if (match := _SF_FRAMES.search(text)) is not None:
            ticks.append(Tick(arrived, int(match.group(1))))
        elif (match := _SF_RETURN.search(text)) is not None:
            ticks.append(Tick(arrived, None, _float_or_none(match.group(1), minimum=-math.inf)))
    return ticks


def _last_match(pattern: re.Pattern, lines: Sequence[str]) -> re.Match | None:
    for line in reversed(lines):
        match = pattern.search(strip_ansi(line))
        if match:
            return match
    return None


def _float_or_none(text: str | None, minimum: float = 0.0) -> float | None:
    """The number in `text` if it is one, finite and at least `minimum`."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= minimum else None

