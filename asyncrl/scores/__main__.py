"""`python -m asyncrl.scores --suite=classic|box2d|mujoco|atari|vizdoom [--seeds=N] [--steps=N]
[--envs=a,b] [--jobs=N] [--out=DIR] [--dry_run] [-- asyncrl.train parameters]`: asyncrl's scores against
published tables at the same number of agent steps.

For each env of the suite (asyncrl/scores/references.yaml) and each seed 1..N it trains with
`python -m asyncrl.train` (a subprocess, experiment `<out>/<env>/seed<N>`) for the env's budget in
agent steps (with a frame skip, `--train_for_env_steps` counts frames: agent steps x frame skip),
then evaluates the final policy with `python -m asyncrl.enjoy` on a fresh env seeded apart from
training. `--jobs=N` runs N of these (env, seed) runs at once. A seed already finished with the same command is not trained again; a failed one is
reported with its error and the suite goes on. It writes scores.md, scores.json and scores.png
into the output folder and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import signal as signals
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from asyncrl.envs.command_line import parse_args
from asyncrl.envs.registry import env_frames_per_step
from asyncrl.experiment.layout import CHECKPOINT_DIR, CONSOLE_FILE, FINISHED_FILE
from asyncrl.launcher.child import ExperimentBusy, StopSignals, start_logged
from asyncrl.plot import INSTALL_HINT, Curve, read_curve
from asyncrl.scores.references import EnvEntry, Suite, load_suites
from asyncrl.utils.arguments import OneLineParser, split_at_double_dash
from asyncrl.utils.errors import UserError
from asyncrl.utils.files import write_atomic
from asyncrl.utils.logs import setup_console_logging

log = logging.getLogger("asyncrl.scores")
PROG = "python -m asyncrl.scores"
RESULT_FILE = "scores_result.json"  # in each seed's experiment folder, once trained and evaluated
EVAL_FILE = "scores_eval.json"  # asyncrl.enjoy's --json report
SECONDS_FILE = "scores_seconds.json"  # training wall-clock of every attempt, added up
EVAL_SEED_OFFSET = 1000  # the eval env's seed: the run's seed + this, apart from the training envs
# Parameters the suite sets itself, not accepted after `--`.
_OWN = {"env": "give --envs", "experiment": "each seed has its folder in --out",
        "train_dir": "use --out", "train_for_env_steps": "use --steps (in agent steps)",
        "seed": "use --seeds (seeds 1..N)", "config": "each env has its preset"}


@dataclass(frozen=True)
class Plan:
    suite: Suite
    envs: tuple[EnvEntry, ...]
    seeds: int
    steps: int | None  # --steps: every env's budget in agent steps instead of the reference's
    jobs: int  # (env, seed) runs at once
    out: Path
    extras: tuple[str, ...]  # the asyncrl.train parameters after --
    dry_run: bool

    def agent_steps(self, entry: EnvEntry) -> int:
        return entry.agent_steps if self.steps is None else self.steps


# -- the command line -------------------------------------------------------------------------
def _count(text: str) -> int:
    """A positive whole number, also as 1e6."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return int(value)


def build_parser(suites: Sequence[str]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, allow_abbrev=False,
                     usage=f"{PROG} --suite=NAME [options] [-- asyncrl.train parameters]",
                     description="Train each env of a suite for its reference's agent steps, "
                                 "evaluate, and compare with the published results.")
    parser.add_argument("--suite", required=True, choices=suites, metavar="NAME",
                        help=f"The suite: {', '.join(suites)}")
    parser.add_argument("--seeds", type=_count, default=3,
                        help="Seeds per env, 1..N (default: %(default)s)")
    parser.add_argument("--steps", type=_count, default=None,
                        help="Agent steps of every run instead of each env's reference budget "
                             "(default: the budget in the reference file)")
    parser.add_argument("--envs", default=None,
                        help="Comma-separated envs of the suite to run (default: all)")
    parser.add_argument("--jobs", type=_count, default=1,
                        help="(env, seed) runs to train at once: on a machine with more cores "
                             "than one run uses, e.g. 2 on 2 cores for presets in serial mode "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="Output folder: an experiment per env and seed, and the table, "
                             "JSON and plot (default: train_dir/scores_<suite>)")
    parser.add_argument("--dry_run", action="store_true",
                        help="Print the training commands and run nothing")
    return parser


