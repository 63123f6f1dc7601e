"""`python -m asyncrl.launch`: run a sweep with a backend, or show where a sweep stands.

The launcher's own options are a small table (they are not training parameters): each row is
its name, type, default, the backends it applies to and its meaning; the parser and --help come
from it, and an option given for a backend it does not apply to is an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal as signals
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from asyncrl.experiment.layout import CONSOLE_FILE
from asyncrl.launcher import slurm
from asyncrl.launcher.child import StopSignals
from asyncrl.launcher.local import gpu_devices, run_processes
from asyncrl.launcher.ray_backend import run_ray
from asyncrl.launcher.results import is_finished, status_table
from asyncrl.launcher.sweep import SWEEP_RECORD, Plan, Variant, load_sweep, plan_from_record, plan_sweep
from asyncrl.utils.arguments import OneLineParser, parse_bool
from asyncrl.utils.errors import UserError
from asyncrl.utils.logs import setup_console_logging

log = logging.getLogger("asyncrl.launch")
BACKENDS = ("processes", "ray", "slurm")
LOCAL = ("processes", "ray")
PROG = "python -m asyncrl.launch"


@dataclass(frozen=True)
class Option:
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    backends: tuple[str, ...] = BACKENDS
    minimum: float | None = None


OPTIONS = (
    Option("run", str, None, "Sweep file to launch: a .py file defining SWEEP or a .yaml/.yml file."),
    Option("status", str, None, "Show the table of a sweep and exit: its sweep file, its folder, or "
           "its name in --train_dir."),
    Option("backend", str, "processes", "Where the experiments run: processes (this machine), ray "
           "(a Ray cluster or a local Ray instance), slurm (one sbatch job each)."),
    Option("train_dir", str, "train_dir", "Root folder; the sweep's experiments go to `<train_dir>/<sweep name>/`."),
    Option("dry_run", parse_bool, False, "Print the exact commands (slurm: write the scripts) and run nothing."),
    Option("max_parallel", int, 2, "Experiments running at once.", LOCAL, minimum=1),
    Option("num_gpus", int, 0, "GPUs to use; each experiment gets 1/experiments_per_gpu of one "
           "(processes: CUDA_VISIBLE_DEVICES, least busy GPU first; ray: its GPU request, and the "
           "number of GPUs of a local Ray instance). 0: no GPU assignment.", LOCAL, minimum=0),
    Option("experiments_per_gpu", int, 1, "Experiments sharing one GPU (with --num_gpus).", LOCAL,
           minimum=1),
    Option("pause_between", float, 1.0, "Seconds between two starts (slurm: submissions), so that "
           "experiments do not all start up at once.", minimum=0),
    Option("ray_address", str, None, "Address of the Ray cluster (e.g. 10.0.0.1:6379 or auto); "
           "default: start a local Ray instance and shut it down at the end.", ("ray",)),
    Option("ray_cpus_per_job", float, 1.0, "CPUs each experiment asks Ray for.", ("ray",), minimum=0),
    Option("slurm_partition", str, None, "Slurm partition (sbatch --partition).", ("slurm",)),
    Option("slurm_gpus_per_job", int, 0, "GPUs of each job (sbatch --gres=gpu:N).", ("slurm",), minimum=0),
    Option("slurm_cpus_per_job", int, 4, "CPU cores of each job (sbatch --cpus-per-task).", ("slurm",),
           minimum=1),
    Option("slurm_time", str, None, "Time limit of each job (sbatch --time, e.g. 2:00:00); the run "
           "is stopped with a checkpoint 2 minutes before it and resumed by the next launch.", ("slurm",)),
    Option("slurm_setup", str, None, "Shell file whose lines go into each script, after its `cd` to "
           "the folder the launcher ran in and before the command (e.g. module load, source "
           "venv/bin/activate).", ("slurm",)),
)
_BY_NAME = {o.name: o for o in OPTIONS}


def options_markdown() -> str:
    """The table of the launcher's options in docs/sweeps.md (a test keeps the two equal)."""
    lines = ["| option | default | backends | meaning |", "| --- | --- | --- | --- |"]
    for o in OPTIONS:
        backends = "all" if o.backends == BACKENDS else ", ".join(o.backends)
        lines.append(f"| `--{o.name}` | `{o.default}` | {backends} | {o.help} |")
    return "\n".join(lines) + "\n"


def _parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, allow_abbrev=False,
                           description="Run a sweep of asyncrl experiments, or show where one stands.")
    for o in OPTIONS:
        where = "" if o.backends == BACKENDS else f" [{', '.join(o.backends)}]"
        kwargs: dict[str, Any] = {"nargs": "?", "const": True} if o.type is parse_bool else {}
        parser.add_argument(f"--{o.name}", dest=o.name, default=argparse.SUPPRESS, metavar="VALUE",
                            help=f"{o.help}{where} (default: {o.default})", **kwargs)
    return parser


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    given = vars(_parser().parse_args(argv))
    values = {}
    for name, raw in given.items():
        o = _BY_NAME[name]
        try:
            value = raw if raw is True else o.type(raw)
        except (ValueError, argparse.ArgumentTypeError):
            kind = {int: "an integer", float: "a number", parse_bool: "true or false"}.get(o.type, "text")
            raise UserError(f"--{name}={raw} is not {kind}") from None
        if o.minimum is not None and value < o.minimum:
            raise UserError(f"--{name}={raw} must be at least {o.minimum:g}")
        values[name] = value
    options = argparse.Namespace(**{o.name: values.get(o.name, o.default) for o in OPTIONS})
    _check_combination(options, set(given))
    return options


