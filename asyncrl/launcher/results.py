"""Where each experiment of a sweep stands, read from its folder: finished or not, env steps,
final and best average return (its latest checkpoint's), the latest status event's env steps,
frames per second and average return; and the table that shows them."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from asyncrl.experiment.layout import CHECKPOINT_DIR, CONFIG_FILE, FINISHED_FILE, STATUS_EVENTS_FILE
from asyncrl.experiment.status_events import STATUS, SUMMARY, last_event
from asyncrl.launcher.sweep import Plan, Variant, format_value
from asyncrl.utils.errors import UserError

FINISHED, UNFINISHED, NOT_STARTED = "finished", "unfinished", "not started"
PLOT_IMAGE = "learning_curves.png"  # in the sweep folder


def last_command_args(exp_dir: Path) -> list[str] | None:
    """The arguments of the experiment's last run, as stored in its config.json."""
    try:
        lines = json.loads((exp_dir / CONFIG_FILE).read_text()).get("command_lines") or []
        return shlex.split(lines[-1])[1:] if lines else None
    except (OSError, ValueError, AttributeError):
        return None


def is_finished(variant: Variant) -> bool:
    """The last run reached its limit (it wrote the marker) and ran this very command line: a
    changed sweep (e.g. more env steps) resumes the experiment instead of skipping it."""
    return (variant.exp_dir / FINISHED_FILE).is_file() and last_command_args(variant.exp_dir) == variant.args


@dataclass
class Progress:
    state: str
    env_steps: int | None = None
    final_return: float | None = None  # average over the episodes of the latest checkpoint
    best: float | None = None  # the best metric so far (save_best_metric)
    best_metric: str = "reward"
    error: str | None = None


def progress(variant: Variant) -> Progress:
    if not (variant.exp_dir / CONFIG_FILE).is_file():
        return Progress(NOT_STARTED)
    state = FINISHED if is_finished(variant) else UNFINISHED
    # torch, for the checkpoints: only here, so that launching stays light.
    from asyncrl.experiment.checkpoint import CheckpointManager
    from asyncrl.experiment.checkpoint_state import read_checkpoint_state

    latest = CheckpointManager(variant.exp_dir / CHECKPOINT_DIR, keep_checkpoints=1_000_000).latest()
    if latest is None:
        return Progress(state)
    try:
        checkpoint = read_checkpoint_state(latest)
        returns = checkpoint.run.episode_stats["returns"]
        params = json.loads((variant.exp_dir / CONFIG_FILE).read_text())["params"]
        return Progress(state, env_steps=checkpoint.env_steps,
                        final_return=sum(returns) / len(returns) if returns else None,
                        best=checkpoint.run.best_metric,
                        best_metric=params.get("save_best_metric", "reward"))
    except (UserError, OSError, ValueError, KeyError, TypeError) as e:
        return Progress(state, error=f"{type(e).__name__}: {e}")


@dataclass(frozen=True)
class Latest:
    """The numbers of an experiment's latest status or summary event: ahead of its checkpoint
    while it runs."""

    env_steps: int
    fps: float  # env steps (frames) per second: over the 10 s before a status, this run's in a summary
    avg_return: float | None  # the first policy's


def latest_status(exp_dir: Path) -> Latest | None:
    """The numbers of the experiment's latest status or summary event, if it wrote one."""
    event = last_event(exp_dir / STATUS_EVENTS_FILE, (STATUS, SUMMARY))
    if event is None:
        return None
    try:
        return Latest(int(event["env_steps"]), float(event["fps"]),
                      event["policies"][0]["avg_return"])
    except (KeyError, IndexError, TypeError, ValueError):  # a malformed event
        return None


def _latest_cells(latest: Latest | None) -> list[str]:
    if latest is None:
        return ["-", "-", "-"]
    return [f"{latest.env_steps:,}", f"{latest.fps:,.0f}", _number(latest.avg_return)]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def status_table(plan: Plan) -> str:
    header = ["experiment", *plan.param_names, "state", "env steps", "final return", "best return",
              "latest env steps", "fps", "latest return"]
    rows = [header]
    states = []
    for variant in plan.variants:
        p = progress(variant)
        states.append(p.state)
        best = _number(p.best) + ("" if p.best is None or p.best_metric == "reward" else f" ({p.best_metric})")
        rows.append([variant.name,
                     *(format_value(variant.params[k]) if k in variant.params else "-"
                       for k in plan.param_names),
                     p.state if p.error is None else f"{p.state} (checkpoint unreadable: {p.error})",
                     "-" if p.env_steps is None else f"{p.env_steps:,}",
                     _number(p.final_return), best,
                     *_latest_cells(latest_status(variant.exp_dir))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    summary = (f"Sweep {plan.name} in {plan.sweep_dir}: {states.count(FINISHED)} of "
               f"{len(plan.variants)} finished, {states.count(UNFINISHED)} unfinished, "
               f"{states.count(NOT_STARTED)} not started")
    return "\n".join([summary, *lines, plot_hint(plan)])


def _has_curves(exp_dir: Path) -> bool:
    """It has TensorBoard event files, which asyncrl.plot reads (`<experiment>/summaries/`)."""
    return any((exp_dir / "summaries").glob("events.out.tfevents.*"))


def plot_hint(plan: Plan) -> str:
    """One line: the command that overlays the learning curves of the sweep's experiments."""
    names = [v.name for v in plan.variants if _has_curves(v.exp_dir)]
    if not names:
        return "No learning curves yet: asyncrl.plot overlays them once the experiments have summaries"
    command = ["python", "-m", "asyncrl.plot", *names, f"--train_dir={plan.sweep_dir}",
               f"--out={plan.sweep_dir / PLOT_IMAGE}"]
    return f"Overlay their learning curves: {shlex.join(command)}"