def make_plan(argv: Sequence[str]) -> Plan:
    argv, extras = split_at_double_dash(argv)
    suites = load_suites()
    args = build_parser(list(suites)).parse_args(argv)
    suite = suites[args.suite]
    given = {a[2:].split("=", 1)[0] for a in extras if a.startswith("--")}
    for name, instead in _OWN.items():
        if name in given:
            raise UserError(f"--{name} cannot be given after --: the suite sets it ({instead})")
    envs = suite.envs
    if args.envs is not None:
        names = [n for n in args.envs.split(",") if n]
        unknown = [n for n in names if suite.env(n) is None]
        if unknown or not names:
            raise UserError(f"--envs={args.envs}: {', '.join(unknown) or 'no env'} not in suite "
                            f"{suite.name} (its envs: {', '.join(e.env for e in suite.envs)})")
        envs = tuple(suite.env(n) for n in dict.fromkeys(names))
    out = Path(args.out) if args.out else Path("train_dir") / f"scores_{suite.name}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out={out} is a file; give a folder")
    return Plan(suite, envs, args.seeds, args.steps, args.jobs, out, tuple(extras), args.dry_run)


# -- one run ----------------------------------------------------------------------------------
@dataclass
class SeedResult:
    seed: int
    status: str  # finished, failed
    agent_steps: int | None = None
    eval_return: float | None = None
    eval_episodes: int | None = None
    train_return: float | None = None  # the average over the last (up to 100) training episodes
    train_seconds: float | None = None
    eval_seconds: float | None = None
    error: str | None = None


def frames_per_step(plan: Plan, entry: EnvEntry) -> int:
    """Env steps per agent step of this env's config (its frame skip where env steps count
    frames); a UserError for a missing preset or a bad parameter after --."""
    if not entry.config_path.is_file():
        raise UserError(f"{entry.env}: its preset {entry.config_path} does not exist (the scores "
                        "suites need the repository's configs/ folder)")
    cfg = parse_args([f"--config={entry.config_path}", f"--env={entry.env}", *entry.args,
                      *plan.extras], scope="train", prog="python -m asyncrl.train").config()
    return env_frames_per_step(cfg)


def train_command(plan: Plan, entry: EnvEntry, seed: int, frames: int) -> list[str]:
    return [sys.executable, "-m", "asyncrl.train", f"--config={entry.config_path}",
            f"--env={entry.env}", *entry.args, *plan.extras, f"--train_dir={plan.out / entry.env}",
            f"--experiment=seed{seed}", f"--seed={seed}",
            f"--train_for_env_steps={plan.agent_steps(entry) * frames}"]


def eval_command(plan: Plan, entry: EnvEntry, seed: int) -> list[str]:
    exp_dir = plan.out / entry.env / f"seed{seed}"
    return [sys.executable, "-m", "asyncrl.enjoy", f"--env={entry.env}",
            f"--train_dir={plan.out / entry.env}", f"--experiment=seed{seed}",
            f"--max_num_episodes={plan.suite.eval_episodes}",
            f"--eval_deterministic={plan.suite.eval_deterministic}",
            f"--seed={seed + EVAL_SEED_OFFSET}", f"--json={exp_dir / EVAL_FILE}"]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _error_line(console: Path) -> str:
    """The last line of the run's output that names an error, else its last line."""
    try:
        lines = [line.strip() for line in console.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1]


def _run(command: list[str], exp_dir: Path, stop: StopSignals) -> tuple[int, float]:
    """Runs `command` as the launcher runs an experiment (its output appended to console.txt, in
    a session of its own, stopped with SIGTERM when this process dies): (exit status, seconds).
    Every Ctrl+C or SIGTERM here is passed on as SIGTERM, on which asyncrl.train saves a
    checkpoint and exits. (Counted per process: with --jobs each running one gets each signal.)"""
    start = time.monotonic()
    process = start_logged(command, exp_dir, {})
    forwarded = 0
    while process.poll() is None:
        while forwarded < len(stop.received):
            process.send_signal(signals.SIGTERM)
            forwarded += 1
        time.sleep(0.2)
    return process.returncode, time.monotonic() - start


