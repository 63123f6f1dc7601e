"""(b) asyncrl training: `python -m asyncrl.train` in a subprocess, and its figures, read from the
status events it writes into its experiment folder (never from its log's wording)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from asyncrl.benchmark.figures import Result, Tick, add_time_to_target, rate_after_startup
from asyncrl.benchmark.plan import NO_STEP_LIMIT, Plan
from asyncrl.benchmark.processes import START_ALLOWANCE_SEC, add_cpu_per_frame, run_watched, tail
from asyncrl.experiment.layout import STATUS_EVENTS_FILE
from asyncrl.experiment.status_events import STATUS, SUMMARY, latest_run, read_events

EXPERIMENT = "asyncrl_benchmark"


def run_asyncrl(plan: Plan, workdir: Path) -> Result:
    command = [sys.executable, "-m", "asyncrl.train", f"--env={plan.env}",
               f"--experiment={EXPERIMENT}", f"--train_dir={workdir}",
               f"--train_for_seconds={plan.seconds}", f"--train_for_env_steps={NO_STEP_LIMIT}",
               *plan.train_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    finished = run_watched(command, env, Path.cwd(), plan.seconds + START_ALLOWANCE_SEC)
    events = latest_run(read_events(workdir / EXPERIMENT / STATUS_EVENTS_FILE))
    result = asyncrl_result(events, finished.returncode, finished.lines)
    result.command, result.peak_rss_mib = command, finished.peak_rss_mib
    ticks = asyncrl_ticks(events, finished.monotonic)
    add_cpu_per_frame(result, ticks, finished)
    add_time_to_target(result, ticks, finished.started, plan.target_return)
    return result


def asyncrl_ticks(events: Sequence[dict[str, Any]],
                  clock: Callable[[float], float] = float) -> list[Tick]:
    """The status events as ticks (policy 0's average return), at `clock` of their times."""
    return [Tick(clock(e["time"]), e["env_steps"], e["policies"][0]["avg_return"])
            for e in events if e["event"] == STATUS]


def asyncrl_result(events: Sequence[dict[str, Any]], returncode: int,
                   output: Sequence[str] = ()) -> Result:
    """The figures in the status events of a run of `python -m asyncrl.train`, which printed
    `output` (for the error message)."""
    result = Result(system="asyncrl")
    summary = next((e for e in reversed(events) if e["event"] == SUMMARY), None)
    if returncode != 0 or summary is None:
        result.error = f"asyncrl.train exited with code {returncode}: {tail(output)}"
        return result
    result.env_steps, result.seconds = summary["env_steps"], summary["seconds"]
    result.env_frames_per_sec = summary["fps"]
    status = next((e for e in reversed(events) if e["event"] == STATUS), None)
    if status:
        # Policy 0's, as the first part of the status line.
        policy = status["policies"][0]
        result.last_10s_frames_per_sec = status["fps"]
        result.policy_lag_versions = policy["policy_lag_versions"]
        result.policy_lag_sgd_steps = policy["policy_lag_sgd_steps"]
    result.after_startup_frames_per_sec = rate_after_startup(asyncrl_ticks(events))
    return result
