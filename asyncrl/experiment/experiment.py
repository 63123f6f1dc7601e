"""The experiment folder: `<train_dir>/<experiment>/` with config.json, checkpoints, log, summaries.

`prepare_experiment` decides between resume, restart, overwrite and a fresh start, and loads
everything it needs (stored config, checkpoint, initialize_from weights) *before* it changes
anything on disk, so bad input never loses or overwrites a run.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncrl
from asyncrl.config.config import ConfigBase
from asyncrl.envs.command_line import ParsedArgs
from asyncrl.experiment.checkpoint import CheckpointManager
from asyncrl.experiment.checkpoint_state import (CheckpointState, InitialWeights,
                                                 read_initial_weights)
from asyncrl.experiment.layout import (CHECKPOINT_DIR, CONFIG_FILE, CONSOLE_FILE, FINISHED_FILE,
                                       LOG_FILE, policy_checkpoint_dir)
from asyncrl.utils.errors import UserError
from asyncrl.utils.files import write_atomic
from asyncrl.utils.logs import add_log_file

log = logging.getLogger(__name__)

@dataclass
class Experiment:
    cfg: ConfigBase
    dir: Path
    checkpoints: list[CheckpointManager]  # per policy
    # Per policy: the checkpoint it continues from, read once here for the runner and learners.
    resume_states: list[CheckpointState | None]
    init_weights: InitialWeights | None  # --initialize_from
    log_file: logging.Handler | None  # the experiment's log file, while the run lasts
    # Parameters this run's command line or preset changed from the stored config (on resume).
    overridden: frozenset[str] = frozenset()

    def close(self) -> None:
        if self.log_file is not None:
            logging.getLogger("asyncrl").removeHandler(self.log_file)
            self.log_file.close()


def experiment_dir(cfg: ConfigBase) -> Path:
    return Path(cfg.train_dir) / cfg.experiment


def read_stored_config(path: Path) -> dict[str, Any]:
    """The stored parameters of an experiment; a corrupt file is a UserError, never ignored."""
    try:
        data = json.loads(path.read_text())
        params = data["params"]
        if not isinstance(params, dict):
            raise ValueError("'params' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}: {e} (fix or remove the file, or "
                        "use --restart_behavior=restart to start over)") from None
    return params


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(asyncrl.__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda f: json.dump(data, f, indent=2))


def write_config(path: Path, cfg: ConfigBase, command_lines: list[str]) -> None:
    _write_json_atomic(path, {"asyncrl_version": asyncrl.__version__, "git_commit": _git_commit(),
                              "command_lines": command_lines, "params": cfg.to_dict()})


def mark_finished(exp_dir: Path, stop_reason: str, env_steps: int) -> None:
    """Records that the run reached its limit, after its final checkpoint is saved."""
    _write_json_atomic(exp_dir / FINISHED_FILE, {"stop_reason": stop_reason, "env_steps": env_steps})


def _stored_command_lines(path: Path) -> list[str]:
    try:
        return list(json.loads(path.read_text()).get("command_lines", []))
    except (OSError, ValueError, AttributeError):
        return []


def resolve_checkpoint_source(source: str, train_dir: Path, kind: str) -> Path:
    """`--initialize_from`: a checkpoint file, an experiment folder, or an experiment name."""
    path = Path(source)
    if path.is_file():
        return path
    for folder in (path, train_dir / source):
        if (folder / CHECKPOINT_DIR).is_dir():
            manager = CheckpointManager(folder / CHECKPOINT_DIR, keep_checkpoints=1_000_000)
            chosen = manager.best() if kind == "best" and manager.best() else manager.latest()
            if chosen is None:
                raise UserError(f"--initialize_from={source}: {folder} has no checkpoint yet")
            return chosen
    raise UserError(f"--initialize_from={source}: no such checkpoint file and no experiment "
                    f"'{source}' in {train_dir}")


def prepare_experiment(parsed: ParsedArgs) -> Experiment:
    cfg = parsed.config()
    exp_dir = experiment_dir(cfg)
    config_path = exp_dir / CONFIG_FILE
    exists = exp_dir.exists()
    if exists and not exp_dir.is_dir():
        raise UserError(f"{exp_dir} exists and is not a folder")
    resume = exists and cfg.restart_behavior == "resume"

    notes: list[str] = []  # logged once the log file is open
    overridden: set[str] = set()
    if resume:
        if config_path.exists():
            stored = read_stored_config(config_path)
            if stored.get("env") != cfg.env:
                raise UserError(
                    f"experiment '{cfg.experiment}' was trained on --env={stored.get('env')}, not "
                    f"--env={cfg.env}: choose another --experiment or --restart_behavior=restart")
            cfg = parsed.config(stored)
            values = cfg.to_dict()
            if values["num_policies"] != stored.get("num_policies", 1):
                raise UserError(f"experiment '{cfg.experiment}' trains {stored.get('num_policies', 1)} "
                                f"policies; --num_policies={values['num_policies']} cannot change that "
                                "on resume: choose another --experiment or --restart_behavior=restart")
            for name, source in parsed.override_sources().items():
                if name in stored and stored[name] != values[name]:
                    overridden.add(name)
                    notes.append(f"Overriding stored {name}={stored[name]!r} with "
                                 f"{values[name]!r} from {source}")
        elif any(p.name != CONSOLE_FILE for p in exp_dir.iterdir()):
            raise UserError(f"{exp_dir} exists but has no {CONFIG_FILE}: use "
                            "--restart_behavior=restart (keeps it) or overwrite (deletes it)")

    checkpoints = policy_checkpoints(exp_dir, cfg)
    resume_states: list[CheckpointState | None] = [None] * cfg.num_policies
    if resume:
        resume_states = [_load_state(manager, cfg.load_checkpoint_kind,
                                     _checkpoint_source(exp_dir, p, cfg.num_policies))
                         for p, manager in enumerate(checkpoints)]
        if any(state is not None for state in resume_states):
            notes += [f"Policy {p} has no checkpoint yet: it starts afresh"
                      for p, state in enumerate(resume_states) if state is None]

    init_weights = None
    if cfg.initialize_from is not None:
        if any(state is not None for state in resume_states):
            notes.append(f"Resuming '{cfg.experiment}' from its own checkpoint; --initialize_from="
                         f"{cfg.initialize_from} applies only to a new experiment")
        else:
            init_weights = read_initial_weights(resolve_checkpoint_source(
                cfg.initialize_from, Path(cfg.train_dir), cfg.load_checkpoint_kind))

    _check_against_env(cfg, resume_states, init_weights, exp_dir)

    # Every check has passed: only now is the disk changed.
    try:
        log_file = _apply_restart_behavior(cfg, exp_dir, exists, notes)
    except OSError as e:
        raise UserError(f"cannot prepare the experiment folder {exp_dir}: {e}") from None
    for note in notes:
        log.info(note)
    previous = _stored_command_lines(config_path) if resume else []
    write_config(config_path, cfg, previous + [parsed.command_line])
    for manager in checkpoints:
        manager.remove_stale_temp_files()
    return Experiment(cfg=cfg, dir=exp_dir, checkpoints=checkpoints, resume_states=resume_states,
                      init_weights=init_weights, log_file=log_file, overridden=frozenset(overridden))


def policy_checkpoints(exp_dir: Path, cfg: ConfigBase) -> list[CheckpointManager]:
    return [CheckpointManager(exp_dir / policy_checkpoint_dir(p), cfg.keep_checkpoints)
            for p in range(cfg.num_policies)]


def _apply_restart_behavior(cfg: ConfigBase, exp_dir: Path, exists: bool,
                            notes: list[str]) -> logging.Handler | None:
    if exists and cfg.restart_behavior == "restart":
        kept = _free_old_name(exp_dir)
        exp_dir.rename(kept)
        notes.append(f"Kept the previous experiment folder as {kept}")
    elif exists and cfg.restart_behavior == "overwrite":
        shutil.rmtree(exp_dir)
        notes.append(f"Deleted the previous experiment folder {exp_dir}")
    exp_dir.mkdir(parents=True, exist_ok=True)
    # This run is not finished until it reaches its own limit (which may have been raised).
    (exp_dir / FINISHED_FILE).unlink(missing_ok=True)
    return add_log_file(exp_dir / LOG_FILE) if cfg.log_to_file else None


def _checkpoint_source(exp_dir: Path, policy: int, num_policies: int) -> str:
    """How errors name a policy's checkpoint."""
    return f"the checkpoint of {exp_dir}" + (f" (policy {policy})" if num_policies > 1 else "")


