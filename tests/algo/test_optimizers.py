import math

import pytest
import torch

from asyncrl.algo.optimizers import Lamb, linear_decay, load_optimizer_state, make_optimizer
from asyncrl.utils.errors import UserError


def test_lamb_one_step_hand_computed():
    w = torch.tensor([3.0, 4.0], requires_grad=True)  # ||w|| = 5
    opt = Lamb([w], lr=0.01, betas=(0.9, 0.999), eps=0.0, weight_decay=0.1)
    w.grad = torch.tensor([1.0, -2.0])
    opt.step()
    # Step 1: bias correction makes m_hat = g and v_hat = g^2, so the Adam part is sign(g) = (1, -1);
    # adding 0.1 * w gives update (1.3, -0.6); trust ratio 5 / ||update||.
    update = [1.3, -0.6]
    trust = 5.0 / math.hypot(*update)
    expected = torch.tensor([3.0 - 0.01 * trust * update[0], 4.0 - 0.01 * trust * update[1]])
    torch.testing.assert_close(w.detach(), expected)


def test_lamb_trust_ratio_is_one_for_zero_weights():
    w = torch.zeros(2, requires_grad=True)
    opt = Lamb([w], lr=0.1, eps=0.0)
    w.grad = torch.tensor([2.0, -0.5])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([-0.1, 0.1]))


def test_lamb_reduces_quadratic_loss():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(8, 4, generator=gen)
    b = torch.randn(8, generator=gen)
    w = torch.ones(4, requires_grad=True)
    opt = Lamb([w], lr=0.05)

    def loss_fn() -> torch.Tensor:
        return ((a @ w - b) ** 2).mean()

    initial = loss_fn().item()
    optimum = torch.linalg.lstsq(a, b[:, None]).solution.squeeze(-1)
    best = ((a @ optimum - b) ** 2).mean().item()
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() - best < 0.05 * (initial - best)


def test_lamb_step_with_closure_returns_loss():
    w = torch.ones(3, requires_grad=True)
    opt = Lamb([w])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(3.0)
    assert (w.detach() < 1.0).all()


def test_lamb_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="lr"):
        Lamb([torch.zeros(1, requires_grad=True)], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        Lamb([torch.zeros(1, requires_grad=True)], betas=(1.0, 0.999))


def test_make_optimizer():
    params = [torch.zeros(2, requires_grad=True)]
    adam = make_optimizer("adam", params, lr=1e-3, adam_eps=1e-8, adam_beta1=0.8, adam_beta2=0.99)
    assert isinstance(adam, torch.optim.Adam)
    assert adam.defaults["betas"] == (0.8, 0.99) and adam.defaults["eps"] == 1e-8
    lamb = make_optimizer("lamb", params, lr=2e-3, adam_eps=1e-6, adam_beta1=0.9, adam_beta2=0.999)
    assert isinstance(lamb, Lamb) and lamb.defaults["lr"] == 2e-3
    with pytest.raises(UserError, match="adam or lamb"):
        make_optimizer("sgd", params, lr=1e-3, adam_eps=1e-8, adam_beta1=0.9, adam_beta2=0.999)


def test_adam_is_fused_and_matches_the_reference_loop():
    """make_optimizer's Adam uses the fused kernel (10x faster on the CPU) and takes the same
    steps as PyTorch's per-tensor Adam."""
    torch.manual_seed(0)
    ours = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    reference = [p.detach().clone().requires_grad_(True) for p in ours]
    initial = [p.detach().clone() for p in ours]
    adam = make_optimizer("adam", ours, lr=1e-2, adam_eps=1e-6, adam_beta1=0.9, adam_beta2=0.999)
    loop = torch.optim.Adam(reference, lr=1e-2, eps=1e-6, foreach=False)
    assert adam.defaults["fused"] is True
    for _ in range(5):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, reference, grads):
            p.grad, q.grad = g.clone(), g.clone()
        adam.step()
        loop.step()
    for p, q, start in zip(ours, reference, initial):
        assert torch.allclose(p, q, atol=1e-6) and not torch.allclose(p, start, atol=1e-3)


def test_loading_a_state_saved_without_fusing_keeps_the_fused_kernel():
    params = [torch.randn(4, requires_grad=True)]
    unfused = torch.optim.Adam(params, lr=1e-3, foreach=False)
    params[0].grad = torch.randn(4)
    unfused.step()
    adam = make_optimizer("adam", params, lr=1e-3, adam_eps=1e-8, adam_beta1=0.9, adam_beta2=0.999)
    load_optimizer_state(adam, unfused.state_dict())
    assert adam.param_groups[0]["fused"] is True
    assert torch.equal(adam.state[params[0]]["exp_avg"], unfused.state[params[0]]["exp_avg"])
    adam.step()  # the fused kernel accepts the loaded state


def test_linear_decay_falls_to_zero_at_the_total_and_stays_there():
    assert linear_decay(2.5e-4, 0, 10_000) == 2.5e-4
    assert linear_decay(2.5e-4, 2_500, 10_000) == pytest.approx(2.5e-4 * 0.75, rel=1e-12)
    assert linear_decay(2.5e-4, 10_000, 10_000) == 0.0
    assert linear_decay(2.5e-4, 12_000, 10_000) == 0.0  # the last batch may overshoot
    assert linear_decay(2.5e-4, 0, 0) == 0.0
