"""`--env_kwargs`: keyword arguments for the env's constructor, written on the command line.

Two spellings: `key=value,key=value` (each value read as JSON where it is valid JSON, Python's
True/False/None too, else taken as a string: `is_slippery=False,map_name=8x8`) or a JSON object
(`'{"is_slippery": false}'`). The parameter keeps the text as given (so config.json shows what the
user wrote); families that build envs through a constructor call `make_with_env_kwargs`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, TypeVar

from asyncrl.utils.errors import UserError

T = TypeVar("T")

FORMS = ("give key=value,key=value (values as JSON, e.g. is_slippery=false,map_name=8x8) or a "
         "JSON object ('{\"is_slippery\": false}')")
_PYTHON_SPELLINGS = {"True": True, "False": False, "None": None}
# An item starts at a comma followed by `name=`, so that values may hold commas ([1,2]).
_ITEM_START = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")
_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '([^']+)'")


def parse_env_kwargs(text: str, name: str = "env_kwargs") -> dict[str, Any]:
    """The keyword arguments `text` spells (see the module docstring); a one-line UserError
    naming the parameter `name` and both forms for anything else."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:  # text that starts with '{' decodes to an object or not at all
            kwargs = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise _malformed(name, text, f"not a valid JSON object ({e.msg} at column {e.colno})") from None
    else:
        kwargs = {}
        for item in _ITEM_START.split(stripped):
            key, equals, value = item.partition("=")
            key = key.strip()
            if not equals or not key:
                raise _malformed(name, text, f"{item.strip()!r} is not key=value")
            if key in kwargs:
                raise _malformed(name, text, f"{key} is given twice")
            kwargs[key] = _value(value.strip())
    for key in kwargs:
        if not key.isidentifier():
            raise _malformed(name, text, f"{key!r} is not a keyword argument name")
    return kwargs


def _value(text: str) -> Any:
    if text in _PYTHON_SPELLINGS:
        return _PYTHON_SPELLINGS[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _malformed(name: str, text: str, problem: str) -> UserError:
    return UserError(f"--{name}={text}: {problem}; {FORMS}")


def env_kwargs(cfg: Any) -> dict[str, Any]:
    """The keyword arguments of cfg's --env_kwargs ({} without any)."""
    return {} if cfg.env_kwargs is None else parse_env_kwargs(cfg.env_kwargs)


def make_with_env_kwargs(make: Callable[..., T], env_name: str, cfg: Any, **fixed: Any) -> T:
    """`make(**fixed, **kwargs)` with cfg's --env_kwargs. `fixed` are the keywords the family
    sets itself (render_mode, which asyncrl.enjoy --save_video chooses; Atari's frame skipping),
    which --env_kwargs may not change. A constructor that does not take a keyword raises
    TypeError: a one-line UserError naming it."""
    kwargs = env_kwargs(cfg)
    clash = sorted(kwargs.keys() & fixed.keys())
    if clash:
        raise UserError(f"--env_kwargs: --env={env_name} sets {', '.join(clash)} itself "
                        f"({', '.join(f'{k}={fixed[k]!r}' for k in clash)}); it cannot be given "
                        f"in --env_kwargs")
    try:
        return make(**fixed, **kwargs)
    except TypeError as e:
        if not kwargs:
            raise
        message = (str(e).splitlines() or [""])[0]
        named = _UNEXPECTED_KEYWORD.search(message)
        refused = {named.group(1): kwargs[named.group(1)]} if named and named.group(1) in kwargs \
            else kwargs
        items = ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in refused.items())
        raise UserError(f"--env_kwargs: {env_name} does not accept {items} "
                        f"(TypeError: {message})") from None
