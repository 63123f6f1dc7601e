"""`python -m asyncrl.benchmark`: the measurements one after another, then the table (see the
package's docstring)."""

from __future__ import annotations

import json
import shutil
import signal as signals
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from asyncrl.benchmark.asyncrl_run import run_asyncrl
from asyncrl.benchmark.figures import Result
from asyncrl.benchmark.learner_limit import run_learner_limit
from asyncrl.benchmark.plan import Plan, make_plan
from asyncrl.benchmark.raw import run_raw
from asyncrl.benchmark.report import format_table, report
from asyncrl.benchmark.sample_factory import run_sample_factory
from asyncrl.benchmark.sf_install import SF_VERSION, SfUnavailable
from asyncrl.utils.errors import UserError


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
