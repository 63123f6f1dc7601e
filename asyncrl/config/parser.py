"""Command line -> parameters, generated from the parameter table (config/params.py), with the
parameters and defaults of an env family (`FamilyParams`) when there is one. `parse_args`
(envs/command_line.py) finds the family of a command line's --env and parses it with these.

Resolution order of a value: table default < env family default override < preset file
(`--config=preset.yaml`) < command line. (Resuming an experiment puts its stored config.json
right after the family's overrides: a preset given again on resume overrides stored values, as the
command line does.)
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from asyncrl.config.config import check_value
from asyncrl.config.params import PARAMS, Param
from asyncrl.utils.arguments import OneLineParser, parse_bool
from asyncrl.utils.errors import UserError

class FamilyParams(Protocol):
    """What the parser needs of an env family (asyncrl.envs.family.EnvFamily)."""

    name: str
    extra_params: tuple[Param, ...]
    default_overrides: Mapping[str, Any]


def params_in_scope(scope: str, family: FamilyParams | None) -> tuple[Param, ...]:
    params = [p for p in PARAMS if p.scope in ("all", scope)]
    if family is not None:
        names = {p.name for p in params}
        for extra in family.extra_params:
            if extra.name in names:
                raise ValueError(f"env family {family.name} redefines parameter {extra.name}")
            params.append(extra)
    return tuple(params)


def family_defaults(params: Sequence[Param], family: FamilyParams | None) -> dict[str, Any]:
    defaults = {p.name: p.default for p in params}
    if family is not None:
        known = {p.name for p in PARAMS} | {p.name for p in family.extra_params}
        for name, value in family.default_overrides.items():
            if name not in known:
                raise ValueError(f"env family {family.name} overrides unknown parameter {name}")
            if name in defaults:  # parameters of another entry point's scope do not apply here
                defaults[name] = value
    return defaults


def build_argparser(params: Sequence[Param], defaults: dict[str, Any], prog: str) -> OneLineParser:
    parser = OneLineParser(prog=prog, allow_abbrev=False, add_help=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS,
                        help="Show this help (with --env: including that env's parameters)")
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="YAML preset file: a mapping of parameter names to values, applied "
                             "over the env's defaults; parameters on the command line override it")
    groups: dict[str, Any] = {}
    for p in params:
        group = groups.get(p.group) or groups.setdefault(p.group, parser.add_argument_group(p.group))
        default = defaults[p.name]
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        extra = f" (choices: {', '.join(map(str, p.choices))})" if p.choices else ""
        group.add_argument(f"--{p.name}", dest=p.name, default=argparse.SUPPRESS,
                           nargs="*" if p.is_list else None, metavar=p.type.__name__.upper(),
                           # argparse %-formats help texts: a literal % must be doubled
                           help=f"{p.help}{extra} (default: {shown})".replace("%", "%%"))
    return parser


def convert(param: Param, raw: Any) -> Any:
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
        try:
            return parse_bool(text)
        except argparse.ArgumentTypeError:
            raise UserError(f"--{param.name}={text} is not a boolean (use true/false or 1/0)") from None
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


def find_cli_value(argv: Sequence[str], name: str) -> str | None:
    """The last value of `--name` on a command line (argparse keeps the last one too)."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def unknown_argument_message(arg: str, params: Sequence[Param]) -> str:
    name = arg.split("=", 1)[0]
    if not name.startswith("--"):
        return f"unexpected argument {arg!r}: parameters are given as --name=value or --name value"
    return f"unknown parameter {name}{_did_you_mean(name[2:], params, '--')}"


def _did_you_mean(name: str, params: Sequence[Param], prefix: str) -> str:
    close = difflib.get_close_matches(name, [p.name for p in params], n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else "; see --help for the list"


# -- preset files (--config) --------------------------------------------------------------------
ENV_PARAM = next(p for p in PARAMS if p.name == "env")


def read_preset_file(path: str) -> dict[str, Any]:
    """The mapping of a YAML preset file, as YAML reads it; a UserError naming the file for
    anything else."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UserError(f"--config={path}: cannot read it ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: not valid YAML: {problem}{where}") from None
    if data is None:  # an empty file
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a preset is a mapping of parameter names to values "
                        f"(name: value, one per line), not a {type(data).__name__}")
    for name in data:
        if not isinstance(name, str):
            raise UserError(f"{path}: parameter names are strings, got {name!r}")
    return data


def preset_values(data: dict[str, Any], path: str, scope: str,
                  family: FamilyParams | None) -> dict[str, Any]:
    """Checks every value of a preset file like the command line does and returns those of this
    entry point's scope: a training preset also serves asyncrl.enjoy, which ignores its
    train-only parameters (and the other way round)."""
    known = {p.name: p for p in (*PARAMS, *(family.extra_params if family else ()))}
    values = {}
    for name, raw in data.items():
        param = known.get(name)
        if param is None:
            raise UserError(f"{path}: unknown parameter {name}"
                            f"{_did_you_mean(name, tuple(known.values()), '')}")
        value = file_value(param, raw, path)
        if param.scope in ("all", scope):
            values[name] = value
    return values


def file_value(param: Param, raw: Any, path: str) -> Any:
    """A YAML value -> the parameter's value, with the command line's messages prefixed by the
    file's name. Strings go through the command line's conversion, so that what YAML 1.1 leaves
    as a string (3e-3, 1e6) or the command line's spellings (64,64, None) mean the same here."""
    try:
        if raw is None:
            if param.optional:
                return None
            raise UserError(f"--{param.name} cannot be null (None)")
        if param.name == "env_kwargs" and isinstance(raw, dict):
            raw = _json_object(raw)
        if isinstance(raw, str) and param.type is not str:
            return convert(param, [raw] if param.is_list else raw)
        if param.is_list and isinstance(raw, list) and param.type is not str:
            raw = [_convert_scalar(param, item) if isinstance(item, str) else item for item in raw]
        return check_value(param, raw)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def _json_object(mapping: dict[str, Any]) -> str:
    """A YAML mapping -> its JSON text, the form --env_kwargs stores (the only parameter that is
    a mapping)."""
    try:
        return json.dumps(mapping)
    except (TypeError, ValueError) as e:  # YAML's dates, sets, ...: JSON has no spelling for them
        raise UserError(f"--env_kwargs must map names to JSON values ({e})") from None
