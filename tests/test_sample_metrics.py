"""Tests of the sample-based metrics: Frechet distance, FID, class coverage and classifier score.

The Frechet distance is checked against closed forms (feature sets built to have exactly the given
mean and covariance) and a direct eigendecomposition of S_a S_b; coverage and score against a stub
classifier whose outputs are known; FID and score on real MNIST through a small classifier trained
once (2 epochs on 15,000 images) into a temporary cache directory shared with test_classifier.py.
Real-versus-real comparisons use random halves of the test set or valid against test: the first and
the second 5,000 test images differ (FID about 20 between them, 2 between random halves).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import one_thread
from genlearn.errors import UserError
from genlearn.eval import classifier as clf
from genlearn.eval import sample_metrics as sm

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def with_stats(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n rows whose sample mean and unbiased sample covariance are exactly `mean` and `cov`."""
    z = torch.randn(n, len(mean), generator=gen(seed), dtype=F64)
    z = z - z.mean(0)
    white = torch.linalg.solve_triangular(torch.linalg.cholesky(z.T @ z / (n - 1)), z.T, upper=False).T
    return white @ torch.linalg.cholesky(cov).T + mean


def random_cov(dim: int, seed: int) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=gen(seed), dtype=F64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=F64)


def direct_frechet(mu_a, cov_a, mu_b, cov_b) -> float:
    """Via the (non-symmetric) eigenvalues of S_a S_b, which are real and >= 0."""
    evals = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)
    return ((mu_a - mu_b).square().sum() + torch.trace(cov_a + cov_b) - 2 * evals.sqrt().sum()).item()


# --- Frechet distance --------------------------------------------------------------------------


def test_frechet_of_identical_sets_is_zero():
    x = torch.randn(500, 16, generator=gen(0))
    assert sm.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert sm.frechet_distance(x, x[torch.randperm(500, generator=gen(1))]) == pytest.approx(0.0, abs=1e-8)


def test_frechet_matches_the_diagonal_closed_form():
    dim = 6
    mu_a, mu_b = torch.randn(dim, generator=gen(0), dtype=F64), torch.randn(dim, generator=gen(1), dtype=F64)
    var_a = torch.rand(dim, generator=gen(2), dtype=F64) * 3 + 0.1
    var_b = torch.rand(dim, generator=gen(3), dtype=F64) * 3 + 0.1
    a = with_stats(400, mu_a, torch.diag(var_a), seed=4)
    b = with_stats(300, mu_b, torch.diag(var_b), seed=5)
    expected = ((mu_a - mu_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum()).item()
    assert sm.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert sm.frechet_distance(a.float(), b.float()) == pytest.approx(expected, rel=1e-5)


def test_frechet_of_a_shift_is_the_squared_shift():
    x = torch.randn(300, 5, generator=gen(0), dtype=F64)
    shift = torch.tensor([3.0, 0.0, -1.0, 0.5, 2.0], dtype=F64)
    assert sm.frechet_distance(x, x + shift) == pytest.approx(shift.square().sum().item(), rel=1e-9)


def test_frechet_matches_direct_eigendecomposition_and_is_symmetric():
    dim = 10
    mu_a, mu_b = torch.zeros(dim, dtype=F64), torch.randn(dim, generator=gen(0), dtype=F64)
    cov_a, cov_b = random_cov(dim, 1), random_cov(dim, 2)
    a, b = with_stats(200, mu_a, cov_a, seed=3), with_stats(250, mu_b, cov_b, seed=4)
    expected = direct_frechet(mu_a, cov_a, mu_b, cov_b)
    assert sm.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert sm.frechet_distance(b, a) == pytest.approx(sm.frechet_distance(a, b), rel=1e-10)
    assert sm.frechet_from_stats(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-8)
    assert expected > 1.0  # the covariance term is not negligible: the case tests something


def test_frechet_with_singular_covariances_is_finite_and_nonnegative():
    x = torch.randn(5, 40, generator=gen(0))  # rank-4 covariances in 40 dimensions
    y = torch.randn(5, 40, generator=gen(1))
    assert sm.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    d = sm.frechet_distance(x, y)
    assert math.isfinite(d) and d > 0


@pytest.mark.parametrize(
    "a, b, message",
    [
        (torch.randn(10), torch.randn(10, 3), "2-D"),
        (torch.randn(10, 3), torch.randn(10, 4), "width"),
        (torch.randn(1, 3), torch.randn(10, 3), "at least 2"),
        (torch.full((10, 3), float("nan")), torch.randn(10, 3), "NaN"),
    ],
)
def test_frechet_rejects_bad_features(a, b, message):
    with pytest.raises(UserError, match=message):
        sm.frechet_distance(a, b)


# --- coverage and score with a stub classifier ------------------------------------------------


class Stub(nn.Module):
    """Reads the class off the first pixel (value c / 9); `confidence` is the winning logit."""

    def __init__(self, confidence: float = 50.0):
        super().__init__()
        self.confidence = confidence

    def forward(self, x):
        label = (x.reshape(len(x), -1)[:, 0] * 9).round().long()
        return self.confidence * nn.functional.one_hot(label, 10).double()


def images_of(labels: list[int]) -> torch.Tensor:
    x = torch.zeros(len(labels), 784)
    x[:, 0] = torch.tensor(labels, dtype=torch.float32) / 9
    return x


@pytest.mark.parametrize(
    "labels, hist, kl",
    [
        ([3] * 20, [0, 0, 0, 1] + [0] * 6, math.log(10)),
        (list(range(10)) * 7, [0.1] * 10, 0.0),
        ([0] * 5 + [1] * 5, [0.5, 0.5] + [0] * 8, math.log(5)),
        ([0] * 3 + [1], [0.75, 0.25] + [0] * 8, 0.75 * math.log(7.5) + 0.25 * math.log(2.5)),
    ],
)
def test_coverage_of_known_classes(labels, hist, kl):
    cov = sm.coverage(images_of(labels), Stub())
    assert cov["histogram"] == pytest.approx(hist, abs=1e-12)
    assert isinstance(cov["histogram"], list) and len(cov["histogram"]) == 10
    assert cov["kl_to_uniform"] == pytest.approx(kl, abs=1e-12)
    assert sm.class_histogram(images_of(labels).view(-1, 1, 28, 28), Stub()).tolist() == pytest.approx(hist)


def test_classifier_score_of_known_outputs():
    even = images_of(list(range(10)) * 5)
    assert sm.classifier_score(even, Stub()) == pytest.approx(10.0, rel=1e-9)
    assert sm.classifier_score(images_of([7] * 50), Stub()) == pytest.approx(1.0, abs=1e-9)
    assert sm.classifier_score(even, Stub(confidence=0.0)) == pytest.approx(1.0, abs=1e-12)
    five = sm.classifier_score(images_of([0, 1, 2, 3, 4] * 4), Stub())
    assert five == pytest.approx(5.0, rel=1e-9)  # confident over 5 classes: exp(log 5)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.rand(10, 28, 28), "shape"),
        (torch.rand(10, 785), "shape"),
        (torch.rand(10, 784) * 255, r"\[0, 1\]"),
        (torch.zeros(0, 784), "empty"),
    ],
)
def test_metrics_reject_bad_samples(x, message):
    with pytest.raises(UserError, match=message):
        sm.coverage(x, Stub())
    with pytest.raises(UserError, match=message):
        sm.classifier_score(x, Stub())


