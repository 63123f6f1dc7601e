"""The runner: wires rollout workers, policy workers, the learners and the eval worker together
(each on an event loop in its own process, or all on this process's loop in serial mode), hands
their processes to the supervisor and their reports to the progress report, schedules
checkpoints, drives PBT rounds and runs the stop protocol."""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal as signals
import time
from typing import Any

import numpy as np
import torch
from faster_fifo import Queue
from signal_slot.signal_slot import EventLoop, EventLoopObject, Timer

from asyncrl.config.hyperparameters import initial_hyperparameters
from asyncrl.envs.registry import env_frames_per_step, find_env_family
from asyncrl.envs.observations import dropped_keys_warning, obs_dict_space, obs_layout
from asyncrl.envs.vector import agents_per_env
from asyncrl.experiment.checkpoint_state import RunState
from asyncrl.experiment.experiment import Experiment, mark_finished
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.pbt.population import Population
from asyncrl.runtime import names
from asyncrl.runtime.buffers import SharedWeights, TrajectoryBuffers
from asyncrl.runtime.evaluation import EvalWorker, eval_config
from asyncrl.runtime.learner_worker import LearnerStart, LearnerWorker
from asyncrl.runtime.names import (ComponentName, Role, actions_ready_signal, policy_signal,
                                   request_actions_signal, trajectories_ready_signal)
from asyncrl.runtime.pbt_rounds import PbtRounds
from asyncrl.runtime.policy_worker import PolicyWorker
from asyncrl.runtime.progress import STATUS_INTERVAL_SEC, PolicyProgress, ProgressReport
from asyncrl.runtime.rollout_worker import RolloutWorker, row_policies, worker_rows
from asyncrl.runtime.stats import EpisodeTracker
from asyncrl.runtime.supervisor import Supervisor, WorkerProcess, set_up_torch_process
from asyncrl.utils.device import describe_device
from asyncrl.utils.errors import UserError
from asyncrl.utils.seeding import seed_everything

log = logging.getLogger(__name__)

