r"""Held-out likelihood of latent-variable models: the ELBO and the importance-weighted bound.

A *latent model* here is any ``torch.nn.Module`` with

* ``latent_dim: int``;
* ``encode(x) -> (mean, logvar)``, the diagonal Gaussian ``q(z|x) = N(mean, diag(exp(logvar)))``
  with ``x`` of shape ``(n, d)`` and ``mean``, ``logvar`` of shape ``(n, L)``;
* ``log_likelihood(x, z) -> log p(x|z)`` with ``x`` of shape ``(n, d)``, ``z`` of shape
  ``(n, s, L)`` (``s`` latent samples per image) and a result of shape ``(n, s)``;

and the prior is always ``p(z) = N(0, I)``.

Evidence lower bound (Kingma & Welling 2014), one reparameterized sample
``z = mean + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``, and the KL term in closed form::

    ELBO(x) = log p(x|z) - KL(q(z|x) || N(0, I))  <=  log p(x)

Importance-weighted estimate (Burda, Grosse & Salakhutdinov 2016), ``z_1..z_k ~ q(z|x)``::

    log w_i  = log p(x|z_i) + log p(z_i) - log q(z_i|x)
    L_k(x)   = log (1/k) sum_i w_i = logsumexp_i(log w_i) - log k

``E[L_k]`` is a lower bound of ``log p(x)`` that never decreases with ``k``, equals the ELBO in
expectation for ``k = 1`` and converges to ``log p(x)`` as ``k -> inf`` (its bias is about
``Var(w) / (2 k E[w]^2)``). If ``q(z|x)`` is the exact posterior every ``w_i`` equals ``p(x)``
and the estimate is exact for any ``k``.

How the estimate is computed (why it is fast on a CPU): the decoder dominates the cost (for a
50-200-200-784 tanh / Bernoulli decoder, the 200 x 784 matrix product and the 784-wide softplus
and its temporaries), so each image is encoded once, and the ``k`` samples are drawn in chunks
that put a few thousand (image, sample) rows through the decoder in one call: enough to amortise
the per-call overhead and run the matrix products efficiently, few enough that the ``rows x d``
logits and their temporaries stay in cache (see ``DEFAULT_MAX_ROWS``). The chunks of one image
are combined by a streaming log-sum-exp (running maximum and a rescaled running sum), so memory
is bounded by the chunk size whatever ``k`` is. glibc is kept from returning the freed
temporaries to the kernel between chunks (see ``_keep_freed_memory``), which otherwise costs as
much kernel time as the decoder's arithmetic. Everything stays in the model's dtype (float32)
with the same formulas; nothing is approximated.
"""

from __future__ import annotations

import ctypes
import math
import operator
import platform
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from genlearn.nn.distributions import (
    gaussian_log_prob,
    kl_std_normal,
    reparameterize,
    std_normal_log_prob,
)
from genlearn.nn.stats import mean_and_stderr

__all__ = [
    "DEFAULT_MAX_ROWS",
    "LatentModel",
    "elbo",
    "elbo_stats",
    "iw_log_likelihood",
    "log_importance_weights",
    "nll",
    "streaming_logsumexp",
]

# Rows (image, sample pairs) per decoder call. Measured on the 2-core AMD EPYC development machine
# with a 50-200-200-784 tanh / Bernoulli decoder, 2 threads, idle machine: ~0.31-0.32M rows/s at
# 2k-4k rows, 0.29M at 8k, 0.17M at 16k and below 0.15M from 32k up (the 784-wide logits and the
# softplus temporaries no longer fit in cache and the element-wise work becomes memory bound);
# below 1k rows the per-call overhead shows. Single-threaded CPU time is flat (~7 us per row) from
# 512 to 8k rows once page faults are avoided. k = 5000 runs as 2 chunks of 2500 rows per image.
DEFAULT_MAX_ROWS = 4096
# On a GPU the opposite holds: small decoder calls leave it idle between kernel launches, and
# 2^18 rows (about 0.8 GB of logits) keep it busy.
GPU_MAX_ROWS = 1 << 18


