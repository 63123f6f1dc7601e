"""Env families: how an env name becomes an env, with the parameters and defaults it brings.

A family answers `matches(env_name)`, builds envs with `make_env(env_name, cfg, env_index)` (and,
for `--batched_sampling`, vectors of them with `make_vector_env`) and may add parameters
(`extra_params`) and change defaults (`default_overrides`, e.g. a tuned preset). A make_env that
also takes a `render_mode` keyword can record videos (`asyncrl.enjoy --save_video`); one that
passes `--env_kwargs` on to the env's constructor says so (`takes_env_kwargs`), the others refuse
them. Families registered later take precedence, so users can override the built-in ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import RecordEpisodeStatistics
from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecordEpisodeStatistics

from asyncrl.envs.family import EnvFamily, MakeEnv, import_module_of_env
from asyncrl.utils.errors import UserError

_FAMILIES: list[EnvFamily] = []


def register_env_family(family: EnvFamily) -> None:
    """Adds a family; it takes precedence over every family registered before it."""
    _FAMILIES.insert(0, family)


def find_env_family(env_name: str) -> EnvFamily:
    """The family that builds `env_name`, or a UserError that names similar known envs.
    A family that matches the whole name comes first (`pettingzoo:<module>`); otherwise
    `module:EnvId` imports `module` (which registers EnvId), then builds EnvId."""
    _load_builtin_families()
    family = _matching_family(env_name)
    if family is not None:
        return family
    if ":" in env_name:
        return _imported_env_family(env_name)
    raise UserError(f"--env={env_name}: unknown environment{_similar_envs(env_name)}")


def _matching_family(env_name: str) -> EnvFamily | None:
    return next((family for family in _FAMILIES if family.matches(env_name)), None)


def _similar_envs(env_name: str) -> str:
    known = sorted({name for family in _FAMILIES for name in family.known_names()})
    similar = difflib.get_close_matches(env_name, known, n=5, cutoff=0.5)
    return f"; similar registered envs: {', '.join(similar)}" if similar else ""


def split_module_env_name(env_name: str) -> tuple[str, str]:
    """'my_package.envs:MyEnv-v0' -> ('my_package.envs', 'MyEnv-v0')."""
    module, _, env_id = env_name.partition(":")
    if not module or not env_id or ":" in env_id:
        raise UserError(f"--env={env_name}: expected module:EnvId, e.g. my_package.envs:MyEnv-v0")
    return module, env_id


def import_env_module(env_name: str) -> str:
    """Imports the module of a `module:EnvId` env name and returns EnvId. A no-op when the
    module is imported already (as in forked worker processes); a spawned process registers the
    id here."""
    module, env_id = split_module_env_name(env_name)
    import_module_of_env(env_name, module)
    return env_id


def _imported_env_family(env_name: str) -> EnvFamily:
    """The family of EnvId once its module is imported, building envs under the full name (so
    every process imports the module before making the env)."""
    env_id = import_env_module(env_name)
    family = _matching_family(env_id)
    if family is None:
        raise UserError(f"--env={env_name}: no env {env_id} is registered after importing "
                        f"{env_name.partition(':')[0]}{_similar_envs(env_id)}")
    imported = _ImportedEnv(family)
    return dataclasses.replace(
        family, matches=lambda name: name == env_name, make_env=imported.make_env,
        make_vector_env=imported.make_vector_env if family.make_vector_env else None)


@dataclass(frozen=True)
class _ImportedEnv:
    """make_env and make_vector_env of `module:EnvId`: import the module, then build EnvId with
    the family that matches it."""

    family: EnvFamily

    def make_env(self, env_name: str, cfg: Any, env_index: int, **render_mode: Any) -> gym.Env:
        return self.family.make_env(import_env_module(env_name), cfg, env_index, **render_mode)

    def make_vector_env(self, env_name: str, cfg: Any, first_env_index: int,
                        num_envs: int) -> gym.vector.VectorEnv:
        return self.family.make_vector_env(import_env_module(env_name), cfg, first_env_index,
                                           num_envs)


def make_env(family: EnvFamily, env_name: str, cfg: Any, env_index: int,
             render_mode: str | None = None) -> gym.Env:
    """An env of the family, with gymnasium's RecordEpisodeStatistics around it when
    --use_record_episode_statistics needs one and the family did not put one inside.
    `render_mode` (e.g. 'rgb_array') needs a family whose make_env takes it."""
    if render_mode is None:
        env = family.make_env(env_name, cfg, env_index)
    elif _takes_render_mode(family.make_env):
        env = family.make_env(env_name, cfg, env_index, render_mode=render_mode)
    else:
        raise UserError(f"--env={env_name}: the make_env of env family {family.name} takes no "
                        f"render_mode, so it cannot render frames")
    if cfg.use_record_episode_statistics and not _has_wrapper(env, RecordEpisodeStatistics):
        from asyncrl.envs.vector import is_multiagent

        if is_multiagent(env):
            env.close()
            raise UserError(f"--use_record_episode_statistics: --env={env_name} is a multi-agent "
                            f"env, whose rewards gymnasium's RecordEpisodeStatistics cannot sum "
                            f"(asyncrl sums each agent's own)")
        env = RecordEpisodeStatistics(env)
    return env


def make_vector_env(family: EnvFamily, env_name: str, cfg: Any, first_env_index: int,
                    num_envs: int) -> gym.vector.VectorEnv:
    """The family's own vector env, else its envs (`make_env`) in a gymnasium SyncVectorEnv;
    with --env_backend=envpool an EnvPool of them."""
    if cfg.env_backend == "envpool":
        from asyncrl.envs.envpool_backend import make_envpool_vector_env

        return make_envpool_vector_env(family.name, env_name, cfg, first_env_index, num_envs)
    if family.make_vector_env is None:
        return gym.vector.SyncVectorEnv(
            [functools.partial(make_env, family, env_name, cfg, first_env_index + i)
             for i in range(num_envs)])
    vector = family.make_vector_env(env_name, cfg, first_env_index, num_envs)
    if cfg.use_record_episode_statistics and not _has_wrapper(vector, VectorRecordEpisodeStatistics):
        vector = VectorRecordEpisodeStatistics(vector)
    return vector


def _takes_render_mode(make: MakeEnv) -> bool:
    parameters = inspect.signature(make).parameters.values()
    return any(p.name == "render_mode" or p.kind is p.VAR_KEYWORD for p in parameters)


def _has_wrapper(env: Any, wrapper: type) -> bool:
    while not isinstance(env, wrapper):
        env = getattr(env, "env", None)
        if env is None:
            return False
    return True


def env_frames_per_step(cfg: Any) -> int:
    """How many env steps one agent step counts for: env_frameskip when the family has frame
    skipping (FRAMESKIP_PARAMS: Atari, Doom) and summaries_use_frameskip is on, else 1."""
    if getattr(cfg, "summaries_use_frameskip", False):
        return int(getattr(cfg, "env_frameskip", 1))
    return 1


_builtins_loaded = False


def _load_builtin_families() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from asyncrl.envs.gym_envs import BUILTIN_FAMILIES

        # Built-ins go last so that a user's family always takes precedence.
        _FAMILIES.extend(BUILTIN_FAMILIES)
