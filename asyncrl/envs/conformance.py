"""`python -m asyncrl.envs.conformance`: does every env the installed packages register train?

For each env id (gymnasium's own, ale-py's, MiniGrid's, ViZDoom's gymnasium ids, and the Parallel
envs of mpe2), the sweep runs `asyncrl.train` as a user would, in serial mode on a tiny model, for
two rollouts. Each id ends in one of three ways:

- trains: the two rollouts were collected and trained on (exit 0);
- refused: a one-line error (exit 2) that names what is not supported or not installed;
- failed: anything else (a traceback, another exit code, a crash): a bug to fix.

    python -m asyncrl.envs.conformance                         # every id, a summary line each
    python -m asyncrl.envs.conformance --packages=minigrid     # one package
    python -m asyncrl.envs.conformance --write=docs/conformance.md   # the docs' table

Ids run in `--jobs` subprocesses, one id after another in each, so that an env that takes its
process down is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import json
import logging
import os
import platform
import site
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import gymnasium as gym

# package -> (what to import so that it registers its ids, its distribution name)
PACKAGES: dict[str, tuple[str | None, str]] = {
    "gymnasium": (None, "gymnasium"),
    "ale-py": ("ale_py", "ale-py"),
    "minigrid": ("minigrid", "minigrid"),
    "vizdoom": ("vizdoom.gymnasium_wrapper", "vizdoom"),
    "mpe2": ("mpe2", "mpe2"),
}
# The Parallel envs of mpe2, as `--env=pettingzoo:mpe2.<name>`.
MPE2_ENVS = ("simple_adversary_v3", "simple_crypto_v3", "simple_push_v3", "simple_reference_v3",
             "simple_speaker_listener_v4", "simple_spread_v3", "simple_tag_v3",
             "simple_world_comm_v3", "simple_v3")
# Two rollouts of 4 steps of 2 envs, serial, on a small model (recurrent, as the table's default).
TRAIN_ARGS = ("--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=2",
              "--worker_num_splits=1", "--rollout=4", "--recurrence=4", "--batch_size=8",
              "--num_batches_per_epoch=1", "--use_rnn=true", "--rnn_size=16",
              "--encoder_mlp_layers=16", "--encoder_conv_mlp_layers=16", "--device=cpu",
              "--log_to_file=false", "--save_every_sec=100000", "--seed=0")
ROLLOUTS = 2
ENVS = 2
STEPS = 4


@dataclass
class Outcome:
    env: str
    package: str
    result: str  # "trains", "refused" or "failed"
    detail: str = ""  # the refusal's line (without the --env prefix), or what failed
    seconds: float = 0.0


def package_of(env_id: str) -> str:
    """The package that registers `env_id` (by its entry point)."""
    if env_id.startswith("pettingzoo:mpe2."):
        return "mpe2"
    entry = gym.registry[env_id].entry_point
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    root = module.split(":")[0].split(".")[0]
    return {"ale_py": "ale-py"}.get(root, root)


def installed_packages(wanted: Iterable[str] | None = None) -> list[str]:
    """The packages of PACKAGES that import here (registering their ids), in table order."""
    found = []
    for name, (module, _) in PACKAGES.items():
        if wanted is not None and name not in wanted:
            continue
        if module is not None:
            try:
                imported = importlib.import_module(module)
            except ImportError:
                continue
            if name == "ale-py":
                gym.register_envs(imported)
        found.append(name)
    return found


def env_ids(packages: Sequence[str]) -> list[str]:
    """Every id the packages register, gymnasium's registry order, then mpe2's envs."""
    ids = [env_id for env_id in gym.registry if package_of(env_id) in packages]
    if "mpe2" in packages:
        ids += [f"pettingzoo:mpe2.{name}" for name in MPE2_ENVS]
    return ids


def run_one(env_id: str, train_dir: Path, index: int) -> Outcome:
    """Trains `env_id` for two rollouts in this process, as `python -m asyncrl.train` would."""
    from asyncrl import train
    from asyncrl.envs.atari import is_atari_name

    started = time.monotonic()
    stderr = io.StringIO()
    argv = [f"--env={env_id}", f"--train_dir={train_dir}", f"--experiment=env{index}",
            *TRAIN_ARGS, f"--train_for_env_steps={ROLLOUTS * ENVS * STEPS}"]
    if is_atari_name(env_id):  # count agent steps, not emulator frames
        argv.append("--summaries_use_frameskip=false")
    package = package_of(env_id)
    try:
        with contextlib.redirect_stderr(stderr):
            code = train.main(argv)
    except BaseException as e:  # a traceback is what the sweep exists to find
        return Outcome(env_id, package, "failed", f"{type(e).__name__}: {e}".splitlines()[0],
                       time.monotonic() - started)
    seconds = time.monotonic() - started
    if code == 0:
        return Outcome(env_id, package, "trains", "", seconds)
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("asyncrl: error: ")]
    if code == 2 and len(errors) == 1:
        line = _without_install_paths(errors[0][len("asyncrl: error: "):])
        return Outcome(env_id, package, "refused", line.removeprefix(f"--env={env_id}: "), seconds)
    return Outcome(env_id, package, "failed", f"exit code {code}: {stderr.getvalue().strip()[-300:]}",
                   seconds)


def _without_install_paths(line: str) -> str:
    """A message with this machine's package folders written as `site-packages/`, so that the
    docs page reads the same wherever the sweep ran."""
    for folder in sorted({*site.getsitepackages(), site.getusersitepackages()}, key=len, reverse=True):
        line = line.replace(folder.rstrip("/") + "/", "site-packages/")
    return line


def _worker(ids_file: Path, results_file: Path) -> None:
    """Runs the ids of `ids_file` one after another, appending each Outcome to `results_file`."""
    logging.getLogger("asyncrl").setLevel(logging.WARNING)
    ids = json.loads(ids_file.read_text())
    installed_packages()
    with tempfile.TemporaryDirectory(prefix="conformance-") as train_dir:
        for index, env_id in enumerate(ids):
            outcome = run_one(env_id, Path(train_dir), index)
            with results_file.open("a") as f:
                f.write(json.dumps(asdict(outcome)) + "\n")


def sweep(ids: Sequence[str], jobs: int, progress: bool = True) -> list[Outcome]:
    """Every id in `jobs` subprocesses; an id whose process died is failed, and the rest of its
    share runs in a new process."""
    remaining = [list(ids[j::jobs]) for j in range(jobs)]
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="conformance-") as work:
        while any(remaining):
            procs = []
            for j, share in enumerate(remaining):
                if not share:
                    continue
                ids_file, results_file = Path(work, f"ids{j}.json"), Path(work, f"results{j}.jsonl")
                ids_file.write_text(json.dumps(share))
                results_file.write_text("")
                procs.append((j, results_file, subprocess.Popen(
                    [sys.executable, "-m", "asyncrl.envs.conformance", "--_worker", str(ids_file),
                     str(results_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    text=True, cwd=work)))
            for j, results_file, proc in procs:
                _, stderr = proc.communicate()
                done = [Outcome(**json.loads(line)) for line in results_file.read_text().splitlines()]
                for outcome in done:
                    outcomes[outcome.env] = outcome
                    if progress:
                        print(_line(outcome), flush=True)
                share = remaining[j][len(done):]
                if share and proc.returncode != 0:  # the process died in share[0]
                    tail = (stderr.strip().splitlines() or [""])[-1]
                    outcomes[share[0]] = Outcome(share[0], package_of(share[0]), "failed",
                                                 f"the process died (exit {proc.returncode}): {tail}")
                    if progress:
                        print(_line(outcomes[share[0]]), flush=True)
                    share = share[1:]
                remaining[j] = share
    return [outcomes[env_id] for env_id in ids]


def _line(outcome: Outcome) -> str:
    detail = f": {outcome.detail}" if outcome.detail else ""
    return f"{outcome.result:8s} {outcome.env} ({outcome.seconds:.1f} s){detail}"


def versions(packages: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(PACKAGES[name][1])
        except importlib.metadata.PackageNotFoundError:
            found[name] = "?"
    return found


def markdown(outcomes: Sequence[Outcome], command: str, seconds: float) -> str:
    """The docs page: per package a summary row, then the ids grouped by outcome."""
    by_package: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_package[outcome.package].append(outcome)
    packages = list(by_package)
    installed = versions(packages)
    lines = [
        "# Environment conformance",
        "",
        "<!-- generated by python -m asyncrl.envs.conformance --write=docs/conformance.md -->",
        "",
        "Every env id that the packages of the `test` extra register, trained by `asyncrl.train` "
        "as a user runs it, in serial mode on a small recurrent model for two rollouts of 4 steps "
        "of 2 envs. An id either **trains** or is **refused** with a one-line error that names "
        "what is missing or not supported; none may end in a traceback (**failed**). "
        "`tests/envs/test_conformance.py` runs the sweep on a part of every package in CI and checks "
        "it against this page.",
        "",
        f"Command: `{command}` ({len(outcomes)} ids in {seconds / 60:.0f} minutes on "
        f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}).",
        "",
        "| package | version | ids | train | refused | failed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for package in packages:
        counts = defaultdict(int)
        for outcome in by_package[package]:
            counts[outcome.result] += 1
        lines.append(f"| {package} | {installed[package]} | {len(by_package[package])} | "
                     f"{counts['trains']} | {counts['refused']} | {counts['failed']} |")
    for package in packages:
        lines += ["", f"## {package}", ""]
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for outcome in by_package[package]:
            groups[(outcome.result, outcome.detail)].append(outcome.env)
        for (result, detail), ids in sorted(groups.items(), key=lambda g: (g[0][0] != "trains", g[0])):
            what = {"trains": "Train", "refused": "Refused", "failed": "Failed"}[result]
            reason = f": {detail}" if detail else ""
            lines.append(f"- **{what}** ({len(ids)}){reason}")
            lines.append(f"  <br>{', '.join(f'`{env_id}`' for env_id in ids)}")
    return "\n".join(lines) + "\n"


def read_page(path: Path) -> dict[str, str]:
    """env id -> 'trains', 'refused' or 'failed', as the docs page records it."""
    recorded = {}
    result = None
    for line in path.read_text().splitlines():
        if line.startswith("- **"):
            result = {"Train": "trains", "Refused": "refused", "Failed": "failed"}[
                line[4:line.index("**", 4)]]
        elif line.startswith("  <br>") and result is not None:
            for env_id in line[len("  <br>"):].split(", "):
                recorded[env_id.strip("`")] = result
    return recorded


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_worker"]:
        _worker(Path(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m asyncrl.envs.conformance",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", default=",".join(PACKAGES),
                        help=f"Comma-separated packages to sweep (default: all of {', '.join(PACKAGES)} "
                             "that are installed)")
    parser.add_argument("--ids", default=None, help="Comma-separated env ids instead of whole packages")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="Processes running ids side by side (default: the CPU count)")
    parser.add_argument("--write", default=None, metavar="PATH",
                        help="Write the markdown table to this file (the docs page)")
    parser.add_argument("--json", default=None, metavar="PATH", help="Write the outcomes as JSON")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.packages.split(",")) - set(PACKAGES))
    if unknown:
        print(f"asyncrl: error: --packages: unknown package {unknown[0]} (choose from: "
              f"{', '.join(PACKAGES)})", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("asyncrl: error: --jobs must be at least 1", file=sys.stderr)
        return 2
    packages = installed_packages(args.packages.split(","))
    ids = args.ids.split(",") if args.ids else env_ids(packages)
    started = time.monotonic()
    outcomes = sweep(ids, args.jobs)
    seconds = time.monotonic() - started
    counts = defaultdict(int)
    for outcome in outcomes:
        counts[outcome.result] += 1
    print(f"{len(outcomes)} ids in {seconds:.0f} s: {counts['trains']} train, {counts['refused']} "
          f"refused, {counts['failed']} failed")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")
    if args.write:
        command = "python -m asyncrl.envs.conformance " + " ".join(
            a for a in argv if not a.startswith(("--write", "--json")))
        Path(args.write).write_text(markdown(outcomes, command.strip(), seconds))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
