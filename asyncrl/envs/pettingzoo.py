"""PettingZoo envs: `--env=pettingzoo:<module>` builds `<module>.parallel_env(**env_kwargs)`, e.g.
`--env=pettingzoo:mpe2.simple_spread_v3`, and steps it as an asyncrl multi-agent env.

asyncrl's multi-agent convention (envs/rendezvous.py) has a fixed row per agent and per-agent
spaces shared by all agents; reset and step take and return lists in `possible_agents` order, and
the env starts its next episode itself once every agent is done (a truncated agent's last
observation in `infos[a]["final_obs"]`). A Parallel env's agents come and go: one that has
ended (or has not entered the game yet) is absent from `agents`. Such an agent is reported as
not in the game for that step, `infos[a]["is_active"] = False`, with reward 0, no end flags and
its previous observation (zeros before it has any), and gets no action passed; the runtime leaves
these steps out of learning and of the episode statistics. The step on which an agent ends is
still active: a real transition.

A module without `parallel_env` but with a (turn-based) AEC `env` is converted with
PettingZoo's `aec_to_parallel` where its metadata says `is_parallelizable`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space, create_empty_array, iterate

from asyncrl.envs.env_kwargs import make_with_env_kwargs
from asyncrl.envs.family import import_module_of_env, missing_extra_message
from asyncrl.utils.errors import UserError

PREFIX = "pettingzoo:"
EXTRA = "pettingzoo"
_EXTRA_PACKAGES = ("pettingzoo", "mpe2")  # what `pip install 'asyncrl[pettingzoo]'` brings


def matches_pettingzoo(env_name: str) -> bool:
    return env_name.startswith(PREFIX)


class ParallelEnvAdapter(gym.Env):
    """A PettingZoo Parallel env as an asyncrl multi-agent env (see the module docstring)."""

    is_multiagent = True

    def __init__(self, parallel: Any, env_name: str):
        self.parallel = parallel
        self.possible_agents = list(parallel.possible_agents)
        if not self.possible_agents:
            raise UserError(f"--env={env_name}: the env has no agents (possible_agents is empty)")
        self.num_agents = len(self.possible_agents)
        self.observation_space = _common_space(env_name, parallel, self.possible_agents,
                                               "observation")
        self.action_space = _common_space(env_name, parallel, self.possible_agents, "action")
        self.metadata = dict(getattr(parallel, "metadata", {}))
        self.render_mode = getattr(parallel, "render_mode", None)
        self._no_obs = next(iter(iterate(batch_space(self.observation_space, 1),
                                         create_empty_array(self.observation_space, 1, np.zeros))))
        self._last_obs: list[Any] = []
        self._ended: set[Any] = set()  # agents whose episode ended in this one of the env

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[list[Any], list[dict[str, Any]]]:
        obs, infos = self.parallel.reset(seed=seed, options=options)
        self._ended = set()
        self._last_obs = [obs.get(a, self._no_obs) for a in self.possible_agents]
        return list(self._last_obs), [dict(infos.get(a, {})) for a in self.possible_agents]

    def _live(self) -> set[Any]:
        """The agents in the game now: the env lists them, and they have not ended (an env may
        list an agent for a step after its end)."""
        return set(self.parallel.agents) - self._ended

    def step(self, actions: list[Any]):
        live = self._live()
        obs, rewards, terminated, truncated, infos = self.parallel.step(
            {a: action for a, action in zip(self.possible_agents, actions) if a in live})
        out_rewards, out_terminated, out_truncated, out_infos = [], [], [], []
        for i, a in enumerate(self.possible_agents):
            if a in obs:
                self._last_obs[i] = obs[a]
            if a not in live:
                out_rewards.append(0.0)
                out_terminated.append(False)
                out_truncated.append(False)
                out_infos.append({"is_active": False})
                continue
            info = dict(infos.get(a, {}))
            ended_by_limit = bool(truncated.get(a, False)) and not terminated.get(a, False)
            if terminated.get(a, False) or ended_by_limit:
                self._ended.add(a)
            if ended_by_limit:
                info["final_obs"] = self._last_obs[i]
            out_rewards.append(float(rewards.get(a, 0.0)))
            out_terminated.append(bool(terminated.get(a, False)))
            out_truncated.append(ended_by_limit)
            out_infos.append(info)
        if self._live():
            next_obs = list(self._last_obs)
        else:  # every agent is done: the next episode starts here, as multi-agent envs do
            next_obs, _ = self.reset()
        return next_obs, out_rewards, out_terminated, out_truncated, out_infos

    def render(self) -> Any:
        return self.parallel.render()

    def close(self) -> None:
        self.parallel.close()


def _common_space(env_name: str, parallel: Any, agents: list[Any], kind: str) -> gym.Space:
    """The observation or action space (`kind`) of every agent; a UserError naming two agents
    whose spaces differ, as one policy acts for all rows."""
    space_of = getattr(parallel, f"{kind}_space")
    first = space_of(agents[0])
    for agent in agents[1:]:
        space = space_of(agent)
        if space != first:
            raise UserError(
                f"--env={env_name}: agents {agents[0]} and {agent} have different {kind} spaces "
                f"({first} and {space}), but asyncrl needs one for all agents: pad them with "
                f"SuperSuit's pad_observations_v0 / pad_action_space_v0 in a module of your own "
                f"whose parallel_env returns the padded env")
    return first


def make_pettingzoo_env(env_name: str, cfg: Any, env_index: int, render_mode: str | None = None
                        ) -> gym.Env:
    module_name = env_name[len(PREFIX):]
    if not module_name:
        raise UserError(f"--env={env_name}: expected {PREFIX}<module>, e.g. "
                        f"{PREFIX}mpe2.simple_spread_v3")
    for package in ("pettingzoo", module_name.partition(".")[0]):
        if package in _EXTRA_PACKAGES and importlib.util.find_spec(package) is None:
            raise UserError(missing_extra_message(env_name, EXTRA))
    module = import_module_of_env(env_name, module_name)
    parallel = _parallel_env(module, module_name, env_name, cfg, render_mode)
    try:
        return ParallelEnvAdapter(parallel, env_name)
    except UserError:
        parallel.close()
        raise


def _parallel_env(module: Any, module_name: str, env_name: str, cfg: Any,
                  render_mode: str | None) -> Any:
    """The module's Parallel env, or its AEC env converted by PettingZoo where that works."""
    if hasattr(module, "parallel_env"):
        return make_with_env_kwargs(module.parallel_env, env_name, cfg, render_mode=render_mode)
    if not hasattr(module, "env"):
        raise UserError(f"--env={env_name}: module {module_name} has no parallel_env "
                        f"(PettingZoo's Parallel API) and no AEC env")
    aec = make_with_env_kwargs(module.env, env_name, cfg, render_mode=render_mode)
    if not aec.metadata.get("is_parallelizable", False):
        aec.close()
        raise UserError(f"--env={env_name} is a turn-based AEC env (module {module_name} has no "
                        f"parallel_env, and its metadata does not say is_parallelizable), which "
                        f"PettingZoo cannot convert to the Parallel API that asyncrl steps")
    from pettingzoo.utils.conversions import aec_to_parallel

    return aec_to_parallel(aec)