def _load_state(manager: CheckpointManager, kind: str, source: str) -> CheckpointState | None:
    state = manager.load(kind)
    return None if state is None else CheckpointState.from_dict(state, source)


def _check_against_env(cfg: ConfigBase, resume_states: list[CheckpointState | None],
                       init_weights: InitialWeights | None, exp_dir: Path) -> None:
    """Builds one env and the learner on the CPU so that env-dependent errors (unsupported
    spaces, an env that breaks its own contract in its reset or first step, options that do not
    fit the action space, checkpoints of another architecture) surface before anything is
    written."""
    import importlib.util

    import torch

    from asyncrl.algo.learner import Learner
    from asyncrl.config.validate import validate_for_env
    from asyncrl.envs.registry import find_env_family, make_env
    from asyncrl.envs.vector import EnvVector
    from asyncrl.model.actor_critic import load_weights

    if getattr(cfg, "with_wandb", False) and importlib.util.find_spec("wandb") is None:
        raise UserError("--with_wandb=True needs wandb: pip install 'asyncrl[wandb]'")
    family = find_env_family(cfg.env)
    # As the rollout workers make it; one step with random actions checks the env's contract.
    envs = EnvVector(lambda i: make_env(family, cfg.env, cfg, i), 1, cfg.seed, env_name=cfg.env,
                     strict=True)
    try:
        envs.warm_up([1])
        validate_for_env(cfg, envs.agents_per_env)
        learner = Learner(cfg, envs.envs[0].observation_space, envs.action_space,
                          torch.device("cpu"))
    finally:
        envs.close()
    for p, state in enumerate(resume_states):
        if state is not None:
            learner.load_state(state.learner, _checkpoint_source(exp_dir, p, len(resume_states)))
    if init_weights is not None:
        load_weights(learner.model, init_weights.model, init_weights.source)


