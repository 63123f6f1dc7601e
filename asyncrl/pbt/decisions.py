"""Population-based training decisions: who copies whom, and which hyperparameters mutate.

Pure functions of the policies' objectives, their current hyperparameters, the PBT settings and a
random generator, so that the same objectives and seed give the same decisions (and tests can
check every branch). Applying the decisions (copying weights, invalidating experience) is the
runtime's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from asyncrl.config.hyperparameters import TUNED_HYPERPARAMETERS


_EPS = 1e-5


@dataclass(frozen=True)
class PbtSettings:
    replace_fraction: float
    mutation_rate: float
    replace_reward_gap: float
    replace_reward_gap_absolute: float
    perturb_min: float
    perturb_max: float
    optimize_gamma: bool

    @property
    def tuned(self) -> tuple[str, ...]:
        return TUNED_HYPERPARAMETERS + (("gamma",) if self.optimize_gamma else ())


@dataclass(frozen=True)
class Replacement:
    policy: int  # takes the weights, optimizer state and hyperparameters of `source`
    source: int
    objective: float
    source_objective: float


@dataclass(frozen=True)
class Mutation:
    policy: int
    name: str
    old: float
    new: float


@dataclass
class PbtRound:
    replacements: list[Replacement] = field(default_factory=list)
    mutations: list[Mutation] = field(default_factory=list)
    hyperparameters: list[dict[str, float]] = field(default_factory=list)  # per policy, after


def _rank_key(objective: float) -> float:
    return -math.inf if math.isnan(objective) else objective


def plan_round(objectives: Sequence[float], hyperparameters: Sequence[Mapping[str, float]],
               settings: PbtSettings, rng: np.random.Generator) -> PbtRound:
    """One PBT round over the population.

    The top `ceil(replace_fraction * N)` policies are left alone. Each of the bottom as many
    (those not also on top) copies a randomly chosen top policy when its objective trails by more than both gaps
    (relative and absolute); a NaN objective ranks last. Every policy that is not on top then
    mutates each tuned hyperparameter with probability `mutation_rate`, multiplying or dividing
    it by a factor drawn from [perturb_min, perturb_max] (gamma: its distance to 1 changes)."""
    n = len(objectives)
    if len(hyperparameters) != n:
        raise ValueError(f"{n} objectives but {len(hyperparameters)} sets of hyperparameters")
    result = PbtRound(hyperparameters=[dict(h) for h in hyperparameters])
    if n < 2:
        return result
    # Stable: among equal objectives the lower policy index ranks higher.
    order = sorted(range(n), key=lambda p: _rank_key(objectives[p]), reverse=True)
    k = math.ceil(settings.replace_fraction * n)
    top = order[:k]
    bottom = [p for p in order[-k:] if p not in top]  # a small population: the two may overlap
    for policy in bottom:
        source = top[int(rng.integers(len(top)))]
        gap = _rank_key(objectives[source]) - _rank_key(objectives[policy])
        relative = abs(gap / (abs(objectives[source]) + _EPS))
        if gap > settings.replace_reward_gap_absolute and relative > settings.replace_reward_gap:
            result.replacements.append(Replacement(policy, source, objectives[policy], objectives[source]))
            result.hyperparameters[policy] = dict(hyperparameters[source])
    for policy in order[len(top):]:
        params = result.hyperparameters[policy]
        for name in settings.tuned:
            if rng.random() < settings.mutation_rate:
                new = perturb(params[name], name, settings, rng)
                if new != params[name]:  # a zero stays zero: not worth reporting
                    result.mutations.append(Mutation(policy, name, params[name], new))
                    params[name] = new
    return result


def perturb(value: float, name: str, settings: PbtSettings, rng: np.random.Generator) -> float:
    """`value` multiplied or divided (equally likely) by a factor from [perturb_min, perturb_max];
    for gamma the horizon 1 / (1 - gamma) is what scales, so gamma stays below 1."""
    factor = float(rng.uniform(settings.perturb_min, settings.perturb_max))
    if rng.random() < 0.5:
        factor = 1.0 / factor
    if name == "gamma":
        return 1.0 - (1.0 - value) / factor
    return value * factor
