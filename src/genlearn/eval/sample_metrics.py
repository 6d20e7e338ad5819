r"""Sample-based metrics: judge a generative model by its samples alone, through the MNIST classifier.

Likelihood does not apply to every model (a GAN has none) and does not say whether samples *look*
right, so these three numbers are computed from samples and the in-project classifier
(`genlearn.eval.classifier`; its features and class probabilities, never Inception's). Images are
(n, 1, 28, 28) or (n, 784) intensities in [0, 1].

Frechet distance (FID, Heusel et al. 2017) between Gaussians fitted to the classifier's 256
penultimate features h(x) of the samples (a) and of real images (b)::

    FID = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

with means mu and (unbiased) covariances S. Computed in float64; the trace of the matrix square
root is Tr (S_a^{1/2} S_b S_a^{1/2})^{1/2} (the same eigenvalues as (S_a S_b)^{1/2}, but of a
symmetric positive semi-definite matrix), from two symmetric eigendecompositions with tiny negative
eigenvalues from rounding clamped to 0. FID catches both bad quality (the means move) and lack of
diversity (the covariances shrink). It is biased upwards for small n: compare numbers at the same n,
and read them against the floor FID(valid, test) of two real 10,000-image sets.

Coverage: the histogram of argmax classes of the samples and its KL divergence from uniform::

    hist_c = #{x : argmax_y p(y|x) = c} / n,    KL(hist || U) = sum_c hist_c log(10 hist_c)

in nats, with 0 log 0 = 0: 0 when the ten digits are equally frequent, log 10 = 2.303 when every
sample is one digit. It catches mode dropping over digit classes, which FID mixes in with quality.
(The MNIST test digits themselves are not exactly uniform: KL about 0.002.)

Classifier score (the Inception-score formula, Salimans et al. 2016, on our classifier)::

    score = exp( E_x KL(p(y|x) || p(y)) ),    p(y) = E_x p(y|x)

between 1 and 10: high when each sample is confidently one digit (sharp p(y|x)) and the digits are
varied (flat p(y)); near 10 for real test images, 1 for copies of one image. It is blind to
diversity within a class (one perfect "3" per class scores 10) — FID is not.

Reference values with the default classifier (10,000 images each, against the 10,000 test images):
FID of the validation images 3.76 (the floor a perfect model reaches at this n), of the
validation images box-blurred 3x3 133, of validation digits 0-4 only 276, of uniform noise 1316,
of blank images 1460. Score of the test images 9.76, of the blurred validation images 9.41;
coverage KL of the test images 0.0018.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from genlearn.errors import UserError
from genlearn.eval.classifier import NUM_CLASSES, as_images, load_classifier


def _check_features(feats: Tensor, what: str) -> Tensor:
    if not isinstance(feats, Tensor) or feats.dim() != 2:
        shape = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
        raise UserError(f"{what} must be a 2-D tensor (n, features), not {shape}")
    if feats.shape[0] < 2:
        raise UserError(f"{what} needs at least 2 rows to estimate a covariance, not {feats.shape[0]}")
    feats = feats.detach().to("cpu", torch.float64)
    if not torch.isfinite(feats).all():
        raise UserError(f"{what} contain NaN or Inf")
    return feats


def gaussian_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of the rows, in float64."""
    feats = _check_features(feats, "features")
    mu = feats.mean(0)
    centred = feats - mu
    return mu, centred.T @ centred / (feats.shape[0] - 1)


def _psd_sqrt(s: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix; rounding's negative eigenvalues become 0."""
    evals, evecs = torch.linalg.eigh((s + s.T) / 2)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def trace_sqrt_product(s_a: Tensor, s_b: Tensor) -> float:
    """Tr (S_a S_b)^{1/2} = Tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}, for symmetric PSD S_a, S_b."""
    root_a = _psd_sqrt(s_a)
    m = root_a @ s_b @ root_a
    evals = torch.linalg.eigvalsh((m + m.T) / 2)
    return evals.clamp(min=0).sqrt().sum().item()


def frechet_from_stats(mu_a: Tensor, cov_a: Tensor, mu_b: Tensor, cov_b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}) in float64."""
    mu_a, mu_b, cov_a, cov_b = (t.to(torch.float64) for t in (mu_a, mu_b, cov_a, cov_b))
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != mu_a.shape * 2:
        raise UserError(
            f"Gaussian statistics do not fit together: means {tuple(mu_a.shape)}, {tuple(mu_b.shape)}, "
            f"covariances {tuple(cov_a.shape)}, {tuple(cov_b.shape)}"
        )
    mean_term = (mu_a - mu_b).square().sum().item()
    trace_term = (torch.trace(cov_a) + torch.trace(cov_b)).item() - 2.0 * trace_sqrt_product(cov_a, cov_b)
    return max(mean_term + trace_term, 0.0)  # rounding may leave -1e-12 for identical sets


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (n_a, F) and (n_b, F)."""
    feats_a = _check_features(feats_a, "feats_a")
    feats_b = _check_features(feats_b, "feats_b")
    if feats_a.shape[1] != feats_b.shape[1]:
        raise UserError(f"feature sets differ in width: {feats_a.shape[1]} and {feats_b.shape[1]}")
    return frechet_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def _classifier(classifier: nn.Module | None) -> nn.Module:
    return load_classifier() if classifier is None else classifier


