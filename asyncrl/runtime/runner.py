"""The runner: builds rollout workers, policy workers and the learner (as processes that talk
over signal-slot event loops, or all on one loop in serial mode), watches their heartbeats and
liveness, respawns dead rollout workers, and drives status, summaries, checkpoints and the stop."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import signal as signals
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import torch
from faster_fifo import Queue
from signal_slot.signal_slot import EventLoop, EventLoopObject, EventLoopProcess, Timer

from asyncrl.config.hyperparameters import initial_hyperparameters
from asyncrl.envs.registry import env_frames_per_step, find_env_family
from asyncrl.envs.observations import dropped_keys_warning, obs_dict_space, obs_layout
from asyncrl.envs.vector import EpisodeStats, agents_per_env
from asyncrl.experiment.checkpoint_state import RunState
from asyncrl.experiment.experiment import Experiment, mark_finished
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.pbt.population import Population, share_path
from asyncrl.runtime.buffers import SharedWeights, TrajectoryBuffers
from asyncrl.runtime.evaluation import EvalWorker, eval_config, eval_summaries
from asyncrl.runtime.learner_worker import LearnerStart, LearnerWorker
from asyncrl.runtime.policy_worker import PolicyWorker
from asyncrl.runtime.rollout_worker import (RolloutWorker, actions_ready_signal,
                                            request_actions_signal, row_policies,
                                            trajectories_ready_signal)
from asyncrl.runtime.stats import EpisodeTracker, FpsMeter
from asyncrl.runtime.summaries import Summaries
from asyncrl.utils.device import describe_device
from asyncrl.utils.errors import UserError
from asyncrl.utils.processes import prepare_child_process
from asyncrl.utils.seeding import seed_everything

log = logging.getLogger(__name__)

STATUS_INTERVAL_SEC = 5.0
STOP_TIMEOUT_SEC = 60.0
TIMINGS_FILE = "timings.json"
# A rollout worker silent for this many heartbeat intervals is considered hung and replaced.
HEARTBEAT_TIMEOUT_FACTOR = 3


def init_child_process(name: str, niceness: int) -> None:
    """Runs first in every worker process."""
    prepare_child_process(name, niceness)
    torch.set_num_threads(1)


def kill_with_children(process: Any) -> None:
    """Kills a worker process and the processes it started. An env may run its simulator as a
    process of its own (ViZDoom's engine, which ignores SIGTERM), which would outlive a killed
    worker: the worker never gets to close the env. (ViZDoom's shared-memory segments in
    /dev/shm, which closing the env removes, stay behind.)"""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.kill()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@dataclass
class PolicyProgress:
    """What the runner knows of one policy: its episodes, counters and latest learner stats."""

    episodes: EpisodeTracker
    env_steps: int = 0
    version: int = 0
    best_metric: float | None = None
    learner_stats: dict[str, float] = field(default_factory=dict)
    stopped: bool = False  # its learner has confirmed its final checkpoint (or died)
    next_eval: int = 0  # evaluate once env_steps reach this (--eval_every_env_steps)
    evaluating: bool = False  # an evaluation is under way (one at a time)
    # The latest evaluation: the env steps of the snapshot it played, and its summary.
    last_eval: tuple[int, dict[str, Any]] | None = None


class Runner(EventLoopObject):
    """Builds the components and drives the run. Parallel: each component on an event loop in
    its own process. Serial (`--serial_mode`): the very same components on this process's loop.

    With `num_policies` > 1 every policy has its own learner, policy workers, shared weights,
    checkpoints and pool of trajectory slots (so one policy's backlog never starves another's
    collection); the rollout workers are shared, each row acting for a fixed policy."""

    def __init__(self, experiment: Experiment):
        cfg = self.cfg = experiment.cfg
        self.serial = cfg.serial_mode
        self.loop = EventLoop("runner_evt_loop", serial_mode=self.serial)
        super().__init__(self.loop, object_id="runner")
        self.experiment = experiment
        # Env steps per agent step: emulator frames with Atari's frame skipping, else 1.
        self.frames_per_step = env_frames_per_step(cfg)
        self.ctx = mp.get_context("fork")
        torch.set_num_threads(1)
        seed_everything(cfg.seed)

        probe = find_env_family(cfg.env).make_env(cfg.env, cfg, 0)
        self.obs_space, self.action_space = probe.observation_space, probe.action_space
        self.agents_per_env = agents_per_env(probe)
        probe.close()
        num_policies = cfg.num_policies
        num_rows = cfg.num_workers * cfg.num_envs_per_worker * self.agents_per_env  # agents
        rows_per_policy = np.bincount(row_policies(cfg, self.agents_per_env), minlength=num_policies)
        batch_trajectories = cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout
        if cfg.async_rl:
            # Slots for every row's trajectory in flight plus the batches the learner may hold;
            # with none free the workers pause, which bounds the policy lag.
            slots_per_policy = [int(rows) + cfg.num_batches_to_accumulate * batch_trajectories
                                for rows in rows_per_policy]
        else:
            # Exactly one batch: collection stops until the learner has trained on it and
            # published the new weights, so every transition comes from the current policy.
            slots_per_policy = [batch_trajectories] * num_policies
        models = [self._initial_model(p) for p in range(num_policies)]
        if (dropped := dropped_keys_warning(obs_layout(self.obs_space, cfg.env))) is not None:
            log.warning("%s", dropped)
        log.info("Observations: %s", "; ".join(models[0].describe_observations()))
        self.buffers = TrajectoryBuffers(obs_dict_space(self.obs_space), self.action_space,
                                         cfg.rollout, sum(slots_per_policy), num_rows,
                                         models[0].rnn_state_size)
        # [num_slots] the policy whose pool each slot belongs to
        self.slot_policy = torch.repeat_interleave(torch.arange(num_policies),
                                                   torch.tensor(slots_per_policy))
        self.free_slots = []
        for p in range(num_policies):
            pool = torch.nonzero(self.slot_policy == p)[:, 0].tolist()
            queue = Queue(max_size_bytes=max(1_000_000, 64 * len(pool)))
            queue.put_many(pool)
            self.free_slots.append(queue)
        self.weights = [SharedWeights(model, self._initial_version(p))
                        for p, model in enumerate(models)]
        self.wakeups = None if self.serial else [self.ctx.Semaphore(0) for _ in range(cfg.num_workers)]

        self.progress = [PolicyProgress(EpisodeTracker(cfg.stats_avg), version=self._initial_version(p))
                         for p in range(num_policies)]
        for p, state in enumerate(experiment.resume_states):
            if state is None:
                continue
            self.progress[p].episodes.load_state_dict(state.run.episode_stats)
            self.progress[p].env_steps = state.env_steps
            self.progress[p].best_metric = state.run.best_metric
            log.info("Resumed %sfrom env_steps=%d, policy_version=%d",
                     f"policy {p} " if num_policies > 1 else "", self.progress[p].env_steps,
                     state.learner.policy_version)
        if cfg.eval_every_env_steps:
            for progress in self.progress:  # a resumed run goes on with the next multiple
                progress.next_eval = next_multiple(progress.env_steps, cfg.eval_every_env_steps)
        starting = initial_hyperparameters(cfg)
        hyperparameters = [starting[p] if state is None or state.hyperparameters is None else
                           resumed_hyperparameters(state.hyperparameters, starting[p],
                                                   experiment.overridden)
                           for p, state in enumerate(experiment.resume_states)]
        self.population = None
        if cfg.with_pbt:
            clocks = [state.run.pbt_next_round for state in experiment.resume_states
                      if state is not None and state.run.pbt_next_round is not None]
            self.population = Population(cfg, experiment.dir, hyperparameters,
                                         max(clocks) if clocks else None)
        self.pbt_waiting: dict[int, list[tuple[int, dict[str, float]]]] = {}  # source -> targets
        if cfg.with_pbt or any(h != hyperparameters[0] for h in hyperparameters):
            for p, params in enumerate(hyperparameters):
                log.info("Policy %d hyperparameters: %s", p,
                         " ".join(f"{name}={value:.6g}" for name, value in params.items()))
        if experiment.init_weights is not None and not any(experiment.resume_states):
            log.info("Initialized the model from %s", experiment.init_weights.source)
        self.last_heartbeat: dict[str, float] = {}
        self.timings: dict[str, dict[str, float]] = {}  # component -> activity -> seconds
        self.worker_restarts = 0
        self.fps = FpsMeter()
        self.start_time = time.monotonic()
        self.stop_reason: str | None = None
        self.reached_limit = False  # stopped by train_for_env_steps or train_for_seconds
        self.stopping = False
        self.failed: str | None = None

        # Set when the stop begins: the learners then train no further batch of their backlog,
        # so that they reach the stop message (and save) within one training iteration.
        self.stop_requested = self.ctx.RawValue("b", 0)

        self.processes: dict[str, EventLoopProcess] = {}
        self.learners = [
            LearnerWorker(
                self._loop_for(f"learner_p{p}", f"asyncrl-learn{p}"), cfg, p, self.obs_space,
                self.action_space, self.buffers, self.weights[p], self.free_slots[p],
                experiment.checkpoints[p],
                LearnerStart(hyperparameters[p], experiment.resume_states[p],
                             experiment.init_weights),
                stop_requested=self.stop_requested)
            for p in range(num_policies)]
        self.policy_workers = [
            [PolicyWorker(self._loop_for(f"policy_worker_p{p}_{i}", f"asyncrl-pw{p}-{i}"), cfg, p,
                          i, self.obs_space, self.action_space, self.buffers, self.weights[p],
                          self.wakeups, self.agents_per_env)
             for i in range(cfg.policy_workers_per_policy)]
            for p in range(num_policies)]
        self.rollout_workers = [
            RolloutWorker(self._loop_for(f"rollout_worker_{w}", f"asyncrl-rw{w}"), cfg, w,
                          self.buffers, self.free_slots, None if self.serial else self.wakeups[w],
                          self.agents_per_env)
            for w in range(cfg.num_workers)]
        self.eval_worker = None
        if cfg.eval_every_env_steps:
            self._check_eval_env()
            self.eval_worker = EvalWorker(
                self._loop_for("eval_worker", "asyncrl-eval"), cfg, self.obs_space,
                self.action_space, env_index=cfg.num_workers * cfg.num_envs_per_worker)
        self._connect()

    @property
    def env_steps(self) -> int:
        """Env steps of all policies together."""
        return sum(progress.env_steps for progress in self.progress)

    def _check_eval_env(self) -> None:
        """Envs made with --eval_env_kwargs must be made, and fit the model, before training."""
        cfg = self.cfg
        if cfg.eval_env_kwargs is None:
            return
        try:
            probe = find_env_family(cfg.env).make_env(cfg.env, eval_config(cfg), 0)
        except UserError as e:
            raise UserError(f"--eval_env_kwargs={cfg.eval_env_kwargs}: {e}") from None
        spaces = probe.observation_space, probe.action_space
        probe.close()
        if spaces != (self.obs_space, self.action_space):
            raise UserError(f"--eval_env_kwargs={cfg.eval_env_kwargs} gives envs other "
                            f"observation or action spaces ({spaces[0]}, {spaces[1]}) than the "
                            f"training envs' ({self.obs_space}, {self.action_space}): the policy "
                            "cannot play them")

    def _initial_model(self, policy: int) -> ActorCritic:
        model = ActorCritic(self.cfg, self.obs_space, self.action_space)
        state = self.experiment.resume_states[policy]
        if state is not None:
            model.load_state_dict(state.learner.model)
        elif self.experiment.init_weights is not None:
            model.load_state_dict(self.experiment.init_weights.model)
        return model

    def _initial_version(self, policy: int) -> int:
        state = self.experiment.resume_states[policy]
        return state.learner.policy_version if state is not None else 0

    # -- wiring ---------------------------------------------------------------------------------
    def _loop_for(self, name: str, title: str) -> EventLoop:
        """The event loop a component lives on: this one (serial) or its own process's."""
        if self.serial:
            return self.loop
        # The process object lives on its own loop too, so it needs a name apart from its component.
        process = EventLoopProcess(f"{name}_process", multiprocessing_context=self.ctx,
                                   init_func=init_child_process,
                                   args=(title, self.cfg.default_niceness), daemon=True)
        self.processes[name] = process
        return process.event_loop

    def _connect(self) -> None:
        for p, learner in enumerate(self.learners):
            learner.event_loop.start.connect(learner.on_start)
            learner.report.connect(self.on_report)
            learner.stopped.connect(self.on_learner_stopped)
            self.connect(f"save_p{p}", learner.on_save)
            self.connect(f"stop_learner_p{p}", learner.on_stop)
            self.connect(f"pbt_share_p{p}", learner.on_pbt_share)
            self.connect(f"pbt_replace_p{p}", learner.on_pbt_replace)
            self.connect(f"pbt_hyperparameters_p{p}", learner.on_pbt_hyperparameters)
            learner.pbt_shared.connect(self.on_pbt_shared)
            if self.eval_worker is not None:
                self.connect(f"eval_snapshot_p{p}", learner.on_eval_snapshot)
                learner.eval_snapshot_saved.connect(self.on_eval_snapshot_saved)
        policy_workers = [worker for workers in self.policy_workers for worker in workers]
        evaluators = [] if self.eval_worker is None else [self.eval_worker]
        for component in (*self.learners, *policy_workers, *self.rollout_workers, *evaluators):
            component.heartbeat.connect(self.on_heartbeat)
            component.timings_report.connect(self.on_timings)
        for evaluator in evaluators:
            evaluator.event_loop.start.connect(evaluator.on_start)
            self.connect("evaluate", evaluator.on_evaluate)
            evaluator.evaluated.connect(self.on_evaluated)
            self.connect("stop_workers", evaluator.on_stop)
        for worker in policy_workers:
            worker.event_loop.start.connect(worker.on_start)
            self.connect("stop_workers", worker.on_stop)
        for w, worker in enumerate(self.rollout_workers):
            worker.event_loop.start.connect(worker.on_start)
            for p, workers in enumerate(self.policy_workers):
                policy_worker = workers[w % len(workers)]
                worker.connect(request_actions_signal(p), policy_worker.on_request)
                policy_worker.connect(actions_ready_signal(w), worker.on_actions_ready)
                worker.connect(trajectories_ready_signal(p), self.learners[p].on_trajectories)
            worker.episodes_finished.connect(self.on_episodes)
            worker.fatal_error.connect(self.on_fatal_error)
            self.connect("stop_workers", worker.on_stop)

    def _timer(self, interval: float, slot) -> Timer:
        timer = Timer(self.loop, interval)
        timer.timeout.connect(slot)
        return timer

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        self._timer(STATUS_INTERVAL_SEC, self._log_status)
        self._timer(cfg.experiment_summaries_interval, self._write_summaries)
        self._timer(cfg.save_every_sec, self._save_regular)
        self._timer(cfg.save_best_every_sec, self._maybe_save_best)
        if cfg.save_milestones_sec > 0:
            self._timer(cfg.save_milestones_sec, self._save_milestone)
        self._timer(cfg.heartbeat_reporting_interval, self._check_heartbeats)
        self._timer(0.2, self._check_processes)
        for process in self.processes.values():
            process.start()
        # Created after the fork: the writer's threads and files stay in this process.
        self.summaries = Summaries(cfg, self.experiment.dir, cfg.to_dict())
        self.start_time = time.monotonic()
        self.start_steps = self.env_steps
        agents = f" x {self.agents_per_env} agents" if self.agents_per_env > 1 else ""
        policies = f"{cfg.num_policies} policies, " if cfg.num_policies > 1 else ""
        splits = "1 split" if cfg.worker_num_splits == 1 else f"{cfg.worker_num_splits} splits"
        log.info("Training %s on %s: %s%d rollout workers x %d envs%s (%s), %d policy "
                 "worker(s) per policy, batch %d, device %s", cfg.experiment, cfg.env, policies,
                 cfg.num_workers, cfg.num_envs_per_worker, agents, splits,
                 cfg.policy_workers_per_policy, cfg.batch_size * cfg.num_batches_per_epoch,
                 describe_device(cfg.device))
        previous = {s: signals.signal(s, self._on_signal) for s in (signals.SIGINT, signals.SIGTERM)}
        try:
            try:
                self.loop.exec()
            finally:
                self.stopping = True  # the loop is over: a signal from now on stops nothing more
                self._shutdown()
            self._log_summary()
        finally:
            # Only now: a SIGTERM often comes more than once (Ray, scancel, a container stop),
            # and with the default handler back a late one ended the process in the middle of
            # writing its summaries.
            for s, handler in previous.items():
                signals.signal(s, handler)
        if self.failed:
            log.error(self.failed)
            return 1
        if self.reached_limit:
            mark_finished(self.experiment.dir, self.stop_reason, self.env_steps)
        return 0

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self.start_time
        total = self.env_steps
        # Env steps are emulator frames with frame skipping: the agent's steps too.
        agent = "" if self.frames_per_step == 1 else f", {total // self.frames_per_step} agent steps"
        log.info("Stopped: %s. %d env steps in %.1f s (%.0f env steps/s this run)%s, %d rollout "
                 "worker restart(s); checkpoints in %s", self.stop_reason, total, elapsed,
                 (total - self.start_steps) / max(elapsed, 1e-9), agent, self.worker_restarts,
                 self.experiment.dir)
        for p, progress in enumerate(self.progress):
            episodes, stats = progress.episodes, progress.learner_stats
            log.info("%s%d env steps, %d episodes, average return %s over the last %d, best %s, "
                     "policy lag %s in the last batch, %d trajectories dropped for policy lag%s",
                     self._policy_label(p), progress.env_steps, episodes.episodes,
                     _fmt(episodes.average()), len(episodes.returns), _fmt(progress.best_metric),
                     _lag(stats, with_max=True), int(stats.get("dropped_trajectories", 0)),
                     "" if progress.last_eval is None else
                     f"; last evaluation{_eval_text(progress.last_eval)}")

    def _policy_label(self, policy: int) -> str:
        return f"policy {policy}: " if self.cfg.num_policies > 1 else ""

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signals.Signals(signum).name
        if self.stopping:
            if signum == signals.SIGINT:  # a second Ctrl+C: stop at once
                raise KeyboardInterrupt
            log.info("%s received again: already stopping", name)
            return
        log.info("%s received: stopping and saving a checkpoint", name)
        self._begin_stop(f"{name} received")

    def _run_state(self, policy: int) -> RunState:
        progress = self.progress[policy]
        return RunState(progress.episodes.state_dict(), progress.best_metric,
                        None if self.population is None else self.population.next_round)

    def _begin_stop(self, reason: str, reached_limit: bool = False) -> None:
        if self.stopping:
            return
        self._maybe_save_best()
        self.stopping = True
        self.stop_reason = reason
        self.reached_limit = reached_limit
        self.stop_requested.value = 1
        for p, progress in enumerate(self.progress):
            if not progress.stopped:
                self.emit(f"stop_learner_p{p}", self._run_state(p))
        self._stop_when_learners_stopped()
        deadline = Timer(self.loop, STOP_TIMEOUT_SEC, single_shot=True)
        deadline.timeout.connect(self._stop_timed_out)

    def _stop_timed_out(self) -> None:
        late = [f"learner_p{p}" for p, progress in enumerate(self.progress) if not progress.stopped]
        self.failed = (f"{', '.join(late)} did not confirm the final checkpoint within "
                       f"{STOP_TIMEOUT_SEC:.0f} s: stopping without it")
        self.emit("stop_workers")
        self.loop.stop()

    def on_learner_stopped(self, policy: int, env_steps: int, policy_version: int) -> None:
        progress = self.progress[policy]
        progress.env_steps = max(progress.env_steps, env_steps)
        progress.stopped = True
        self._stop_when_learners_stopped()

    def _stop_when_learners_stopped(self) -> None:
        if self.stopping and all(progress.stopped for progress in self.progress):
            self.emit("stop_workers")
            self.loop.stop()

    # -- slots ----------------------------------------------------------------------------------
    def on_report(self, policy: int, stats: dict[str, float], env_steps: int,
                  policy_version: int) -> None:
        progress = self.progress[policy]
        progress.learner_stats = stats
        progress.env_steps = env_steps
        progress.version = policy_version
        self.fps.record(self.env_steps)
        limit = self.cfg.train_for_env_steps
        if all(progress.env_steps >= limit for progress in self.progress):
            self._begin_stop(f"reached train_for_env_steps={limit}", reached_limit=True)
        self._maybe_pbt_round()
        self._maybe_evaluate(policy)

    # -- evaluation during training ---------------------------------------------------------------
    def _maybe_evaluate(self, policy: int) -> None:
        """Asks the policy's learner for a snapshot to evaluate once its env steps reach the
        next multiple of eval_every_env_steps (steps passed during an evaluation are skipped)."""
        progress = self.progress[policy]
        if self.eval_worker is None or self.stopping or progress.evaluating \
                or progress.env_steps < progress.next_eval:
            return
        progress.evaluating = True
        progress.next_eval = next_multiple(progress.env_steps, self.cfg.eval_every_env_steps)
        self.emit(f"eval_snapshot_p{policy}", self._run_state(policy))

    def on_eval_snapshot_saved(self, policy: int, path: str, env_steps: int, train_step: int,
                               version: int) -> None:
        self.emit("evaluate", policy, path, env_steps, train_step, version)

    def on_evaluated(self, policy: int, env_steps: int, train_step: int, version: int,
                     summary: dict[str, Any]) -> None:
        """An evaluation of the policy's snapshot taken at `env_steps` came back."""
        cfg, progress = self.cfg, self.progress[policy]
        progress.evaluating = False
        progress.last_eval = (env_steps, summary)
        log.info("%sevaluation at env_steps=%d (policy_version=%d, %s actions): return %.2f "
                 "(std %.2f, min %.2f, max %.2f) over %d episodes, length %.1f",
                 self._policy_label(policy), env_steps, version,
                 "deterministic" if cfg.eval_deterministic else "sampled", summary["return_mean"],
                 summary["return_std"], summary["return_min"], summary["return_max"],
                 summary["episodes"], summary["length_mean"])
        prefix = f"p{policy}/" if cfg.num_policies > 1 else ""
        scalars = {prefix + name: value for name, value in eval_summaries(summary).items()}
        scalars[f"{prefix}eval/policy_version"] = version
        self.summaries.write(scalars, env_steps)
        metric = summary["return_mean"]
        if cfg.save_best_metric == "eval/return" and env_steps >= cfg.save_best_after and (
                progress.best_metric is None or metric > progress.best_metric):
            progress.best_metric = metric
            best = self.experiment.checkpoints[policy].promote_eval_snapshot(
                train_step, env_steps, cfg.save_best_metric, metric)
            log.info("Saved best checkpoint %s/%s", best.parent.name, best.name)

    def _maybe_pbt_round(self) -> None:
        population = self.population
        steps = [progress.env_steps for progress in self.progress]
        if population is None or self.stopping or self.pbt_waiting or not population.due(steps):
            return
        objectives = population.objectives(
            [progress.episodes.average() for progress in self.progress],
            [progress.episodes.extra_averages() for progress in self.progress])
        result = population.plan(objectives, steps)
        replaced = set()
        for r in result.replacements:
            replaced.add(r.policy)
            if r.source not in self.pbt_waiting:
                self.pbt_waiting[r.source] = []
                self.emit(f"pbt_share_p{r.source}", str(share_path(self.experiment.dir, r.source)))
            self.pbt_waiting[r.source].append((r.policy, result.hyperparameters[r.policy]))
        for p in {m.policy for m in result.mutations} - replaced:
            self.emit(f"pbt_hyperparameters_p{p}", result.hyperparameters[p])

    def on_pbt_shared(self, source: int, path: str) -> None:
        for target, hyperparameters in self.pbt_waiting.pop(source, []):
            self.emit(f"pbt_replace_p{target}", path, source, hyperparameters)
    def on_episodes(self, episodes: list[tuple[int, EpisodeStats]]) -> None:
        for policy, episode in episodes:
            self.progress[policy].episodes.add([episode])

    def on_fatal_error(self, message: str) -> None:
        self.failed = message
        self._begin_stop(f"error: {message}")

    def on_timings(self, name: str, seconds: dict[str, float]) -> None:
        self.timings[name] = seconds

    def on_heartbeat(self, name: str, timestamp: float) -> None:
        self.last_heartbeat[name] = time.time()

    # -- timers ---------------------------------------------------------------------------------
    def _log_status(self) -> None:
        parts = []
        for p, progress in enumerate(self.progress):
            episodes = progress.episodes
            extra = "".join(f" {name}={value:.3g}" for name, value in episodes.extra_averages().items())
            parts.append(f"{self._policy_label(p)}avg_return={_fmt(episodes.average())} (last "
                         f"{len(episodes.returns)} of {episodes.episodes} episodes) "
                         f"policy_version={progress.version} "
                         f"policy_lag={_lag(progress.learner_stats)}"
                         + _eval_text(progress.last_eval)
                         + (f" | episode_extra:{extra}" if extra else ""))
        log.info("env_steps=%d fps=%.0f%s %s", self.env_steps, self.fps.fps(10),
                 self._agent_steps_text(self.env_steps), " | ".join(parts))

    def _agent_steps_text(self, env_steps: int) -> str:
        """' agent_steps=N' where env steps count frames (Atari), else nothing."""
        if self.frames_per_step == 1:
            return ""
        return f" agent_steps={env_steps // self.frames_per_step}"

    def _write_summaries(self) -> None:
        scalars = {f"perf/fps_{window}s": self.fps.fps(window) for window in self.fps.windows}
        scalars["perf/rollout_worker_restarts"] = self.worker_restarts
        for p, progress in enumerate(self.progress):
            prefix = f"p{p}/" if self.cfg.num_policies > 1 else ""
            episodes = progress.episodes
            own = {f"train/{k}": v for k, v in progress.learner_stats.items()}
            if episodes.returns:
                own["episode/return_avg"] = episodes.average("reward")
                own["episode/length_avg"] = episodes.average("len")
            for name, value in episodes.extra_averages().items():
                own[extra_stat_tag(name)] = value
            own["episode/count"] = episodes.episodes
            own["train/policy_version"] = progress.version
            own["train/env_steps"] = progress.env_steps
            if self.frames_per_step > 1:
                own["train/agent_steps"] = progress.env_steps // self.frames_per_step
            scalars.update({prefix + name: value for name, value in own.items()})
        if self.population is not None:
            scalars.update(self.population.summaries())
        self.summaries.write(scalars, self.env_steps)

    def _save_regular(self) -> None:
        for p in range(self.cfg.num_policies):
            self.emit(f"save_p{p}", "regular", self._run_state(p), None)

    def _save_milestone(self) -> None:
        for p in range(self.cfg.num_policies):
            self.emit(f"save_p{p}", "milestone", self._run_state(p), None)

    def _maybe_save_best(self) -> None:
        cfg = self.cfg
        if self.stopping or cfg.save_best_metric == "eval/return":  # evaluations choose the best
            return
        for p, progress in enumerate(self.progress):
            metric = progress.episodes.average(cfg.save_best_metric)
            if metric is None or progress.env_steps < cfg.save_best_after or progress.stopped:
                continue
            if progress.best_metric is None or metric > progress.best_metric:
                progress.best_metric = metric
                self.emit(f"save_p{p}", "best", self._run_state(p), metric)

    def _check_heartbeats(self) -> None:
        now = time.time()
        for name, last in self.last_heartbeat.items():
            if now - last > 2 * self.cfg.heartbeat_interval:
                log.warning("%s has not sent a heartbeat for %.0f s", name, now - last)

    def _check_processes(self) -> None:
        if time.monotonic() - self.start_time >= self.cfg.train_for_seconds:
            self._begin_stop(f"reached train_for_seconds={self.cfg.train_for_seconds}",
                             reached_limit=True)
        if self.stopping:
            return
        now = time.time()
        for name, process in self.processes.items():
            if process.is_alive():
                silent = now - self.last_heartbeat.get(name, now)
                if name.startswith("rollout_worker_") and \
                        silent > HEARTBEAT_TIMEOUT_FACTOR * self.cfg.heartbeat_interval:
                    log.warning("%s sent no heartbeat for %.0f s: terminating it", name, silent)
                    kill_with_children(process)
                continue
            if name.startswith("rollout_worker_"):
                self._respawn_rollout_worker(int(name.rsplit("_", 1)[1]), _exit_cause(process.exitcode))
                continue
            self.failed = f"{name} died ({_exit_cause(process.exitcode)}): stopping the run"
            log.error(self.failed)
            if name.startswith("learner_p"):
                # Nobody else holds its optimizer state: that policy stops without a final
                # checkpoint; every other policy saves one.
                self.progress[int(name[len("learner_p"):])].stopped = True
            self._begin_stop(f"{name} died")
            return

    def _respawn_rollout_worker(self, w: int, cause: str) -> None:
        versions = ", ".join(str(progress.version) for progress in self.progress)
        log.warning("rollout_worker_%d died (%s) at policy_version=%s: respawning it with fresh "
                    "envs; its partial trajectories are dropped", w, cause, versions)
        process = self.processes[f"rollout_worker_{w}"]
        process.join(timeout=1)
        # The slots the dead worker was filling go back to their policies' pools.
        per_worker = self.cfg.num_envs_per_worker * self.agents_per_env
        rows = slice(w * per_worker, (w + 1) * per_worker)
        held = self.buffers.env_slots[rows]
        held = held[held >= 0]
        for p, pool in enumerate(self.free_slots):
            mine = held[self.slot_policy[held] == p]
            if len(mine):
                pool.put_many(mine.tolist())
        self.buffers.env_slots[rows] = -1
        # This process still holds the worker as it was before its first start, wired to the
        # same queues: a new OS process running the same event loop is a fresh worker that every
        # other component already reaches. (Replies meant for the dead one carry stale tokens.)
        process._process = self.ctx.Process(target=process._target, name=process.name, daemon=True)
        process.start()
        self.last_heartbeat[f"rollout_worker_{w}"] = time.time()  # time to start up
        self.worker_restarts += 1

    def _shutdown(self) -> None:
        processes = [p for p in self.processes.values() if p.pid is not None]  # started ones
        deadline = time.monotonic() + 10
        for process in processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                log.warning("%s did not stop in time: killing it", process.name)
                kill_with_children(process)
                process.join(timeout=5)
        if self.serial:  # the workers' own stop slot may not have run before the loop ended
            for worker in self.rollout_workers:
                if worker.envs is not None:
                    worker.envs.close()
        self._write_summaries()
        self.summaries.close()
        self._report_timings()

    def _report_timings(self) -> None:
        """Where each component's time went: logged, and kept in the experiment folder."""
        if not self.timings:
            return
        path = self.experiment.dir / TIMINGS_FILE
        path.write_text(json.dumps(self.timings, indent=2, sort_keys=True))
        for name, seconds in sorted(self.timings.items()):
            total = max(seconds.get("total", 0.0), 1e-9)
            parts = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(seconds.items())
                              if k != "total")
            log.info("Time of %s over %.0f s: %s", name, total, parts or "n/a")


