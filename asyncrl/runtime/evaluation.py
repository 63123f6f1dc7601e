"""Evaluation: playing whole episodes with a policy, for `asyncrl.enjoy` and, during training,
for the eval worker, which plays `--eval_episodes` episodes on envs of its own with a snapshot of
a policy's weights every `--eval_every_env_steps`, off the training hot path (its own process in
parallel mode; inline on the one loop in serial mode)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import torch
from signal_slot.signal_slot import signal

from asyncrl.envs.registry import find_env_family, make_env
from asyncrl.envs.vector import EnvVector, EpisodeReporting, EpisodeStats
from asyncrl.experiment.checkpoint_state import read_checkpoint_state
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.runtime.component import Component
from asyncrl.runtime.names import EVAL_WORKER
from asyncrl.runtime.stats import EpisodeTracker
from asyncrl.utils.device import resolve_device

log = logging.getLogger(__name__)


class EpisodePlayer:
    """Plays `model` on the envs of `envs` (every agent of every env acts each step, in one
    forward pass) and yields each finished episode; `steps` counts the steps played (each a step
    of all the envs still playing)."""

    def __init__(self, model: ActorCritic, envs: EnvVector, device: torch.device,
                 deterministic: bool):
        self.model = model
        self.envs = envs
        self.device = device
        self.deterministic = deterministic
        self.steps = 0

    @torch.no_grad()
    def episodes(self, max_episodes: int, max_steps: int | None = None,
                 before_step: Callable[[], None] | None = None) -> Iterator[EpisodeStats]:
        """`max_episodes` episodes, within `max_steps` steps (None: no limit). Each env plays its
        share (`episode_quotas`) and then stops, so that the episodes are not the short ones
        that happen to end first. A recurrent policy starts from zero states, and again for each
        agent whose episode ended. `before_step` runs before each step."""
        envs, model = self.envs, self.model
        agents = envs.agents_per_env
        quotas = episode_quotas(max_episodes, envs.num_envs)
        finished = np.zeros(envs.num_envs, dtype=np.int64)
        # [rows, rnn_state_size] of every agent; None: feed-forward
        states = torch.zeros((envs.num_envs * agents, model.rnn_state_size), device=self.device) \
            if model.rnn_state_size else None
        while (finished < quotas).any() and (max_steps is None or self.steps < max_steps):
            if before_step is not None:
                before_step()
            playing = np.flatnonzero(finished < quotas)
            rows = (playing[:, None] * agents + np.arange(agents)).ravel()
            obs = {k: torch.from_numpy(v[rows]).to(self.device) for k, v in envs.obs.items()}
            out = model.policy_step(obs, None if states is None else states[rows],
                                    deterministic=self.deterministic)
            result = envs.step(rows, out.actions.cpu().numpy())
            if states is not None:  # an agent whose episode ended starts afresh
                ended = torch.from_numpy(envs.terminated[rows] | envs.truncated[rows])
                states[torch.from_numpy(rows)] = out.rnn_states * (~ended.to(self.device))[:, None]
            self.steps += 1
            for episode in result.episodes:
                env = episode.row // agents
                if finished[env] < quotas[env]:
                    finished[env] += 1
                    yield episode


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """`[num_envs]` how many of `episodes` each env plays: as equal as can be, the first envs
    one more."""
    return episodes // num_envs + (np.arange(num_envs) < episodes % num_envs)


def summarize(episodes: list[EpisodeStats]) -> dict[str, Any] | None:
    """Mean, standard deviation, min and max of the returns, mean length and the means of the
    custom statistics; None without episodes."""
    if not episodes:
        return None
    returns = np.array([e.episode_return for e in episodes], dtype=np.float64)
    tracker = EpisodeTracker(len(episodes))
    tracker.add(episodes)
    return {"episodes": len(episodes), "return_mean": float(returns.mean()),
            "return_std": float(returns.std()), "return_min": float(returns.min()),
            "return_max": float(returns.max()), "length_mean": tracker.average("len"),
            "extra_mean": tracker.extra_averages()}


def eval_config(cfg: Any) -> Any:
    """The config the eval envs are made with: --eval_env_kwargs replace --env_kwargs."""
    if cfg.eval_env_kwargs is None:
        return cfg
    return cfg.replace(env_kwargs=cfg.eval_env_kwargs)


def eval_summaries(summary: dict[str, Any]) -> dict[str, float]:
    """The `eval/...` scalars of one evaluation."""
    scalars = {"eval/return_avg": summary["return_mean"], "eval/return_std": summary["return_std"],
               "eval/return_min": summary["return_min"], "eval/return_max": summary["return_max"],
               "eval/length_avg": summary["length_mean"], "eval/episodes": summary["episodes"]}
    for name, value in summary["extra_mean"].items():
        scalars[f"eval/{name}"] = value
    return scalars


class EvalWorker(Component):
    """Plays `--eval_episodes` episodes with the weights of a policy's snapshot (a checkpoint file
    its learner wrote) and reports their summary. Its `--eval_num_envs` envs are its own, made
    once with --eval_env_kwargs, seeded apart from the training envs; each evaluation starts from
    zero recurrent states, with the episodes its envs are at (fresh ones after the first: each
    env stops right after the end of its last episode)."""

    def __init__(self, event_loop: Any, cfg: Any, obs_space: gym.Space, action_space: gym.Space,
                 env_index: int):
        """`env_index`: the index the eval envs are made with (after the training envs')."""
        super().__init__(event_loop, EVAL_WORKER.object_id, cfg)
        self.obs_space = obs_space
        self.action_space = action_space
        self.env_index = env_index
        self.envs: EnvVector | None = None
        self.model: ActorCritic | None = None
        self.device = torch.device("cpu")
        self.evaluations = 0

    @signal
    def evaluated(self): ...

    def on_start(self) -> None:
        if self.model is not None:
            return
        cfg = eval_config(self.cfg)
        family = find_env_family(cfg.env)
        seed = None if cfg.seed is None else cfg.seed + self.env_index
        self.envs = EnvVector(lambda i: make_env(family, cfg.env, cfg, self.env_index + i),
                              min(cfg.eval_num_envs, cfg.eval_episodes), seed,
                              cfg.max_consecutive_env_failures, EpisodeReporting.of(cfg), cfg.env)
        self.device = resolve_device(cfg.device, warn=False)
        self.model = ActorCritic(cfg, self.obs_space, self.action_space).to(self.device).eval()
        self.start_reporting()

    def on_evaluate(self, policy: int, path: str, env_steps: int, train_step: int,
                    version: int) -> None:
        """Evaluates policy `policy`'s snapshot `path`, taken at `env_steps`."""
        self.on_start()
        self.model.load_state_dict(read_checkpoint_state(Path(path)).learner.model)
        with self.timings.timeit("evaluate"):
            episodes = self._play()
        self.evaluations += 1
        self.evaluated.emit(policy, env_steps, train_step, version, summarize(episodes))

    def _play(self) -> list[EpisodeStats]:
        cfg = self.cfg
        last_heartbeat = time.monotonic()

        def heartbeat() -> None:  # a long evaluation keeps this loop busy: beat from inside
            nonlocal last_heartbeat
            if time.monotonic() - last_heartbeat >= cfg.heartbeat_interval:
                last_heartbeat = time.monotonic()
                self._send_heartbeat()

        # Its own random numbers: an evaluation does not change the training's (serial mode
        # shares this process's generators), and a seeded run evaluates the same way each time.
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed + self.evaluations)
            player = EpisodePlayer(self.model, self.envs, self.device, cfg.eval_deterministic)
            return list(player.episodes(cfg.eval_episodes, before_step=heartbeat))

    def on_stop(self) -> None:
        if self.envs is not None:
            self.envs.close()
        self.event_loop.stop()