def _free_old_name(exp_dir: Path) -> Path:
    n = 1
    while (candidate := exp_dir.with_name(f"{exp_dir.name}_old{n}")).exists():
        n += 1
    return candidate


def load_experiment_for_eval(parsed: ParsedArgs) -> tuple[ConfigBase, Path, CheckpointState]:
    """For asyncrl.enjoy: the stored config (CLI overrides applied) and the chosen checkpoint."""
    cfg = parsed.config()
    exp_dir = experiment_dir(cfg)
    config_path = exp_dir / CONFIG_FILE
    if not config_path.exists():
        raise UserError(f"no experiment at {exp_dir} (no {CONFIG_FILE}); train it first with "
                        f"python -m asyncrl.train --env={cfg.env} --experiment={cfg.experiment}")
    stored = read_stored_config(config_path)
    cfg = parsed.config(stored)
    policies = int(stored.get("num_policies", 1))
    if cfg.policy_index >= policies:
        raise UserError(f"--policy_index={cfg.policy_index} is out of range: experiment {exp_dir} "
                        f"trains {policies} {'policy' if policies == 1 else 'policies'} "
                        f"(0..{policies - 1})")
    manager = CheckpointManager(exp_dir / policy_checkpoint_dir(cfg.policy_index),
                                keep_checkpoints=1_000_000)
    state = _load_state(manager, cfg.load_checkpoint_kind, f"the checkpoint of {exp_dir}")
    if state is None:
        raise UserError(f"experiment {exp_dir} has no checkpoint of policy {cfg.policy_index} yet")
    return cfg, exp_dir, state
