"""Log-densities and divergences shared by the latent-variable models.

Every function returns one value per example, summed over the trailing data dimension, so the
models and the likelihood evaluator can broadcast over extra leading axes (images x samples).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x | sigmoid(logits)) summed over the last axis.

    Written as x * l - softplus(l): exact for x in {0, 1}, stable for large |l|, and it is the
    cross-entropy form used for intensities in [0, 1] as well.
    """
    return (x * logits - F.softplus(logits)).sum(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x | mean, diag(exp(logvar))) summed over the last axis."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar)).sum(-1)


def std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z | 0, I) summed over the last axis: the prior p(z) of the VAE family."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def kl_std_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) in closed form (Kingma & Welling, appendix B)."""
    return 0.5 * (mean.pow(2) + torch.exp(logvar) - 1.0 - logvar).sum(-1)


class _Reparameterize(torch.autograd.Function):
    """z = mean + exp(logvar / 2) eps as one graph node: DRAW draws a z_t at each of its T steps,
    where every node of the graph costs time on a CPU."""

    @staticmethod
    def forward(ctx, mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        sd = torch.exp(0.5 * logvar)
        ctx.save_for_backward(sd, eps)
        return torch.addcmul(mean, sd, eps)

    @staticmethod
    def backward(ctx, dz: torch.Tensor):
        sd, eps = ctx.saved_tensors
        return dz, 0.5 * dz * eps * sd, None


def reparameterize(
    mean: torch.Tensor,
    logvar: torch.Tensor,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """z = mean + sigma * eps, sigma = exp(logvar / 2): the reparameterization trick, a sample of
    N(mean, diag(sigma^2)) through which gradients reach mean and logvar. `eps` (mean's shape)
    are the standard normal draws, drawn from `generator` when None."""
    if eps is None:
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return _Reparameterize.apply(mean, logvar, eps)


# Pixel means are clipped to [BASE_RATE_EPS, 1 - BASE_RATE_EPS] before taking log-odds: MNIST has
# pixels that are never on in the training set, whose logit would be -inf.
BASE_RATE_EPS = 1e-3


def base_rate_bias(train_x: torch.Tensor, eps: float = BASE_RATE_EPS) -> torch.Tensor:
    """Visible biases of the base-rate model: log(p / (1 - p)) of the training pixel means, the
    means clipped to [eps, 1 - eps] so that pixels never (or always) on get finite logits."""
    p = train_x.flatten(1).double().mean(0).clamp(eps, 1 - eps)
    return torch.log(p / (1 - p)).float()