def extra_stat_tag(name: str) -> str:
    """The summary tag of a custom episode statistic: `episode_extra/<name>`, or the name itself
    when it names its own group (`game/coins`)."""
    return name if "/" in name else f"episode_extra/{name}"


def resumed_hyperparameters(stored: dict[str, float], starting: dict[str, float],
                            overridden: frozenset[str]) -> dict[str, float]:
    """A resumed policy's hyperparameters: those its checkpoint holds (PBT's, or the run's), but
    the ones this run's command line or preset changed take their new values."""
    return {name: starting[name] if name in overridden else value for name, value in stored.items()}


def next_multiple(value: int, every: int) -> int:
    """The smallest multiple of `every` above `value`."""
    return (value // every + 1) * every


def _eval_text(last_eval: tuple[int, dict[str, Any]] | None) -> str:
    """The latest evaluation in the status line: ' eval_return=R (at N env steps)'."""
    if last_eval is None:
        return ""
    env_steps, summary = last_eval
    return f" eval_return={summary['return_mean']:.1f} (at {env_steps} env steps)"


def _exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by {signals.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _lag(stats: dict[str, float], with_max: bool = False) -> str:
    """The learner's average policy lag in both units: asyncrl's policy versions (one per
    training iteration) and SGD steps, the unit of Sample Factory's figures, so that the two
    compare like with like; "n/a" before the first iteration."""
    if "policy_lag_avg" not in stats:
        return "n/a"
    text = (f"{stats['policy_lag_avg']:.1f} versions ({stats['policy_lag_sgd_steps_avg']:.1f} "
            "SGD steps, Sample Factory's unit")
    if with_max:
        text += (f"; max {stats['policy_lag_max']:.1f} versions, "
                 f"{stats['policy_lag_sgd_steps_max']:.1f} SGD steps")
    return text + ")"
