import math

import gymnasium
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from asyncrl.envs.spaces import action_layout
from asyncrl.model.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    MixedDistribution,
    MultiCategoricalDistribution,
    make_action_distribution,
)
from asyncrl.utils.errors import UserError

DISCRETE = gymnasium.spaces.Discrete(5)
BOX = gymnasium.spaces.Box(low=-1.0, high=1.0, shape=(3,), dtype=np.float32)


def random_params(n_params: int, seed: int, n: int = 64) -> torch.Tensor:
    return 2.0 * torch.randn(n, n_params, generator=torch.Generator().manual_seed(seed))


def test_num_params():
    assert action_layout(DISCRETE).num_params == 5
    assert action_layout(BOX).num_params == 6


@pytest.mark.parametrize(
    "space",
    [
        gymnasium.spaces.Box(low=-1.0, high=1.0, shape=(2, 2)),
        gymnasium.spaces.Text(5),
        gymnasium.spaces.Dict({}),
        gymnasium.spaces.Tuple(()),
    ],
)
def test_unsupported_space_raises_user_error(space):
    with pytest.raises(UserError) as excinfo:
        action_layout(space)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(space) in message
    assert "supported are Discrete, MultiDiscrete, MultiBinary, 1-D Box, and Tuples or Dicts" in message
    with pytest.raises(UserError):
        make_action_distribution(space, torch.zeros(1, 4))


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


# -- MultiDiscrete and Tuple action spaces ----------------------------------------------------
Discrete, MultiDiscrete, Box, Tuple = (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete,
                                       gymnasium.spaces.Box, gymnasium.spaces.Tuple)
MULTI_DISCRETE = MultiDiscrete([3, 5, 2], start=[1, 0, -4])
# Depth-first: Discrete(3), MultiDiscrete([2, 4]), Box(2), Box(1); params are all logits, then
# the 3 means, then the 3 log-stds; actions the 3 indices, then the 3 continuous values.
NESTED = Tuple((Discrete(3), Tuple((MultiDiscrete([2, 4]), Box(-1.0, 1.0, (2,)))),
                Box(-2.0, 2.0, (1,))))


def reference_categoricals(logits: torch.Tensor, sizes) -> list[Categorical]:
    return [Categorical(logits=part) for part in logits.split(list(sizes), dim=-1)]


def test_layouts_count_components_params_and_action_columns():
    cases = [  # space, (categories, continuous dims, params, stored action shape, dtype)
        (DISCRETE, ((5,), 0, 5, (), np.int64)),
        (BOX, ((), 3, 6, (3,), np.float32)),
        (MULTI_DISCRETE, ((3, 5, 2), 0, 10, (3,), np.int64)),
        (MultiDiscrete([[2, 3], [4, 5]]), ((2, 3, 4, 5), 0, 14, (4,), np.int64)),
        (Tuple((Discrete(2), Discrete(3))), ((2, 3), 0, 5, (2,), np.int64)),
        (Tuple((Box(-1, 1, (2,)), Box(-1, 1, (1,)))), ((), 3, 6, (3,), np.float32)),
        (NESTED, ((3, 2, 4), 3, 15, (6,), np.float32)),
    ]
    for space, (categories, dims, params, shape, dtype) in cases:
        layout = action_layout(space)
        assert (layout.categories, layout.continuous_dims, layout.num_params, layout.action_shape,
                layout.action_dtype) == (categories, dims, params, shape, dtype), space


def test_unsupported_part_of_a_tuple_is_named():
    space = Tuple((Discrete(2), Tuple((Box(-1, 1, (2, 2)),))))
    with pytest.raises(UserError, match=r"unsupported action space Tuple\(.*\) \(its part "
                                        r"Box\(-1.0, 1.0, \(2, 2\), float32\) is not\): supported"):
        action_layout(space)
    multi_dim = MultiDiscrete([[2, 3], [4, 5]])
    with pytest.raises(UserError) as excinfo:
        action_layout(Tuple((multi_dim, gymnasium.spaces.Dict({"a": gymnasium.spaces.Text(3)}))))
    assert "\n" not in str(excinfo.value)


def test_float_actions_refuse_categories_that_float32_cannot_count():
    with pytest.raises(UserError, match=r"at most 2\*\*24 actions"):
        action_layout(Tuple((Discrete(2**24 + 1), Box(-1, 1, (1,)))))
    assert action_layout(Tuple((Discrete(2**24), Box(-1, 1, (1,))))).num_params == 2**24 + 2
    assert float(np.float32(2**24 - 1)) == 2**24 - 1  # the largest index is stored exactly


@pytest.mark.parametrize("sizes", [(3, 5, 2), (4, 4)])
def test_multi_discrete_matches_sum_of_torch_categoricals(sizes):
    space = MultiDiscrete(list(sizes))
    logits, other_logits = random_params(sum(sizes), seed=5), random_params(sum(sizes), seed=6)
    dist = make_action_distribution(space, logits)
    other = make_action_distribution(space, other_logits)
    assert isinstance(dist, MultiCategoricalDistribution)
    refs = reference_categoricals(logits, sizes)
    other_refs = reference_categoricals(other_logits, sizes)
    actions = torch.stack([ref.sample() for ref in refs], dim=-1)  # [N, K]

    torch.testing.assert_close(dist.log_prob(actions),
                               sum(ref.log_prob(a) for ref, a in zip(refs, actions.unbind(-1))))
    torch.testing.assert_close(dist.log_prob(actions.float()), dist.log_prob(actions))
    torch.testing.assert_close(dist.entropy(), sum(ref.entropy() for ref in refs))
    torch.testing.assert_close(dist.kl_divergence(other),
                               sum(kl_divergence(r, o) for r, o in zip(refs, other_refs)))
    uniforms = [Categorical(logits=torch.zeros(64, n)) for n in sizes]
    symmetric = sum(kl_divergence(r, u) + kl_divergence(u, r) for r, u in zip(refs, uniforms))
    torch.testing.assert_close(dist.symmetric_kl_with_uniform_prior(), symmetric)


