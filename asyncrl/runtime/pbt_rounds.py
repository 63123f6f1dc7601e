"""Population-based training's rounds during a run: when the population's clock says a round is
due, the source policies' learners are asked to share their state, each replaced policy's
learner gets that copy with its new hyperparameters once it is written, and each policy that only
mutates gets its new hyperparameters. One round at a time: the next waits until every copy of
this one was handed on."""

from __future__ import annotations

from pathlib import Path

from signal_slot.signal_slot import EventLoop, EventLoopObject

from asyncrl.pbt.population import Population, share_path
from asyncrl.runtime.learner_worker import LearnerWorker
from asyncrl.runtime.names import policy_signal
from asyncrl.runtime.progress import PolicyProgress

# The signals a PbtRounds emits to a policy's learner (see policy_signal).
_SHARE = "pbt_share"
_REPLACE = "pbt_replace"
_HYPERPARAMETERS = "pbt_hyperparameters"


class PbtRounds(EventLoopObject):
    """Lives on the runner's loop; `policies` is the runner's view of every policy's progress."""

    def __init__(self, event_loop: EventLoop, population: Population, experiment_dir: Path,
                 policies: list[PolicyProgress]):
        super().__init__(event_loop, object_id="pbt_rounds")
        self.population = population
        self.experiment_dir = experiment_dir
        self.policies = policies
        # source policy -> the (target policy, its new hyperparameters) waiting for its copy
        self.waiting: dict[int, list[tuple[int, dict[str, float]]]] = {}

    def connect_learner(self, policy: int, learner: LearnerWorker) -> None:
        self.connect(policy_signal(_SHARE, policy), learner.on_pbt_share)
        self.connect(policy_signal(_REPLACE, policy), learner.on_pbt_replace)
        self.connect(policy_signal(_HYPERPARAMETERS, policy), learner.on_pbt_hyperparameters)
        learner.pbt_shared.connect(self.on_pbt_shared)

    def maybe_start_round(self) -> None:
        """Starts a round when one is due and the last one is over."""
        population = self.population
        steps = [progress.env_steps for progress in self.policies]
        if self.waiting or not population.due(steps):
            return
        objectives = population.objectives(
            [progress.episodes.average() for progress in self.policies],
            [progress.episodes.extra_averages() for progress in self.policies])
        result = population.plan(objectives, steps)
        replaced = set()
        for r in result.replacements:
            replaced.add(r.policy)
            if r.source not in self.waiting:
                self.waiting[r.source] = []
                self.emit(policy_signal(_SHARE, r.source),
                          str(share_path(self.experiment_dir, r.source)))
            self.waiting[r.source].append((r.policy, result.hyperparameters[r.policy]))
        for p in {m.policy for m in result.mutations} - replaced:
            self.emit(policy_signal(_HYPERPARAMETERS, p), result.hyperparameters[p])

    def on_pbt_shared(self, source: int, path: str) -> None:
        for target, hyperparameters in self.waiting.pop(source, []):
            self.emit(policy_signal(_REPLACE, target), path, source, hyperparameters)
