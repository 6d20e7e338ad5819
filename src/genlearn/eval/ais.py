r"""Annealed importance sampling for the partition function of a binary RBM (Salakhutdinov &
Murray, "On the quantitative analysis of deep belief networks", ICML 2008; Neal 2001).

The target B is an RBM with energy E_B(v, h) = -v^T W h - b^T v - c^T h; its partition function
Z_B = sum_v exp(-F_B(v)) has 2^min(V, H) terms, far too many to add up for MNIST. AIS estimates
it from a base model A whose Z_A is known, through a chain of distributions that moves from A to
B in small steps.

Base-rate model. A is an RBM with the same hidden layer, zero weights and zero hidden biases, and
visible biases b_A: the log-odds of the training set's pixel means (`base_rate_bias`), so A
already puts the right amount of ink on every pixel. Its units are independent and

    log Z_A = sum_i softplus(b_A,i) + H log 2.

Intermediate distributions, for 0 = beta_0 < beta_1 < ... < beta_K = 1: the energies are mixed,
E_k(v, h) = (1 - beta_k) E_A(v, h) + beta_k E_B(v, h), and the hidden units summed out
analytically, which leaves the unnormalised marginal

    log p*_k(v) = (1 - beta_k) b_A^T v + beta_k b^T v + sum_j softplus(beta_k (c_j + v^T W_j)).

At beta = 0 this is A (the H log 2 above is sum_j softplus(0)); at beta = 1 it is exp(-F_B(v)).

Estimator. Draw v_1 from A exactly (independent Bernoulli pixels). For k = 1 .. K add

    log w += log p*_k(v_k) - log p*_{k-1}(v_k)

and then move v_k to v_{k+1} by one Gibbs sweep that leaves p_k invariant: h ~ p_k(h | v_k),
whose units are on with probability sigmoid(beta_k (c + v^T W)), then v ~ p_k(v | h), on with
probability sigmoid((1 - beta_k) b_A + beta_k (b + W h)). Each run's weight w has expectation
Z_B / Z_A, so with M independent runs

    Z_B ~= Z_A * (1/M) sum_m w_m.

One product v W serves both the weight update of step k and the hidden draw of its sweep, so a
step costs two matrix products (v W and h W^T), done in float32 for all runs at once; the log
weights are accumulated in float64. The difference of the two softplus terms is formed from
log1p and expm1 (`_log_ratio`), not as a difference of two large float32 numbers, so that the
~14,500 small increments do not lose their digits to cancellation.

Schedule (`default_betas`): 500 steps uniformly from 0 to 0.5, 4,000 from 0.5 to 0.9 and 10,000
from 0.9 to 1, 14,500 steps in all: the distributions change fastest near beta = 1, where the
weights become large, so that is where the steps are smallest.

Uncertainty: +-3 standard deviations. The log weights are heavy-tailed and the estimate of Z is
unbiased but that of log Z is not (it tends to underestimate, by Jensen's inequality), so the
interval is formed in Z space, as Salakhutdinov & Murray do: with s the sample standard
deviation of the weights, the standard deviation of their mean is s / sqrt(M) and the interval
is [log(mean - 3 s / sqrt(M)), log(mean + 3 s / sqrt(M))] + log Z_A, computed in log space (the
weights are scaled by the largest before exponentiating). When mean - 3 s / sqrt(M) <= 0 the
lower end is -inf: the runs cannot rule out an arbitrarily small Z. Three standard deviations
because the weights are far from Gaussian and a one-sigma band of a heavy-tailed estimate is
over-confident; a narrow interval is still no proof of accuracy (AIS can miss a mode that no run
found), which is why the tests compare with exact values on models small enough to enumerate.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from genlearn.errors import UserError
from genlearn.models.base import GenerativeModel
from genlearn.nn.distributions import BASE_RATE_EPS, base_rate_bias  # noqa: F401 (part of this API)
from genlearn.nn.onednn import linear
from genlearn.nn.stats import mean_and_stderr

# The protocol's schedule: (number of steps, end of segment), starting at beta = 0.
SCHEDULE = ((500, 0.5), (4_000, 0.9), (10_000, 1.0))


def default_betas() -> torch.Tensor:
    """Salakhutdinov & Murray's 14,501 inverse temperatures (14,500 steps), float64, 0 to 1."""
    parts, start = [], 0.0
    for steps, end in SCHEDULE:
        parts.append(torch.linspace(start, end, steps + 1, dtype=torch.float64)[:-1])
        start = end
    parts.append(torch.ones(1, dtype=torch.float64))
    return torch.cat(parts)


def base_log_partition(base_visible_bias: torch.Tensor, n_hidden: int) -> float:
    """log Z_A of the base model (zero weights and hidden biases): sum_i softplus(b_A,i) + H log 2."""
    return float(F.softplus(base_visible_bias.double()).sum()) + n_hidden * math.log(2.0)