STOP_TIMEOUT_SEC = 60.0
PROCESS_CHECK_SEC = 0.2


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
        set_up_torch_process()  # serial mode trains here
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
        if cfg.with_pbt or any(h != hyperparameters[0] for h in hyperparameters):
            for p, params in enumerate(hyperparameters):
                log.info("Policy %d hyperparameters: %s", p,
                         " ".join(f"{name}={value:.6g}" for name, value in params.items()))
        if experiment.init_weights is not None and not any(experiment.resume_states):
            log.info("Initialized the model from %s", experiment.init_weights.source)
        self.pbt_rounds = None if self.population is None else \
            PbtRounds(self.loop, self.population, experiment.dir, self.progress)
        self.supervisor = Supervisor(self.loop, cfg.heartbeat_interval, self._before_respawn)
        self.reporting = ProgressReport(self.loop, experiment, self.progress, self.population,
                                        self.frames_per_step, self.supervisor)
        self.stop_reason: str | None = None
        self.reached_limit = False  # stopped by train_for_env_steps or train_for_seconds
        self.stopping = False
        self.failed: str | None = None

        # Set when the stop begins: the learners then train no further batch of their backlog,
        # so that they reach the stop message (and save) within one training iteration.
        self.stop_requested = self.ctx.RawValue("b", 0)

        self.learners = [
            LearnerWorker(
                self._loop_for(names.learner(p)), cfg, p, self.obs_space,
                self.action_space, self.buffers, self.weights[p], self.free_slots[p],
                experiment.checkpoints[p],
                LearnerStart(hyperparameters[p], experiment.resume_states[p],
                             experiment.init_weights),
                stop_requested=self.stop_requested)
            for p in range(num_policies)]
        self.policy_workers = [
            [PolicyWorker(self._loop_for(names.policy_worker(p, i)), cfg, p,
                          i, self.obs_space, self.action_space, self.buffers, self.weights[p],
                          self.wakeups, self.agents_per_env)
             for i in range(cfg.policy_workers_per_policy)]
            for p in range(num_policies)]
        self.rollout_workers = [
            RolloutWorker(self._loop_for(names.rollout_worker(w)), cfg, w,
                          self.buffers, self.free_slots, None if self.serial else self.wakeups[w],
                          self.agents_per_env)
            for w in range(cfg.num_workers)]
        self.eval_worker = None
        if cfg.eval_every_env_steps:
            self._check_eval_env()
            self.eval_worker = EvalWorker(
                self._loop_for(names.EVAL_WORKER), cfg, self.obs_space,
                self.action_space, env_index=cfg.num_workers * cfg.num_envs_per_worker)
        self._connect()

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
    def _loop_for(self, component: ComponentName) -> EventLoop:
        """The event loop a component lives on: this one (serial) or its own process's."""
        if self.serial:
            return self.loop
        process = WorkerProcess(component, self.ctx, self.cfg.default_niceness)
        self.supervisor.add(component, process)
        return process.event_loop

    def _connect(self) -> None:
        for p, learner in enumerate(self.learners):
            learner.event_loop.start.connect(learner.on_start)
            learner.report.connect(self.on_report)
            learner.stopped.connect(self.on_learner_stopped)
            self.connect(policy_signal("save", p), learner.on_save)
            self.connect(policy_signal("stop_learner", p), learner.on_stop)
            if self.pbt_rounds is not None:
                self.pbt_rounds.connect_learner(p, learner)
            if self.eval_worker is not None:
                self.connect(policy_signal("eval_snapshot", p), learner.on_eval_snapshot)
                learner.eval_snapshot_saved.connect(self.on_eval_snapshot_saved)
        policy_workers = [worker for workers in self.policy_workers for worker in workers]
        evaluators = [] if self.eval_worker is None else [self.eval_worker]
        for component in (*self.learners, *policy_workers, *self.rollout_workers, *evaluators):
            component.heartbeat.connect(self.supervisor.on_heartbeat)
            component.timings_report.connect(self.reporting.on_timings)
        for evaluator in evaluators:
            evaluator.event_loop.start.connect(evaluator.on_start)
            self.connect("evaluate", evaluator.on_evaluate)
            evaluator.evaluated.connect(self.reporting.on_evaluated)
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
            worker.episodes_finished.connect(self.reporting.on_episodes)
            worker.fatal_error.connect(self.on_fatal_error)
            self.connect("stop_workers", worker.on_stop)

    def _timer(self, interval: float, slot) -> Timer:
        timer = Timer(self.loop, interval)
        timer.timeout.connect(slot)
        return timer

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        self._timer(STATUS_INTERVAL_SEC, self.reporting.log_status)
        self._timer(cfg.experiment_summaries_interval, self.reporting.write_summaries)
        self._timer(cfg.save_every_sec, self._save_regular)
        self._timer(cfg.save_best_every_sec, self._maybe_save_best)
        if cfg.save_milestones_sec > 0:
            self._timer(cfg.save_milestones_sec, self._save_milestone)
        self._timer(cfg.heartbeat_reporting_interval, self.supervisor.warn_late_heartbeats)
        self._timer(PROCESS_CHECK_SEC, self._check_processes)
        self.supervisor.start()
        self.reporting.start()
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
            self.reporting.log_summary(self.stop_reason)
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
            mark_finished(self.experiment.dir, self.stop_reason, self.reporting.env_steps)
        return 0

    def _shutdown(self) -> None:
        self.supervisor.shutdown()
        if self.serial:  # the workers' own stop slot may not have run before the loop ended
            for worker in self.rollout_workers:
                if worker.envs is not None:
                    worker.envs.close()
        self.reporting.close()

    # -- the stop protocol ------------------------------------------------------------------------
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
                self.emit(policy_signal("stop_learner", p), self._run_state(p))
        self._stop_when_learners_stopped()
        deadline = Timer(self.loop, STOP_TIMEOUT_SEC, single_shot=True)
        deadline.timeout.connect(self._stop_timed_out)

    def _stop_timed_out(self) -> None:
        late = [names.learner(p).object_id for p, progress in enumerate(self.progress)
                if not progress.stopped]
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

    def on_fatal_error(self, message: str) -> None:
        self.failed = message
        self._begin_stop(f"error: {message}")

    def _check_processes(self) -> None:
        if time.monotonic() - self.reporting.start_time >= self.cfg.train_for_seconds:
            self._begin_stop(f"reached train_for_seconds={self.cfg.train_for_seconds}",
                             reached_limit=True)
        if self.stopping:
            return
        dead = self.supervisor.check()
        if dead is None:
            return
        component, cause = dead
        name = component.object_id
        self.failed = f"{name} died ({cause}): stopping the run"
        log.error(self.failed)
        if component.role is Role.LEARNER:
            # Nobody else holds its optimizer state: that policy stops without a final
            # checkpoint; every other policy saves one.
            self.progress[component.policy].stopped = True
        self._begin_stop(f"{name} died")

    def _before_respawn(self, component: ComponentName, cause: str) -> None:
        """A dead rollout worker is respawned: the slots it was filling go back to their
        policies' pools."""
        versions = ", ".join(str(progress.version) for progress in self.progress)
        log.warning("%s died (%s) at policy_version=%s: respawning it with fresh envs; its "
                    "partial trajectories are dropped", component.object_id, cause, versions)
        rows = worker_rows(self.cfg, component.index, self.agents_per_env)
        held = self.buffers.env_slots[rows]
        held = held[held >= 0]
        for p, pool in enumerate(self.free_slots):
            mine = held[self.slot_policy[held] == p]
            if len(mine):
                pool.put_many(mine.tolist())
        self.buffers.env_slots[rows] = -1

    # -- learners' reports, evaluations, checkpoints, PBT -----------------------------------------
    def on_report(self, policy: int, stats: dict[str, float], env_steps: int,
                  policy_version: int) -> None:
        self.reporting.record_learner_report(policy, stats, env_steps, policy_version)
        limit = self.cfg.train_for_env_steps
        if self.reporting.reached_env_steps(limit):
            self._begin_stop(f"reached train_for_env_steps={limit}", reached_limit=True)
        if self.pbt_rounds is not None and not self.stopping:
            self.pbt_rounds.maybe_start_round()
        self._maybe_evaluate(policy)

    def _maybe_evaluate(self, policy: int) -> None:
        """Asks the policy's learner for a snapshot to evaluate when one is due."""
        if self.eval_worker is None or self.stopping or not self.reporting.start_evaluation(policy):
            return
        self.emit(policy_signal("eval_snapshot", policy), self._run_state(policy))

    def on_eval_snapshot_saved(self, policy: int, path: str, env_steps: int, train_step: int,
                               version: int) -> None:
        self.emit("evaluate", policy, path, env_steps, train_step, version)

    def _save_regular(self) -> None:
        for p in range(self.cfg.num_policies):
            self.emit(policy_signal("save", p), "regular", self._run_state(p), None)

    def _save_milestone(self) -> None:
        for p in range(self.cfg.num_policies):
            self.emit(policy_signal("save", p), "milestone", self._run_state(p), None)

    def _maybe_save_best(self) -> None:
        if self.stopping:
            return
        for p, metric in self.reporting.new_bests():
            self.emit(policy_signal("save", p), "best", self._run_state(p), metric)


def resumed_hyperparameters(stored: dict[str, float], starting: dict[str, float],
                            overridden: frozenset[str]) -> dict[str, float]:
    """A resumed policy's hyperparameters: those its checkpoint holds (PBT's, or the run's), but
    the ones this run's command line or preset changed take their new values."""
    return {name: starting[name] if name in overridden else value for name, value in stored.items()}
