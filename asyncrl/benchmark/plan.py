"""What one benchmark measures: its command line, read into a Plan (the env, the time, the
layout that applies to every system, asyncrl's resolved configuration)."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from asyncrl.benchmark.sf_install import SF_VERSION, sf_venv_dir
from asyncrl.envs.command_line import parse_args
from asyncrl.utils.arguments import OneLineParser, parse_bool, split_at_double_dash
from asyncrl.utils.errors import UserError

# Parameters the benchmark sets itself (and how), not accepted after `--`.
_OWN = {"env": "give --env before --", "experiment": "it uses a temporary name",
        "train_dir": "it uses a temporary folder", "train_for_seconds": "use --seconds",
        "train_for_env_steps": "every system runs for --seconds"}
# No step limit, whatever the env's preset says (CartPole's ends its runs at 300,000 env steps):
# each system runs for --seconds. Sample Factory's own default is the same.
NO_STEP_LIMIT = 10_000_000_000


# -- the command line -------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not >= 1")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m asyncrl.benchmark", allow_abbrev=False,
        usage="python -m asyncrl.benchmark [options] [-- asyncrl train parameters]",
        description="Env frames per second of raw env stepping, asyncrl training and optionally "
                    "Sample Factory, one after another on the same cores.")
    parser.add_argument("--env", default="CartPole-v1",
                        help="Env id or env family name, as for asyncrl.train "
                             "(default: %(default)s)")
    parser.add_argument("--seconds", type=_positive_int, default=30,
                        help="Length of each measurement in seconds (default: %(default)s)")
    parser.add_argument("--num_workers", type=_positive_int, default=None,
                        help="Processes, for every system (default: the value after --, else 2)")
    parser.add_argument("--num_envs_per_worker", type=_positive_int, default=None,
                        help="Envs per process, for every system (default: the value after --, "
                             "else 32)")
    parser.add_argument("--learner_limit", action="store_true",
                        help="Also time the learner alone on random batches of the training-batch "
                             "shape (its samples/s, and that in env frames/s)")
    parser.add_argument("--sample_factory", action="store_true",
                        help=f"Also run Sample Factory {SF_VERSION} (installed once into "
                             f"{sf_venv_dir()})")
    parser.add_argument("--sf_python", metavar="PATH", default=None,
                        help="A Python that already has Sample Factory (and its example's "
                             "packages: ale-py for Atari, vizdoom for doom_*), used instead of "
                             "the cached virtual environment: for a machine without internet access or with its own CUDA build of "
                             "torch (default: install into the cached one)")
    parser.add_argument("--sf_batched_sampling", type=parse_bool, default=None, metavar="BOOL",
                        help="Sample Factory's --batched_sampling (default: asyncrl's "
                             "--batched_sampling, so that both run the same configuration)")
    parser.add_argument("--target_return", type=_finite_float, default=None, metavar="X",
                        help="Also report, for each training run, the seconds from its process "
                             "start to its first status line whose average episode return (over "
                             "the last 100 episodes, as each system reports it) is X or more, and "
                             "its env frames then (default: none)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="Also write the figures to this JSON file")
    return parser


@dataclass(frozen=True)
class Plan:
    env: str
    seconds: int
    num_workers: int
    num_envs_per_worker: int
    train_args: list[str]  # asyncrl.train arguments, without env, experiment, folder and time
    cfg: Any  # the resolved asyncrl Config of the training run
    learner_limit: bool
    sample_factory: bool
    sf_batched_sampling: bool
    sf_python: Path | None
    json_path: Path | None
    target_return: float | None


def make_plan(argv: Sequence[str]) -> Plan:
    argv, extras = split_at_double_dash(argv)
    args = build_parser().parse_args(argv)
    given = {a[2:].split("=", 1)[0] for a in extras if a.startswith("--")}
    for name, instead in _OWN.items():
        if name in given:
            raise UserError(f"--{name} cannot be given after --: the benchmark sets it ({instead})")
    parsed = parse_args(["--env", args.env, *extras], scope="train",
                        prog="python -m asyncrl.train")
    given = {**parsed.preset, **parsed.explicit}  # after --, on the command line or in --config
    layout = {}
    for name, default in (("num_workers", 2), ("num_envs_per_worker", 32)):
        ours, theirs = getattr(args, name), given.get(name)
        if ours is not None and theirs is not None and ours != theirs:
            where = "in the --config after --" if name not in parsed.explicit else "after --"
            raise UserError(f"--{name}={ours} and --{name}={theirs} {where} disagree: give it "
                            f"once (it applies to every system)")
        layout[name] = next(v for v in (ours, theirs, default) if v is not None)
    # The layout goes to asyncrl.train unless the parameters after -- already say it.
    layout_args = [f"--{name}={value}" for name, value in layout.items() if name not in given]
    cfg = parse_args(["--env", args.env, *layout_args, *extras], scope="train",
                     prog="python -m asyncrl.train").config()
    json_path = Path(args.json) if args.json else None
    sf_python = Path(args.sf_python) if args.sf_python else None
    if sf_python is not None and not args.sample_factory:
        raise UserError("--sf_python is the Python for --sample_factory's run: give both")
    if sf_python is not None and not (sf_python.is_file() and os.access(sf_python, os.X_OK)):
        raise UserError(f"--sf_python={args.sf_python}: no such executable file")
    if json_path is not None and not json_path.parent.is_dir():
        raise UserError(f"--json={args.json}: folder {json_path.parent} does not exist")
    return Plan(env=args.env, seconds=args.seconds, train_args=[*layout_args, *extras], cfg=cfg,
                learner_limit=args.learner_limit,
                sample_factory=args.sample_factory,
                sf_batched_sampling=(cfg.batched_sampling if args.sf_batched_sampling is None
                                     else args.sf_batched_sampling),
                sf_python=sf_python, json_path=json_path, target_return=args.target_return,
                **layout)

