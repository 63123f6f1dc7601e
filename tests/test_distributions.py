import math

import gymnasium
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from asyncrl.model.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    make_action_distribution,
    num_action_params,
)
from asyncrl.utils.errors import UserError

DISCRETE = gymnasium.spaces.Discrete(5)
BOX = gymnasium.spaces.Box(low=-1.0, high=1.0, shape=(3,), dtype=np.float32)


def random_params(n_params: int, seed: int, n: int = 64) -> torch.Tensor:
    return 2.0 * torch.randn(n, n_params, generator=torch.Generator().manual_seed(seed))


def test_num_action_params():
    assert num_action_params(DISCRETE) == 5
    assert num_action_params(BOX) == 6


@pytest.mark.parametrize(
    "space",
    [
        gymnasium.spaces.MultiDiscrete([2, 3]),
        gymnasium.spaces.Box(low=-1.0, high=1.0, shape=(2, 2)),
        gymnasium.spaces.Dict({"a": gymnasium.spaces.Discrete(2)}),
        gymnasium.spaces.Discrete(3, start=1),
    ],
)
def test_unsupported_space_raises_user_error(space):
    with pytest.raises(UserError) as excinfo:
        num_action_params(space)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(space) in message
    with pytest.raises(UserError):
        make_action_distribution(space, torch.zeros(1, 4))


def test_supported_spaces_error_message_lists_what_is_allowed():
    with pytest.raises(UserError, match="Discrete and 1-D Box"):
        num_action_params(gymnasium.spaces.MultiBinary(3))


def test_make_action_distribution_types_and_shape_check():
    assert isinstance(make_action_distribution(DISCRETE, torch.zeros(4, 5)), CategoricalDistribution)
    assert isinstance(make_action_distribution(BOX, torch.zeros(4, 6)), DiagGaussianDistribution)
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        make_action_distribution(DISCRETE, torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        make_action_distribution(BOX, torch.zeros(6))


def test_categorical_matches_torch_distributions():
    logits, other_logits = random_params(5, seed=0), random_params(5, seed=1)
    dist = make_action_distribution(DISCRETE, logits)
    other = make_action_distribution(DISCRETE, other_logits)
    ref, ref_other = Categorical(logits=logits), Categorical(logits=other_logits)
    actions = ref.sample()

    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(dist.log_prob(actions.float()), ref.log_prob(actions))
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    torch.testing.assert_close(dist.kl_divergence(other), kl_divergence(ref, ref_other))


def test_gaussian_matches_torch_distributions():
    params, other_params = random_params(6, seed=2), random_params(6, seed=3)
    dist = make_action_distribution(BOX, params)
    other = make_action_distribution(BOX, other_params)
    mean, log_std = params.chunk(2, dim=-1)
    other_mean, other_log_std = other_params.chunk(2, dim=-1)
    ref = Independent(Normal(mean, log_std.exp()), 1)
    ref_other = Independent(Normal(other_mean, other_log_std.exp()), 1)
    actions = ref.sample()

    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    torch.testing.assert_close(dist.kl_divergence(other), kl_divergence(ref, ref_other))
    torch.testing.assert_close(dist.kl_divergence(dist), torch.zeros(64))


def test_categorical_sample_frequencies_match_probs():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.0, 0.7])
    dist = CategoricalDistribution(probs.log().expand(20000, 4))
    samples = dist.sample()
    assert samples.shape == (20000,) and samples.dtype == torch.int64
    freqs = torch.bincount(samples, minlength=4).float() / 20000
    torch.testing.assert_close(freqs, probs, atol=0.015, rtol=0.0)


def test_categorical_is_safe_with_very_negative_logits():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, -1e30, float("-inf")], [-1e9, 0.0, -1e9]])
    dist = CategoricalDistribution(logits)
    assert torch.isfinite(dist.entropy()).all()
    torch.testing.assert_close(dist.entropy(), torch.zeros(2))
    for _ in range(20):
        torch.testing.assert_close(dist.sample(), torch.tensor([0, 1]))
    assert torch.isfinite(dist.kl_divergence(dist)).all()


def test_gaussian_sample_statistics():
    torch.manual_seed(0)
    params = torch.tensor([[1.0, -2.0, math.log(0.5), math.log(2.0)]]).expand(20000, 4)
    samples = DiagGaussianDistribution(params).sample()
    assert samples.shape == (20000, 2) and samples.dtype == torch.float32
    torch.testing.assert_close(samples.mean(0), torch.tensor([1.0, -2.0]), atol=0.05, rtol=0.0)
    torch.testing.assert_close(samples.std(0), torch.tensor([0.5, 2.0]), atol=0.05, rtol=0.0)


def test_deterministic():
    logits = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 4.9]])
    torch.testing.assert_close(CategoricalDistribution(logits).deterministic(), torch.tensor([1, 0]))
    params = torch.tensor([[0.3, -0.7, 1.0, 2.0]])
    torch.testing.assert_close(DiagGaussianDistribution(params).deterministic(), torch.tensor([[0.3, -0.7]]))


def test_symmetric_kl_with_uniform_prior_hand_value():
    p = [0.25, 0.75]
    dist = CategoricalDistribution(torch.tensor([p]).log())
    kl_p_u = sum(pi * math.log(pi / 0.5) for pi in p)
    kl_u_p = sum(0.5 * math.log(0.5 / pi) for pi in p)
    torch.testing.assert_close(dist.symmetric_kl_with_uniform_prior(), torch.tensor([kl_p_u + kl_u_p]))
    uniform = CategoricalDistribution(torch.zeros(1, 4))
    torch.testing.assert_close(uniform.symmetric_kl_with_uniform_prior(), torch.zeros(1))


def test_gaussian_symmetric_kl_raises_user_error():
    with pytest.raises(UserError, match="discrete action space"):
        DiagGaussianDistribution(torch.zeros(2, 4)).symmetric_kl_with_uniform_prior()


def test_action_shape_and_kind_errors():
    cat = CategoricalDistribution(torch.zeros(3, 4))
    gauss = DiagGaussianDistribution(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[N\]"):
        cat.log_prob(torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"\[N, A\]"):
        gauss.log_prob(torch.zeros(3))
    with pytest.raises(TypeError):
        cat.kl_divergence(gauss)
    with pytest.raises(ValueError):
        cat.kl_divergence(CategoricalDistribution(torch.zeros(2, 4)))


def test_gradients_flow_to_params():
    params = random_params(6, seed=4, n=8).requires_grad_(True)
    dist = make_action_distribution(BOX, params)
    (dist.log_prob(torch.zeros(8, 3)).sum() + dist.entropy().sum()).backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
