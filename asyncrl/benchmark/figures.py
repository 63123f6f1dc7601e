"""The figures of one measurement (`Result`), and those that a training run's progress gives:
its progress as ticks (time, frames, average return), whatever system printed or wrote them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


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



@dataclass(frozen=True)
class Tick:
    """One report of a training run's progress: when it came (time.monotonic()), the env frames
    then, and the average episode return then; either may be None where the report has no such
    figure (Sample Factory prints them on two lines; no episode may have ended yet)."""

    time: float
    frames: int | None
    avg_return: float | None = None


def steady_window(ticks: Sequence[Tick]) -> tuple[Tick, Tick] | None:
    """The first tick whose frame count is above 0 and the last one that counts frames: the
    steady state, without the start-up that the whole-run figure includes. None without two
    such ticks."""
    counted = [t for t in ticks if t.frames is not None and t.frames > 0]
    if len(counted) < 2 or counted[-1].time <= counted[0].time:
        return None
    return counted[0], counted[-1]


def rate_after_startup(ticks: Sequence[Tick]) -> float | None:
    """Frames/s in the steady window (`steady_window`)."""
    window = steady_window(ticks)
    if window is None:
        return None
    first, last = window
    return (last.frames - first.frames) / (last.time - first.time)


def add_time_to_target(result: Result, ticks: Sequence[Tick], started: float,
                       target: float | None) -> None:
    """Sets `result`'s seconds from `started` (the process start) to the first tick whose
    average return is `target` or more, and the env frames of the latest tick that counts them up
    to it; leaves them None without a target or if it was not reached."""
    if target is None:
        return
    latest = 0
    for tick in ticks:
        if tick.frames is not None:
            latest = tick.frames
        if tick.avg_return is not None and tick.avg_return >= target:
            result.seconds_to_target, result.frames_at_target = tick.time - started, latest
            return
