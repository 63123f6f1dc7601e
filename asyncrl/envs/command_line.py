"""A command line of asyncrl.train or asyncrl.enjoy, read for its env: the family of `--env` (from
the command line or the preset file) adds its parameters and defaults to the table's, and checks
what only it can check (constructor keyword arguments, EnvPool)."""

from __future__ import annotations

import functools
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from asyncrl.config.config import ConfigBase, make_config
from asyncrl.config.params import Param
from asyncrl.config.parser import (ENV_PARAM, build_argparser, convert, family_defaults, file_value,
                                   find_cli_value, params_in_scope, preset_values, read_preset_file,
                                   unknown_argument_message)
from asyncrl.config.validate import validate_config
from asyncrl.envs.env_kwargs import parse_env_kwargs
from asyncrl.envs.family import EnvFamily
from asyncrl.envs.registry import find_env_family
from asyncrl.utils.errors import UserError


@dataclass(frozen=True)
class ParsedArgs:
    """What one command line asked for, before any stored experiment config is applied."""

    params: tuple[Param, ...]
    family: EnvFamily
    defaults: dict[str, Any]  # table defaults with the family's overrides
    preset: dict[str, Any]  # the values of the --config file that apply to this entry point
    preset_path: str | None  # the --config file as given
    explicit: dict[str, Any]  # only the parameters written on the command line
    command_line: str

    def config(self, stored: dict[str, Any] | None = None) -> ConfigBase:
        """Defaults, then a stored config (when resuming), then the preset file, then this
        command line."""
        values = dict(self.defaults)
        if stored:
            # A stored config holds every parameter of the version that wrote it: one it lacks is
            # newer, and its table default is what that version did (a family preset may since
            # have turned it on, as the Atari family did episodic_life).
            values.update({p.name: p.default for p in self.params if p.name not in stored})
            values.update({k: v for k, v in stored.items() if k in values})
        values.update(self.preset)
        values.update(self.explicit)
        cfg = make_config(self.params, values)
        validate_config(cfg, functools.partial(check_env_family, family=self.family))
        return cfg

    def override_sources(self) -> dict[str, str]:
        """Parameter -> where its value was given (the preset file or the command line)."""
        sources = {name: f"--config={self.preset_path}" for name in self.preset}
        sources.update({name: "the command line" for name in self.explicit})
        return sources


def parse_args(argv: Sequence[str] | None, scope: str, prog: str) -> ParsedArgs:
    """Parses a command line of `scope` ('train' or 'enjoy'). `--help` prints and exits 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    preset_path = find_cli_value(argv, "config")
    preset_file = read_preset_file(preset_path) if preset_path is not None else {}
    env_name = find_cli_value(argv, "env")
    if env_name is None and "env" in preset_file:
        env_name = file_value(ENV_PARAM, preset_file["env"], preset_path)
    wants_help = any(a in ("-h", "--help") for a in argv)
    family = find_env_family(env_name) if env_name is not None else None
    params = params_in_scope(scope, family)
    defaults = family_defaults(params, family)
    preset = preset_values(preset_file, preset_path, scope, family) if preset_path else {}
    parser = build_argparser(params, {**defaults, **preset}, prog)
    if wants_help:
        parser.print_help()
        raise SystemExit(0)

    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        raise UserError(unknown_argument_message(unknown[0], params))
    explicit = {p.name: convert(p, getattr(namespace, p.name))
                for p in params if hasattr(namespace, p.name)}
    if env_name is None or family is None:
        raise UserError("--env is required, e.g. --env=CartPole-v1 (or env: in the --config file)")
    return ParsedArgs(params=params, family=family, defaults=defaults, preset=preset,
                      preset_path=preset_path, explicit=explicit,
                      command_line=shlex.join([prog, *argv]))


def check_env_family(cfg: Any, family: EnvFamily) -> None:
    """The checks of a config that only its env family can make."""
    _validate_env_kwargs(cfg, family)
    if getattr(cfg, "env_backend", "builtin") == "envpool":  # a training parameter
        from asyncrl.envs.envpool_backend import envpool_config

        envpool_config(family.name, cfg.env, cfg)


def _validate_env_kwargs(cfg: Any, family: EnvFamily) -> None:
    """--env_kwargs (and --eval_env_kwargs) are well-formed, and the family passes them on: never
    silently ignored."""
    for name in ("env_kwargs", "eval_env_kwargs"):
        text = getattr(cfg, name, None)  # evaluation (asyncrl.enjoy) has no eval_env_kwargs
        if text is None:
            continue
        parse_env_kwargs(text, name)
        if not family.takes_env_kwargs:
            raise UserError(f"--{name}: --env={cfg.env} (env family {family.name}) takes no "
                            f"constructor keyword arguments; leave --{name} out (or None)")
