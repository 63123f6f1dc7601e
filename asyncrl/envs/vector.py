"""Vectors of envs stepped in place: this is where a transition is stepped.

Observations, rewards and flags live in preallocated numpy arrays `[N, ...]` that are updated
for any subset of envs (a split), so the runtime can step one group while another waits for its
actions. The last observation of a truncated episode is kept for value bootstrapping.

`EnvVector` steps envs one by one and resets a finished env at once. `BatchedEnvVector`
(`--batched_sampling`) steps each split as one gymnasium VectorEnv with arrays; with the
gymnasium default "next step" autoreset, the step after an episode end only resets the env, and
is flagged invalid so that the learner leaves it out.

A finished episode reports its return, length and the numbers of `info["episode_extra_stats"]` of
its last step (`EpisodeAccounts`); `--use_record_episode_statistics` takes the return and length
from gymnasium's RecordEpisodeStatistics (`info["episode"]`) instead.

Observations are stored leaf by leaf (envs/observations.py). An env that breaks its own contract
(an observation outside its space, a reward that is not a number or NaN, a reset or step that
returns the wrong number of values) raises EnvContractError at that step, naming the env and what
is wrong; an env that raises is recreated instead, since that may be passing trouble.
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np

from asyncrl.envs.observations import (ACTION_MASK_KEY, ROOT_KEY, EnvContractError, contiguous,
                                      obs_layout)
from asyncrl.envs.spaces import action_layout
from asyncrl.utils.errors import UserError

log = logging.getLogger(__name__)


class EnvFailureLimit(RuntimeError):
    """An env kept raising after being recreated: the run must stop instead of looping."""


class EnvRaised(UserError):
    """An env raised while it was being checked (`EnvVector(strict=True)`): one line that names
    the exception and where it came from."""


def exception_line(error: BaseException) -> str:
    """'ValueError: bad action (at my_env.py:42)': the exception's first line and the innermost
    place it was raised."""
    message = (str(error).splitlines() or [""])[0]
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {message}{where}"


@dataclass
class EpisodeStats:
    episode_return: float
    length: int
    extra: dict[str, float] = field(default_factory=dict)  # custom statistics, by name
    row: int = 0  # the env vector's row (agent) that played it


@dataclass(frozen=True)
class EpisodeReporting:
    """What a finished episode reports: `record_episode_statistics` takes its return and length
    from info['episode'] (--use_record_episode_statistics), `episode_counter` adds its number in
    its env (--episode_counter)."""

    record_episode_statistics: bool = False
    episode_counter: bool = False

    @staticmethod
    def of(cfg: Any) -> EpisodeReporting:
        return EpisodeReporting(cfg.use_record_episode_statistics, cfg.episode_counter)


_warned_extra_stats: set[str] = set()


def episode_extra_stats(info: Mapping[str, Any]) -> dict[str, float]:
    """The numbers in info['episode_extra_stats'] (name -> value); a value that is not a number
    is left out, with a warning the first time."""
    raw = info.get("episode_extra_stats")
    if not isinstance(raw, Mapping):
        return {}
    extra = {}
    for name, value in raw.items():
        if isinstance(value, (bool, int, float, np.number)) or (
                isinstance(value, np.ndarray) and value.size == 1):
            extra[str(name)] = float(value)
        elif str(name) not in _warned_extra_stats:
            _warned_extra_stats.add(str(name))
            log.warning("episode_extra_stats[%r] = %r is not a number: left out of the "
                        "statistics", name, value)
    return extra


def episode_stats(own_return: float, own_length: int, info: Mapping[str, Any],
                  record_episode_statistics: bool) -> EpisodeStats | None:
    """What an episode that ended with a step whose info is `info` reports; None when, with
    record_episode_statistics, that step carries no info['episode'] (e.g. a life lost: the game
    goes on)."""
    extra = episode_extra_stats(info)
    if not record_episode_statistics:
        return EpisodeStats(own_return, own_length, extra)
    recorded = info.get("episode")
    if recorded is None:
        return None
    return EpisodeStats(float(recorded["r"]), int(recorded["l"]), extra)


def env_info(infos: Mapping[str, Any], j: int) -> dict[str, Any]:
    """Env j's info out of a vector env's infos: arrays `[num_envs]` and nested dicts of them,
    with `_key` masks saying which envs have `key` (an array without a mask, as inside
    RecordEpisodeStatistics' 'episode', belongs to every env). With same-step autoreset, the
    info of the step that ended the episode (`final_info`) wins over that of the reset."""
    info = {}
    for key, value in infos.items():
        mask = infos.get(f"_{key}")
        if key.startswith("_") or key in ("final_obs", "final_info") or (
                mask is not None and not mask[j]):
            continue
        if isinstance(value, Mapping):
            info[key] = env_info(value, j)
        elif isinstance(value, np.ndarray):
            info[key] = value[j]
    if "final_info" in infos and infos["_final_info"][j]:
        info.update(env_info(infos["final_info"], j))
    return info


class EpisodeAccounts:
    """Running return and length of each env's episode, and what it reports when it ends."""

    def __init__(self, num_envs: int, reporting: EpisodeReporting):
        self.reporting = reporting
        self.returns = np.zeros(num_envs, dtype=np.float64)  # of the raw env rewards
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.unscored = np.zeros(num_envs, dtype=bool)  # the current episode is not reported
        self.finished = np.zeros(num_envs, dtype=np.int64)  # episodes each env ended so far

    def finish(self, i: int, info: Mapping[str, Any]) -> EpisodeStats | None:
        """Env i's episode ended with a step whose info is `info`: its statistics, or None when
        it is not reported."""
        stats = None
        if not self.unscored[i]:
            stats = episode_stats(float(self.returns[i]), int(self.lengths[i]), info,
                                  self.reporting.record_episode_statistics)
        if stats is not None:
            stats.row = i
            if self.reporting.episode_counter:
                stats.extra["episode_number"] = float(self.finished[i])
        self.finished[i] += 1
        self.unscored[i] = False
        self.cut(i)
        return stats

    def cut(self, envs: int | slice) -> None:
        """The episode of `envs` ends unreported (its env was recreated)."""
        self.returns[envs] = 0.0
        self.lengths[envs] = 0


_NUMBERS = (int, float, np.number)
_COMMON_NUMBER_TYPES = frozenset({float, int, bool, np.float32, np.float64, np.int32, np.int64})


def checked_step(out: Any, who: Callable[[int], str], env: int) -> tuple[Any, Any, Any, Any, Any]:
    """What env.step returned, as the five values of the gymnasium API; `who(env)` names the env
    in the error (built only then: this runs at every step)."""
    if type(out) is tuple and len(out) == 5:
        return out
    count = f"{len(out)} values" if isinstance(out, tuple) else type(out).__name__
    raise EnvContractError(f"{who(env)}: step() returned {count}; gymnasium envs return (observation, "
                           "reward, terminated, truncated, info) (an old gym env returns 4: "
                           "wrap it with gymnasium's compatibility wrappers)")


def checked_reset(out: Any, who: Callable[[int], str], env: int) -> Any:
    """The observation out of what env.reset returned."""
    if isinstance(out, tuple) and len(out) == 2:
        return out[0]
    count = f"{len(out)} values" if isinstance(out, tuple) else type(out).__name__
    raise EnvContractError(f"{who(env)}: reset() returned {count}; gymnasium envs return "
                           "(observation, info)")


def checked_reward(reward: Any, who: Callable[[int], str], env: int) -> Any:
    if type(reward) in _COMMON_NUMBER_TYPES or isinstance(reward, _NUMBERS) or (
            isinstance(reward, np.ndarray) and reward.ndim == 0):
        return reward
    raise EnvContractError(f"{who(env)}: the reward is {type(reward).__name__} {reward!r}, not a "
                           "number")


def check_finite_rewards(rewards: np.ndarray, rows: np.ndarray | slice, who: Callable[[int], str]) -> None:
    """NaN rewards of `rows` (checked at once, after a step): `who(i)` names the i-th row's env."""
    values = rewards[contiguous(rows)]
    if np.isnan(np.add.reduce(values)) and np.isnan(values).any():
        raise EnvContractError(f"{who(int(np.flatnonzero(np.isnan(values))[0]))}: the reward is NaN")


@dataclass
class StepResult:
    env_indices: np.ndarray  # [n] the envs that were stepped
    truncated_indices: np.ndarray  # [k] envs whose episode hit a time limit in this step
    final_obs: dict[str, np.ndarray]  # key -> [k, ...] last observations of truncated episodes
    episodes: list[EpisodeStats]  # episodes that ended in this step


def is_multiagent(env: gym.Env) -> bool:
    try:
        return bool(env.get_wrapper_attr("is_multiagent"))
    except AttributeError:
        return False


def agents_per_env(env: gym.Env) -> int:
    """How many agents act in `env`: its `num_agents` if it is multi-agent (`is_multiagent`), else 1."""
    return int(env.get_wrapper_attr("num_agents")) if is_multiagent(env) else 1


class EnvVector:
    """Envs stepped one by one. The arrays have a row per agent: `agents_per_env` consecutive rows
    per env (one for a single-agent env); `step` takes whole envs' rows.

    `max_failures`: an env whose step/reset raises is recreated and its episode cut short; after
    this many failures in a row of one env, EnvFailureLimit is raised. `strict` (the start-up check
    of an env): anything an env raises is an EnvRaised error at once."""

    def __init__(self, make_env: Callable[[int], gym.Env], num_envs: int, seed: int | None,
                 max_failures: int = 10, reporting: EpisodeReporting = EpisodeReporting(),
                 env_name: str = "", strict: bool = False):
        self.make_env = make_env
        self.env_name = env_name
        self.max_failures = max_failures
        self.strict = strict
        self.failures = np.zeros(num_envs, dtype=np.int64)  # consecutive, per env
        self.envs = [self._checked(i, "creating it", make_env, i) for i in range(num_envs)]
        self.num_envs = num_envs
        # Multi-agent envs (SF's convention): spaces are per agent; reset and step take and return
        # a list with an entry per agent; the env starts each agent's next episode itself.
        self.multiagent = is_multiagent(self.envs[0])
        self.agents_per_env = agents_per_env(self.envs[0])
        rows = num_envs * self.agents_per_env
        self.layout = obs_layout(self.envs[0].observation_space, env_name)
        self.observation_space = self.layout.space
        self.action_space = self.envs[0].action_space
        self.action_layout = action_layout(self.action_space)
        self.obs = {k: np.zeros((rows, *s.shape), dtype=s.dtype)
                    for k, s in self.observation_space.spaces.items()}
        self.rewards = np.zeros(rows, dtype=np.float32)  # raw env rewards of the last step
        self.terminated = np.zeros(rows, dtype=bool)
        self.truncated = np.zeros(rows, dtype=bool)
        # False: the agent of this row is not in the game at this step (multi-agent envs)
        self.valid = np.ones(rows, dtype=bool)
        self.accounts = EpisodeAccounts(rows, reporting)  # a row per agent
        # Random actions of the warm-up that respect action masks.
        self.rng = np.random.default_rng(seed)
        for i, env in enumerate(self.envs):
            out = self._checked(i, "reset()", env.reset, seed=None if seed is None else seed + i)
            obs = checked_reset(out, self.who, i)
            env.action_space.seed(None if seed is None else seed + i)  # warm-up actions
            self._write_obs(i, obs)
        self.layout.check_rows(self.obs, slice(None), self._row_env)

    def who(self, env: int) -> str:
        """Env `env` in error messages."""
        return f"--env={self.env_name}: env {env}" if self.env_name else f"env {env}"

    def _checked(self, i: int, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call(*args, **kwargs)`; in strict mode what it raises becomes one EnvRaised line."""
        if not self.strict:
            return call(*args, **kwargs)
        try:
            return call(*args, **kwargs)
        except UserError:
            raise
        except Exception as e:
            raise EnvRaised(f"{self.who(i)}: {what} raised {exception_line(e)}") from None

    def _row_env(self, row: int) -> int:
        return row // self.agents_per_env

    def rows_of(self, env: int) -> slice:
        return slice(env * self.agents_per_env, (env + 1) * self.agents_per_env)

    def _write_obs(self, i: int, obs: Any) -> None:
        """Env i's observation (a list of them, one per agent, for a multi-agent env)."""
        if self.multiagent:
            rows = self.rows_of(i)
            for row, agent_obs in zip(range(rows.start, rows.stop), obs):
                self.layout.write(self.obs, row, agent_obs, i)
        else:
            self.layout.write(self.obs, i, obs, i)

    def env_actions(self, actions: np.ndarray) -> Sequence[Any]:
        """Stored policy actions `[n]` or `[n, K + A]` -> the n actions env.step accepts (ints,
        arrays with Box parts clipped to their bounds, tuples; see envs/spaces.py)."""
        return self.action_layout.to_env(actions)

    def step(self, env_indices: np.ndarray, actions: np.ndarray) -> StepResult:
        """Steps the envs `env_indices` (rows, for multi-agent envs) with policy `actions`
        `[n, ...]`, updating the arrays in place."""
        return self._step(env_indices, self.env_actions(actions))

    def _step(self, env_indices: np.ndarray, env_actions: Sequence[Any]) -> StepResult:
        """`env_actions`: one action per env (per row, for multi-agent envs) of `env_indices`,
        as env.step takes it."""
        result = (self._step_multiagent if self.multiagent else self._step_each)(env_indices,
                                                                                  env_actions)
        self._check_rows(env_indices)
        return result

    def _step_each(self, env_indices: np.ndarray, env_actions: Sequence[Any]) -> StepResult:
        """`_step` of single-agent envs."""
        episodes: list[EpisodeStats] = []
        truncated_idx: list[int] = []
        final_obs: dict[str, list[Any]] = {k: [] for k in self.obs}
        # The checks' common cases are written out here, without calls: this loop is the rollout
        # workers' hot path (a few microseconds per step for CartPole).
        store = self.obs[ROOT_KEY] if self.layout.root_is_leaf else None
        for i, action in zip(env_indices.tolist(), env_actions):
            env = self.envs[i]
            try:
                out = env.step(action)
            except Exception:
                self._recreate(i, "step")
                continue
            if type(out) is not tuple or len(out) != 5:
                checked_step(out, self.who, i)
            obs, reward, terminated, truncated, info = out
            self.failures[i] = 0
            if type(reward) not in _COMMON_NUMBER_TYPES:
                reward = checked_reward(reward, self.who, i)
            self.rewards[i] = reward
            self.terminated[i] = terminated
            self.truncated[i] = truncated and not terminated
            self.accounts.returns[i] += reward
            self.accounts.lengths[i] += 1
            if terminated or truncated:
                self._end_episode(i, info, episodes)
                if not terminated:
                    truncated_idx.append(i)
                    for k in final_obs:
                        final_obs[k].append(self.layout.leaf(obs, k))
                try:
                    out = env.reset()
                except Exception:
                    self._recreate(i, "reset")
                    continue
                obs = checked_reset(out, self.who, i)
            if store is not None and type(obs) is np.ndarray and obs.dtype is store.dtype \
                    and obs.shape == store.shape[1:]:
                store[i] = obs
            else:
                self._write_obs(i, obs)
        return StepResult(
            env_indices=env_indices,
            truncated_indices=np.asarray(truncated_idx, dtype=np.int64),
            final_obs={k: np.asarray(v, dtype=self.obs[k].dtype) for k, v in final_obs.items()},
            episodes=episodes)

    def _step_multiagent(self, rows: np.ndarray, env_actions: Sequence[Any]) -> StepResult:
        """Like `_step`, env by env with a list of actions each. A truncated agent's last
        observation is `infos[agent]["final_obs"]`; without it the agent's time-limit end is
        treated as a real end (no value bootstrap). An agent not in the game at this step
        (`infos[agent]["is_active"]` False, e.g. it ended before the other agents) made no
        transition: its row is invalid and its episode's return and length stay as they were."""
        A = self.agents_per_env
        episodes: list[EpisodeStats] = []
        truncated_rows: list[int] = []
        final_obs: dict[str, list[Any]] = {k: [] for k in self.obs}
        for j in range(0, len(rows), A):
            i = int(rows[j]) // A
            try:
                out = self.envs[i].step(list(env_actions[j:j + A]))
            except Exception:
                self._recreate(i, "step")
                continue
            obs, rewards, terminated, truncated, infos = checked_step(out, self.who, i)
            self.failures[i] = 0
            for a, row in enumerate(range(i * A, (i + 1) * A)):
                final = infos[a].get("final_obs") if truncated[a] and not terminated[a] else None
                self.valid[row] = infos[a].get("is_active", True)
                self.rewards[row] = checked_reward(rewards[a], self.who, i)
                self.terminated[row] = bool(terminated[a]) or (bool(truncated[a]) and final is None)
                self.truncated[row] = final is not None
                if self.valid[row]:
                    self.accounts.returns[row] += rewards[a]
                    self.accounts.lengths[row] += 1
                if terminated[a] or truncated[a]:
                    self._end_episode(row, infos[a], episodes)
                if final is not None:
                    truncated_rows.append(row)
                    for k in final_obs:
                        final_obs[k].append(self.layout.leaf(final, k))
            self._write_obs(i, obs)
        return StepResult(
            env_indices=rows, truncated_indices=np.asarray(truncated_rows, dtype=np.int64),
            final_obs={k: np.asarray(v, dtype=self.obs[k].dtype) for k, v in final_obs.items()},
            episodes=episodes)

    def _check_rows(self, rows: np.ndarray) -> None:
        """The checks of whole rows after a step: NaN observations and rewards, integers out of
        range."""
        self.layout.check_rows(self.obs, rows, lambda j: self._row_env(int(rows[j])))
        check_finite_rewards(self.rewards, rows, lambda j: self.who(self._row_env(int(rows[j]))))

    def _end_episode(self, row: int, info: Mapping[str, Any], episodes: list[EpisodeStats]) -> None:
        if (stats := self.accounts.finish(row, info)) is not None:
            episodes.append(stats)

    def warm_up(self, steps_per_env: Sequence[int]) -> None:
        """Steps env i `steps_per_env[i]` times with random actions, recording nothing, so that
        the envs' episodes are out of phase (they would otherwise all end in the same step)."""
        for i, steps in enumerate(steps_per_env):
            space = self.envs[i].action_space
            rows = self.rows_of(i)
            indices = np.arange(rows.start, rows.stop)
            for _ in range(steps):
                if ACTION_MASK_KEY in self.obs:
                    masks = self.obs[ACTION_MASK_KEY][rows]
                    actions = self.env_actions(self.action_layout.random_actions(masks, self.rng))
                else:
                    actions = [space.sample() for _ in range(self.agents_per_env)]
                self._step(indices, actions)
        # An episode begun with random actions is nobody's result: leave it out of the statistics.
        self.accounts.unscored |= np.repeat(np.asarray(steps_per_env) > 0, self.agents_per_env)

    def _recreate(self, i: int, what: str) -> None:
        """Env i raised: log it, replace it by a fresh env and end its episode here (strict:
        raise EnvRaised instead)."""
        if self.strict:
            error = sys.exc_info()[1]
            raise EnvRaised(f"{self.who(i)}: {what}() raised {exception_line(error)}") from None
        _replace_failed(self, self.envs, i, what, f"env {i}", f"env {i}", f" in {what}",
                        self.rows_of(i), lambda: self.make_env(i))

    def _write_reset(self, i: int, out: Any) -> None:
        self._write_obs(i, checked_reset(out, self.who, i))

    def close(self) -> None:
        for env in self.envs:
            env.close()


SplitVectorFactory = Callable[[int, int], gym.vector.VectorEnv]  # (first env index, num envs)


class BatchedEnvVector:
    """`num_splits` gymnasium VectorEnvs of `num_envs // num_splits` envs each, stepped as arrays
    (`--batched_sampling`); `step` takes the indices of exactly one split.

    Both gymnasium autoreset modes work: "next step" (the default: the step after an episode end
    ignores its action, returns the first observation of the next episode and is marked invalid)
    and "same step" (the final observation comes in `infos["final_obs"]`). A VectorEnv that
    raises is recreated as a whole, which ends the episodes of all its envs."""

    def __init__(self, make_vector_env: SplitVectorFactory, num_envs: int, num_splits: int,
                 seed: int | None, max_failures: int = 10,
                 reporting: EpisodeReporting = EpisodeReporting(), env_name: str = ""):
        self.make_vector_env = make_vector_env
        self.env_name = env_name
        self.max_failures = max_failures
        self.per_split = num_envs // num_splits
        self.num_envs = num_envs
        self.vectors = [make_vector_env(s * self.per_split, self.per_split) for s in range(num_splits)]
        first = self.vectors[0]
        self.layout = obs_layout(first.single_observation_space, env_name)
        self.observation_space = self.layout.space
        self.action_space = first.single_action_space
        self.action_layout = action_layout(self.action_space)
        self._next_step_autoreset = [_uses_next_step_autoreset(v) for v in self.vectors]
        self.failures = np.zeros(num_splits, dtype=np.int64)  # consecutive, per split
        self.obs = {k: np.zeros((num_envs, *s.shape), dtype=s.dtype)
                    for k, s in self.observation_space.spaces.items()}
        self.rewards = np.zeros(num_envs, dtype=np.float32)
        self.terminated = np.zeros(num_envs, dtype=bool)
        self.truncated = np.zeros(num_envs, dtype=bool)
        self.valid = np.ones(num_envs, dtype=bool)  # False: the step only reset the env
        self._autoreset_pending = np.zeros(num_envs, dtype=bool)
        self.accounts = EpisodeAccounts(num_envs, reporting)
        self.rng = np.random.default_rng(seed)  # warm-up actions that respect action masks
        for s, vector in enumerate(self.vectors):
            out = vector.reset(seed=None if seed is None else seed + s * self.per_split)
            vector.action_space.seed(None if seed is None else seed + s * self.per_split)
            self._write_obs(self._rows(s), checked_reset(out, self._who_split, s))

    def _rows(self, split: int) -> slice:
        return slice(split * self.per_split, (split + 1) * self.per_split)

    def _who_split(self, split: int) -> str:
        rows = self._rows(split)
        return f"--env={self.env_name}: the vector env of envs {rows.start}..{rows.stop - 1}"

    def who(self, env: int) -> str:
        return f"--env={self.env_name}: env {env}" if self.env_name else f"env {env}"

    def _write_obs(self, rows: slice, obs: Any) -> None:
        self.layout.write_batch(self.obs, rows, obs)
        self.layout.check_rows(self.obs, rows, lambda j: rows.start + j)

    def step(self, env_indices: np.ndarray, actions: np.ndarray) -> StepResult:
        """Steps the split whose envs are `env_indices` with policy `actions` `[n, ...]`."""
        return self._step(env_indices, self.action_layout.to_vector_env(actions))

    def _step(self, env_indices: np.ndarray, vector_actions: Any) -> StepResult:
        """`vector_actions`: one batched action for the split's VectorEnv, as it takes it."""
        split = int(env_indices[0]) // self.per_split
        rows = self._rows(split)
        if len(env_indices) != self.per_split or int(env_indices[0]) != rows.start:
            raise ValueError(f"batched step needs the envs of one whole split, got {env_indices}")
        try:
            out = self.vectors[split].step(vector_actions)
        except Exception:
            self._recreate(split, "step")
            return StepResult(env_indices, np.zeros(0, dtype=np.int64),
                              {k: v[:0] for k, v in self.obs.items()}, [])
        obs, rewards, terminated, truncated, infos = checked_step(out, self._who_split, split)
        self.failures[split] = 0
        if self._next_step_autoreset[split]:
            valid = ~self._autoreset_pending[rows]
            self._autoreset_pending[rows] = terminated | truncated
        else:
            valid = np.ones(self.per_split, dtype=bool)
        self.valid[rows] = valid
        self.rewards[rows] = np.where(valid, rewards, 0.0)
        check_finite_rewards(self.rewards, rows, lambda j: self.who(rows.start + j))
        self.terminated[rows] = terminated
        self.truncated[rows] = truncated & ~terminated
        self.accounts.returns[rows] += self.rewards[rows]
        self.accounts.lengths[rows] += valid
        episodes = [stats for j in np.flatnonzero(terminated | truncated)
                    if (stats := self.accounts.finish(rows.start + j, env_info(infos, j)))
                    is not None]
        ended_by_limit = np.flatnonzero(self.truncated[rows])
        if self._next_step_autoreset[split]:
            # The observation returned with the time limit is the episode's last one.
            final_obs = {k: np.asarray(self.layout.leaf(obs, k)[ended_by_limit]) for k in self.obs}
        else:
            final = [infos["final_obs"][j] for j in ended_by_limit]
            final_obs = {k: np.asarray([self.layout.leaf(f, k) for f in final],
                                       dtype=self.obs[k].dtype) for k in self.obs}
        self._write_obs(rows, obs)
        return StepResult(env_indices, ended_by_limit + rows.start, final_obs, episodes)

    def warm_up(self, steps_per_env: Sequence[int]) -> None:
        """Steps each split with random actions as often as its envs' largest entry of
        `steps_per_env`, recording nothing, so that episodes drift out of phase."""
        for split, vector in enumerate(self.vectors):
            rows = self._rows(split)
            indices = np.arange(rows.start, rows.stop)
            for _ in range(int(np.max(np.asarray(steps_per_env)[rows], initial=0))):
                if ACTION_MASK_KEY in self.obs:
                    masks = self.obs[ACTION_MASK_KEY][rows]
                    actions = self.action_layout.to_vector_env(
                        self.action_layout.random_actions(masks, self.rng))
                else:
                    actions = vector.action_space.sample()
                self._step(indices, actions)
        self.accounts.unscored[:] = True

    def _recreate(self, split: int, what: str) -> None:
        """The split's vector env raised: log it, replace it by a fresh one and end the episodes
        of all its envs here."""
        rows = self._rows(split)
        _replace_failed(self, self.vectors, split, what, f"the vector env of envs {rows.start}.."
                        f"{rows.stop - 1}", f"the vector env of split {split}", "", rows,
                        lambda: self.make_vector_env(rows.start, self.per_split))

    def _write_reset(self, split: int, out: Any) -> None:
        rows = self._rows(split)
        self.valid[rows] = True
        self._autoreset_pending[rows] = False
        self._write_obs(rows, checked_reset(out, self._who_split, split))

    def close(self) -> None:
        for vector in self.vectors:
            vector.close()


def _replace_failed(vector: EnvVector | BatchedEnvVector, units: list, unit: int, what: str,
                    name: str, subject: str, where: str, rows: slice, make: Callable[[], Any]) -> None:
    """`units[unit]` (an env, or a split's vector env, `name` in the log) raised in `what`: counts
    the failure in a row, stops at --max_consecutive_env_failures (`subject` failed N times in a
    row`where`), ends the episodes of its `rows` and puts a fresh one in its place, again if
    creating or resetting that one raises."""
    vector.failures[unit] += 1
    log.exception("%s raised in %s (failure %d in a row): recreating it", name, what,
                  vector.failures[unit])
    if vector.failures[unit] > vector.max_failures:
        raise EnvFailureLimit(f"{subject} failed {vector.failures[unit]} times in a row{where} "
                              f"(limit --max_consecutive_env_failures={vector.max_failures})")
    try:
        units[unit].close()
    except Exception:
        log.warning("closing %s raised too", name, exc_info=True)
    vector.rewards[rows] = 0.0
    vector.terminated[rows] = True  # the episode cannot continue: learn nothing past this step
    vector.truncated[rows] = False
    vector.accounts.cut(rows)
    try:
        units[unit] = make()
        out = units[unit].reset()
    except Exception:
        return vector._recreate(unit, "creation")
    vector._write_reset(unit, out)


def _uses_next_step_autoreset(vector: gym.vector.VectorEnv) -> bool:
    mode = vector.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    mode = gym.vector.AutoresetMode(mode)
    if mode == gym.vector.AutoresetMode.DISABLED:
        raise UserError(f"--batched_sampling needs a vector env that resets finished envs itself; "
                        f"{vector} has autoreset disabled (use its 'NextStep' or 'SameStep' mode)")
    return mode == gym.vector.AutoresetMode.NEXT_STEP
