"""What the run has achieved, and how it is told: each policy's progress (episodes, env steps,
learner stats, evaluations, best metric), the status line and the status events, the summaries,
the final summary, the timings report, and the decisions of when to evaluate and which policies
have a new best."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from signal_slot.signal_slot import EventLoop, EventLoopObject

from asyncrl.envs.vector import EpisodeStats
from asyncrl.experiment.experiment import Experiment
from asyncrl.experiment.layout import STATUS_EVENTS_FILE
from asyncrl.experiment.status_events import PolicyStatus, StatusEventWriter
from asyncrl.pbt.population import Population
from asyncrl.runtime.evaluation import eval_summaries
from asyncrl.runtime.stats import EpisodeTracker, FpsMeter
from asyncrl.runtime.summaries import Summaries
from asyncrl.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)

STATUS_INTERVAL_SEC = 5.0
TIMINGS_FILE = "timings.json"


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


class ProgressReport(EventLoopObject):
    """Keeps the policies' progress up to date from the components' reports and tells it: the
    status line, summaries, the final summary and where the components' time went. Lives on
    the runner's loop."""

    def __init__(self, event_loop: EventLoop, experiment: Experiment,
                 policies: list[PolicyProgress], population: Population | None,
                 frames_per_step: int, supervisor: Supervisor):
        super().__init__(event_loop, object_id="progress_report")
        self.cfg = experiment.cfg
        self.experiment = experiment
        self.policies = policies
        self.population = population
        # Env steps per agent step: emulator frames with Atari's frame skipping, else 1.
        self.frames_per_step = frames_per_step
        self.supervisor = supervisor  # counts the rollout workers' restarts
        self.fps = FpsMeter()
        self.timings: dict[str, dict[str, float]] = {}  # component -> activity -> seconds
        self.summaries: Summaries | None = None
        self.status_events: StatusEventWriter | None = None
        self.start_time = time.monotonic()
        self.start_steps = 0
        if self.cfg.eval_every_env_steps:
            for progress in policies:  # a resumed run goes on with the next multiple
                progress.next_eval = next_multiple(progress.env_steps, self.cfg.eval_every_env_steps)

    @property
    def env_steps(self) -> int:
        """Env steps of all policies together."""
        return sum(progress.env_steps for progress in self.policies)

    @property
    def worker_restarts(self) -> int:
        return self.supervisor.restarts

    def start(self) -> None:
        """Call when training starts, after the workers' processes were forked: the summary
        writer's threads and files stay in this process."""
        cfg = self.cfg
        self.summaries = Summaries(cfg, self.experiment.dir, cfg.to_dict())
        self.start_time = time.monotonic()
        self.start_steps = self.env_steps
        self.status_events = StatusEventWriter(self.experiment.dir / STATUS_EVENTS_FILE,
                                               self.frames_per_step)
        self.status_events.run_started(cfg, self.env_steps, resumed=any(
            state is not None for state in self.experiment.resume_states))

    # -- what the components report ------------------------------------------------------------
    def record_learner_report(self, policy: int, stats: dict[str, float], env_steps: int,
                              policy_version: int) -> None:
        progress = self.policies[policy]
        progress.learner_stats = stats
        progress.env_steps = env_steps
        progress.version = policy_version
        self.fps.record(self.env_steps)

    def on_episodes(self, episodes: list[tuple[int, EpisodeStats]]) -> None:
        for policy, episode in episodes:
            self.policies[policy].episodes.add([episode])

    def on_timings(self, object_id: str, seconds: dict[str, float]) -> None:
        self.timings[object_id] = seconds

    def reached_env_steps(self, limit: int) -> bool:
        return all(progress.env_steps >= limit for progress in self.policies)

    # -- evaluation ------------------------------------------------------------------------------
    def start_evaluation(self, policy: int) -> bool:
        """Whether the policy's env steps reached the next multiple of eval_every_env_steps with
        no evaluation under way; if so, one is now (steps passed during it are skipped)."""
        progress = self.policies[policy]
        if progress.evaluating or progress.env_steps < progress.next_eval:
            return False
        progress.evaluating = True
        progress.next_eval = next_multiple(progress.env_steps, self.cfg.eval_every_env_steps)
        return True

    def on_evaluated(self, policy: int, env_steps: int, train_step: int, version: int,
                          summary: dict[str, Any]) -> None:
        """An evaluation of the policy's snapshot taken at `env_steps` came back: logged, written
        to the summaries, and promoted to the best checkpoint when it is one."""
        cfg, progress = self.cfg, self.policies[policy]
        progress.evaluating = False
        progress.last_eval = (env_steps, summary)
        log.info("%sevaluation at env_steps=%d (policy_version=%d, %s actions): return %.2f "
                 "(std %.2f, min %.2f, max %.2f) over %d episodes, length %.1f",
                 self._policy_label(policy), env_steps, version,
                 "deterministic" if cfg.eval_deterministic else "sampled", summary["return_mean"],
                 summary["return_std"], summary["return_min"], summary["return_max"],
                 summary["episodes"], summary["length_mean"])
        self.status_events.evaluation(policy, env_steps, version, cfg.eval_deterministic, summary)
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

    # -- checkpoint decisions ----------------------------------------------------------------------
    def new_bests(self) -> list[tuple[int, float]]:
        """(policy, metric) of each policy whose save_best_metric beats its best so far (now
        its best); none when evaluations choose the best."""
        cfg = self.cfg
        if cfg.save_best_metric == "eval/return":
            return []
        found = []
        for p, progress in enumerate(self.policies):
            metric = progress.episodes.average(cfg.save_best_metric)
            if metric is None or progress.env_steps < cfg.save_best_after or progress.stopped:
                continue
            if progress.best_metric is None or metric > progress.best_metric:
                progress.best_metric = metric
                found.append((p, metric))
        return found

    # -- telling it ------------------------------------------------------------------------------
    def log_status(self) -> None:
        parts = []
        for p, progress in enumerate(self.policies):
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
        self.status_events.status(self.env_steps, self.fps.fps(10), self._policy_statuses())

    def _agent_steps_text(self, env_steps: int) -> str:
        """' agent_steps=N' where env steps count frames (Atari), else nothing."""
        if self.frames_per_step == 1:
            return ""
        return f" agent_steps={env_steps // self.frames_per_step}"

    def write_summaries(self) -> None:
        scalars = {f"perf/fps_{window}s": self.fps.fps(window) for window in self.fps.windows}
        scalars["perf/rollout_worker_restarts"] = self.worker_restarts
        for p, progress in enumerate(self.policies):
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

    def close(self) -> None:
        """The last summaries, and the timings report."""
        self.write_summaries()
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

    def log_summary(self, stop_reason: str | None) -> None:
        elapsed = time.monotonic() - self.start_time
        total = self.env_steps
        # Env steps are emulator frames with frame skipping: the agent's steps too.
        agent = "" if self.frames_per_step == 1 else f", {total // self.frames_per_step} agent steps"
        log.info("Stopped: %s. %d env steps in %.1f s (%.0f env steps/s this run)%s, %d rollout "
                 "worker restart(s); checkpoints in %s", stop_reason, total, elapsed,
                 (total - self.start_steps) / max(elapsed, 1e-9), agent, self.worker_restarts,
                 self.experiment.dir)
        for p, progress in enumerate(self.policies):
            episodes, stats = progress.episodes, progress.learner_stats
            log.info("%s%d env steps, %d episodes, average return %s over the last %d, best %s, "
                     "policy lag %s in the last batch, %d trajectories dropped for policy lag%s",
                     self._policy_label(p), progress.env_steps, episodes.episodes,
                     _fmt(episodes.average()), len(episodes.returns), _fmt(progress.best_metric),
                     _lag(stats, with_max=True), int(stats.get("dropped_trajectories", 0)),
                     "" if progress.last_eval is None else
                     f"; last evaluation{_eval_text(progress.last_eval)}")
        self.status_events.summary(stop_reason, total, elapsed,
                                   (total - self.start_steps) / max(elapsed, 1e-9),
                                   self.worker_restarts, self._policy_statuses())

    def _policy_statuses(self) -> list[PolicyStatus]:
        return [policy_status(p, progress) for p, progress in enumerate(self.policies)]

    def _policy_label(self, policy: int) -> str:
        return f"policy {policy}: " if self.cfg.num_policies > 1 else ""


