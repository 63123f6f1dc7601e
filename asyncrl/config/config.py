"""The typed, immutable configuration object built from the parameter table."""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from typing import Any, Iterable, Mapping

from asyncrl.config.params import Param
from asyncrl.utils.errors import UserError


def _annotation(p: Param) -> Any:
    item = tuple[p.type, ...] if p.is_list else p.type
    return (item | None) if p.optional else item


@lru_cache(maxsize=None)
def _config_class(fields: tuple[tuple[str, Any], ...]) -> type:
    return dataclasses.make_dataclass("Config", fields, frozen=True, bases=(ConfigBase,))


class ConfigBase:
    """Attribute access to every parameter; immutable (a new object per change, never edited).
    List parameters are tuples here and lists in `to_dict()` (JSON)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _copy_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> "ConfigBase":
        return dataclasses.replace(self, **changes)


def _copy_value(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def make_config(params: Iterable[Param], values: Mapping[str, Any]) -> ConfigBase:
    """Checks every value against its parameter row and builds the immutable Config."""
    params = tuple(params)
    checked = {p.name: check_value(p, values[p.name]) for p in params}
    fields = tuple((p.name, _annotation(p)) for p in params)
    return _config_class(fields)(**checked)


def check_value(param: Param, value: Any) -> Any:
    """Returns the value in its canonical type, or raises UserError naming what is allowed."""
    if value is None:
        if param.optional:
            return None
        raise UserError(f"--{param.name} is required: {param.help}")
    if param.is_list:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise UserError(f"--{param.name} must be a list of {param.type.__name__}, got {value!r}")
        # A tuple, so that a Config is immutable all the way down.
        return tuple(_check_scalar(param, item) for item in value)
    return _check_scalar(param, value)


def _check_scalar(param: Param, value: Any) -> Any:
    kind = param.type
    if kind is bool:
        if not isinstance(value, bool):
            raise UserError(f"--{param.name} must be true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise UserError(f"--{param.name} must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"--{param.name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"--{param.name}={value} is not allowed (a finite number is)")
    elif not isinstance(value, str):
        raise UserError(f"--{param.name} must be a string, got {value!r}")
    if param.choices is not None and value not in param.choices:
        allowed = ", ".join(str(c) for c in param.choices)
        raise UserError(f"--{param.name}={value} is not allowed (choose from: {allowed})")
    if param.minimum is not None and value < param.minimum:
        raise UserError(f"--{param.name}={value} is too small (minimum {param.minimum:g})")
    if param.maximum is not None and value > param.maximum:
        raise UserError(f"--{param.name}={value} is too large (maximum {param.maximum:g})")
    return value
