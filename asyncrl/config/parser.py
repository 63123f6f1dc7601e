"""Command line -> parameters, generated from the parameter table (config/params.py).

Resolution order of a value: table default < env family default override < command line.
(Resuming an experiment puts its stored config.json between the last two: experiment/.)
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from asyncrl.config.config import ConfigBase, check_value, make_config
from asyncrl.config.params import PARAMS, Param
from asyncrl.envs.registry import EnvFamily, find_env_family
from asyncrl.utils.errors import UserError

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


@dataclass(frozen=True)
class ParsedArgs:
    """What one command line asked for, before any stored experiment config is applied."""

    params: tuple[Param, ...]
    family: EnvFamily
    defaults: dict[str, Any]  # table defaults with the family's overrides
    explicit: dict[str, Any]  # only the parameters written on the command line
    command_line: str

    def config(self, stored: dict[str, Any] | None = None) -> ConfigBase:
        """Defaults, then a stored config (when resuming), then this command line."""
        values = dict(self.defaults)
        if stored:
            values.update({k: v for k, v in stored.items() if k in values})
        values.update(self.explicit)
        cfg = make_config(self.params, values)
        from asyncrl.config.validate import validate_config

        validate_config(cfg)
        return cfg


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit; we want one line
        raise UserError(message)


def params_in_scope(scope: str, family: EnvFamily | None) -> tuple[Param, ...]:
    params = [p for p in PARAMS if p.scope in ("all", scope)]
    if family is not None:
        names = {p.name for p in params}
        for extra in family.extra_params:
            if extra.name in names:
                raise ValueError(f"env family {family.name} redefines parameter {extra.name}")
            params.append(extra)
    return tuple(params)


def family_defaults(params: Sequence[Param], family: EnvFamily | None) -> dict[str, Any]:
    defaults = {p.name: p.default for p in params}
    if family is not None:
        known = {p.name for p in PARAMS} | {p.name for p in family.extra_params}
        for name, value in family.default_overrides.items():
            if name not in known:
                raise ValueError(f"env family {family.name} overrides unknown parameter {name}")
            if name in defaults:  # parameters of another entry point's scope do not apply here
                defaults[name] = value
    return defaults


def build_argparser(params: Sequence[Param], defaults: dict[str, Any], prog: str) -> _Parser:
    parser = _Parser(prog=prog, allow_abbrev=False, add_help=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS,
                        help="Show this help (with --env: including that env's parameters)")
    groups: dict[str, Any] = {}
    for p in params:
        group = groups.get(p.group) or groups.setdefault(p.group, parser.add_argument_group(p.group))
        default = defaults[p.name]
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        extra = f" (choices: {', '.join(map(str, p.choices))})" if p.choices else ""
        group.add_argument(f"--{p.name}", dest=p.name, default=argparse.SUPPRESS,
                           nargs="*" if p.is_list else None, metavar=p.type.__name__.upper(),
                           # argparse %-formats help texts: a literal % must be doubled
                           help=f"{p.help}{extra} (default: {shown})".replace("%", "%%"))
    return parser


def _convert(param: Param, raw: Any) -> Any:
    if param.is_list:
        tokens = [t for item in raw for t in item.split(",") if t != ""]
        if param.optional and tokens == ["None"]:
            return None
        value: Any = [_convert_scalar(param, t) for t in tokens]
    elif param.optional and raw == "None":
        return None
    else:
        value = _convert_scalar(param, raw)
    return check_value(param, value)


def _convert_scalar(param: Param, text: str) -> Any:
    if param.type is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UserError(f"--{param.name}={text} is not a boolean (use true/false or 1/0)")
    if param.type is int:
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)  # accept 1e6 for step counts
            except ValueError:
                number = None
            if number is None or not number.is_integer():
                raise UserError(f"--{param.name}={text} is not an integer") from None
            return int(number)
    if param.type is float:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"--{param.name}={text} is not a number") from None
    return text


def _find_env_name(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--env="):
            return arg.split("=", 1)[1]
        if arg == "--env" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def parse_args(argv: Sequence[str] | None, scope: str, prog: str) -> ParsedArgs:
    """Parses a command line of `scope` ('train' or 'enjoy'). `--help` prints and exits 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env_name = _find_env_name(argv)
    wants_help = any(a in ("-h", "--help") for a in argv)
    family = find_env_family(env_name) if env_name is not None else None
    params = params_in_scope(scope, family)
    defaults = family_defaults(params, family)
    parser = build_argparser(params, defaults, prog)
    if wants_help:
        parser.print_help()
        raise SystemExit(0)

    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        raise UserError(_unknown_argument_message(unknown[0], params))
    explicit = {p.name: _convert(p, getattr(namespace, p.name))
                for p in params if hasattr(namespace, p.name)}
    if env_name is None or family is None:
        raise UserError("--env is required, e.g. --env=CartPole-v1")
    return ParsedArgs(params=params, family=family, defaults=defaults, explicit=explicit,
                      command_line=shlex.join([prog, *argv]))


def _unknown_argument_message(arg: str, params: Sequence[Param]) -> str:
    name = arg.split("=", 1)[0]
    if not name.startswith("--"):
        return f"unexpected argument {arg!r}: parameters are given as --name=value or --name value"
    names = [p.name for p in params]
    close = difflib.get_close_matches(name[2:], names, n=1, cutoff=0.6)
    hint = f"; did you mean --{close[0]}?" if close else "; see --help for the list"
    return f"unknown parameter {name}{hint}"
