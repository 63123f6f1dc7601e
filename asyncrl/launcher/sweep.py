"""A sweep: one base command line and the variants to run it with (a grid, explicit variants, or
both), read from a Python or YAML file and turned into one experiment folder and command each.

Python (the file defines `SWEEP`):

    from asyncrl.launcher import Sweep
    SWEEP = Sweep(name="cartpole_lr_bs", base="--env=CartPole-v1 --train_for_env_steps=20000",
                  grid={"learning_rate": [1e-4, 1e-3], "batch_size": [64, 256]})

YAML: the same fields as keys (`name` defaults to the file's name without its extension).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from asyncrl.utils.errors import UserError

SWEEP_VARIABLE = "SWEEP"
DEFAULT_COMMAND = "python -m asyncrl.train"
SWEEP_RECORD = "sweep.json"  # in the sweep folder: what --status needs without the sweep file
# Parameters a sweep may not set, and why.
LAUNCHER_OWNED = {
    "experiment": "the launcher names each variant's experiment",
    "train_dir": "the launcher puts the variants in <--train_dir>/<sweep name>",
    "restart_behavior": "the launcher resumes unfinished experiments and skips finished ones",
    "help": "it is not a parameter",
}
_PYTHON_NAMES = ("python", "python3")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]")
_YAML_KEYS = ("name", "base", "grid", "variants", "short", "command")


@dataclass(frozen=True)
class Sweep:
    """`base`: the fixed part of the command line (`--env=...` and fixed parameters), a string or
    a list of arguments. `grid`: parameter -> list of values; every combination is a variant.
    `variants`: explicit variants (parameter -> value each); with a grid too, each explicit
    variant is combined with every grid point. `short`: parameter -> its short form in experiment
    names. `command`: the program; a leading `python` is the interpreter the launcher runs on."""

    name: str
    base: str | Sequence[str]
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    variants: Sequence[Mapping[str, Any]] = ()
    short: Mapping[str, str] = field(default_factory=dict)
    command: str = DEFAULT_COMMAND


@dataclass(frozen=True)
class Variant:
    name: str  # also the experiment's folder name
    params: dict[str, Any]  # the sweep's parameters for this variant
    args: list[str]  # the command line after the program: base, params, train_dir, experiment
    exp_dir: Path


@dataclass(frozen=True)
class Plan:
    """A sweep resolved against a train_dir: what every backend runs."""

    name: str
    program: list[str]  # e.g. ["python", "-m", "asyncrl.train"]
    sweep_dir: Path  # <train_dir>/<sweep name>, absolute
    param_names: list[str]  # every parameter the variants set, in the sweep's order
    variants: list[Variant]

    def command(self, variant: Variant, python: str) -> list[str]:
        """The exact command of one variant, `python` standing for a leading python/python3."""
        program = list(self.program)
        if program[0] in _PYTHON_NAMES:
            program[0] = python
        return program + variant.args

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "program": self.program, "param_names": self.param_names,
                "variants": [{"name": v.name, "params": v.params, "args": v.args,
                              "exp_dir": str(v.exp_dir)} for v in self.variants]}


def plan_from_record(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text())
        return Plan(name=data["name"], program=list(data["program"]), sweep_dir=path.parent.resolve(),
                    param_names=list(data["param_names"]),
                    variants=[Variant(v["name"], dict(v["params"]), list(v["args"]), Path(v["exp_dir"]))
                              for v in data["variants"]])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}: {e}") from None


def load_sweep(path: str) -> Sweep:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: no such sweep file (a .py file defining {SWEEP_VARIABLE}, "
                        "or a .yaml/.yml file)")
    if file.suffix == ".py":
        return _load_python(file)
    if file.suffix in (".yaml", ".yml"):
        return _load_yaml(file)
    raise UserError(f"{path}: a sweep file is a .py file defining {SWEEP_VARIABLE} or a .yaml/.yml file")


def _load_python(file: Path) -> Sweep:
    spec = importlib.util.spec_from_file_location(f"asyncrl_sweep_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    # As when running the file: its own folder is importable (e.g. a shared base command line).
    sys.path.insert(0, str(file.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the sweep file is the user's code: report it in one line
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) else ""
        raise UserError(f"cannot load {file}: {type(e).__name__}: {e}{where}") from None
    finally:
        sys.path.remove(str(file.resolve().parent))
    sweep = getattr(module, SWEEP_VARIABLE, None)
    if not isinstance(sweep, Sweep):
        raise UserError(f"{file} must define {SWEEP_VARIABLE} = asyncrl.launcher.Sweep(...)")
    return sweep


def _load_yaml(file: Path) -> Sweep:
    import yaml

    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        reason = str(e).replace("\n", " ")
        raise UserError(f"cannot read {file}: {reason}") from None
    if not isinstance(data, dict):
        raise UserError(f"{file}: a YAML sweep is a mapping with keys {', '.join(_YAML_KEYS)}")
    unknown = sorted(set(data) - set(_YAML_KEYS))
    if unknown:
        raise UserError(f"{file}: unknown key {unknown[0]!r}; allowed: {', '.join(_YAML_KEYS)}")
    if "base" not in data:
        raise UserError(f"{file}: 'base' (the fixed command line, e.g. --env=CartPole-v1) is required")
    fields = {k: v for k, v in data.items() if v is not None}
    fields.setdefault("name", file.stem)
    return Sweep(**fields)


def plan_sweep(sweep: Sweep, train_dir: Path) -> Plan:
    """Checks the sweep and gives every variant its name, folder and command line."""
    if not isinstance(sweep.name, str) or not _FOLDER_NAME.match(sweep.name):
        raise UserError(f"sweep name {sweep.name!r}: use letters, digits and . _ + = - (it names a folder)")
    base = _as_args(sweep.base, "base")
    program = _as_args(sweep.command, "command")
    if not program:
        raise UserError("sweep command is empty; the default is " + DEFAULT_COMMAND)
    combinations = _combinations(sweep)
    param_names = list(dict.fromkeys(name for c in combinations for name in c))
    base_names = _arg_names(base)
    for name in param_names + base_names:
        if name in LAUNCHER_OWNED:
            raise UserError(f"--{name} cannot be set in a sweep: {LAUNCHER_OWNED[name]}")
    for name in param_names:
        if name in base_names:
            raise UserError(f"--{name} is both in the sweep's base command line and among its variants")
    short = _short_names(param_names, sweep.short)
    sweep_dir = train_dir.resolve() / sweep.name
    variants = []
    for params in combinations:
        name = "_".join(f"{short[k]}{_name_value(v)}" for k, v in params.items()) or "base"
        args = base + [_param_arg(k, v) for k, v in params.items()]
        args += [f"--train_dir={sweep_dir}", f"--experiment={name}"]
        variants.append(Variant(name, params, args, sweep_dir / name))
    seen = Counter(v.name for v in variants)
    twice = next((name for name, n in seen.items() if n > 1), None)
    if twice:
        raise UserError(f"two variants of the sweep are both named {twice!r}: make their values "
                        "differ after the name's character clean-up, or drop the duplicate")
    plan = Plan(sweep.name, program, sweep_dir, param_names, variants)
    if program == shlex.split(DEFAULT_COMMAND):
        _validate_train_args(plan)
    return plan


def _as_args(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(a, str) for a in value):
        return list(value)
    raise UserError(f"sweep {what} must be a string or a list of strings, got {value!r}")


def _arg_names(args: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0] if a.startswith("--") else "help" for a in args
            if a.startswith("--") or a == "-h"]


def _combinations(sweep: Sweep) -> list[dict[str, Any]]:
    grid = sweep.grid
    if not isinstance(grid, Mapping):
        raise UserError(f"sweep grid must map parameter names to lists of values, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise UserError(f"sweep grid: {name} must have a non-empty list of values, got {values!r}")
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    explicit = list(sweep.variants)
    for variant in explicit:
        if not isinstance(variant, Mapping):
            raise UserError(f"sweep variants: each one maps parameter names to values, got {variant!r}")
        both = sorted(set(variant) & set(grid))
        if both:
            raise UserError(f"--{both[0]} is both in the sweep grid and in an explicit variant")
    return [{**variant, **point} for variant in explicit or [{}] for point in points]


def _default_short(param: str) -> str:
    words = [w for w in param.split("_") if w]
    return words[0] if len(words) == 1 else "".join(w[0] for w in words)


def _short_names(params: list[str], given: Mapping[str, str]) -> dict[str, str]:
    """Initials of the words (learning_rate -> lr), one-word names whole (seed); parameters whose
    initials clash are written in full; `given` sets any of them."""
    for param, short in given.items():
        if not isinstance(short, str) or not _FOLDER_NAME.match(short):
            raise UserError(f"sweep short name for {param}: {short!r} is not letters, digits and . _ + = -")
    defaults = {p: _default_short(p) for p in params if p not in given}
    counts = Counter(list(defaults.values()) + [given[p] for p in params if p in given])
    names = {p: given[p] if p in given else (d if counts[d] == 1 else p)
             for p, d in ((p, defaults.get(p)) for p in params)}
    clash = next((s for s, n in Counter(names.values()).items() if n > 1), None)
    if clash:
        raise UserError(f"sweep short names: {clash!r} stands for two parameters; give each its own")
    return names


def format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(format_value, value))
    return str(value)


def _name_value(value: Any) -> str:
    return _UNSAFE_NAME_CHARS.sub("-", format_value(value))


def _param_arg(name: str, value: Any) -> str:
    return f"--{name}={format_value(value)}"


def _validate_train_args(plan: Plan) -> None:
    """Every variant through asyncrl.train's own parser: a typo fails now, not in N runs."""
    from asyncrl.envs.command_line import parse_args

    for variant in plan.variants:
        try:
            parse_args(variant.args, scope="train", prog=DEFAULT_COMMAND).config()
        except UserError as e:
            raise UserError(f"sweep {plan.name}, variant {variant.name}: {e}") from None