def final_training_state(exp_dir: Path) -> tuple[int, float | None]:
    """(env steps, average return of the training episodes it kept) of the latest checkpoint."""
    from asyncrl.experiment.checkpoint import CheckpointManager
    from asyncrl.experiment.checkpoint_state import read_checkpoint_state

    latest = CheckpointManager(exp_dir / CHECKPOINT_DIR, keep_checkpoints=1_000_000).latest()
    if latest is None:
        raise UserError(f"{exp_dir} has no checkpoint")
    state = read_checkpoint_state(latest)
    returns = state.run.episode_stats["returns"]
    return state.env_steps, (sum(returns) / len(returns) if returns else None)


def run_seed(plan: Plan, entry: EnvEntry, seed: int, frames: int,
             stop: StopSignals) -> SeedResult | None:
    """Trains and evaluates one seed, or reads its result when it finished before with the same
    command; None when a signal stopped it (it resumes on the next run)."""
    if stop.stopping:
        return None  # a run still waiting for its turn when the suite was stopped
    exp_dir = plan.out / entry.env / f"seed{seed}"
    command = train_command(plan, entry, seed, frames)
    stored = _read_json(exp_dir / RESULT_FILE)
    if stored is not None and stored.get("command") == command[1:]:
        log.info("%s seed %d: finished already in %s (skipped)", entry.env, seed, exp_dir)
        return SeedResult(**stored["result"])
    (exp_dir / RESULT_FILE).unlink(missing_ok=True)
    log.info("%s seed %d: training for %d agent steps (output in %s)", entry.env, seed,
             plan.agent_steps(entry), exp_dir / CONSOLE_FILE)
    try:
        code, seconds = _run(command, exp_dir, stop)
        spent = (_read_json(exp_dir / SECONDS_FILE) or {}).get("train", 0.0) + seconds
        write_atomic(exp_dir / SECONDS_FILE, lambda f: f.write(json.dumps({"train": spent}) + "\n"))
        if stop.stopping:
            return None
        if code != 0 or not (exp_dir / FINISHED_FILE).is_file():
            return SeedResult(seed, "failed", train_seconds=spent, error=f"training exited with "
                              f"status {code}: {_error_line(exp_dir / CONSOLE_FILE)}")
        log.info("%s seed %d: trained in %.0f s; evaluating %d episodes", entry.env, seed,
                 seconds, plan.suite.eval_episodes)
        (exp_dir / EVAL_FILE).unlink(missing_ok=True)
        code, eval_seconds = _run(eval_command(plan, entry, seed), exp_dir, stop)
        if stop.stopping:
            return None
        report = _read_json(exp_dir / EVAL_FILE)
        if code != 0 or report is None or report["summary"] is None:
            return SeedResult(seed, "failed", train_seconds=spent, eval_seconds=eval_seconds,
                              error=f"evaluation exited with status {code}: "
                                    f"{_error_line(exp_dir / CONSOLE_FILE)}")
        env_steps, train_return = final_training_state(exp_dir)
    except (ExperimentBusy, UserError) as e:
        return SeedResult(seed, "failed", error=str(e))
    result = SeedResult(seed, "finished", agent_steps=env_steps // frames,
                        eval_return=report["summary"]["return_mean"],
                        eval_episodes=report["summary"]["episodes"], train_return=train_return,
                        train_seconds=spent, eval_seconds=eval_seconds)
    # The mark that this seed finished with this command: whole or absent after a crash.
    write_atomic(exp_dir / RESULT_FILE, lambda f: json.dump({"command": command[1:],
                                                             "result": result.__dict__}, f, indent=2))
    return result


# -- the report -------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float] | None:
    """Mean and standard deviation (population: divided by N) over seeds; None without values."""
    if not values:
        return None
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def training_curves(plan: Plan, env: str, results: list[SeedResult]) -> dict[int, Curve]:
    """Seed -> its training-return curve (episode/return_avg), for the seeds that wrote one."""
    curves = {}
    for r in results:
        try:
            curves[r.seed] = read_curve(plan.out / env / f"seed{r.seed}")
        except UserError:
            continue  # no summaries: the run failed before writing any
    return curves


def return_at(curve: Curve, agent_steps: int, frames: int) -> float | None:
    """The curve's last value at or before `agent_steps`; None when it starts after them."""
    reached = curve.env_steps <= agent_steps * frames
    return float(curve.values[reached][-1]) if reached.any() else None


