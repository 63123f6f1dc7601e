"""The run's status as machine-readable events: `<experiment>/status.jsonl`, one JSON object a
line, appended by the runner when it logs the start, each status line, each evaluation and the
final summary. Programs read these (the benchmark, the launcher's status table, your own tools)
instead of the log's wording, which is for people. docs/monitoring.md describes every field.

Each event is written with one `write` of a whole line to a file opened for appending and closed
again, so that a reader never needs the writer's cooperation: at worst the last line is cut short
by a kill, and the reader leaves it out (the next run's writer first ends it with a newline)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asyncrl.config.config import ConfigBase
from asyncrl.utils.processes import process_start_time

START, STATUS, EVALUATION, SUMMARY = "start", "status", "evaluation", "summary"
# How far from the end `last_event` reads at first; it reads further back for longer lines.
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class PolicyStatus:
    """One policy's figures in a status or summary event. Policy lags are the learner's over its
    latest batch (None before its first); the average return is over the last `returns_averaged`
    episodes (None before the first episode ends)."""

    policy: int
    env_steps: int
    version: int
    episodes: int
    returns_averaged: int
    avg_return: float | None
    best_metric: float | None
    policy_lag_versions: float | None
    policy_lag_sgd_steps: float | None
    policy_lag_max_versions: float | None
    policy_lag_max_sgd_steps: float | None
    dropped_trajectories: int
    eval_return: float | None  # the latest evaluation's average return, if any
    eval_env_steps: int | None  # the env steps of the snapshot it played


class StatusEventWriter:
    """Appends the events of one run of an experiment to its status file."""

    def __init__(self, path: Path, frames_per_step: int):
        self.path = Path(path)
        self.frames_per_step = frames_per_step  # env steps (frames) per agent step
        self.process_start = process_start_time()
        self._end_torn_line()

    def run_started(self, cfg: ConfigBase, env_steps: int, resumed: bool) -> None:
        """The run starts training; `resumed`: it continues from a checkpoint of this experiment
        (the events before this one are the earlier runs')."""
        self._write(START, {"pid": os.getpid(), "experiment": cfg.experiment, "env": cfg.env,
                            "resumed": resumed, "num_policies": cfg.num_policies,
                            "num_workers": cfg.num_workers,
                            "num_envs_per_worker": cfg.num_envs_per_worker,
                            "frames_per_step": self.frames_per_step,
                            **self._steps(env_steps)})

    def status(self, env_steps: int, fps: float, policies: list[PolicyStatus]) -> None:
        """A status tick: `fps` is env steps (frames) per second over the last 10 s."""
        self._write(STATUS, {**self._steps(env_steps), "fps": fps,
                             "policies": [asdict(p) for p in policies]})

    def evaluation(self, policy: int, env_steps: int, version: int, deterministic: bool,
                   summary: dict[str, Any]) -> None:
        """An evaluation of the policy's snapshot taken at `env_steps` came back with `summary`
        (runtime/evaluation.py's: return_mean, return_std, ..., episodes, length_mean, extra_mean)."""
        self._write(EVALUATION, {"policy": policy, **self._steps(env_steps), "version": version,
                                 "deterministic": deterministic, **summary})

    def summary(self, stop_reason: str | None, env_steps: int, seconds: float, fps: float,
                worker_restarts: int, policies: list[PolicyStatus]) -> None:
        """The run stopped: `seconds` since training started, `fps` env steps per second over
        them (this run's steps only)."""
        self._write(SUMMARY, {"stop_reason": stop_reason, **self._steps(env_steps),
                              "seconds": seconds, "fps": fps, "worker_restarts": worker_restarts,
                              "policies": [asdict(p) for p in policies]})

    def _steps(self, env_steps: int) -> dict[str, int]:
        return {"env_steps": env_steps, "agent_steps": env_steps // self.frames_per_step}

    def _write(self, event: str, fields: dict[str, Any]) -> None:
        now = time.time()
        # Milliseconds are plenty for events seconds apart, and keep the lines short.
        record = {"event": event, "time": round(now, 3), "uptime": round(now - self.process_start, 3),
                  **fields}
        line = json.dumps(_finite(record), separators=(",", ":"), default=float) + "\n"
        with open(self.path, "a") as f:
            f.write(line)

    def _end_torn_line(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        except OSError:  # absent or empty
            return
        if torn:
            with open(self.path, "a") as f:
                f.write("\n")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def parse_events(text: str) -> list[dict[str, Any]]:
    """The events in the text of a status file; a line that is not a whole JSON object (one cut
    short by a kill) is left out."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event of the status file at `path`, oldest first; none if there is no file."""
    try:
        return parse_events(Path(path).read_text(errors="replace"))
    except FileNotFoundError:
        return []


def latest_run(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the latest run: from its start event on (a resumed experiment's file holds
    every run's)."""
    starts = [i for i, event in enumerate(events) if event["event"] == START]
    return events[starts[-1]:] if starts else events


def last_event(path: Path, kinds: tuple[str, ...] = (STATUS,)) -> dict[str, Any] | None:
    """The latest event of one of `kinds` in the status file, read from its end: cheap however
    long the run has been going. None if it has none (or there is no file)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            tail = _TAIL_BYTES
            while True:
                f.seek(max(0, size - tail))
                text = f.read().decode(errors="replace")
                lines = text.splitlines() if tail >= size else text.splitlines()[1:]  # whole lines
                found = [e for e in parse_events("\n".join(lines)) if e["event"] in kinds]
                if found or tail >= size:
                    return found[-1] if found else None
                tail *= 4
    except FileNotFoundError:
        return None