@torch.no_grad()
def _features(classifier: nn.Module, images: Tensor, what: str) -> Tensor:
    return classifier.features(as_images(images, what)).to("cpu", torch.float64)


@torch.no_grad()
def _log_probs(classifier: nn.Module, images: Tensor, what: str = "samples") -> Tensor:
    """log p(y|x) (n, 10) in float64; refuses an empty set."""
    images = as_images(images, what)
    if images.shape[0] == 0:
        raise UserError(f"{what} is empty")
    logits = classifier(images).to("cpu", torch.float64)
    if logits.shape != (images.shape[0], NUM_CLASSES):
        raise UserError(f"the classifier gave logits of shape {tuple(logits.shape)}, not (n, {NUM_CLASSES})")
    return torch.log_softmax(logits, dim=1)


def fid(samples: Tensor, reference_images: Tensor, classifier: nn.Module | None = None) -> float:
    """Frechet distance between the classifier's penultimate features of samples and real images."""
    model = _classifier(classifier)
    feats_a = _features(model, samples, "samples")
    feats_b = _features(model, reference_images, "reference_images")
    return frechet_distance(feats_a, feats_b)


def class_log_probs(samples: Tensor, classifier: nn.Module | None = None) -> Tensor:
    """log p(y|x) of the samples (n, 10), float64: what the histogram and the score are made of."""
    return _log_probs(_classifier(classifier), samples)


def histogram_of(log_p: Tensor) -> Tensor:
    """Fraction of rows assigned to each digit by argmax, shape (10,), float64, sums to 1."""
    pred = log_p.argmax(1)
    return torch.bincount(pred, minlength=NUM_CLASSES).to(torch.float64) / pred.numel()


def score_of(log_p: Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of p(y|x): in [1, 10]."""
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    p = log_p.exp()
    kl = torch.where(p > 0, p * (log_p - log_marginal), 0.0).sum(1)  # 0 log 0 = 0
    return math.exp(kl.mean().item())


def class_histogram(samples: Tensor, classifier: nn.Module | None = None) -> Tensor:
    """Fraction of samples assigned to each digit by argmax, shape (10,), float64, sums to 1."""
    return histogram_of(class_log_probs(samples, classifier))


def kl_to_uniform(hist: Tensor) -> float:
    """KL(hist || uniform) in nats, with 0 log 0 = 0."""
    hist = hist.to(torch.float64)
    return torch.special.xlogy(hist, hist * hist.numel()).sum().item()


def coverage(samples: Tensor, classifier: nn.Module | None = None) -> dict[str, Any]:
    """{"histogram": 10 fractions, "kl_to_uniform": nats (0 = every digit equally often)}."""
    hist = class_histogram(samples, classifier)
    return {"histogram": hist.tolist(), "kl_to_uniform": kl_to_uniform(hist)}


def classifier_score(samples: Tensor, classifier: nn.Module | None = None) -> float:
    """exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of p(y|x): in [1, 10]."""
    return score_of(class_log_probs(samples, classifier))


@torch.no_grad()
def nearest_distances(queries: Tensor, references: Any, chunk: int = 5000) -> Tensor:
    """Euclidean distance (pixel space) from each query image to its nearest reference image,
    (n_queries,) in float64 (`nearest_neighbours`' distances)."""
    return nearest_neighbours(queries, references, chunk)[0]


@torch.no_grad()
def nearest_neighbours(queries: Tensor, references: Any, chunk: int = 5000) -> tuple[Tensor, Tensor]:
    """(distances, indices): the Euclidean distance (pixel space) from each query image to its
    nearest reference image, (n_queries,) in float64, and that image's index in `references`.
    `references` is a tensor or anything indexable like one (slices, index tensors, a length):
    the composed canvases are made a chunk at a time. The nearest is found from one float32
    matrix product per chunk of references (|q|^2 - 2 q.r + |r|^2: 50,000 references cost
    seconds, not minutes); its distance is then computed directly in float64, since that
    expansion loses the small distances (a copy would read 1e-3 rather than 0)."""
    q = queries.flatten(1).to(torch.float32)
    best = torch.full((q.shape[0],), math.inf)
    index = torch.zeros(q.shape[0], dtype=torch.long)
    q_sq = (q * q).sum(1, keepdim=True)
    for start in range(0, len(references), chunk):
        r = references[start : start + chunk].flatten(1).to(torch.float32)
        value, at = (q_sq - 2 * q @ r.T + (r * r).sum(1)).min(1)
        better = value < best
        best, index = torch.where(better, value, best), torch.where(better, at + start, index)
    nearest = references[index].flatten(1).double()
    return (queries.flatten(1).double() - nearest).norm(dim=1), index
