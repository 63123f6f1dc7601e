"""Advantage and value-target estimators over time-major rollouts.

Every tensor here is laid out `[T, B]` (time first, then batch) except `bootstrap_value`, which is
the value of the state after the last step, `[B]`. `discounts` is `gamma * (1 - done)` so that an
episode boundary is a discount of 0 and stops every backward recursion at that step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from asyncrl.algo.shapes import require_same_shape


def _check_time_major(bootstrap_value: Tensor, **tensors: Tensor) -> None:
    first_shape = require_same_shape("[T, B]", **tensors)
    if tuple(bootstrap_value.shape) != (first_shape[1],):
        raise ValueError(
            f"bootstrap_value has shape {tuple(bootstrap_value.shape)}, expected [B] = ({first_shape[1]},)"
        )


def _clip(x: Tensor, threshold: float | None) -> Tensor:
    return x if threshold is None else torch.clamp(x, max=threshold)


@torch.no_grad()
def vtrace(
    log_rhos: Tensor,
    discounts: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> tuple[Tensor, Tensor]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, IMPALA).

    Args:
        log_rhos: `[T, B]` log(pi(a_t|x_t) / mu(a_t|x_t)), target over behaviour policy.
        discounts: `[T, B]` gamma * (1 - done_t).
        rewards: `[T, B]`.
        values: `[T, B]` V(x_t) under the current value function.
        bootstrap_value: `[B]` V(x_T).
        clip_rho_threshold: rho-bar, caps the importance weight on each TD error (None: no cap).
        clip_c_threshold: c-bar, caps the trace-cutting coefficients (None: no cap).
        clip_pg_rho_threshold: caps the importance weight on the policy-gradient advantage.

    Returns:
        `(vs, pg_advantages)`, both `[T, B]` and detached.
    """
    _check_time_major(bootstrap_value, log_rhos=log_rhos, discounts=discounts, rewards=rewards, values=values)

    rhos = torch.exp(log_rhos)
    clipped_rhos = _clip(rhos, clip_rho_threshold)
    cs = _clip(rhos, clip_c_threshold)

    values_t_plus_1 = torch.cat([values[1:], bootstrap_value[None]], dim=0)
    deltas = clipped_rhos * (rewards + discounts * values_t_plus_1 - values)

    # acc_t = vs_t - V(x_t); the recursion runs backwards from acc_T = 0.
    acc = torch.zeros_like(bootstrap_value)
    vs_minus_v = torch.empty_like(values)
    for t in reversed(range(values.shape[0])):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        vs_minus_v[t] = acc
    vs = values + vs_minus_v

    vs_t_plus_1 = torch.cat([vs[1:], bootstrap_value[None]], dim=0)
    pg_advantages = _clip(rhos, clip_pg_rho_threshold) * (rewards + discounts * vs_t_plus_1 - values)
    return vs, pg_advantages


@torch.no_grad()
def gae(
    rewards: Tensor,
    discounts: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016).

    Args:
        rewards: `[T, B]`.
        discounts: `[T, B]` gamma * (1 - done_t).
        values: `[T, B]` V(x_t).
        bootstrap_value: `[B]` V(x_T).
        gae_lambda: lambda in [0, 1]; 0 gives one-step TD errors, 1 gives discounted returns - V.

    Returns:
        `(advantages, returns)`, both `[T, B]` and detached; `returns = advantages + values`.
    """
    _check_time_major(bootstrap_value, rewards=rewards, discounts=discounts, values=values)

    values_t_plus_1 = torch.cat([values[1:], bootstrap_value[None]], dim=0)
    deltas = rewards + discounts * values_t_plus_1 - values

    acc = torch.zeros_like(bootstrap_value)
    advantages = torch.empty_like(values)
    for t in reversed(range(values.shape[0])):
        acc = deltas[t] + discounts[t] * gae_lambda * acc
        advantages[t] = acc
    return advantages, advantages + values