def extra_stat_tag(name: str) -> str:
    """The summary tag of a custom episode statistic: `episode_extra/<name>`, or the name itself
    when it names its own group (`game/coins`)."""
    return name if "/" in name else f"episode_extra/{name}"


def next_multiple(value: int, every: int) -> int:
    """The smallest multiple of `every` above `value`."""
    return (value // every + 1) * every


def policy_status(policy: int, progress: PolicyProgress) -> PolicyStatus:
    """The policy's figures for the status events."""
    episodes, stats = progress.episodes, progress.learner_stats
    eval_env_steps, eval_summary = progress.last_eval or (None, {})
    return PolicyStatus(
        policy=policy, env_steps=progress.env_steps, version=progress.version,
        episodes=episodes.episodes, returns_averaged=len(episodes.returns),
        avg_return=episodes.average(), best_metric=progress.best_metric,
        policy_lag_versions=stats.get("policy_lag_avg"),
        policy_lag_sgd_steps=stats.get("policy_lag_sgd_steps_avg"),
        policy_lag_max_versions=stats.get("policy_lag_max"),
        policy_lag_max_sgd_steps=stats.get("policy_lag_sgd_steps_max"),
        dropped_trajectories=int(stats.get("dropped_trajectories", 0)),
        eval_return=eval_summary.get("return_mean"), eval_env_steps=eval_env_steps)


def _eval_text(last_eval: tuple[int, dict[str, Any]] | None) -> str:
    """The latest evaluation in the status line: ' eval_return=R (at N env steps)'."""
    if last_eval is None:
        return ""
    env_steps, summary = last_eval
    return f" eval_return={summary['return_mean']:.1f} (at {env_steps} env steps)"


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
