import math

import pytest
import torch

from asyncrl.algo.advantages import gae, vtrace

# T=3, B=2. Column 0 is off-policy with rho < 1 at t=1; column 1 has rho > 1 (clipped by default)
# and an episode end at t=1 (discount 0).
LOG_RHOS = torch.tensor([[0.0, math.log(2.0)], [math.log(0.5), 0.0], [0.0, math.log(3.0)]])
DISCOUNTS = torch.tensor([[0.9, 0.9], [0.9, 0.0], [0.9, 0.9]])
REWARDS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]])
VALUES = torch.tensor([[0.5, 1.0], [1.0, 0.5], [1.5, 2.0]])
BOOTSTRAP = torch.tensor([2.0, 1.0])


def reference_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, c_bar, pg_rho_bar):
    """Scalar loop straight from the IMPALA paper's definitions."""
    clip = lambda x, bar: x if bar is None else min(x, bar)  # noqa: E731
    T, B = values.shape
    vs = [[0.0] * B for _ in range(T)]
    pg = [[0.0] * B for _ in range(T)]
    for b in range(B):
        acc = 0.0
        for t in reversed(range(T)):
            rho = math.exp(log_rhos[t, b].item())
            v_next = bootstrap[b].item() if t == T - 1 else values[t + 1, b].item()
            delta = clip(rho, rho_bar) * (rewards[t, b].item() + discounts[t, b].item() * v_next - values[t, b].item())
            acc = delta + discounts[t, b].item() * clip(rho, c_bar) * acc
            vs[t][b] = values[t, b].item() + acc
        for t in range(T):
            rho = math.exp(log_rhos[t, b].item())
            vs_next = bootstrap[b].item() if t == T - 1 else vs[t + 1][b]
            pg[t][b] = clip(rho, pg_rho_bar) * (
                rewards[t, b].item() + discounts[t, b].item() * vs_next - values[t, b].item()
            )
    return torch.tensor(vs), torch.tensor(pg)


def test_vtrace_hand_computed_default_clipping():
    vs, pg = vtrace(LOG_RHOS, DISCOUNTS, REWARDS, VALUES, BOOTSTRAP)
    # Worked by hand: column 0 deltas (1.4, 0.175, 2.3), traces (1, 0.5, 1);
    # column 1 rhos clipped to 1, deltas (-0.55, 0.5, -2.1), recursion cut at t=1.
    expected_vs = torch.tensor([[2.989, 0.9], [2.21, 1.0], [3.8, -0.1]])
    expected_pg = torch.tensor([[2.489, -0.1], [1.21, 0.5], [2.3, -2.1]])
    torch.testing.assert_close(vs, expected_vs)
    torch.testing.assert_close(pg, expected_pg)


def test_vtrace_without_clipping_uses_raw_rhos():
    vs, pg = vtrace(LOG_RHOS, DISCOUNTS, REWARDS, VALUES, BOOTSTRAP, None, None, None)
    # Column 1 with rhos (2, 1, 3): deltas (-1.1, 0.5, -6.3); column 0 has no rho > 1 so is unchanged.
    torch.testing.assert_close(vs[:, 1], torch.tensor([0.8, 1.0, -4.3]))
    torch.testing.assert_close(pg[:, 1], torch.tensor([-0.2, 0.5, -6.3]))
    torch.testing.assert_close(vs[:, 0], torch.tensor([2.989, 2.21, 3.8]))


@pytest.mark.parametrize(
    "rho_bar, c_bar, pg_rho_bar",
    [(1.0, 1.0, 1.0), (None, 1.0, 1.0), (1.0, None, 1.0), (1.0, 1.0, None), (2.5, 0.7, 1.5), (None, None, None)],
)
def test_vtrace_matches_reference_loop(rho_bar, c_bar, pg_rho_bar):
    gen = torch.Generator().manual_seed(0)
    T, B = 5, 4
    log_rhos = torch.randn(T, B, generator=gen)
    discounts = 0.95 * (torch.rand(T, B, generator=gen) > 0.2).float()
    rewards = torch.randn(T, B, generator=gen)
    values = torch.randn(T, B, generator=gen)
    bootstrap = torch.randn(B, generator=gen)
    vs, pg = vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, c_bar, pg_rho_bar)
    ref_vs, ref_pg = reference_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, c_bar, pg_rho_bar)
    torch.testing.assert_close(vs, ref_vs)
    torch.testing.assert_close(pg, ref_pg)


def test_each_threshold_changes_the_result():
    gen = torch.Generator().manual_seed(1)
    log_rhos = torch.full((4, 3), math.log(3.0))  # every rho is 3, so any threshold of 1 binds
    discounts = torch.full((4, 3), 0.9)
    rewards = torch.randn(4, 3, generator=gen)
    values = torch.randn(4, 3, generator=gen)
    bootstrap = torch.randn(3, generator=gen)
    args = (log_rhos, discounts, rewards, values, bootstrap)
    vs_all, pg_all = vtrace(*args, 1.0, 1.0, 1.0)
    vs_no_rho, _ = vtrace(*args, None, 1.0, 1.0)
    vs_no_c, _ = vtrace(*args, 1.0, None, 1.0)
    _, pg_no_pg = vtrace(*args, 1.0, 1.0, None)
    assert not torch.allclose(vs_all, vs_no_rho)
    assert not torch.allclose(vs_all, vs_no_c)
    # pg clipping scales the advantage by exactly rho / 1 where it binds.
    torch.testing.assert_close(pg_no_pg, 3.0 * pg_all)