def _check_betas(betas: Any) -> torch.Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten().cpu()
    if len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or not bool((betas.diff() > 0).all()):
        raise UserError("betas must increase strictly from 0 to 1 (at least two values)")
    return betas


def _bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Binary states with P(1) = p, from uniforms (torch.bernoulli is several times slower)."""
    u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return (u < p).to(p.dtype)


def _log_ratio(scaled: torch.Tensor, ratio: float) -> torch.Tensor:
    """sum_j [softplus(a_j) - softplus(a_j - ratio * a_j)] per row, for a = beta_k * z.

    This is the hidden units' part of log p*_k(v) - log p*_{k-1}(v) with z = c + v^T W and
    ratio = (beta_k - beta_{k-1}) / beta_k, so that ratio * a = delta * z. With d = delta * z,
    softplus(a) - softplus(a - d) = max(d, 0) - log1p(sigmoid(-|a|) * expm1(|d|)): both terms
    are formed without subtracting nearly equal numbers (a and d have the sign of z), and the
    argument of log1p is >= 0.
    """
    mag = scaled.abs()
    small = torch.sigmoid(mag.neg())
    small.mul_(torch.expm1(mag.mul_(ratio)))
    return scaled.clamp(min=0).sum(1).mul_(ratio) - small.log1p_().sum(1)


def _parameters(rbm: GenerativeModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, b, c) of the model's `partition_rbm()` (an RBM's own; a DBN's top RBM; a DBM over h1),
    in float32."""
    return tuple(t.float() for t in rbm.partition_rbm())


