"""What an env family is (see registry.py for how a name finds one), and what the families share:
the one-line message for a missing package, importing the module an env name names, and the
frame-skipping parameters. The families (gym_envs.py, atari.py, ...) build on this module; the
registry builds on them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Mapping

import gymnasium as gym

from asyncrl.config.params import Param
from asyncrl.utils.errors import UserError

MakeEnv = Callable[..., gym.Env]  # (env name, cfg, env index[, render_mode=...]) -> env
# (env name, cfg, index of the first env, number of envs) -> a gymnasium VectorEnv
MakeVectorEnv = Callable[[str, Any, int, int], gym.vector.VectorEnv]


@dataclass(frozen=True)
class EnvFamily:
    name: str
    matches: Callable[[str], bool]
    make_env: MakeEnv
    # None: a SyncVectorEnv of `make_env` envs
    make_vector_env: MakeVectorEnv | None = None
    extra_params: tuple[Param, ...] = ()
    default_overrides: Mapping[str, Any] = field(default_factory=dict)
    # Names shown when suggesting similar env ids for a typo.
    known_names: Callable[[], list[str]] = list
    # Whether make_env passes --env_kwargs to the env's constructor (else they are refused).
    takes_env_kwargs: bool = False


def import_module_of_env(env_name: str, module: str) -> ModuleType:
    """Imports `module`, which --env=env_name names; whatever the module raises (its own errors
    too) is a one-line UserError."""
    try:
        return importlib.import_module(module)
    except Exception as e:
        message = (str(e).splitlines() or [""])[0]
        raise UserError(f"--env={env_name}: cannot import module {module} "
                        f"({type(e).__name__}: {message})") from None


def missing_extra_message(env_name: str, extra: str) -> str:
    """One line for an env whose package is missing: the asyncrl extra that installs it."""
    return f"--env={env_name} needs the '{extra}' extra, which is not installed: " \
           f"pip install 'asyncrl[{extra}]'"


# The parameters of the families that repeat each action for several frames (atari, doom): one
# definition, so that both read the same flags the same way.
_FRAMESKIP_GROUP = "frame skipping (the atari and doom env families)"
FRAMESKIP_PARAMS: tuple[Param, ...] = (
    Param("env_frameskip", int, 1, "Repeat each action for this many frames of the game (the "
          "rewards summed); with summaries_use_frameskip, env steps, FPS and train_for_env_steps "
          "count frames", _FRAMESKIP_GROUP, minimum=1),
    Param("summaries_use_frameskip", bool, True, "Count env steps in frames of the game (agent "
          "steps x env_frameskip) for the summaries, FPS, checkpoints and train_for_env_steps; "
          "False counts agent steps", _FRAMESKIP_GROUP),
)
