"""What DRAW (`models/draw.py`) and alignDRAW (`models/aligndraw.py`) share beyond the attention
and the LSTM steps: the LSTMs' initial gate weights, one optimiser step on the negative variational
bound L = L^x + L^z, and the bound's summary over a held-out split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from genlearn.nn.lstm import flush_denormals
from genlearn.nn.stats import mean_and_stderr


def init_lstm_gates(encoder: Iterable[torch.Tensor], E: int, decoder: Iterable[torch.Tensor], D: int) -> None:
    """PyTorch's LSTM initialisation, U(-1/sqrt(H), 1/sqrt(H)), in place: the encoder's gate
    weights (H = E), then the decoder's (H = D), each in the order given."""
    with torch.no_grad():
        for weights, H in ((encoder, E), (decoder, D)):
            for w in weights:
                w.uniform_(-1 / math.sqrt(H), 1 / math.sqrt(H))


def descend_bound(
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[nn.Parameter],
    grad_clip: float,
    loss_terms: Callable[[], tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, float]:
    """One optimiser step on the mean of L = L^x + L^z over a batch, the terms from `loss_terms()`
    (per image), the gradient's global norm clipped at `grad_clip` (0: not clipped). Returns the
    loss and its two terms."""
    with flush_denormals():
        optimizer.zero_grad(set_to_none=True)
        recon, kl = loss_terms()
        recon, kl = recon.mean(), kl.mean()
        loss = recon + kl
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(parameters, grad_clip, foreach=True)
        optimizer.step()
    return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}


def bound_summary(terms: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """From (L^x, L^z) per image of each chunk of a split: the bound's mean over images (nats per
    image, one posterior sample each), its standard error, and the two terms' means."""
    recon, kl = (torch.cat(parts) for parts in zip(*terms))
    bound, stderr = mean_and_stderr(recon + kl)
    return {
        "nll_bound": bound,
        "nll_bound_stderr": stderr,
        "recon": recon.mean().item(),
        "kl": kl.mean().item(),
    }
