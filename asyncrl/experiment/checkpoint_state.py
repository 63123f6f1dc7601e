"""What a checkpoint holds, and the one place its keys are named.

A checkpoint file (see checkpoint.py for the files) is a flat dict:

    model, optimizer, policy_version, train_step, learning_rate   the learner (LearnerState)
    env_steps                                                     the policy's env steps
    hyperparameters                                               the policy's (PBT's or the run's)
    episode_stats, best_metric, pbt                               the runner's (RunState)
    checkpoint_version                                            this schema's version

Files written before the version was stored (asyncrl 0.1.0) are version 1, the layout above;
`pbt` is there only in PBT runs, `hyperparameters` may be missing in the oldest files. A PBT share
file (pbt/share_p<policy>.pth) holds only model and optimizer (SharedPolicy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncrl.algo.learner import LearnerState
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.utils.errors import UserError

CHECKPOINT_VERSION = 1

_VERSION = "checkpoint_version"
_MODEL, _OPTIMIZER = "model", "optimizer"
_POLICY_VERSION, _TRAIN_STEP, _LEARNING_RATE = "policy_version", "train_step", "learning_rate"
_ENV_STEPS, _HYPERPARAMETERS = "env_steps", "hyperparameters"
_EPISODE_STATS, _BEST_METRIC, _PBT, _PBT_NEXT_ROUND = "episode_stats", "best_metric", "pbt", "next_round"
# In the order they are checked (a missing one is named), which is the order they are written in.
_REQUIRED = (_MODEL, _OPTIMIZER, _POLICY_VERSION, _TRAIN_STEP, _LEARNING_RATE, _ENV_STEPS,
             _EPISODE_STATS, _BEST_METRIC)


@dataclass(frozen=True)
class RunState:
    """The runner's part of a policy's checkpoint."""

    episode_stats: dict[str, Any]  # EpisodeTracker.state_dict()
    best_metric: float | None  # the best value of save_best_metric so far
    pbt_next_round: int | None = None  # PBT's clock (env steps per policy); None without PBT


@dataclass(frozen=True)
class CheckpointState:
    """One policy's checkpoint: everything a resume continues from."""

    learner: LearnerState
    env_steps: int
    hyperparameters: dict[str, float] | None  # None only in checkpoints older than PBT
    run: RunState

    def to_dict(self) -> dict[str, Any]:
        learner = self.learner
        state: dict[str, Any] = {
            _MODEL: learner.model, _OPTIMIZER: learner.optimizer,
            _POLICY_VERSION: learner.policy_version, _TRAIN_STEP: learner.train_step,
            _LEARNING_RATE: learner.learning_rate, _ENV_STEPS: self.env_steps}
        if self.hyperparameters is not None:
            state[_HYPERPARAMETERS] = self.hyperparameters
        state[_EPISODE_STATS] = self.run.episode_stats
        state[_BEST_METRIC] = self.run.best_metric
        if self.run.pbt_next_round is not None:
            state[_PBT] = {_PBT_NEXT_ROUND: self.run.pbt_next_round}
        state[_VERSION] = CHECKPOINT_VERSION
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any], source: str) -> CheckpointState:
        """`source` names the checkpoint in errors ("the checkpoint of train_dir/x")."""
        _check_version(state, source)
        missing = [key for key in _REQUIRED if key not in state]
        if missing:
            raise UserError(f"{source} is incomplete: it has no {missing[0]!r}")
        pbt = state.get(_PBT)
        return cls(
            learner=LearnerState(model=state[_MODEL], optimizer=state[_OPTIMIZER],
                                 policy_version=int(state[_POLICY_VERSION]),
                                 train_step=int(state[_TRAIN_STEP]),
                                 learning_rate=float(state[_LEARNING_RATE])),
            env_steps=int(state[_ENV_STEPS]), hyperparameters=state.get(_HYPERPARAMETERS),
            run=RunState(episode_stats=state[_EPISODE_STATS], best_metric=state[_BEST_METRIC],
                         pbt_next_round=None if pbt is None else int(pbt[_PBT_NEXT_ROUND])))


def read_checkpoint_state(path: Path) -> CheckpointState:
    """A whole checkpoint file (the evaluated snapshot, a sweep's or a score run's latest)."""
    return CheckpointState.from_dict(load_checkpoint(path), str(path))


@dataclass(frozen=True)
class InitialWeights:
    """`--initialize_from`: the weights a new experiment starts with, and where they came from."""

    model: dict[str, Any]
    source: str


def read_initial_weights(path: Path) -> InitialWeights:
    """Only the weights (and normalizer statistics) of any checkpoint file."""
    state = load_checkpoint(path)
    _check_version(state, str(path))
    weights = state.get(_MODEL)
    if not isinstance(weights, dict):
        raise UserError(f"--initialize_from: {path} holds no model weights")
    return InitialWeights(weights, str(path))


@dataclass(frozen=True)
class SharedPolicy:
    """What PBT copies from one policy to another: the weights and the optimizer state."""

    model: dict[str, Any]
    optimizer: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {_MODEL: self.model, _OPTIMIZER: self.optimizer}

    @classmethod
    def read(cls, path: Path) -> SharedPolicy:
        state = load_checkpoint(path)
        return cls(model=state[_MODEL], optimizer=state[_OPTIMIZER])


def _check_version(state: dict[str, Any], source: str) -> None:
    version = state.get(_VERSION, 1)
    if not isinstance(version, int) or not 1 <= version <= CHECKPOINT_VERSION:
        raise UserError(f"{source} has checkpoint version {version!r}; this asyncrl reads versions "
                        f"1 to {CHECKPOINT_VERSION} (a newer asyncrl wrote it: upgrade asyncrl)")
