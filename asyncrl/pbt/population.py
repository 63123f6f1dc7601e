"""The runner's side of population-based training: each policy's current hyperparameters, the PBT
clock, the rounds (decided by decisions.py) and their record in the experiment folder.

Applying a round is split between the runner and the learners: a policy that is replaced loads
the weights and optimizer state its source learner wrote to `pbt/`, then its new hyperparameters;
a policy that only mutates gets its new hyperparameters. Every learner stores its hyperparameters
in its checkpoints, so a resumed population continues with them.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from asyncrl.pbt.decisions import PbtRound, PbtSettings, plan_round

log = logging.getLogger(__name__)

PBT_DIR = "pbt"
EVENTS_FILE = "events.jsonl"


def pbt_settings(cfg: Any) -> PbtSettings:
    return PbtSettings(replace_fraction=cfg.pbt_replace_fraction, mutation_rate=cfg.pbt_mutation_rate,
                       replace_reward_gap=cfg.pbt_replace_reward_gap,
                       replace_reward_gap_absolute=cfg.pbt_replace_reward_gap_absolute,
                       perturb_min=cfg.pbt_perturb_min, perturb_max=cfg.pbt_perturb_max,
                       optimize_gamma=cfg.pbt_optimize_gamma)


class Population:
    """PBT over `num_policies` policies: when every policy has passed the next round's env steps,
    `plan` decides the round from the objectives and records it."""

    def __init__(self, cfg: Any, exp_dir: Path, hyperparameters: list[dict[str, float]],
                 next_round: int | None):
        self.cfg = cfg
        self.settings = pbt_settings(cfg)
        self.hyperparameters = [dict(h) for h in hyperparameters]
        self.next_round = cfg.pbt_start_mutation if next_round is None else next_round
        self.dir = exp_dir / PBT_DIR
        self.dir.mkdir(exist_ok=True)
        self._warned_objective = False
        for p in range(len(self.hyperparameters)):
            self._write_hyperparameters(p)

    def due(self, env_steps: list[int]) -> bool:
        return min(env_steps) >= self.next_round

    def objectives(self, returns: list[float | None], extra: list[dict[str, float]]) -> list[float]:
        """Each policy's objective (NaN when it has none yet, which ranks last)."""
        name = self.cfg.pbt_target_objective
        if name == "true_objective":
            values = [math.nan if r is None else r for r in returns]
        else:
            values = [stats.get(name, math.nan) for stats in extra]
        if all(math.isnan(v) for v in values) and not self._warned_objective:
            self._warned_objective = True
            log.warning("PBT: no policy has a value of --pbt_target_objective=%s yet (a custom "
                        "objective must be an episode statistic the env reports in "
                        "info['episode_extra_stats']): nobody is replaced", name)
        return values

    def plan(self, objectives: list[float], env_steps: list[int]) -> PbtRound:
        """Decides this round, advances the clock, adopts the new hyperparameters and records
        the round (log, events file, hyperparameter files)."""
        round_index = (self.next_round - self.cfg.pbt_start_mutation) // self.cfg.pbt_period_env_steps
        # Seeded per round: the same objectives give the same decisions, also after a resume.
        rng = np.random.default_rng(None if self.cfg.seed is None else [self.cfg.seed, round_index])
        result = plan_round(objectives, self.hyperparameters, self.settings, rng)
        steps = min(env_steps)
        period = self.cfg.pbt_period_env_steps
        self.next_round += period * ((steps - self.next_round) // period + 1)  # the next one ahead
        log.info("PBT round at %d env steps per policy, objectives %s", steps,
                 ", ".join(f"p{p}={v:.3g}" for p, v in enumerate(objectives)))
        for r in result.replacements:
            log.info("PBT: policy %d (objective %.3g) takes the weights, optimizer state and "
                     "hyperparameters of policy %d (objective %.3g)", r.policy, r.objective,
                     r.source, r.source_objective)
        for m in result.mutations:
            log.info("PBT: policy %d %s %.6g -> %.6g", m.policy, m.name, m.old, m.new)
        self.hyperparameters = result.hyperparameters
        events = [{"env_steps": steps, "event": "replace", "policy": r.policy, "source": r.source,
                   "objective": r.objective, "source_objective": r.source_objective}
                  for r in result.replacements]
        events += [{"env_steps": steps, "event": "mutate", "policy": m.policy, "name": m.name,
                    "old": m.old, "new": m.new} for m in result.mutations]
        with open(self.dir / EVENTS_FILE, "a") as f:
            for event in events:
                f.write(json.dumps(event) + "\n")
        for p in {e["policy"] for e in events}:
            self._write_hyperparameters(p)
        return result

    def _write_hyperparameters(self, policy: int) -> None:
        """For people (the checkpoints hold the values a resume uses)."""
        path = self.dir / f"hyperparameters_p{policy}.json"
        path.write_text(json.dumps(self.hyperparameters[policy], indent=2, sort_keys=True))

    def summaries(self) -> dict[str, float]:
        return {f"p{p}/pbt/{name}": value for p, params in enumerate(self.hyperparameters)
                for name, value in params.items()}


def share_path(exp_dir: Path, policy: int) -> Path:
    """Where a policy's learner writes the state a replaced policy copies."""
    return exp_dir / PBT_DIR / f"share_p{policy}.pth"