def env_report(plan: Plan, entry: EnvEntry, results: list[SeedResult], frames: int,
               curves: dict[int, Curve]) -> dict[str, Any]:
    finished = [r for r in results if r.status == "finished"]
    stats = {}
    for name in ("eval_return", "train_return"):
        values = [getattr(r, name) for r in finished if getattr(r, name) is not None]
        pair = mean_std(values)
        stats[name] = None if pair is None else {"mean": pair[0], "std": pair[1], "seeds": len(values)}
    references = []
    for ref in entry.references:
        # asyncrl's training return at the reference's own steps, where the runs got there
        there = [] if ref.agent_steps > plan.agent_steps(entry) else [
            v for r in finished if r.seed in curves
            for v in [return_at(curves[r.seed], ref.agent_steps, frames)] if v is not None]
        pair = mean_std(there)
        references.append({"source": ref.source.name, "url": ref.source.url,
                           "measure": ref.source.measure, "env_id": ref.env_id, "value": ref.value,
                           "std": ref.std, "agent_steps": ref.agent_steps, "note": ref.note,
                           "asyncrl_train_return_there": None if pair is None else
                           {"mean": pair[0], "std": pair[1], "seeds": len(there)}})
    return {
        "env": entry.env, "config": entry.config, "args": list(entry.args),
        "agent_steps": plan.agent_steps(entry), "frames_per_agent_step": frames,
        **stats,
        "wall_clock_seconds": sum((r.train_seconds or 0.0) + (r.eval_seconds or 0.0) for r in results),
        "seeds": [r.__dict__ for r in results],
        "references": references,
    }