@torch.no_grad()
def ais_log_weights(
    rbm: GenerativeModel,
    n_runs: int = 100,
    betas: Any = None,
    base_visible_bias: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log w of `n_runs` independent AIS runs from the base model to `rbm.partition_rbm()` (an
    RBM, or the RBM whose partition function a DBN's or DBM's is), float64 (n_runs,).

    mean(w) estimates Z_B / Z_A. `base_visible_bias` defaults to the RBM's own visible biases
    (no data needed); pass `base_rate_bias(train_x)` for the protocol's base-rate model.
    """
    W, b, c = _parameters(rbm)
    betas = _check_betas(default_betas() if betas is None else betas).tolist()
    b_a = b if base_visible_bias is None else base_visible_bias.to(W.device, torch.float32).flatten()
    if b_a.shape != b.shape:
        raise UserError(f"base_visible_bias has {b_a.numel()} entries, the RBM {b.numel()} visible units")
    if n_runs < 1:
        raise UserError(f"n_runs must be at least 1, got {n_runs}")
    d = b - b_a
    v = _bernoulli(torch.sigmoid(b_a).expand(n_runs, -1), generator)
    u_h = torch.empty(n_runs, len(c), device=W.device)
    u_v = torch.empty_like(v)
    log_w = torch.zeros(n_runs, dtype=torch.float64, device=W.device)
    for k in range(1, len(betas)):
        beta, delta = betas[k], betas[k] - betas[k - 1]
        scaled = linear(v, W.t(), c).mul_(beta)  # beta_k (c + v W): the weight's and the sweep's
        log_w += torch.mv(v, d).mul_(delta) + _log_ratio(scaled, delta / beta)
        if k == len(betas) - 1:
            break  # the last sweep would only move a state that no weight looks at again
        h = torch.lt(u_h.uniform_(generator=generator), scaled.sigmoid_(), out=u_h)
        logits = linear(h, W, d).mul_(beta).add_(b_a)  # (1 - beta_k) b_A + beta_k (b + W h)
        v = torch.lt(u_v.uniform_(generator=generator), logits.sigmoid_(), out=u_v)
    return log_w


def log_mean_interval(log_w: torch.Tensor, n_std: float = 3.0) -> tuple[float, float, float]:
    """(log mean w, log(mean - n_std * sem), log(mean + n_std * sem)) from log weights, where sem
    is the standard deviation of the mean (sample std / sqrt(M)); -inf when mean - n_std * sem <= 0."""
    if log_w.numel() < 2:
        raise UserError("AIS needs at least 2 runs to give an interval")
    log_w = log_w.double()
    top = float(log_w.max())
    mean, sem = mean_and_stderr(torch.exp(log_w - top))  # weights in (0, 1]: no overflow
    low = mean - n_std * sem
    log_low = math.log(low) + top if low > 0 else float("-inf")
    return math.log(mean) + top, log_low, math.log(mean + n_std * sem) + top


def rbm_log_partition(
    rbm: GenerativeModel,
    n_runs: int = 100,
    betas: Any = None,
    base_visible_bias: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[float, float, float]:
    """AIS estimate of log Z of `rbm` and its +-3 standard deviation interval:
    (log_z, log_z_low, log_z_high); log_z_low may be -inf (see the module docstring). `rbm`: an
    RBM, or a model whose partition function is an RBM's (`partition_rbm()`: a DBN, a DBM)."""
    W, b, _ = _parameters(rbm)
    b_a = b if base_visible_bias is None else base_visible_bias
    log_w = ais_log_weights(rbm, n_runs, betas, b_a, generator)
    log_z_a = base_log_partition(b_a.flatten(), W.shape[1])
    log_mean, low, high = log_mean_interval(log_w)
    return log_mean + log_z_a, low + log_z_a, high + log_z_a


@torch.no_grad()
def mean_negative_free_energy(
    rbm: GenerativeModel, x: torch.Tensor, chunk: int = 1000
) -> tuple[float, float]:
    """Mean of -F(x) over the rows of x, in float64, and its standard error over rows."""
    W, b, c = (t.double() for t in _parameters(rbm))
    x = x.flatten(1)
    values = []
    for xb in x.split(chunk):
        xb = xb.to(W.device, torch.float64)
        values.append(xb @ b + F.softplus(xb @ W + c).sum(1))
    return mean_and_stderr(torch.cat(values))


def rbm_log_likelihood(
    rbm: GenerativeModel,
    x: torch.Tensor,
    n_runs: int = 100,
    betas: Any = None,
    base_visible_bias: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Mean log p(x) = mean(-F(x)) - log Z over the rows of x (binary images), with log Z from AIS.

    The interval of the log-likelihood comes from that of log Z alone (F is exact):
    [mean(-F) - log_z_high, mean(-F) - log_z_low]; `log_likelihood_stderr` is the separate
    sampling error of the mean over the images.
    """
    log_z, low, high = rbm_log_partition(rbm, n_runs, betas, base_visible_bias, generator)
    neg_f, stderr = mean_negative_free_energy(rbm, x)
    return {
        "log_likelihood": neg_f - log_z,
        "log_likelihood_low": neg_f - high,
        "log_likelihood_high": neg_f - low,
        "log_likelihood_stderr": stderr,
        "log_z": log_z,
        "log_z_low": low,
        "log_z_high": high,
    }


def dbm_log_partition(
    dbm: GenerativeModel,
    n_runs: int = 100,
    betas: Any = None,
    base_bias: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[float, float, float]:
    """AIS estimate of log Z of a two-hidden-layer DBM and its +-3 standard deviation interval:
    (log_z, log_z_low, log_z_high), as `rbm_log_partition` gives for an RBM.

    The annealing runs over h1 alone, with v and h2 summed out analytically (Salakhutdinov &
    Hinton 2009): the intermediate distributions are log p*_k(h1) = (1 - beta_k) b_A^T h1 +
    beta_k c1^T h1 + sum_i softplus(beta_k (b + W1 h1)_i) + sum_m softplus(beta_k (c2 + h1^T W2)_m),
    and each transition is one Gibbs sweep (v, h2) ~ p_k(. | h1), h1 ~ p_k(h1 | v, h2): the RBM
    AIS of `ais_log_weights` on `dbm.partition_rbm()`, with the same schedule (`default_betas`)
    and interval. The base model has independent h1 units with biases `base_bias` (H1,) and zero
    weights and biases elsewhere; when None it is uniform (`dbm.ais_base_bias()`, zeros: every h1
    state equally likely), which needs no data. For lower variance on a trained model pass the
    base rate of h1 of training images, `dbm.ais_base_bias(train_x)`."""
    base = dbm.ais_base_bias() if base_bias is None else base_bias
    return rbm_log_partition(dbm, n_runs, betas, base, generator)


def log_likelihood_bound(
    model: GenerativeModel,
    x: torch.Tensor,
    n_runs: int = 100,
    betas: Any = None,
    base_bias: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    log_z: float | None = None,
    **terms: Any,
) -> dict[str, float]:
    """Mean variational lower bound on log p(x) over the rows of x (Salakhutdinov & Murray 2008;
    Salakhutdinov & Hinton 2009) for a model whose normaliser is an RBM's: mean(bound_terms(x))
    - log Z, where `model.bound_terms(x, generator, **terms)` is per image the bound plus log Z
    (a DBN's sampled q(h | x), a DBM's mean field) and log Z is that of `model.partition_rbm()`
    (a DBN's top RBM; a DBM as the RBM over h1), by AIS from the base model with visible biases
    `base_bias` (`model.ais_base_bias()` when None) unless `log_z` is given (e.g. exact).

    The interval [bound_low, bound_high] is AIS's +-3 std interval of log Z carried over;
    `bound_stderr` is the sampling error of the mean over images."""
    if log_z is None:
        base = model.ais_base_bias() if base_bias is None else base_bias
        log_z, low, high = rbm_log_partition(model, n_runs, betas, base, generator)
    else:
        log_z = low = high = float(log_z)
    mean, stderr = mean_and_stderr(model.bound_terms(x, generator, **terms))
    return {
        "bound": mean - log_z,
        "bound_low": mean - high,
        "bound_high": mean - low,
        "bound_stderr": stderr,
        "log_z": log_z,
        "log_z_low": low,
        "log_z_high": high,
    }
