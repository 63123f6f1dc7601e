"""A vector of envs stepped in place: this is where a transition is stepped.

Observations, rewards and flags live in preallocated numpy arrays `[N, ...]` that are updated
for any subset of envs (a split), so the runtime can step one group while another waits for its
actions. Finished envs are reset at once (the returned observation starts the next episode); the
last observation of a truncated episode is kept for value bootstrapping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from asyncrl.envs.spaces import obs_dict_space

log = logging.getLogger(__name__)


class EnvFailureLimit(RuntimeError):
    """An env kept raising after being recreated: the run must stop instead of looping."""


@dataclass
class EpisodeStats:
    episode_return: float
    length: int


@dataclass
class StepResult:
    env_indices: np.ndarray  # [n] the envs that were stepped
    truncated_indices: np.ndarray  # [k] envs whose episode hit a time limit in this step
    final_obs: dict[str, np.ndarray]  # key -> [k, ...] last observations of truncated episodes
    episodes: list[EpisodeStats]  # episodes that ended in this step


class EnvVector:
    """`max_failures`: an env whose step/reset raises is recreated and its episode cut short;
    after this many failures in a row of one env, EnvFailureLimit is raised."""

    def __init__(self, make_env: Callable[[int], gym.Env], num_envs: int, seed: int | None,
                 max_failures: int = 10):
        self.make_env = make_env
        self.max_failures = max_failures
        self.failures = np.zeros(num_envs, dtype=np.int64)  # consecutive, per env
        self.envs = [make_env(i) for i in range(num_envs)]
        self.num_envs = num_envs
        self.observation_space = obs_dict_space(self.envs[0].observation_space)
        self.action_space = self.envs[0].action_space
        self._obs_is_dict = isinstance(self.envs[0].observation_space, gym.spaces.Dict)
        self.obs = {k: np.zeros((num_envs, *s.shape), dtype=s.dtype)
                    for k, s in self.observation_space.spaces.items()}
        self.rewards = np.zeros(num_envs, dtype=np.float32)  # raw env rewards of the last step
        self.terminated = np.zeros(num_envs, dtype=bool)
        self.truncated = np.zeros(num_envs, dtype=bool)
        self._episode_return = np.zeros(num_envs, dtype=np.float64)
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._unscored = np.zeros(num_envs, dtype=bool)  # the current episode is not reported
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seed is None else seed + i)
            env.action_space.seed(None if seed is None else seed + i)  # warm-up actions
            self._write_obs(i, obs)

    def _write_obs(self, i: int, obs: Any) -> None:
        if self._obs_is_dict:
            for k, v in obs.items():
                self.obs[k][i] = v
        else:
            self.obs["obs"][i] = obs

    def env_actions(self, actions: np.ndarray) -> Sequence[Any]:
        """Policy outputs -> what env.step accepts (ints, or floats clipped to the Box)."""
        if isinstance(self.action_space, gym.spaces.Box):
            return np.clip(actions, self.action_space.low, self.action_space.high).astype(
                self.action_space.dtype)
        return actions.tolist()

    def step(self, env_indices: np.ndarray, actions: np.ndarray) -> StepResult:
        """Steps the envs `env_indices` with `actions` `[n, ...]`, updating the arrays in place."""
        episodes: list[EpisodeStats] = []
        truncated_idx: list[int] = []
        final_obs: dict[str, list[Any]] = {k: [] for k in self.obs}
        for i, action in zip(env_indices.tolist(), self.env_actions(actions)):
            env = self.envs[i]
            try:
                obs, reward, terminated, truncated, _ = env.step(action)
            except Exception:
                self._recreate(i, "step")
                continue
            self.failures[i] = 0
            self.rewards[i] = reward
            self.terminated[i] = terminated
            self.truncated[i] = truncated and not terminated
            self._episode_return[i] += reward
            self._episode_length[i] += 1
            if terminated or truncated:
                if not self._unscored[i]:
                    episodes.append(EpisodeStats(float(self._episode_return[i]),
                                                 int(self._episode_length[i])))
                self._unscored[i] = False
                self._episode_return[i] = 0.0
                self._episode_length[i] = 0
                if not terminated:
                    truncated_idx.append(i)
                    for k in final_obs:
                        final_obs[k].append(obs[k] if self._obs_is_dict else obs)
                try:
                    obs, _ = env.reset()
                except Exception:
                    self._recreate(i, "reset")
                    continue
            self._write_obs(i, obs)
        return StepResult(
            env_indices=env_indices,
            truncated_indices=np.asarray(truncated_idx, dtype=np.int64),
            final_obs={k: np.asarray(v, dtype=self.obs[k].dtype) for k, v in final_obs.items()},
            episodes=episodes)

    def warm_up(self, steps_per_env: Sequence[int]) -> None:
        """Steps env i `steps_per_env[i]` times with random actions, recording nothing, so that
        the envs' episodes are out of phase (they would otherwise all end in the same step)."""
        for i, steps in enumerate(steps_per_env):
            space = self.envs[i].action_space
            for _ in range(steps):
                self.step(np.array([i]), np.asarray([space.sample()]))
        # An episode begun with random actions is nobody's result: leave it out of the statistics.
        self._unscored |= np.asarray(steps_per_env) > 0

    def _recreate(self, i: int, what: str) -> None:
        """Env i raised: log it, replace it by a fresh env and end its episode here."""
        self.failures[i] += 1
        log.exception("env %d raised in %s (failure %d in a row): recreating it", i, what,
                      self.failures[i])
        if self.failures[i] > self.max_failures:
            raise EnvFailureLimit(f"env {i} failed {self.failures[i]} times in a row in {what} "
                                  f"(limit --max_consecutive_env_failures={self.max_failures})")
        try:
            self.envs[i].close()
        except Exception:
            log.warning("closing the failed env %d raised too", i, exc_info=True)
        self.rewards[i] = 0.0
        self.terminated[i] = True  # the episode cannot continue: learn nothing past this step
        self.truncated[i] = False
        self._episode_return[i] = 0.0
        self._episode_length[i] = 0
        try:
            self.envs[i] = self.make_env(i)
            obs, _ = self.envs[i].reset()
        except Exception:
            return self._recreate(i, "creation")
        self._write_obs(i, obs)

    def close(self) -> None:
        for env in self.envs:
            env.close()