def default_max_rows(device: torch.device) -> int:
    """Rows per decoder call when the caller gives none: cache-sized on a CPU, large on a GPU."""
    return GPU_MAX_ROWS if device.type == "cuda" else DEFAULT_MAX_ROWS


# Images encoded per encoder call: the encoder runs once per image, so this only bounds memory.
_ENCODE_BATCH = 1024

# glibc malloc settings applied by `_keep_freed_memory` (see there): heap memory is returned to the
# system only when more than _TRIM_THRESHOLD bytes are free at its top, and blocks up to
# _MMAP_THRESHOLD (the largest value glibc accepts on 64-bit) come from the heap, not from mmap.
_TRIM_THRESHOLD = 256 << 20
_MMAP_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from <malloc.h>
_malloc_tuned = False


class LatentModel(Protocol):
    """The duck-typed interface the estimators need (see the module docstring)."""

    latent_dim: int

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor: ...

    def modules(self) -> Iterator[nn.Module]: ...

    def eval(self) -> nn.Module: ...


@contextmanager
def _eval_mode(model: LatentModel) -> Iterator[None]:
    """Evaluate with dropout / batch-norm in eval mode, then restore every module's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, training in flags:
            m.training = training


def _keep_freed_memory() -> bool:
    """Stop glibc from handing the decoder's temporaries back to the kernel after every chunk.

    Each chunk allocates and frees several (rows x d) float32 buffers of a few MB. With glibc's
    default (dynamic) thresholds the freed memory at the top of the heap is trimmed, or the
    buffers are mmap-ed and unmapped, so the next chunk page-faults all of it in again: measured
    on the 2-core development machine, 3 to 5 microseconds of kernel time per (image, sample)
    row, as much as the whole decoder's arithmetic (about 7 single-thread microseconds per row).
    Raising the trim and mmap thresholds once per process removes that (0 page faults per chunk);
    the cost is that up to ``_TRIM_THRESHOLD`` bytes of freed heap may stay mapped (``malloc_trim``
    at the end of each evaluation gives them back). A no-op, returning False, off glibc.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False
    _malloc_tuned = ok
    return ok


@contextmanager
def _allocator_tuned() -> Iterator[None]:
    """`_keep_freed_memory` for the evaluation, then ``malloc_trim`` returns the kept memory."""
    tuned = _keep_freed_memory()
    try:
        yield
    finally:
        if tuned:
            ctypes.CDLL(None).malloc_trim(0)