def test_nested_tuple_matches_sum_of_torch_parts():
    logits_width, dims = 9, 3
    params, other_params = random_params(15, seed=7), random_params(15, seed=8)
    dist = make_action_distribution(NESTED, params)
    other = make_action_distribution(NESTED, other_params)
    assert isinstance(dist, MixedDistribution)

    def reference(p):
        logits, means, log_stds = p.split([logits_width, dims, dims], dim=-1)
        return reference_categoricals(logits, (3, 2, 4)), Independent(Normal(means, log_stds.exp()), 1)

    cats, gauss = reference(params)
    other_cats, other_gauss = reference(other_params)
    indices = torch.stack([c.sample() for c in cats], dim=-1)  # [N, 3]
    values = gauss.sample()  # [N, 3]
    actions = torch.cat([indices.float(), values], dim=-1)

    expected = sum(c.log_prob(a) for c, a in zip(cats, indices.unbind(-1))) + gauss.log_prob(values)
    torch.testing.assert_close(dist.log_prob(actions), expected)
    torch.testing.assert_close(dist.entropy(), sum(c.entropy() for c in cats) + gauss.entropy())
    expected_kl = (sum(kl_divergence(c, o) for c, o in zip(cats, other_cats))
                   + kl_divergence(gauss, other_gauss))
    torch.testing.assert_close(dist.kl_divergence(other), expected_kl)
    torch.testing.assert_close(dist.kl_divergence(dist), torch.zeros(64))
    with pytest.raises(UserError, match="discrete action space"):
        dist.symmetric_kl_with_uniform_prior()
    with pytest.raises(TypeError):
        dist.kl_divergence(make_action_distribution(MULTI_DISCRETE, random_params(10, seed=9)))


def test_tuples_of_one_kind_use_the_plain_distributions():
    discrete_tuple = make_action_distribution(Tuple((Discrete(2), MultiDiscrete([3]))), torch.zeros(4, 5))
    boxes = make_action_distribution(Tuple((Box(-1, 1, (2,)), Box(-1, 1, (1,)))), torch.zeros(4, 6))
    assert isinstance(discrete_tuple, MultiCategoricalDistribution)
    assert isinstance(boxes, DiagGaussianDistribution)
    assert discrete_tuple.sample().dtype == torch.int64 and boxes.sample().shape == (4, 3)


def test_multi_discrete_sampling_never_picks_padding_and_matches_probs():
    torch.manual_seed(0)
    probs = [torch.tensor([0.2, 0.8]), torch.tensor([0.1, 0.0, 0.3, 0.6])]
    logits = torch.cat([p.log() for p in probs]).expand(20000, 6)
    samples = MultiCategoricalDistribution(logits, (2, 4)).sample()
    assert samples.shape == (20000, 2) and samples.dtype == torch.int64
    for k, p in enumerate(probs):
        freqs = torch.bincount(samples[:, k], minlength=4).float()[: len(p)] / 20000
        assert samples[:, k].max() < len(p)
        torch.testing.assert_close(freqs, p, atol=0.015, rtol=0.0)


def test_mixed_samples_are_exact_indices_then_values():
    torch.manual_seed(0)
    dist = make_action_distribution(NESTED, random_params(15, seed=10, n=1000))
    actions = dist.sample()
    assert actions.shape == (1000, 6) and actions.dtype == torch.float32
    indices = actions[:, :3]
    assert torch.equal(indices, indices.round())
    assert (indices.min(0).values >= 0).all()
    assert (indices.max(0).values <= torch.tensor([2.0, 1.0, 3.0])).all()
    assert torch.isfinite(dist.log_prob(actions)).all()


def test_multi_discrete_and_tuple_deterministic_actions():
    logits = torch.tensor([[0.0, 2.0, 1.0, 5.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0]])
    torch.testing.assert_close(make_action_distribution(MULTI_DISCRETE, logits).deterministic(),
                               torch.tensor([[1, 0, 0]]))
    params = torch.tensor([[0.0, 0.0, 3.0, 1.0, 0.0, 0.0, 0.0, 7.0, 0.0,
                            0.3, -0.7, 5.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(make_action_distribution(NESTED, params).deterministic(),
                               torch.tensor([[2.0, 0.0, 2.0, 0.3, -0.7, 5.0]]))


def test_gradients_are_finite_through_padded_components():
    params = random_params(15, seed=11, n=8).requires_grad_(True)
    dist = make_action_distribution(NESTED, params)
    behaviour = make_action_distribution(NESTED, random_params(15, seed=12, n=8))
    actions = behaviour.sample()
    (dist.log_prob(actions).sum() + dist.entropy().sum() + dist.kl_divergence(behaviour).sum()).backward()
    assert torch.isfinite(params.grad).all() and (params.grad != 0).all()
    logits = random_params(10, seed=13, n=8).requires_grad_(True)
    make_action_distribution(MULTI_DISCRETE, logits).symmetric_kl_with_uniform_prior().sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad != 0).all()
