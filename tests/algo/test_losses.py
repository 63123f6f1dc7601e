import pytest
import torch

from asyncrl.algo.losses import (
    clip_fraction,
    entropy_loss,
    kl_loss,
    normalize_advantages,
    policy_loss,
    symmetric_kl_loss,
    value_loss,
)
from asyncrl.model.distributions import CategoricalDistribution, DiagGaussianDistribution


def test_policy_loss_hand_computed():
    # clip_ratio 0.1 -> ratio bounds [1/1.1, 1.1].
    ratio = torch.tensor([0.5, 0.95, 1.2, 1.2, 0.5])
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0])
    # Per-sample min(r*A, clip(r)*A): 0.5, 0.95, 1.1 (clipped), -1.2, -1/1.1 (clipped).
    expected = -(0.5 + 0.95 + 1.1 - 1.2 - 1.0 / 1.1) / 5
    torch.testing.assert_close(policy_loss(ratio, adv, clip_ratio=0.1), torch.tensor(expected))


def test_policy_loss_uses_unbiased_lower_bound():
    # With PPO's 1 - c bound, 0.9 would be inside the range; here the bound is 1/1.1 ~ 0.909.
    loss = policy_loss(torch.tensor([0.9]), torch.tensor([-1.0]), clip_ratio=0.1)
    torch.testing.assert_close(loss, torch.tensor(1.0 / 1.1))


def test_policy_loss_gradient_is_zero_where_clipped():
    ratio = torch.tensor([1.5, 1.05, 0.5], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, -1.0])
    policy_loss(ratio, adv, clip_ratio=0.2).backward()
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, -1.0 / 3, 0.0]))


def test_value_loss_hand_computed():
    values = torch.tensor([0.5, 0.1, -0.5, 1.0])
    old_values = torch.tensor([0.0, 0.0, 0.0, 1.0])
    targets = torch.tensor([1.0, 1.0, 1.0, 0.0])
    # Clipped values (0.2, 0.1, -0.2, 1.0); per-sample max of squared errors: 0.64, 0.81, 2.25, 1.0.
    loss = value_loss(values, old_values, targets, clip_value=0.2)
    torch.testing.assert_close(loss, torch.tensor((0.64 + 0.81 + 2.25 + 1.0) / 4))


def test_value_loss_without_effective_clip_is_mse():
    values, old_values, targets = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    loss = value_loss(values, old_values, targets, clip_value=1e6)
    torch.testing.assert_close(loss, ((values - targets) ** 2).mean())


def test_loss_shape_errors():
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.ones(4), torch.ones(3), 0.1)
    with pytest.raises(ValueError, match=r"\[N\]"):
        policy_loss(torch.ones(2, 2), torch.ones(2, 2), 0.1)
    with pytest.raises(ValueError, match="targets"):
        value_loss(torch.ones(4), torch.ones(4), torch.ones(4, 1), 0.2)


def test_entropy_symmetric_kl_and_kl_losses():
    logits = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    dist = CategoricalDistribution(logits)
    behaviour = CategoricalDistribution(torch.zeros(2, 2))
    torch.testing.assert_close(entropy_loss(dist), -dist.entropy().mean())
    torch.testing.assert_close(symmetric_kl_loss(dist), dist.symmetric_kl_with_uniform_prior().mean())
    torch.testing.assert_close(kl_loss(dist, behaviour), dist.kl_divergence(behaviour).mean())
    # Row 0 is uniform, so only row 1 contributes; uniform over 2 has entropy log 2.
    assert entropy_loss(behaviour).item() == pytest.approx(-0.6931472)
    assert kl_loss(behaviour, behaviour).item() == pytest.approx(0.0, abs=1e-7)

    gauss = DiagGaussianDistribution(torch.tensor([[0.0, 0.0]]))
    shifted = DiagGaussianDistribution(torch.tensor([[1.0, 0.0]]))
    # KL between unit Gaussians one apart is 1/2.
    assert kl_loss(gauss, shifted).item() == pytest.approx(0.5)


def test_clip_fraction():
    ratio = torch.tensor([0.5, 0.95, 1.0, 1.05, 1.2, 0.8])
    assert clip_fraction(ratio, clip_ratio=0.1) == pytest.approx(0.5)
    assert clip_fraction(torch.ones(7), clip_ratio=0.1) == 0.0
    assert isinstance(clip_fraction(ratio, 0.1), float)


def test_normalize_advantages():
    out = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    expected = (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / 1.25**0.5
    torch.testing.assert_close(out, expected)
    # Zero spread must not divide by zero.
    torch.testing.assert_close(normalize_advantages(torch.full((5,), 3.0)), torch.zeros(5))
    torch.testing.assert_close(normalize_advantages(torch.tensor([7.0])), torch.zeros(1))