def _check_combination(options: argparse.Namespace, given: set[str]) -> None:
    if (options.run is None) == (options.status is None):
        raise UserError("give either --run=<sweep file> to launch a sweep or --status=<sweep> to show it")
    if options.backend not in BACKENDS:
        raise UserError(f"--backend={options.backend}: choose one of {', '.join(BACKENDS)}")
    if options.status is not None:
        extra = sorted(given - {"status", "train_dir"})
        if extra:
            raise UserError(f"--{extra[0]} applies to a launch (--run), not to --status")
        return
    for name in sorted(given):
        backends = _BY_NAME[name].backends
        if options.backend not in backends:
            raise UserError(f"--{name} applies only to --backend={'|'.join(backends)}, "
                            f"not to --backend={options.backend}")
    if "experiments_per_gpu" in given and not options.num_gpus:
        raise UserError("--experiments_per_gpu needs --num_gpus > 0")
    if options.slurm_time is not None:
        slurm.check_slurm_time(options.slurm_time)


def _status_plan(target: str, train_dir: Path) -> Plan:
    path = Path(target)
    if path.is_file():
        return plan_sweep(load_sweep(target), train_dir)
    for folder in (path, train_dir / target):
        if (folder / SWEEP_RECORD).is_file():
            return plan_from_record(folder / SWEEP_RECORD)
    raise UserError(f"--status={target}: not a sweep file, and no {SWEEP_RECORD} in {path} or "
                    f"{train_dir / target} (a sweep folder gets one when it is launched)")


def main(argv: Sequence[str] | None = None) -> int:
    setup_console_logging()
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv)
        train_dir = Path(options.train_dir)
        if options.status is not None:
            print(status_table(_status_plan(options.status, train_dir)))
            return 0
        return launch(plan_sweep(load_sweep(options.run), train_dir), options)
    except UserError as e:
        log.debug("user error", exc_info=True)
        print(f"asyncrl.launch: error: {e}", file=sys.stderr)
        return 2


def launch(plan: Plan, options: argparse.Namespace) -> int:
    if options.backend == "slurm" and not options.dry_run:
        slurm.require_sbatch()
    todo = [v for v in plan.variants if not is_finished(v)]
    skipped = len(plan.variants) - len(todo)
    log.info("Sweep %s: %d experiment(s), %d finished already (skipped), %d to run with --backend=%s",
             plan.name, len(plan.variants), skipped, len(todo), options.backend)
    if options.backend == "slurm":
        return _launch_slurm(plan, todo, options)
    if options.dry_run:
        _print_commands(plan, todo, options)
        return 0
    return _run_local(plan, todo, options)


def _print_commands(plan: Plan, todo: list[Variant], options: argparse.Namespace) -> None:
    if options.num_gpus and options.backend == "processes":
        print(f"# each command runs with CUDA_VISIBLE_DEVICES set to the least busy of GPUs "
              f"{','.join(gpu_devices(options.num_gpus))} ({options.experiments_per_gpu} per GPU)")
    elif options.num_gpus:
        print(f"# each experiment asks Ray for {1 / options.experiments_per_gpu:g} GPU (Ray sets "
              "CUDA_VISIBLE_DEVICES)")
    for variant in todo:
        print(f"# {variant.name}: output to {variant.exp_dir / CONSOLE_FILE}")
        print(shlex.join(plan.command(variant, sys.executable)))


def _write_record(plan: Plan) -> None:
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    (plan.sweep_dir / SWEEP_RECORD).write_text(json.dumps(plan.record(), indent=2) + "\n")


def _run_local(plan: Plan, todo: list[Variant], options: argparse.Namespace) -> int:
    devices = gpu_devices(options.num_gpus) if options.backend == "processes" else []
    _write_record(plan)
    with StopSignals() as stop:
        if options.backend == "ray":
            exit_codes = run_ray(plan, todo, options.max_parallel, options.num_gpus,
                                 options.experiments_per_gpu, options.pause_between,
                                 options.ray_address, options.ray_cpus_per_job, stop)
        else:
            exit_codes = run_processes(plan, todo, options.max_parallel, devices,
                                       options.experiments_per_gpu, options.pause_between, stop)
    print(status_table(plan))
    if stop.received:
        log.info("Stopped by %s: launch the same sweep again to resume it",
                 signals.Signals(stop.received[0]).name)
        return 128 + stop.received[0]
    failed = sorted(name for name, code in exit_codes.items() if code != 0)
    if failed:
        log.error("%d experiment(s) failed: %s", len(failed), ", ".join(failed))
        return 1
    return 0


def _launch_slurm(plan: Plan, todo: list[Variant], options: argparse.Namespace) -> int:
    setup = slurm.read_setup(options.slurm_setup)
    if not options.dry_run:
        todo = slurm.not_queued(plan, todo)
    scripts = slurm.write_scripts(plan, todo, partition=options.slurm_partition,
                                  gpus_per_job=options.slurm_gpus_per_job,
                                  cpus_per_job=options.slurm_cpus_per_job,
                                  time_limit=options.slurm_time, setup=setup, workdir=Path.cwd())
    _write_record(plan)
    if options.dry_run:
        for script in scripts:
            print(f"sbatch --parsable {script}")
        log.info("Dry run: %d script(s) written to %s, nothing submitted", len(scripts),
                 plan.sweep_dir / slurm.SCRIPT_DIR)
        return 0
    jobs = slurm.submit(plan, todo, scripts, options.pause_between)
    log.info("Submitted %d job(s): %s. Follow them with: %s --status=%s", len(jobs), " ".join(jobs),
             PROG, plan.sweep_dir)
    return 0