def _fmt(stat: dict[str, float] | None) -> str:
    return "-" if stat is None else f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def _steps(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k" if n >= 1000 else str(n)


def _seed_cell(seed: dict[str, Any]) -> str:
    if seed["status"] != "finished":
        return f"seed {seed['seed']}: failed ({seed['error']})".replace("|", "/")
    train = "-" if seed["train_return"] is None else f"{seed['train_return']:.1f}"
    return f"seed {seed['seed']}: {seed['eval_return']:.1f} / {train}"


def _reference_cell(ref: dict[str, Any]) -> str:
    there = ref["asyncrl_train_return_there"]
    return (f"{ref['source']}: {ref['value']:g}" + ("" if ref["std"] is None else f" ± {ref['std']:g}")
            + f" at {_steps(ref['agent_steps'])} ({ref['env_id']})"
            + ("" if there is None else f"; asyncrl's training return there: {_fmt(there)}"))


def markdown_table(plan: Plan, envs: list[dict[str, Any]]) -> str:
    mode = "deterministic" if plan.suite.eval_deterministic else "sampled"
    lines = [f"Suite {plan.suite.name}: {plan.seeds} seed(s); eval return = mean over "
             f"{plan.suite.eval_episodes} episodes of the final policy, {mode} actions; training "
             "return = average of the last 100 training episodes at the end; mean ± std over seeds.",
             "",
             "| env | agent steps | eval return | training return | per seed (eval / training) "
             "| wall-clock (s) | references |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for env in envs:
        references = "<br>".join(_reference_cell(r) for r in env["references"]) or "-"
        seeds = "<br>".join(_seed_cell(s) for s in env["seeds"])
        lines.append(f"| {env['env']} | {_steps(env['agent_steps'])} | {_fmt(env['eval_return'])} | "
                     f"{_fmt(env['train_return'])} | {seeds} | {env['wall_clock_seconds']:.0f} | "
                     f"{references} |")
    return "\n".join(lines) + "\n"


def plot_scores(envs: list[dict[str, Any]], curves: dict[str, dict[int, Curve]], out: Path) -> bool:
    """Training return against agent steps, a panel per env, a line per seed, each reference a
    dashed line and a marker at its steps. False (with a warning) without matplotlib or curves."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("No plot: it needs matplotlib (%s)", INSTALL_HINT)
        return False
    if not any(curves.values()):
        log.warning("No plot: no run has written summaries")
        return False
    columns = min(3, len(envs))
    rows = -(-len(envs) // columns)
    figure = Figure(figsize=(5.0 * columns, 3.8 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # headless, as asyncrl.plot
    for i, env in enumerate(envs):
        axes = figure.add_subplot(rows, columns, i + 1)
        seeds = curves[env["env"]]
        for seed, curve in seeds.items():
            axes.plot(curve.env_steps / env["frames_per_agent_step"], curve.values,
                      label=f"asyncrl seed {seed}")
        for j, ref in enumerate(env["references"]):
            color = f"C{len(seeds) + j}"
            axes.axhline(ref["value"], color=color, linestyle="--", linewidth=1)
            axes.plot([ref["agent_steps"]], [ref["value"]], marker="o", color=color,
                      label=f"{ref['source']} at {_steps(ref['agent_steps'])}")
        axes.set_title(env["env"])
        axes.set_xlabel("agent steps")
        axes.set_ylabel("training return (last 100 episodes)")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="x-small")
    figure.savefig(out)
    return True


def run_envs(plan: Plan, frames: dict[str, int], setup_errors: dict[str, str], stop: StopSignals
             ) -> tuple[list[dict[str, Any]], dict[str, dict[int, Curve]]]:
    """Every env's report and training curves, `plan.jobs` (env, seed) runs at a time; reported
    in the suite's order of envs and seeds."""
    seeds = range(1, plan.seeds + 1)
    trainable = [entry for entry in plan.envs if entry.env not in setup_errors]
    # The runs wait on their subprocesses, so threads are enough to keep `jobs` of them going.
    with ThreadPoolExecutor(max_workers=plan.jobs, thread_name_prefix="scores") as pool:
        futures = {(entry.env, seed): pool.submit(run_seed, plan, entry, seed, frames[entry.env], stop)
                   for entry in trainable for seed in seeds}
        outcomes = {key: future.result() for key, future in futures.items()}
    envs = []
    curves: dict[str, dict[int, Curve]] = {}
    for entry in plan.envs:
        if entry.env in setup_errors:
            log.error("%s: %s", entry.env, setup_errors[entry.env])
            results = [SeedResult(s, "failed", error=setup_errors[entry.env]) for s in seeds]
            curves[entry.env] = {}
            envs.append(env_report(plan, entry, results, 1, {}))
            continue
        results = [outcomes[(entry.env, seed)] for seed in seeds]
        if any(result is None for result in results):
            return envs, curves  # stopped: no report
        for result in results:
            if result.status == "failed":
                log.error("%s seed %d failed: %s", entry.env, result.seed, result.error)
        curves[entry.env] = training_curves(plan, entry.env, results)
        envs.append(env_report(plan, entry, results, frames[entry.env], curves[entry.env]))
    return envs, curves


def run(plan: Plan) -> int:
    frames = {}
    setup_errors = {}
    for entry in plan.envs:
        try:
            frames[entry.env] = frames_per_step(plan, entry)
        except UserError as e:
            setup_errors[entry.env] = str(e)
    # A mistake that no env can train with (a bad parameter after --, a preset that is not
    # there) is the user's to fix before anything runs; an env that alone cannot be set up (its
    # package is not installed) fails and the others go on.
    if setup_errors and (plan.dry_run or len(setup_errors) == len(plan.envs)):
        raise UserError(next(iter(setup_errors.values())))
    if plan.dry_run:
        for entry in plan.envs:
            for seed in range(1, plan.seeds + 1):
                print(shlex.join(train_command(plan, entry, seed, frames[entry.env])))
        return 0
    plan.out.mkdir(parents=True, exist_ok=True)
    with StopSignals() as stop:
        envs, curves = run_envs(plan, frames, setup_errors, stop)
    if stop.stopping:
        log.info("Stopped by %s: run the same command again to resume",
                 signals.Signals(stop.received[0]).name)
        return 128 + stop.received[0]
    table = markdown_table(plan, envs)
    (plan.out / "scores.md").write_text(table)
    (plan.out / "scores.json").write_text(json.dumps({
        "suite": plan.suite.name, "seeds": plan.seeds,
        "eval_deterministic": plan.suite.eval_deterministic,
        "eval_episodes": plan.suite.eval_episodes, "train_args": list(plan.extras),
        "envs": envs}, indent=2) + "\n")
    plotted = plot_scores(envs, curves, plan.out / "scores.png")
    print(table)
    print(f"wrote {plan.out / 'scores.md'}, {plan.out / 'scores.json'}"
          + (f", {plan.out / 'scores.png'}" if plotted else ""))
    failed = sum(s["status"] != "finished" for env in envs for s in env["seeds"])
    if failed:
        log.error("%d run(s) failed; run the same command again to retry them", failed)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    setup_console_logging()
    try:
        return run(make_plan(sys.argv[1:] if argv is None else argv))
    except UserError as e:
        print(f"asyncrl.scores: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
