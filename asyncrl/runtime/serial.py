"""The serial runtime: acting and learning alternate in one process.

Collect a rollout from every env, hand full batches to the learner, and around that: status
lines, summaries, checkpoints (regular, best, milestones) and the stop conditions.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from typing import Any

import numpy as np
import torch

from asyncrl.algo.learner import Learner
from asyncrl.algo.trajectories import TrajectoryAccumulator
from asyncrl.envs.registry import find_env_family
from asyncrl.envs.vector import EnvFailureLimit, EnvVector
from asyncrl.experiment.experiment import Experiment
from asyncrl.runtime.collector import RolloutCollector
from asyncrl.runtime.stats import EpisodeTracker, FpsMeter
from asyncrl.runtime.summaries import Summaries
from asyncrl.utils.device import resolve_device

log = logging.getLogger(__name__)

STATUS_INTERVAL_SEC = 5.0


class StopSignals:
    """SIGINT / SIGTERM ask the run to stop after the current step; a second SIGINT forces it."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        log.info("%s received: stopping after the current step and saving a checkpoint",
                 self.requested)


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


class SerialRunner:
    def __init__(self, experiment: Experiment):
        cfg = self.cfg = experiment.cfg
        self.experiment = experiment
        seed_everything(cfg.seed)
        # Small models on few cores: intra-op threads only add synchronization overhead.
        torch.set_num_threads(1)
        self.device = resolve_device(cfg.device)
        family = find_env_family(cfg.env)
        num_envs = cfg.num_workers * cfg.num_envs_per_worker
        self.envs = EnvVector(lambda i: family.make_env(cfg.env, cfg, i), num_envs, cfg.seed,
                              cfg.max_consecutive_env_failures)
        self.learner = Learner(cfg, self.envs.envs[0].observation_space, self.envs.action_space,
                               self.device)
        self.episodes = EpisodeTracker(cfg.stats_avg)
        self.env_steps = 0
        self.best_metric: float | None = None
        state = experiment.resume_state
        if state is not None:
            self.learner.load_state_dict(state, f"checkpoint of {experiment.dir}")
            self.env_steps = int(state["env_steps"])
            self.episodes.load_state_dict(state["episode_stats"])
            self.best_metric = state["best_metric"]
            log.info("Resumed from env_steps=%d, policy_version=%d", self.env_steps,
                     self.learner.policy_version)
        elif experiment.init_weights is not None:
            weights, source = experiment.init_weights
            self.learner.load_weights(weights, source)
            log.info("Initialized the model from %s", source)
        self.collector = RolloutCollector(cfg, self.envs, self.learner.model, self.device)
        self.accumulator = TrajectoryAccumulator(
            cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout)

    def checkpoint_state(self) -> dict[str, Any]:
        return {**self.learner.state_dict(), "env_steps": self.env_steps,
                "episode_stats": self.episodes.state_dict(), "best_metric": self.best_metric}

    def save_checkpoint(self) -> None:
        path = self.experiment.checkpoints.save(self.checkpoint_state(), self.learner.train_step,
                                                self.env_steps)
        log.info("Saved checkpoint %s", path.name)

    def _maybe_save_best(self) -> None:
        cfg = self.cfg
        metric = self.episodes.average(cfg.save_best_metric)
        if metric is None or self.env_steps < cfg.save_best_after:
            return
        if self.best_metric is None or metric > self.best_metric:
            self.best_metric = metric
            self.experiment.checkpoints.save_best(self.checkpoint_state(), self.learner.train_step,
                                                  self.env_steps, cfg.save_best_metric, metric)

    def run(self) -> int:
        cfg = self.cfg
        summaries = Summaries(cfg, self.experiment.dir, self.cfg.to_dict())
        fps = FpsMeter()
        start = time.monotonic()
        start_steps = self.env_steps
        last = dict(status=start, summary=start, save=start, best=start, milestone=start)
        learner_stats: dict[str, float] = {}
        stop_reason = None
        failed = None
        log.info("Training %s on %s: %d envs, batch %d, device %s", cfg.experiment, cfg.env,
                 self.envs.num_envs, cfg.batch_size * cfg.num_batches_per_epoch, self.device)
        try:
            with StopSignals() as signals:
                while stop_reason is None:
                    try:
                        trajectories, episodes = self.collector.collect(self.learner.policy_version)
                    except EnvFailureLimit as e:
                        failed = str(e)
                        stop_reason = f"error: {e}"
                        break
                    self.env_steps += trajectories.rollout * trajectories.num_trajectories
                    self.episodes.add(episodes)
                    self.accumulator.add(trajectories)
                    while self.accumulator.ready():
                        learner_stats = self.learner.train(self.accumulator.pop_batch())

                    now = time.monotonic()
                    fps.record(self.env_steps, now)
                    if now - last["status"] >= STATUS_INTERVAL_SEC:
                        last["status"] = now
                        self._log_status(fps, learner_stats)
                    if now - last["summary"] >= cfg.experiment_summaries_interval:
                        last["summary"] = now
                        summaries.write(self._summary_scalars(fps, learner_stats), self.env_steps)
                    if now - last["best"] >= cfg.save_best_every_sec:
                        last["best"] = now
                        self._maybe_save_best()
                    if now - last["save"] >= cfg.save_every_sec:
                        last["save"] = now
                        self.save_checkpoint()
                    if cfg.save_milestones_sec > 0 and now - last["milestone"] >= cfg.save_milestones_sec:
                        last["milestone"] = now
                        self.experiment.checkpoints.save_milestone(
                            self.checkpoint_state(), self.learner.train_step, self.env_steps)

                    if self.env_steps >= cfg.train_for_env_steps:
                        stop_reason = f"reached train_for_env_steps={cfg.train_for_env_steps}"
                    elif now - start >= cfg.train_for_seconds:
                        stop_reason = f"reached train_for_seconds={cfg.train_for_seconds}"
                    elif signals.requested:
                        stop_reason = f"{signals.requested} received"
            summaries.write(self._summary_scalars(fps, learner_stats), self.env_steps)
            self._maybe_save_best()
            self.save_checkpoint()
        finally:
            summaries.close()
            self.envs.close()
        elapsed = time.monotonic() - start
        avg = self.episodes.average()
        log.info("Stopped: %s. %d env steps in %.1f s (%.0f env steps/s this run), %d episodes, "
                 "average return %s over the last %d, best %s; checkpoints in %s", stop_reason,
                 self.env_steps, elapsed, (self.env_steps - start_steps) / max(elapsed, 1e-9),
                 self.episodes.episodes, _fmt(avg), len(self.episodes.returns),
                 _fmt(self.best_metric), self.experiment.checkpoints.checkpoint_dir)
        if failed:
            log.error(failed)
            return 1
        return 0

    def _log_status(self, fps: FpsMeter, learner_stats: dict[str, float]) -> None:
        avg = self.episodes.average()
        lag = learner_stats.get("policy_lag_avg")
        log.info("env_steps=%d fps=%.0f avg_return=%s (last %d of %d episodes) policy_version=%d "
                 "policy_lag=%s", self.env_steps, fps.fps(10), _fmt(avg), len(self.episodes.returns),
                 self.episodes.episodes, self.learner.policy_version, _fmt(lag))

    def _summary_scalars(self, fps: FpsMeter, learner_stats: dict[str, float]) -> dict[str, float]:
        scalars = {f"train/{k}": v for k, v in learner_stats.items()}
        for window in fps.windows:
            scalars[f"perf/fps_{window}s"] = fps.fps(window)
        if self.episodes.returns:
            scalars["episode/return_avg"] = self.episodes.average("reward")
            scalars["episode/length_avg"] = self.episodes.average("len")
        scalars["episode/count"] = self.episodes.episodes
        scalars["train/policy_version"] = self.learner.policy_version
        return scalars


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
