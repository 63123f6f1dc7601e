"""The `slurm` backend: one sbatch script per experiment, kept in <sweep folder>/slurm/, submitted
with sbatch (or only written, with --dry_run). Slurm's own scheduler decides when each runs."""

from __future__ import annotations

import getpass
import logging
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from asyncrl.experiment.layout import CONSOLE_FILE
from asyncrl.launcher.sweep import Plan, Variant
from asyncrl.utils.errors import UserError

log = logging.getLogger("asyncrl.launch")
SCRIPT_DIR = "slurm"
# Slurm's --time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2})$")
# Ahead of the time limit Slurm sends SIGINT to the script (exec'ed into the training), which
# saves a checkpoint and exits; the experiment is then resumed by the next launch.
STOP_BEFORE_LIMIT_SEC = 120


def check_slurm_time(value: str) -> str:
    if not _TIME.match(value):
        raise UserError(f"--slurm_time={value}: use minutes, HH:MM:SS or D-HH:MM:SS (Slurm's --time)")
    return value


def script_path(plan: Plan, variant: Variant) -> Path:
    return plan.sweep_dir / SCRIPT_DIR / f"{variant.name}.sbatch"


def sbatch_script(plan: Plan, variant: Variant, partition: str | None, gpus_per_job: int,
                  cpus_per_job: int, time_limit: str | None, setup: str, workdir: Path) -> str:
    directives = [f"--job-name={plan.name}/{variant.name}",
                  f"--output={variant.exp_dir / CONSOLE_FILE}", "--open-mode=append",
                  f"--cpus-per-task={cpus_per_job}"]
    if gpus_per_job:
        directives.append(f"--gres=gpu:{gpus_per_job}")
    if partition:
        directives.append(f"--partition={partition}")
    if time_limit:
        directives += [f"--time={time_limit}", f"--signal=B:INT@{STOP_BEFORE_LIMIT_SEC}"]
    lines = ["#!/bin/bash", *(f"#SBATCH {shlex.quote(d)}" for d in directives),
             f"# Experiment {variant.name} of sweep {plan.name}, written by python -m asyncrl.launch"]
    # The folder the launcher ran in: relative paths in the setup and the command mean the same.
    lines += ["", f"cd {shlex.quote(str(workdir))}"]
    if setup:
        lines.append(setup.rstrip())
    lines += [f"exec {shlex.join(plan.command(variant, sys.executable))}", ""]
    return "\n".join(lines)


def write_scripts(plan: Plan, todo: list[Variant], **script_options) -> list[Path]:
    paths = []
    for variant in todo:
        path = script_path(plan, variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Slurm writes the job's output into the experiment folder: it must exist at submission.
        variant.exp_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(sbatch_script(plan, variant, **script_options))
        path.chmod(0o755)
        paths.append(path)
    return paths


def queued_job_ids() -> set[str]:
    """The ids of this user's jobs that Slurm still holds (pending or running)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-u", getpass.getuser()],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"squeue failed: {out.stderr.strip() or out.returncode}")
    return set(out.stdout.split())


def _job_id_file(plan: Plan, variant: Variant) -> Path:
    return script_path(plan, variant).with_suffix(".jobid")


def not_queued(plan: Plan, todo: list[Variant]) -> list[Variant]:
    """Leaves out experiments whose job from an earlier launch is still pending or running."""
    recorded = {v.name: _job_id_file(plan, v).read_text().strip() for v in todo if _job_id_file(plan, v).exists()}
    if not recorded or shutil.which("squeue") is None:
        return todo
    queued = queued_job_ids()
    for name, job in recorded.items():
        if job in queued:
            log.info("%s is already queued as Slurm job %s", name, job)
    return [v for v in todo if recorded.get(v.name) not in queued]


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise UserError("--backend=slurm: sbatch is not on PATH (run on a Slurm login node, or add "
                        "--dry_run to only write the scripts)")


def submit(plan: Plan, todo: list[Variant], scripts: list[Path], pause_between: float) -> list[str]:
    job_ids = []
    for i, (variant, script) in enumerate(zip(todo, scripts)):
        out = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
        if out.returncode != 0:
            raise UserError(f"sbatch {script} failed: {out.stderr.strip() or out.returncode}")
        job = out.stdout.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
        _job_id_file(plan, variant).write_text(job + "\n")
        job_ids.append(job)
        log.info("Submitted %s as Slurm job %s", variant.name, job)
        if pause_between and i + 1 < len(todo):
            time.sleep(pause_between)
    return job_ids


def read_setup(path: str | None) -> str:
    if path is None:
        return ""
    try:
        return Path(path).read_text()
    except OSError as e:
        raise UserError(f"--slurm_setup={path}: {e.strerror or e}") from None
