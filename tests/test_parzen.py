"""Parzen-window log-likelihood: against a direct computation, its fixed points, sigma selection."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import needs_mnist, one_thread
from genlearn.errors import UserError
from genlearn.eval.parzen import (
    DEFAULT_SIGMAS,
    parzen_estimate,
    parzen_log_likelihood,
    select_sigma,
)


def naive(samples: torch.Tensor, data: torch.Tensor, sigma: float) -> torch.Tensor:
    """The definition, written out: explicit differences in float64, one data row at a time."""
    s = samples.reshape(len(samples), -1).double()
    x = data.reshape(len(data), -1).double()
    n, d = s.shape
    sq = torch.stack([(s - row).pow(2).sum(1) for row in x])
    return (
        torch.logsumexp(-sq / (2 * sigma**2), dim=1)
        - math.log(n)
        - 0.5 * d * math.log(2 * math.pi * sigma**2)
    )


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_problem(d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """40 samples; 30 data rows of which 5 coincide with samples and 5 lie 1e-4 away from one."""
    g = gen(seed)
    samples = torch.randn(40, d, generator=g)
    data = torch.cat([torch.randn(20, d, generator=g), samples[:5], samples[5:10] + 1e-4])
    return samples, data


def mnist_like(n: int, seed: int) -> torch.Tensor:
    """784-d images in [0, 1], mostly black like MNIST digits (about 20% of the pixels lit)."""
    g = gen(seed)
    lit = torch.rand(n, 784, generator=g) < 0.2
    return torch.where(lit, torch.rand(n, 784, generator=g), torch.zeros(())).float()


@pytest.mark.parametrize("sigma", [0.1, 0.3, 1.0, 2.5])
def test_matches_the_direct_computation(sigma):
    samples, data = small_problem()
    got = parzen_log_likelihood(samples, data, sigma)
    assert got.dtype == torch.float64 and got.shape == (30,)
    torch.testing.assert_close(got, naive(samples, data, sigma), rtol=0, atol=1e-10)


def test_matches_the_direct_computation_in_784_dimensions_at_sigma_0_1():
    # The expansion's cancellation is worst here: points on or very near a sample, the smallest
    # sigma of the grid (an error e in a squared distance is 50 e nats), norms of about 50.
    samples = mnist_like(300, seed=1)
    near = samples[:20] + 1e-3 * torch.randn(20, 784, generator=gen(2))
    data = torch.cat([mnist_like(40, seed=3), samples[20:40], near])
    with one_thread():
        got = parzen_log_likelihood(samples, data, 0.1)
    torch.testing.assert_close(got, naive(samples, data, 0.1), rtol=0, atol=1e-8)
    # A point on a sample scores (to within the other samples' negligible share) log(1/n) + c.
    on_sample = -math.log(300) - 392 * math.log(2 * math.pi * 0.01)
    torch.testing.assert_close(
        got[40:60], torch.full((20,), on_sample, dtype=torch.float64), rtol=0, atol=1e-8
    )


def test_translating_both_sets_changes_nothing():
    # Far from the origin the norms are ~1e9 and an uncentred float64 expansion loses ~1e-6 nats.
    samples, data = mnist_like(200, seed=4), mnist_like(50, seed=5)
    base = parzen_log_likelihood(samples, data, 0.1)
    moved = parzen_log_likelihood(samples.double() + 1000, data.double() + 1000, 0.1)
    torch.testing.assert_close(moved, base, rtol=0, atol=1e-8)


def test_no_point_scores_above_the_peak_of_the_kernels_on_it():
    # Points on distinct samples, at a tiny sigma where rounding in the expanded squared distance
    # (~1e-13) is worth 0.1 nats: a negative "squared distance" would lift a point above the peak.
    samples = mnist_like(300, seed=11)
    got = parzen_log_likelihood(samples, samples, 1e-6)
    peak = -math.log(300) - 392 * math.log(2 * math.pi * 1e-12)
    assert (got - peak).max().item() <= 1e-9
    assert (got - peak).min().item() > -0.2  # and each point scores its own kernel's peak


@pytest.mark.parametrize("d", [1, 2, 784])
@pytest.mark.parametrize("sigma", [0.1, 0.5, 3.0])
def test_one_sample_at_its_own_location_is_the_kernel_peak(d, sigma):
    s = torch.rand(1, d, generator=gen(d))
    got = parzen_log_likelihood(s, s, sigma).item()
    assert got == pytest.approx(-0.5 * d * math.log(2 * math.pi * sigma**2), rel=1e-14, abs=1e-14)


def test_rows_of_any_shape_are_flattened_and_results_are_on_the_cpu():
    images = mnist_like(30, seed=6).reshape(30, 1, 28, 28)
    flat = parzen_log_likelihood(images[:20].reshape(20, -1), images[20:].reshape(10, -1), 0.5)
    shaped = parzen_log_likelihood(images[:20], images[20:], 0.5)
    assert shaped.device.type == "cpu" and shaped.shape == (10,)
    assert torch.equal(shaped, flat)


@pytest.mark.parametrize("batch_size", [1, 7, 30, 1000])
def test_chunking_does_not_change_the_values(batch_size):
    samples, data = small_problem(d=50, seed=7)
    whole = parzen_log_likelihood(samples, data, 0.4)
    chunked = parzen_log_likelihood(samples, data, 0.4, batch_size=batch_size)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)


def test_default_sigmas_are_the_protocols_grid():
    assert len(DEFAULT_SIGMAS) == 10
    assert DEFAULT_SIGMAS[0] == pytest.approx(0.1) and DEFAULT_SIGMAS[-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in zip(DEFAULT_SIGMAS, DEFAULT_SIGMAS[1:])]
    assert ratios == pytest.approx([10 ** (1 / 9)] * 9)


@pytest.mark.parametrize("grid", [None, [0.05, 0.2, 0.7, 3.0]])
def test_select_sigma_is_the_argmax_of_the_validation_mean(grid):
    g = gen(8)
    samples = torch.randn(300, 3, generator=g) * 0.5
    validation = torch.randn(200, 3, generator=g) * 0.5
    sigmas = DEFAULT_SIGMAS if grid is None else grid
    means = [naive(samples, validation, s).mean().item() for s in sigmas]
    best = sigmas[max(range(len(sigmas)), key=means.__getitem__)]
    assert best not in (sigmas[0], sigmas[-1])  # an interior optimum: the test can tell
    assert select_sigma(samples, validation, grid, batch_size=17) == pytest.approx(best, rel=1e-12)


def test_select_sigma_recovers_the_true_kernel_width():
    # Validation points drawn from a Parzen window of width sigma0 on the samples: that window is
    # the true density, so the expected log-likelihood peaks at sigma0.
    sigma0 = DEFAULT_SIGMAS[4]
    g = gen(9)
    centres = 5 * torch.rand(500, 10, generator=g)
    pick = torch.randint(500, (1000,), generator=g)
    validation = centres[pick] + sigma0 * torch.randn(1000, 10, generator=g)
    assert select_sigma(centres, validation) == pytest.approx(sigma0, rel=1e-12)


def test_estimate_reports_the_mean_and_its_standard_error():
    samples, data = small_problem()
    values = naive(samples, data, 0.7)
    out = parzen_estimate(samples, data, 0.7)
    assert out["mean"] == pytest.approx(values.mean().item(), rel=1e-12)
    assert out["stderr"] == pytest.approx(values.std().item() / math.sqrt(30), rel=1e-12)
    assert out["sigma"] == 0.7 and out["n"] == 30


BAD_CALLS = {
    "dimensions differ": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(4, 2), 1.0),
    "no samples": lambda: parzen_log_likelihood(torch.zeros(0, 3), torch.zeros(4, 3), 1.0),
    "no data": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(0, 3), 1.0),
    "scalar data": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.tensor(1.0), 1.0),
    "zero-width rows": lambda: parzen_log_likelihood(torch.zeros(5, 0), torch.zeros(4, 0), 1.0),
    "sigma zero": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(4, 3), 0.0),
    "sigma negative": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(4, 3), -0.1),
    "sigma NaN": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(4, 3), math.nan),
    "sigma infinite": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(4, 3), math.inf),
    "sigma not a number": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(4, 3), "big"),
    "batch size zero": lambda: parzen_log_likelihood(torch.zeros(5, 3), torch.zeros(4, 3), 1.0, batch_size=0),
    "NaN sample": lambda: parzen_log_likelihood(torch.tensor([[0.0, math.nan]]), torch.zeros(4, 2), 1.0),
    "empty grid": lambda: select_sigma(torch.zeros(5, 3), torch.zeros(4, 3), []),
    "negative in grid": lambda: select_sigma(torch.zeros(5, 3), torch.zeros(4, 3), [0.1, -1.0]),
    "grid not a list": lambda: select_sigma(torch.zeros(5, 3), torch.zeros(4, 3), 0.5),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_inputs_raise_one_line_user_errors(case):
    with pytest.raises(UserError) as info:
        BAD_CALLS[case]()
    message = str(info.value)
    assert message and "\n" not in message


@needs_mnist
def test_real_mnist_at_sigma_0_1_matches_the_direct_computation(mnist_full):
    # Training images as "samples"; among the scored images are 10 of those very samples.
    samples = mnist_full.train_x[:500]
    data = torch.cat([mnist_full.test_x[:40], samples[:10]])
    with one_thread():
        got = parzen_log_likelihood(samples, data, 0.1, batch_size=16)
    torch.testing.assert_close(got, naive(samples, data, 0.1), rtol=0, atol=1e-8)