# --- on real MNIST through a small trained classifier ------------------------------------------


@pytest.fixture(scope="module")
def small(small_classifier) -> clf.MNISTClassifier:
    return small_classifier


@pytest.fixture(scope="module")
def shuffled(mnist_full) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images and labels in a random (fixed) order."""
    order = torch.randperm(10_000, generator=gen(0))
    return mnist_full.test_x[order], mnist_full.test_y[order]


@pytest.fixture(scope="module")
def test_feats(small, shuffled) -> torch.Tensor:
    with one_thread(), torch.no_grad():
        return small.features(shuffled[0])


@pytest.mark.slow
def test_small_classifier_is_accurate(small, mnist_full, expect):
    with one_thread():
        expect(
            "small classifier's test accuracy",
            clf.accuracy(small, mnist_full.test_x, mnist_full.test_y),
            ">",
            0.97,
        )


@pytest.mark.slow
def test_fid_separates_real_from_noise_blank_and_blur(small, mnist_full, shuffled, test_feats, expect):
    reference = shuffled[0][:5000]
    real = sm.frechet_distance(test_feats[:5000], test_feats[5000:])
    with one_thread():
        valid = sm.fid(mnist_full.valid_x[:5000], reference, small)
        noise = sm.fid(torch.rand(5000, 1, 28, 28, generator=gen(0)), reference, small)
        blank = sm.fid(torch.zeros(5000, 784), reference, small)
        blurred = sm.fid(_blur(mnist_full.valid_x[:5000]), reference, small)
    floor = max(real, valid)
    expect("FID floor (real against real)", floor, "<", 5.0)
    expect("FID of noise / floor", noise / floor, ">", 50)
    expect("FID of blank images / floor", blank / floor, ">", 50)
    expect("FID of blurred digits / floor", blurred / floor, ">", 10)  # a milder loss of quality


def _blur(x: torch.Tensor) -> torch.Tensor:
    """A 3x3 box blur: the digits stay recognisable, the strokes lose their sharpness."""
    return nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


@pytest.mark.slow
def test_fid_catches_mode_dropping(shuffled, test_feats, expect):
    """Real digits, but only 0-4: the quality is perfect, the diversity is not."""
    y = shuffled[1]
    half = test_feats[5000:]
    real = sm.frechet_distance(test_feats[:5000], half)
    dropped = sm.frechet_distance(test_feats[:5000][y[:5000] < 5], half)
    expect("FID of half the classes / floor", dropped / real, ">", 10)


@pytest.mark.slow
def test_real_test_images_score_near_ten_and_cover_evenly(small, mnist_full, expect):
    with one_thread():
        score = sm.classifier_score(mnist_full.test_x, small)
        cov = sm.coverage(mnist_full.test_x, small)
    true_hist = torch.bincount(mnist_full.test_y, minlength=10).double() / 10_000
    assert score <= 10.0
    expect("classifier score of the test images", score, ">", 9.0)
    expect("coverage KL of the test images", cov["kl_to_uniform"], "<", 0.01)
    assert cov["histogram"] == pytest.approx(true_hist.tolist(), abs=0.01)


@pytest.mark.slow
def test_copies_of_one_image_score_one_and_cover_one_class(small, mnist_full):
    copies = mnist_full.test_x[:1].expand(1000, 1, 28, 28)
    with one_thread():
        assert sm.classifier_score(copies, small) == pytest.approx(1.0, abs=1e-6)
        cov = sm.coverage(copies, small)
    assert cov["kl_to_uniform"] == pytest.approx(math.log(10), abs=1e-12)
    assert cov["histogram"][int(mnist_full.test_y[0])] == 1.0


def test_metrics_default_to_the_cached_classifier(monkeypatch):
    """classifier=None means load_classifier() (stubbed here: the real one is not trained in tests)."""
    monkeypatch.setattr(sm, "load_classifier", lambda: Stub())
    x = images_of([2] * 10)
    assert sm.coverage(x)["histogram"][2] == 1.0
    assert sm.classifier_score(images_of(list(range(10)))) == pytest.approx(10.0, rel=1e-9)
