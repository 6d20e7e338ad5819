"""Annealed importance sampling: the protocol's schedule, agreement with exact log Z on models
small enough to enumerate, the zero-variance case, the interval arithmetic, reproducibility."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from genlearn.errors import UserError
from genlearn.eval import ais
from genlearn.models.rbm import RBM, Config


def tiny(n_visible: int, n_hidden: int, scale: float, seed: int = 1) -> RBM:
    torch.manual_seed(seed)
    model = RBM(Config(n_visible=n_visible, n_hidden=n_hidden, init_std=scale))
    with torch.no_grad():
        model.visible_bias.normal_()
        model.hidden_bias.normal_()
    return model


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_default_betas_follow_the_protocol():
    betas = ais.default_betas()
    assert betas.dtype == torch.float64
    assert len(betas) == 14_501  # 14,500 steps
    assert betas[0] == 0 and betas[-1] == 1
    assert bool((betas.diff() > 0).all())
    assert betas[500] == 0.5 and betas[4_500] == 0.9  # the breakpoints
    steps = betas.diff()
    for segment, size in ((steps[:500], 1e-3), (steps[500:4_500], 1e-4), (steps[4_500:], 1e-5)):
        assert torch.allclose(segment, torch.full_like(segment, size), rtol=1e-6, atol=0)


@pytest.mark.parametrize("scale", [0.3, 2.0])  # weights of a trained RBM's scale, and larger ones
def test_ais_agrees_with_exact_log_z(scale):
    model = tiny(20, 10, scale)
    exact = model.log_partition_exact()
    base = ais.base_rate_bias((torch.rand(200, 20, generator=gen(0)) < 0.3).float())
    log_z, low, high = ais.rbm_log_partition(model, base_visible_bias=base, generator=gen(0))
    assert low <= exact <= high, (low, exact, high)
    assert abs(log_z - exact) < 0.1
    assert high - low < 0.5  # the interval is informative, not just wide


def test_short_schedule_is_within_its_wider_interval():
    model = tiny(20, 10, 1.0)
    exact = model.log_partition_exact()
    log_z, low, high = ais.rbm_log_partition(model, betas=torch.linspace(0, 1, 301), generator=gen(0))
    assert low <= exact <= high
    long = ais.rbm_log_partition(model, generator=gen(0))
    assert long[2] - long[1] < high - low  # more temperatures, less variance


def test_base_model_equal_to_target_is_exact_with_zero_variance():
    """A target with zero weights and the base's visible biases: every run's weight is the same
    (the hidden biases contribute a constant), so the estimate is exact and the interval empty."""
    model = tiny(20, 10, 0.0)
    exact = float(
        F.softplus(model.visible_bias.detach().double()).sum()
        + F.softplus(model.hidden_bias.detach().double()).sum()
    )
    assert model.log_partition_exact() == pytest.approx(exact, abs=1e-9)
    log_w = ais.ais_log_weights(model, n_runs=50, betas=torch.linspace(0, 1, 101), generator=gen(0))
    assert float(log_w.max() - log_w.min()) < 1e-5
    log_z, low, high = ais.rbm_log_partition(model, n_runs=50, betas=torch.linspace(0, 1, 101))
    assert log_z == pytest.approx(exact, abs=1e-4)
    assert high - low < 1e-6


def test_base_log_partition_is_the_zero_weight_rbm():
    b = torch.randn(7, generator=gen(3))
    zero = RBM(Config(n_visible=7, n_hidden=4, init_std=0.0))
    with torch.no_grad():
        zero.visible_bias.copy_(b)
    assert ais.base_log_partition(b, 4) == pytest.approx(zero.log_partition_exact(), abs=1e-9)


def test_reproducible_with_the_same_generator():
    model = tiny(20, 10, 1.0)
    betas = torch.linspace(0, 1, 201)
    a = ais.ais_log_weights(model, n_runs=20, betas=betas, generator=gen(7))
    b = ais.ais_log_weights(model, n_runs=20, betas=betas, generator=gen(7))
    c = ais.ais_log_weights(model, n_runs=20, betas=betas, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("ratio", [1e-5, 1e-3, 0.1, 1.0])
def test_log_ratio_matches_float64_softplus_difference(ratio):
    """The hidden units' increment softplus(a) - softplus((1 - ratio) a), formed without
    cancellation, agrees with the float64 difference to float32 precision of the result."""
    a = torch.randn(50, 30, generator=gen(0), dtype=torch.float64) * 15
    expected = (F.softplus(a) - F.softplus(a * (1 - ratio))).sum(1)
    got = ais._log_ratio(a.float(), ratio).double()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6 * ratio)


def test_interval_is_three_standard_deviations_of_the_mean_weight():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    log_mean, low, high = ais.log_mean_interval(torch.log(w) + 700.0)  # exp(700 + ...) overflows
    sem = float(w.std()) / 2.0
    assert log_mean == pytest.approx(math.log(2.5) + 700.0)
    assert low == pytest.approx(math.log(2.5 - 3 * sem) + 700.0)
    assert high == pytest.approx(math.log(2.5 + 3 * sem) + 700.0)
    heavy = torch.log(torch.tensor([1.0, 1.0, 1.0, 1000.0], dtype=torch.float64))
    log_mean, low, high = ais.log_mean_interval(heavy)
    assert low == float("-inf") and high > log_mean
    with pytest.raises(UserError, match="2 runs"):
        ais.log_mean_interval(torch.zeros(1))


def test_log_likelihood_of_data_matches_exact():
    model = tiny(20, 10, 1.0)
    x = (torch.rand(300, 20, generator=gen(2)) < 0.4).float()
    exact = float(-model.free_energy(x.double()).detach().mean()) - model.log_partition_exact()
    out = ais.rbm_log_likelihood(model, x, generator=gen(0))
    assert out["log_likelihood_low"] <= exact <= out["log_likelihood_high"]
    assert out["log_likelihood"] == pytest.approx(exact, abs=0.1)
    assert out["log_likelihood_high"] - out["log_likelihood"] == pytest.approx(
        out["log_z"] - out["log_z_low"]
    )
    assert out["log_likelihood_stderr"] > 0


def test_base_rate_bias_is_clipped_log_odds():
    x = torch.zeros(10, 1, 2, 2)
    x[:, 0, 0, 1] = 1.0
    x[:5, 0, 1, 0] = 1.0
    x[:, 0, 1, 1] = torch.linspace(0, 1, 10)
    bias = ais.base_rate_bias(x)
    eps = ais.BASE_RATE_EPS
    expected = [math.log(eps / (1 - eps)), math.log((1 - eps) / eps), 0.0, 0.0]
    assert torch.allclose(bias, torch.tensor(expected), atol=1e-5)
    assert bool(bias.isfinite().all())


def test_bad_arguments_are_refused():
    model = tiny(6, 3, 1.0)
    for betas in ([0.0, 0.5], [0.1, 1.0], [0.0, 0.6, 0.5, 1.0], [1.0]):
        with pytest.raises(UserError, match="betas"):
            ais.ais_log_weights(model, betas=betas)
    with pytest.raises(UserError, match="base_visible_bias"):
        ais.ais_log_weights(model, betas=[0.0, 1.0], base_visible_bias=torch.zeros(5))
