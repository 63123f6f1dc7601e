"""The built-in env families: any registered gymnasium id, the ids of packages that register
theirs when imported (MiniGrid, ViZDoom), tuned presets for known tasks, Atari games
(envs/atari.py), MuJoCo tasks (envs/mujoco.py), Sample Factory's ViZDoom envs (envs/vizdoom.py),
PettingZoo's Parallel envs (envs/pettingzoo.py), the multi-agent rendezvous task
(envs/rendezvous.py) and the memory task (envs/memory.py)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from asyncrl.envs.atari import ATARI_DEFAULTS, ATARI_PARAMS, atari_names, make_atari_env, matches_atari
from asyncrl.envs.env_kwargs import make_with_env_kwargs
from asyncrl.envs.memory import MEMORY_DEFAULTS, MEMORY_PARAMS, NAME as MEMORY_NAME, make_memory_env
from asyncrl.envs.mujoco import MUJOCO_DEFAULTS, make_mujoco_env, matches_mujoco, mujoco_names
from asyncrl.envs.pettingzoo import make_pettingzoo_env, matches_pettingzoo
from asyncrl.envs.family import FRAMESKIP_PARAMS, EnvFamily, import_module_of_env, missing_extra_message
from asyncrl.envs.rendezvous import RENDEZVOUS_DEFAULTS, RENDEZVOUS_NAME, make_rendezvous
from asyncrl.envs.vizdoom import DOOM_DEFAULTS, doom_names, make_doom_env, matches_doom
from asyncrl.utils.errors import UserError

# gymnasium's env packages that need an optional dependency -> the asyncrl extra that brings it
# (MuJoCo envs are their own family, which checks for mujoco itself).
_EXTRAS = {"gymnasium.envs.box2d.": "box2d"}


def missing_dependency_message(env_name: str, error: Exception) -> str:
    """One line for an env whose dependency is missing: the asyncrl extra to install when the
    env is one of gymnasium's optional groups, else gymnasium's own hint."""
    entry_point = getattr(gym.registry.get(env_name), "entry_point", None)
    for prefix, extra in _EXTRAS.items():
        if isinstance(entry_point, str) and entry_point.startswith(prefix):
            return missing_extra_message(env_name, extra)
    hint = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"--env={env_name} needs a package that is not installed: {hint}"


def make_gym_env(env_name: str, cfg: Any, env_index: int, render_mode: str | None = None
                 ) -> gym.Env:
    try:
        return make_with_env_kwargs(functools.partial(gym.make, env_name), env_name, cfg,
                                    render_mode=render_mode)
    except gym.error.DependencyNotInstalled as e:
        raise UserError(missing_dependency_message(env_name, e)) from None


def make_gym_vector_env(env_name: str, cfg: Any, first_env_index: int, num_envs: int
                        ) -> gym.vector.VectorEnv:
    """The env's own array implementation where gymnasium has one (CartPole), else a
    SyncVectorEnv."""
    mode = "vector_entry_point" if gym.registry[env_name].vector_entry_point else "sync"
    return make_with_env_kwargs(functools.partial(gym.make_vec, env_name), env_name, cfg,
                                num_envs=num_envs, vectorization_mode=mode)


@dataclass(frozen=True)
class GymPackage:
    """gymnasium ids that a package registers when `module` is imported, usable by their plain id
    (`--env=MiniGrid-DoorKey-5x5-v0`, no `minigrid:` needed): the family imports the module in
    every process that builds an env, then builds it with gymnasium.make. `name` is the family's
    and the asyncrl extra's that installs the package."""

    name: str
    module: str
    prefixes: tuple[str, ...]  # every id of the package starts with one of them

    def _installed(self) -> bool:
        return importlib.util.find_spec(self.module.partition(".")[0]) is not None

    def matches(self, env_name: str) -> bool:
        """The package's registered ids; without the package every id that looks like one of
        them (make_env then names the extra). An unknown id with the package installed is left
        to find_env_family's similar-id suggestions."""
        if not env_name.startswith(self.prefixes):
            return False
        if not self._installed():
            return True
        self._register(env_name)
        return env_name in gym.registry

    def _register(self, env_name: str) -> None:
        if not self._installed():
            raise UserError(missing_extra_message(env_name, self.name))
        import_module_of_env(env_name, self.module)

    def names(self) -> list[str]:
        """The package's ids, for typo suggestions; none when it cannot be imported (a typo of
        another env's name must not fail on it)."""
        if not self._installed():
            return []
        try:
            importlib.import_module(self.module)
        except Exception:
            return []
        return [name for name in gym.registry if name.startswith(self.prefixes)]

    def make_env(self, env_name: str, cfg: Any, env_index: int, render_mode: str | None = None
                 ) -> gym.Env:
        self._register(env_name)
        return make_gym_env(env_name, cfg, env_index, render_mode)

    def make_vector_env(self, env_name: str, cfg: Any, first_env_index: int, num_envs: int
                        ) -> gym.vector.VectorEnv:
        self._register(env_name)
        return make_gym_vector_env(env_name, cfg, first_env_index, num_envs)

    def family(self) -> EnvFamily:
        return EnvFamily(name=self.name, matches=self.matches, make_env=self.make_env,
                         make_vector_env=self.make_vector_env, known_names=self.names,
                         takes_env_kwargs=True)