def test_on_policy_vtrace_equals_discounted_returns_and_gae_lambda_1():
    gen = torch.Generator().manual_seed(2)
    T, B = 6, 3
    discounts = 0.99 * (torch.rand(T, B, generator=gen) > 0.3).float()
    rewards = torch.randn(T, B, generator=gen)
    values = torch.randn(T, B, generator=gen)
    bootstrap = torch.randn(B, generator=gen)

    expected = torch.empty(T, B)
    ret = bootstrap.clone()
    for t in reversed(range(T)):
        ret = rewards[t] + discounts[t] * ret
        expected[t] = ret

    vs, pg = vtrace(torch.zeros(T, B), discounts, rewards, values, bootstrap)
    torch.testing.assert_close(vs, expected)
    next_vs = torch.cat([vs[1:], bootstrap[None]])
    torch.testing.assert_close(pg, rewards + discounts * next_vs - values)

    adv, returns = gae(rewards, discounts, values, bootstrap, gae_lambda=1.0)
    torch.testing.assert_close(returns, expected)
    torch.testing.assert_close(adv, expected - values)


def test_zero_discount_cuts_the_recursion():
    discounts = torch.tensor([[0.9], [0.0], [0.9]])
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.0], [0.0], [0.0]])
    bootstrap = torch.tensor([0.0])
    vs, _ = vtrace(torch.zeros(3, 1), discounts, rewards, values, bootstrap)
    adv, _ = gae(rewards, discounts, values, bootstrap, 0.95)

    # Rewards, values and bootstrap after the episode end must not leak into steps 0 and 1.
    rewards_after = torch.tensor([[1.0], [1.0], [100.0]])
    values_after = torch.tensor([[0.0], [0.0], [50.0]])
    vs_after, _ = vtrace(torch.zeros(3, 1), discounts, rewards_after, values_after, bootstrap + 7)
    adv_after, _ = gae(rewards_after, discounts, values_after, bootstrap + 7, 0.95)
    torch.testing.assert_close(vs_after[:2], vs[:2])
    torch.testing.assert_close(adv_after[:2], adv[:2])
    torch.testing.assert_close(vs[:, 0], torch.tensor([1.9, 1.0, 1.0]))


def test_gae_hand_computed():
    adv, returns = gae(REWARDS, DISCOUNTS, VALUES, BOOTSTRAP, gae_lambda=0.5)
    # deltas: column 0 (1.4, 0.35, 2.3), column 1 (-0.55, 0.5, -2.1); decay gamma * lambda = 0.45.
    expected_adv = torch.tensor([[2.02325, -0.325], [1.385, 0.5], [2.3, -2.1]])
    torch.testing.assert_close(adv, expected_adv)
    torch.testing.assert_close(returns, expected_adv + VALUES)


def test_gae_lambda_0_is_one_step_td_error():
    adv, _ = gae(REWARDS, DISCOUNTS, VALUES, BOOTSTRAP, gae_lambda=0.0)
    next_values = torch.cat([VALUES[1:], BOOTSTRAP[None]])
    torch.testing.assert_close(adv, REWARDS + DISCOUNTS * next_values - VALUES)


def test_outputs_are_detached():
    values = VALUES.clone().requires_grad_(True)
    log_rhos = LOG_RHOS.clone().requires_grad_(True)
    vs, pg = vtrace(log_rhos, DISCOUNTS, REWARDS, values, BOOTSTRAP)
    adv, returns = gae(REWARDS, DISCOUNTS, values, BOOTSTRAP, 0.9)
    assert not any(t.requires_grad for t in (vs, pg, adv, returns))


def test_shape_errors():
    with pytest.raises(ValueError, match="rewards"):
        vtrace(LOG_RHOS, DISCOUNTS, REWARDS[:2], VALUES, BOOTSTRAP)
    with pytest.raises(ValueError, match="bootstrap_value"):
        vtrace(LOG_RHOS, DISCOUNTS, REWARDS, VALUES, torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[T, B\]"):
        vtrace(LOG_RHOS.flatten(), DISCOUNTS.flatten(), REWARDS.flatten(), VALUES.flatten(), BOOTSTRAP)
    with pytest.raises(ValueError, match="values"):
        gae(REWARDS, DISCOUNTS, VALUES.T, BOOTSTRAP, 0.9)
    with pytest.raises(ValueError, match="bootstrap_value"):
        gae(REWARDS, DISCOUNTS, VALUES, BOOTSTRAP[None], 0.9)
