"""Checks that involve several parameters (single values are checked by their table row), and
values derived from several parameters."""

from __future__ import annotations

from typing import Any, Callable

from asyncrl.config.hyperparameters import initial_hyperparameters
from asyncrl.utils.errors import UserError


def resolved_recurrence(cfg: Any) -> int:
    """The learner's sequence length: --recurrence, or for -1 (Sample Factory's default) the whole
    rollout for a recurrent policy and single transitions for a feed-forward one."""
    if cfg.recurrence == -1:
        return cfg.rollout if cfg.use_rnn else 1
    return cfg.recurrence


def validate_config(cfg: Any, check_env_family: Callable[[Any], None]) -> None:
    """Raises UserError with one line for the first inconsistent combination found;
    `check_env_family(cfg)` makes the checks of cfg.env's family (asyncrl/envs/command_line.py)
    in their place among the others."""
    if cfg.num_envs_per_worker % cfg.worker_num_splits != 0:
        raise UserError(
            f"--num_envs_per_worker={cfg.num_envs_per_worker} must be divisible by "
            f"--worker_num_splits={cfg.worker_num_splits}")
    if cfg.batch_size % cfg.rollout != 0:
        raise UserError(
            f"--batch_size={cfg.batch_size} must be a multiple of --rollout={cfg.rollout}")
    if cfg.recurrence == 0:
        raise UserError("--recurrence=0 is not allowed: give a number of steps, or -1 for the "
                        "rollout (recurrent policy) or 1 (feed-forward policy)")
    if cfg.rollout % resolved_recurrence(cfg) != 0:
        raise UserError(f"--rollout={cfg.rollout} must be a multiple of "
                        f"--recurrence={cfg.recurrence} (the learner cuts each trajectory into "
                        "sequences of that many steps)")
    if cfg.lr_adaptive_min > cfg.lr_adaptive_max:
        raise UserError(
            f"--lr_adaptive_min={cfg.lr_adaptive_min} must not exceed "
            f"--lr_adaptive_max={cfg.lr_adaptive_max}")
    if cfg.obs_scale == 0:
        raise UserError("--obs_scale must not be 0 (observations are divided by it)")
    if cfg.policy_initialization == "torch_default":
        for name in ("policy_head_init_gain", "value_head_init_gain"):
            if getattr(cfg, name) is not None:
                raise UserError(f"--{name} is a gain of the orthogonal / xavier_uniform "
                                "initialization: set --policy_initialization=orthogonal or "
                                "xavier_uniform, or leave it out")
    if cfg.policy_workers_per_policy > cfg.num_workers:
        raise UserError(f"--policy_workers_per_policy={cfg.policy_workers_per_policy} must not "
                        f"exceed --num_workers={cfg.num_workers} (each serves whole workers)")
    if hasattr(cfg, "num_policies"):  # training (evaluation plays one policy)
        _validate_population(cfg)
        _validate_evaluation(cfg)
    validate_for_env(cfg, agents_per_env=None)
    check_env_family(cfg)
    if "/" in cfg.experiment or cfg.experiment in ("", ".", ".."):
        raise UserError(f"--experiment={cfg.experiment!r} must be a plain folder name "
                        "(no '/')")


def _validate_evaluation(cfg: Any) -> None:
    if cfg.save_best_metric == "eval/return" and cfg.eval_every_env_steps == 0:
        raise UserError("--save_best_metric=eval/return needs evaluations during training: set "
                        "--eval_every_env_steps (e.g. 100000)")
    if cfg.eval_env_kwargs is not None and cfg.eval_every_env_steps == 0:
        raise UserError("--eval_env_kwargs is for evaluations during training: set "
                        "--eval_every_env_steps too, or leave --eval_env_kwargs out")


def _validate_population(cfg: Any) -> None:
    if cfg.with_pbt and cfg.num_policies < 2:
        raise UserError(f"--with_pbt=True needs a population: --num_policies={cfg.num_policies} "
                        "must be at least 2")
    if cfg.pbt_perturb_min > cfg.pbt_perturb_max:
        raise UserError(f"--pbt_perturb_min={cfg.pbt_perturb_min} must not exceed "
                        f"--pbt_perturb_max={cfg.pbt_perturb_max}")
    initial_hyperparameters(cfg)  # refuses malformed items


def validate_for_env(cfg: Any, agents_per_env: int | None) -> None:
    """The checks that depend on the env: how many agents act in each (None: not known yet; the
    checks then assume one, skipping those that more agents could satisfy)."""
    known = agents_per_env is not None
    agents_per_env = agents_per_env or 1
    agents_per_split = cfg.num_envs_per_worker // cfg.worker_num_splits * agents_per_env
    batch_trajectories = cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout
    # Evaluation (asyncrl.enjoy) has no training-only parameters and plays one policy.
    policies = getattr(cfg, "num_policies", 1)
    # What is assigned to policies in turn: agents (mixing policies in one env) or whole envs.
    mixing = getattr(cfg, "pbt_mix_policies_in_one_env", True)
    # Agents, not envs, may be what is assigned to policies: checked once the env is known.
    check_units = known or not mixing
    mixed = mixing and agents_per_env > 1
    unit = "agents" if mixed else "envs"
    units = cfg.num_workers * cfg.num_envs_per_worker * (agents_per_env if mixed else 1)
    if check_units and units < policies:
        raise UserError(f"--num_policies={policies} needs at least as many {unit} as policies "
                        f"(each acts for one policy): num_workers*num_envs_per_worker"
                        f"{' x agents per env' if mixed else ''} = {units}")
    if check_units and not cfg.async_rl and policies > 1:
        units_per_split = agents_per_split if mixed else agents_per_split // agents_per_env
        if units_per_split % policies != 0:
            raise UserError(
                f"--async_rl=False with --num_policies={policies} needs the {unit} of each split "
                f"to divide evenly among the policies: num_envs_per_worker/worker_num_splits"
                f"{' x agents per env' if mixed else ''} = {units_per_split} is not a multiple of "
                f"{policies}")
    rows_per_split = agents_per_split // policies  # of each policy
    if not cfg.async_rl and batch_trajectories % rows_per_split != 0:
        raise UserError(
            f"--async_rl=False needs each training batch to hold whole splits of envs: "
            f"batch_size*num_batches_per_epoch/rollout = {batch_trajectories} trajectories must be "
            f"a multiple of the agents of one split, num_envs_per_worker/worker_num_splits"
            f"{f' x {agents_per_env} agents per env' if agents_per_env > 1 else ''}"
            f"{f' / {policies} policies' if policies > 1 else ''} = {rows_per_split}")
    if agents_per_env > 1 and getattr(cfg, "batched_sampling", False):
        raise UserError(f"--batched_sampling=True does not support multi-agent envs ({cfg.env} has "
                        f"{agents_per_env} agents per env): use --batched_sampling=False")