MINIGRID = GymPackage("minigrid", "minigrid", ("MiniGrid-", "BabyAI-"))
VIZDOOM = GymPackage("vizdoom", "vizdoom.gymnasium_wrapper", ("Vizdoom",))


def _is_gym_id(env_name: str) -> bool:
    return env_name in gym.registry


def _gym_ids() -> list[str]:
    return list(gym.registry.keys())


# Tuned for wall-clock time to an average return of 500 on a 2-core CPU machine: many envs per
# inference call, a small MLP, a few epochs over each batch. It reaches 500 in about 150,000 env
# steps; the budget, twice that, makes the first run a user starts end by itself with the policy
# solved. Sample Factory has no CartPole preset to compare with.
CARTPOLE_DEFAULTS: dict[str, Any] = {
    "num_workers": 2,
    "num_envs_per_worker": 32,
    "worker_num_splits": 1,
    "rollout": 32,
    "batch_size": 1024,
    "num_batches_per_epoch": 2,
    "num_epochs": 4,
    "encoder_mlp_layers": [64, 64],
    "use_rnn": False,  # as Sample Factory's CartPole example (train_gym_env.py) runs it
    "learning_rate": 3e-3,
    "gamma": 0.99,
    "value_bootstrap": True,
    "exploration_loss_coeff": 0.0,
    "save_best_after": 20_000,
    "train_for_env_steps": 300_000,
    "device": "cpu",
}

BUILTIN_FAMILIES: list[EnvFamily] = [
    EnvFamily(
        name="cartpole",
        matches=lambda name: name in ("CartPole-v0", "CartPole-v1"),
        make_env=make_gym_env,
        make_vector_env=make_gym_vector_env,
        default_overrides=CARTPOLE_DEFAULTS,
        takes_env_kwargs=True,
    ),
    EnvFamily(
        name="rendezvous",
        matches=lambda name: name == RENDEZVOUS_NAME,
        make_env=make_rendezvous,
        default_overrides=RENDEZVOUS_DEFAULTS,
        known_names=lambda: [RENDEZVOUS_NAME],
    ),
    EnvFamily(
        name="atari",
        matches=matches_atari,
        make_env=make_atari_env,
        extra_params=ATARI_PARAMS,
        default_overrides=ATARI_DEFAULTS,
        known_names=atari_names,
        takes_env_kwargs=True,
    ),
    EnvFamily(
        name="mujoco",
        matches=matches_mujoco,
        make_env=make_mujoco_env,
        default_overrides=MUJOCO_DEFAULTS,
        known_names=mujoco_names,
        takes_env_kwargs=True,
    ),
    EnvFamily(
        name="doom",
        matches=matches_doom,
        make_env=make_doom_env,
        extra_params=FRAMESKIP_PARAMS,
        default_overrides=DOOM_DEFAULTS,
        known_names=doom_names,
    ),
    EnvFamily(
        name="pettingzoo",
        matches=matches_pettingzoo,
        make_env=make_pettingzoo_env,
        takes_env_kwargs=True,
    ),
    EnvFamily(
        name=MEMORY_NAME,
        matches=lambda name: name == MEMORY_NAME,
        make_env=make_memory_env,
        extra_params=MEMORY_PARAMS,
        default_overrides=MEMORY_DEFAULTS,
        known_names=lambda: [MEMORY_NAME],
    ),
    MINIGRID.family(),
    VIZDOOM.family(),
    EnvFamily(name="gymnasium", matches=_is_gym_id, make_env=make_gym_env,
              make_vector_env=make_gym_vector_env, known_names=_gym_ids, takes_env_kwargs=True),
]
