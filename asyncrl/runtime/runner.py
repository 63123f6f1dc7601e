"""The runner: builds rollout workers, policy workers and the learner (as processes that talk
over signal-slot event loops, or all on one loop in serial mode), watches their heartbeats and
liveness, respawns dead rollout workers, and drives status, summaries, checkpoints and the stop."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import signal as signals
import time
from typing import Any

import torch
from faster_fifo import Queue
from signal_slot.signal_slot import EventLoop, EventLoopObject, EventLoopProcess, Timer

from asyncrl.envs.registry import find_env_family
from asyncrl.envs.spaces import obs_dict_space
from asyncrl.envs.vector import EpisodeStats, agents_per_env
from asyncrl.experiment.experiment import Experiment, mark_finished
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.runtime.buffers import SharedWeights, TrajectoryBuffers
from asyncrl.runtime.learner_worker import LearnerWorker
from asyncrl.runtime.policy_worker import PolicyWorker
from asyncrl.runtime.rollout_worker import RolloutWorker, actions_ready_signal
from asyncrl.runtime.stats import EpisodeTracker, FpsMeter
from asyncrl.runtime.summaries import Summaries
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


class Runner(EventLoopObject):
    """Builds the components and drives the run. Parallel: each component on an event loop in
    its own process. Serial (`--serial_mode`): the very same components on this process's loop."""

    def __init__(self, experiment: Experiment):
        cfg = self.cfg = experiment.cfg
        self.serial = cfg.serial_mode
        self.loop = EventLoop("runner_evt_loop", serial_mode=self.serial)
        super().__init__(self.loop, object_id="runner")
        self.experiment = experiment
        self.ctx = mp.get_context("fork")
        torch.set_num_threads(1)
        seed_everything(cfg.seed)

        probe = find_env_family(cfg.env).make_env(cfg.env, cfg, 0)
        self.obs_space, self.action_space = probe.observation_space, probe.action_space
        self.agents_per_env = agents_per_env(probe)
        probe.close()
        num_envs = cfg.num_workers * cfg.num_envs_per_worker * self.agents_per_env  # agents
        batch_trajectories = cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout
        if cfg.async_rl:
            # Slots for every env's trajectory in flight plus the batches the learner may hold;
            # with none free the workers pause, which bounds the policy lag.
            num_slots = num_envs + cfg.num_batches_to_accumulate * batch_trajectories
        else:
            # Exactly one batch: collection stops until the learner has trained on it and
            # published the new weights, so every transition comes from the current policy.
            num_slots = batch_trajectories
        model = self._initial_model()
        self.buffers = TrajectoryBuffers(obs_dict_space(self.obs_space), self.action_space,
                                         cfg.rollout, num_slots, num_envs, model.rnn_state_size)
        self.free_slots = Queue(max_size_bytes=max(1_000_000, 64 * num_slots))
        self.free_slots.put_many(list(range(num_slots)))
        self.weights = SharedWeights(model, self._initial_version())
        self.wakeups = None if self.serial else [self.ctx.Semaphore(0) for _ in range(cfg.num_workers)]

        self.episodes = EpisodeTracker(cfg.stats_avg)
        self.env_steps = 0
        self.best_metric: float | None = None
        state = experiment.resume_state
        if state is not None:
            self.episodes.load_state_dict(state["episode_stats"])
            self.env_steps = int(state["env_steps"])
            self.best_metric = state["best_metric"]
            log.info("Resumed from env_steps=%d, policy_version=%d", self.env_steps,
                     state["policy_version"])
        elif experiment.init_weights is not None:
            log.info("Initialized the model from %s", experiment.init_weights[1])
        self.policy_version = self._initial_version()
        self.learner_stats: dict[str, float] = {}
        self.last_heartbeat: dict[str, float] = {}
        self.timings: dict[str, dict[str, float]] = {}  # component -> activity -> seconds
        self.worker_restarts = 0
        self.fps = FpsMeter()
        self.start_time = time.monotonic()
        self.stop_reason: str | None = None
        self.reached_limit = False  # stopped by train_for_env_steps or train_for_seconds
        self.stopping = False
        self.failed: str | None = None

        # Set when the stop begins: the learner then trains no further batch of its backlog, so
        # that it reaches the stop message (and saves) within one training iteration.
        self.stop_requested = self.ctx.RawValue("b", 0)

        self.processes: dict[str, EventLoopProcess] = {}
        self.learner = LearnerWorker(
            self._loop_for("learner_p0", "asyncrl-learner"), cfg, 0, self.obs_space,
            self.action_space, self.buffers, self.weights, self.free_slots, experiment.checkpoints,
            {"resume_state": experiment.resume_state, "init_weights": experiment.init_weights},
            stop_requested=self.stop_requested)
        self.policy_workers = [
            PolicyWorker(self._loop_for(f"policy_worker_p0_{i}", f"asyncrl-pw{i}"), cfg, 0, i,
                         self.obs_space, self.action_space, self.buffers, self.weights,
                         self.wakeups, self.agents_per_env)
            for i in range(cfg.policy_workers_per_policy)]
        self.rollout_workers = [
            RolloutWorker(self._loop_for(f"rollout_worker_{w}", f"asyncrl-rw{w}"), cfg, w,
                          self.buffers, self.free_slots, None if self.serial else self.wakeups[w],
                          self.agents_per_env)
            for w in range(cfg.num_workers)]
        self._connect()

    def _initial_model(self) -> ActorCritic:
        model = ActorCritic(self.cfg, self.obs_space, self.action_space)
        if self.experiment.resume_state is not None:
            model.load_state_dict(self.experiment.resume_state["model"])
        elif self.experiment.init_weights is not None:
            model.load_state_dict(self.experiment.init_weights[0])
        return model

    def _initial_version(self) -> int:
        state = self.experiment.resume_state
        return int(state["policy_version"]) if state is not None else 0

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
        learner = self.learner
        learner.event_loop.start.connect(learner.on_start)
        learner.report.connect(self.on_report)
        learner.stopped.connect(self.on_learner_stopped)
        self.connect("save", learner.on_save)
        self.connect("stop_learner", learner.on_stop)
        for component in (learner, *self.policy_workers, *self.rollout_workers):
            component.heartbeat.connect(self.on_heartbeat)
            component.timings_report.connect(self.on_timings)
        for worker in self.policy_workers:
            worker.event_loop.start.connect(worker.on_start)
            self.connect("stop_workers", worker.on_stop)
        for w, worker in enumerate(self.rollout_workers):
            policy_worker = self.policy_workers[w % len(self.policy_workers)]
            worker.event_loop.start.connect(worker.on_start)
            worker.request_actions.connect(policy_worker.on_request)
            policy_worker.connect(actions_ready_signal(w), worker.on_actions_ready)
            worker.trajectories_ready.connect(learner.on_trajectories)
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
        log.info("Training %s on %s: %d rollout workers x %d envs%s (%d splits), %d policy "
                 "worker(s), batch %d, device %s", cfg.experiment, cfg.env, cfg.num_workers,
                 cfg.num_envs_per_worker, agents, cfg.worker_num_splits, cfg.policy_workers_per_policy,
                 cfg.batch_size * cfg.num_batches_per_epoch, cfg.device)
        previous = {s: signals.signal(s, self._on_signal) for s in (signals.SIGINT, signals.SIGTERM)}
        try:
            self.loop.exec()
        finally:
            for s, handler in previous.items():
                signals.signal(s, handler)
            self._shutdown()
        elapsed = time.monotonic() - self.start_time
        avg = self.episodes.average()
        log.info("Stopped: %s. %d env steps in %.1f s (%.0f env steps/s this run), %d episodes, "
                 "average return %s over the last %d, best %s, %d rollout worker restart(s), "
                 "policy lag %s (max %s) in the last batch, %d trajectories dropped for policy "
                 "lag; checkpoints in %s", self.stop_reason,
                 self.env_steps, elapsed, (self.env_steps - self.start_steps) / max(elapsed, 1e-9),
                 self.episodes.episodes, _fmt(avg), len(self.episodes.returns),
                 _fmt(self.best_metric), self.worker_restarts,
                 _fmt(self.learner_stats.get("policy_lag_avg")),
                 _fmt(self.learner_stats.get("policy_lag_max")),
                 int(self.learner_stats.get("dropped_trajectories", 0)),
                 self.experiment.checkpoints.checkpoint_dir)
        if self.failed:
            log.error(self.failed)
            return 1
        if self.reached_limit:
            mark_finished(self.experiment.dir, self.stop_reason, self.env_steps)
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signals.Signals(signum).name
        if self.stopping and signum == signals.SIGINT:
            raise KeyboardInterrupt
        log.info("%s received: stopping and saving a checkpoint", name)
        self._begin_stop(f"{name} received")

    def _run_state(self) -> dict[str, Any]:
        return {"episode_stats": self.episodes.state_dict(), "best_metric": self.best_metric}

    def _begin_stop(self, reason: str, reached_limit: bool = False) -> None:
        if self.stopping:
            return
        self._maybe_save_best()
        self.stopping = True
        self.stop_reason = reason
        self.reached_limit = reached_limit
        self.stop_requested.value = 1
        self.emit("stop_learner", self._run_state())
        deadline = Timer(self.loop, STOP_TIMEOUT_SEC, single_shot=True)
        deadline.timeout.connect(self._stop_timed_out)

    def _stop_timed_out(self) -> None:
        self.failed = (f"the learner did not confirm its final checkpoint within "
                       f"{STOP_TIMEOUT_SEC:.0f} s: stopping without it")
        self.emit("stop_workers")
        self.loop.stop()

    def on_learner_stopped(self, env_steps: int, policy_version: int) -> None:
        self.env_steps = max(self.env_steps, env_steps)
        self.emit("stop_workers")
        self.loop.stop()

    # -- slots ----------------------------------------------------------------------------------
    def on_report(self, stats: dict[str, float], env_steps: int, policy_version: int) -> None:
        self.learner_stats = stats
        self.env_steps = env_steps
        self.policy_version = policy_version
        self.fps.record(env_steps)
        if env_steps >= self.cfg.train_for_env_steps:
            self._begin_stop(f"reached train_for_env_steps={self.cfg.train_for_env_steps}",
                             reached_limit=True)

    def on_episodes(self, episodes: list[EpisodeStats]) -> None:
        self.episodes.add(episodes)

    def on_fatal_error(self, message: str) -> None:
        self.failed = message
        self._begin_stop(f"error: {message}")

    def on_timings(self, name: str, seconds: dict[str, float]) -> None:
        self.timings[name] = seconds

    def on_heartbeat(self, name: str, timestamp: float) -> None:
        self.last_heartbeat[name] = time.time()

    # -- timers ---------------------------------------------------------------------------------
    def _log_status(self) -> None:
        extra = "".join(f" {name}={value:.3g}"
                        for name, value in self.episodes.extra_averages().items())
        log.info("env_steps=%d fps=%.0f avg_return=%s (last %d of %d episodes) policy_version=%d "
                 "policy_lag=%s%s", self.env_steps, self.fps.fps(10),
                 _fmt(self.episodes.average()), len(self.episodes.returns), self.episodes.episodes,
                 self.policy_version, _fmt(self.learner_stats.get("policy_lag_avg")),
                 f" | episode_extra:{extra}" if extra else "")

    def _write_summaries(self) -> None:
        scalars = {f"train/{k}": v for k, v in self.learner_stats.items()}
        for window in self.fps.windows:
            scalars[f"perf/fps_{window}s"] = self.fps.fps(window)
        if self.episodes.returns:
            scalars["episode/return_avg"] = self.episodes.average("reward")
            scalars["episode/length_avg"] = self.episodes.average("len")
        for name, value in self.episodes.extra_averages().items():
            scalars[extra_stat_tag(name)] = value
        scalars["episode/count"] = self.episodes.episodes
        scalars["train/policy_version"] = self.policy_version
        scalars["perf/rollout_worker_restarts"] = self.worker_restarts
        self.summaries.write(scalars, self.env_steps)

    def _save_regular(self) -> None:
        self.emit("save", "regular", self._run_state(), None)

    def _save_milestone(self) -> None:
        self.emit("save", "milestone", self._run_state(), None)

    def _maybe_save_best(self) -> None:
        cfg = self.cfg
        metric = self.episodes.average(cfg.save_best_metric)
        if metric is None or self.env_steps < cfg.save_best_after or self.stopping:
            return
        if self.best_metric is None or metric > self.best_metric:
            self.best_metric = metric
            self.emit("save", "best", self._run_state(), metric)

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
                    process.kill()
                continue
            if name.startswith("rollout_worker_"):
                self._respawn_rollout_worker(int(name.rsplit("_", 1)[1]), _exit_cause(process.exitcode))
                continue
            self.failed = f"{name} died ({_exit_cause(process.exitcode)}): stopping the run"
            log.error(self.failed)
            if name.startswith("learner"):
                # Nobody else holds the optimizer state: stop without a final checkpoint.
                self.stopping = True
                self.stop_reason = f"{name} died"
                self.emit("stop_workers")
                self.loop.stop()
            else:
                self._begin_stop(f"{name} died")
            return

    def _respawn_rollout_worker(self, w: int, cause: str) -> None:
        log.warning("rollout_worker_%d died (%s) at policy_version=%d: respawning it with fresh "
                    "envs; its partial trajectories are dropped", w, cause, self.policy_version)
        process = self.processes[f"rollout_worker_{w}"]
        process.join(timeout=1)
        # The slots the dead worker was filling go back to the pool.
        per_worker = self.cfg.num_envs_per_worker * self.agents_per_env
        envs = slice(w * per_worker, (w + 1) * per_worker)
        held = self.buffers.env_slots[envs]
        self.free_slots.put_many(held[held >= 0].tolist())
        self.buffers.env_slots[envs] = -1
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
                process.kill()
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


def _exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by {signals.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
