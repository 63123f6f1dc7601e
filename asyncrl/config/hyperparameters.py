"""The hyperparameters each policy of a run has a value of: those population-based training tunes,
and what `--policy_initial_hyperparameters` may set per policy. Defined with the parameters, so
that checking a command line needs nothing of PBT (asyncrl/pbt/ uses them)."""

from __future__ import annotations

import math
from typing import Any

from asyncrl.utils.errors import UserError

# The hyperparameters PBT tunes; gamma only with pbt_optimize_gamma.
TUNED_HYPERPARAMETERS = ("learning_rate", "exploration_loss_coeff", "value_loss_coeff",
                         "max_grad_norm", "ppo_clip_ratio", "ppo_clip_value")

# What each policy may start with its own value of, and what its checkpoints record.
HYPERPARAMETERS = (*TUNED_HYPERPARAMETERS, "gamma")


def hyperparameters_of(cfg: Any) -> dict[str, float]:
    return {name: float(getattr(cfg, name)) for name in HYPERPARAMETERS}


def initial_hyperparameters(cfg: Any) -> list[dict[str, float]]:
    """Each policy's starting hyperparameters: the config's values, with the
    `--policy_initial_hyperparameters POLICY:NAME=VALUE` items applied."""
    population = [hyperparameters_of(cfg) for _ in range(cfg.num_policies)]
    for item in cfg.policy_initial_hyperparameters:
        policy, sep, assignment = item.partition(":")
        name, eq, value = assignment.partition("=")
        if not (sep and eq and policy.strip().isdigit()):
            raise UserError(f"--policy_initial_hyperparameters: {item!r} is not POLICY:NAME=VALUE "
                            "(e.g. 1:learning_rate=1e-3)")
        p = int(policy)
        if p >= cfg.num_policies:
            raise UserError(f"--policy_initial_hyperparameters: {item!r} names policy {p}, but "
                            f"there are {cfg.num_policies} (0..{cfg.num_policies - 1})")
        if name not in HYPERPARAMETERS:
            raise UserError(f"--policy_initial_hyperparameters: {name!r} cannot differ between "
                            f"policies; allowed: {', '.join(HYPERPARAMETERS)}")
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--policy_initial_hyperparameters: {item!r}: {value!r} is not a "
                            "number") from None
        if not math.isfinite(number) or number < 0 or (name == "gamma" and number >= 1):
            raise UserError(f"--policy_initial_hyperparameters: {item!r}: {name} must be a finite "
                            f"number >= 0{' and < 1' if name == 'gamma' else ''}")
        population[p][name] = number
    return population