def _check_x(x: Tensor) -> Tensor:
    """Validate the batch of images; integer / boolean pixels become float32."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, not {type(x).__name__}")
    if x.dim() == 0 or x.shape[0] == 0:
        shape = tuple(x.shape)
        raise ValueError(f"x must hold at least one image (shape (n, d), n >= 1), got {shape}")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    return x


def _check_k(k: int) -> int:
    """k is the number of importance samples per image: a positive integer."""
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k (importance samples per image) must be >= 1, got {k}")
    return k


def _check_positive(name: str, value: int) -> int:
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _schedule(k: int, max_rows: int) -> tuple[int, int]:
    """(images per block, samples per chunk) so that one decoder call has <= max_rows rows.

    If k fits, whole images are packed together (``max_rows // k`` of them); otherwise one image
    at a time with its k samples split into ``ceil(k / max_rows)`` chunks of (nearly) equal size,
    so there is no tiny last chunk running at poor matrix-product efficiency.
    """
    n_chunks = -(-k // max_rows)
    samples = -(-k // n_chunks)
    return max(1, max_rows // samples), samples


def _log_weights(
    model: LatentModel,
    x: Tensor,
    mean: Tensor,
    logvar: Tensor,
    s: int,
    generator: torch.Generator | None,
) -> Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for s fresh samples z ~ q(z|x): shape (b, s).

    ``mean`` and ``logvar`` are the already computed encoder outputs of shape (b, L); the samples
    of all b images go to the decoder as one (b * s, L) matrix inside ``model.log_likelihood``.
    """
    b, latent = mean.shape
    mean = mean[:, None, :]
    logvar = logvar[:, None, :]
    z = reparameterize(mean.expand(b, s, latent), logvar.expand(b, s, latent), generator)
    log_q = gaussian_log_prob(z, mean, logvar)
    return model.log_likelihood(x, z) + std_normal_log_prob(z) - log_q


def _blocks(
    model: LatentModel,
    x: Tensor,
    k: int,
    generator: torch.Generator | None,
    max_rows: int,
) -> Iterator[tuple[int, int, Iterator[Tensor]]]:
    """Yield (start, stop, chunks of log w of images start:stop), each image encoded once.

    Images are encoded ``_ENCODE_BATCH`` (rounded to whole blocks) at a time, so memory does not
    grow with the number of images either. The random draws happen in a fixed order (block by
    block, chunk by chunk), so the same generator state and ``max_rows`` give the same samples in
    ``iw_log_likelihood`` and ``log_importance_weights``.
    """
    per_block, samples = _schedule(k, max_rows)
    group = per_block * max(1, _ENCODE_BATCH // per_block)
    n = x.shape[0]
    for g_start in range(0, n, group):
        g_stop = min(n, g_start + group)
        mean_g, logvar_g = model.encode(x[g_start:g_stop])
        for start in range(g_start, g_stop, per_block):
            stop = min(g_stop, start + per_block)
            xb = x[start:stop]
            mean = mean_g[start - g_start : stop - g_start]
            logvar = logvar_g[start - g_start : stop - g_start]
            yield start, stop, _chunks(model, xb, mean, logvar, k, samples, generator)


def _chunks(
    model: LatentModel,
    x: Tensor,
    mean: Tensor,
    logvar: Tensor,
    k: int,
    samples: int,
    generator: torch.Generator | None,
) -> Iterator[Tensor]:
    """The log weights of one block of images, ``samples`` (the last chunk: the rest) at a time."""
    for j in range(0, k, samples):
        yield _log_weights(model, x, mean, logvar, min(samples, k - j), generator)


def streaming_logsumexp(chunks: Iterable[Tensor]) -> Tensor:
    """``logsumexp`` over the last axis of the concatenation of ``chunks``, one chunk at a time.

    Keeps a running maximum ``m`` and the running sum ``S = sum exp(w - m)``; a new chunk with a
    larger maximum ``m'`` rescales the sum by ``exp(m - m')``. Memory is that of one chunk, and
    every exponent is <= 0 so nothing overflows. Infinite maxima (all ``-inf`` so far, or a
    ``+inf`` weight) are shifted by 0 instead, which gives ``-inf`` / ``+inf`` like
    ``torch.logsumexp``; NaNs propagate.
    """
    run_max: Tensor | None = None
    run_sum: Tensor | None = None
    shift: Tensor | None = None
    for w in chunks:
        chunk_max = w.amax(-1)
        if run_max is None:
            new_max = chunk_max
        else:
            new_max = torch.maximum(run_max, chunk_max)
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        chunk_sum = torch.exp(w - shift[..., None]).sum(-1)
        if run_sum is None:
            run_sum = chunk_sum
        else:
            run_sum = run_sum * torch.exp(run_max - shift) + chunk_sum
        run_max = new_max
    if run_sum is None or shift is None:
        raise ValueError("streaming_logsumexp needs at least one chunk")
    return torch.log(run_sum) + shift


def elbo(
    model: LatentModel,
    x: Tensor,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> Tensor:
    """Per-image ELBO, shape (n,): one reparameterized sample of log p(x|z) minus the exact KL.

    The KL to the standard normal prior is analytic, so only the reconstruction term is a Monte
    Carlo estimate; the result is an unbiased estimate of the bound. ``batch_size`` bounds memory.
    """
    x = _check_x(x)
    batch_size = _check_positive("batch_size", batch_size)
    out = []
    with torch.no_grad(), _eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            mean, logvar = model.encode(xb)
            z = reparameterize(mean, logvar, generator)
            rec = model.log_likelihood(xb, z[:, None, :])[:, 0]
            out.append(rec - kl_std_normal(mean, logvar))
    return torch.cat(out)


def log_importance_weights(
    model: LatentModel,
    x: Tensor,
    k: int,
    generator: torch.Generator | None = None,
    max_rows: int | None = None,
) -> Tensor:
    """All log importance weights ``log p(x, z_i) - log q(z_i|x)``, shape (n, k).

    For diagnostics (weight variance, effective sample size) and as the one-shot reference of
    ``iw_log_likelihood``: with the same generator state and ``max_rows`` both draw the same
    samples, so ``logsumexp(weights, 1) - log k`` equals ``iw_log_likelihood``. Holds n * k
    values in memory; use ``iw_log_likelihood`` for the estimate itself.
    """
    x = _check_x(x)
    k = _check_k(k)
    max_rows = _check_positive("max_rows", default_max_rows(x.device) if max_rows is None else max_rows)
    with torch.inference_mode(), _eval_mode(model), _allocator_tuned():
        blocks = _blocks(model, x, k, generator, max_rows)
        out = torch.cat([torch.cat(list(chunks), 1) for _, _, chunks in blocks])
    return out.clone()


def iw_log_likelihood(
    model: LatentModel,
    x: Tensor,
    k: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
    max_rows: int | None = None,
) -> Tensor:
    """Importance-weighted estimate of log p(x) with k samples per image, shape (n,).

    ``L_k = logsumexp_i(log w_i) - log k`` (see the module docstring). Each image is encoded
    once; the k samples go through the decoder in chunks of at most ``max_rows`` (image, sample)
    rows, reduced by a streaming log-sum-exp so memory does not depend on k. The samples, and so
    the exact value, depend on ``max_rows`` as well as on the generator state. ``progress`` shows a
    tqdm bar over images (10,000 images at k = 5000 take minutes on a CPU).
    """
    x = _check_x(x)
    k = _check_k(k)
    max_rows = _check_positive("max_rows", default_max_rows(x.device) if max_rows is None else max_rows)
    log_k = math.log(k)
    out = []
    with (
        tqdm(total=x.shape[0], unit="img", desc=f"IW log p(x), k={k}", disable=not progress) as bar,
        torch.inference_mode(),
        _eval_mode(model),
        _allocator_tuned(),
    ):
        for start, stop, chunks in _blocks(model, x, k, generator, max_rows):
            out.append(streaming_logsumexp(chunks) - log_k)
            bar.update(stop - start)
        result = torch.cat(out)
    # A normal tensor, not an inference tensor, so callers may modify it in place.
    return result.clone()


def nll(
    model: LatentModel,
    x: Tensor,
    k: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
    max_rows: int | None = None,
) -> dict[str, float | int]:
    """Test negative log-likelihood in nats: ``{"nll", "nll_stderr", "k", "n"}``.

    ``nll`` is the mean over images of ``-iw_log_likelihood`` (an upper bound of the true NLL in
    expectation) and ``nll_stderr`` its standard error over images, the number to quote with it.
    """
    est = iw_log_likelihood(model, x, k, generator=generator, progress=progress, max_rows=max_rows)
    mean, stderr = mean_and_stderr(-est)
    return {"nll": mean, "nll_stderr": stderr, "k": _check_k(k), "n": est.shape[0]}


def elbo_stats(
    model: LatentModel,
    x: Tensor,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> dict[str, float | int]:
    """Mean ELBO over images with its standard error: ``{"elbo", "elbo_stderr", "n"}``."""
    values = elbo(model, x, generator=generator, batch_size=batch_size)
    mean, stderr = mean_and_stderr(values)
    return {"elbo": mean, "elbo_stderr": stderr, "n": values.shape[0]}
