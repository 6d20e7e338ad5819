r"""Algorithm 1 of Goodfellow et al. (NIPS 2014) as functions of the two players, and the label
code of conditional pairs (Mirza & Osindero 2014): what the GAN (`models/gan.py`) and every level
of LAPGAN (`models/lapgan.py`) are trained with.

D outputs a logit l, D = sigmoid(l), and every term of the value function

    V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p_z}[log(1 - D(G(z)))]

is computed from logits: log D = -softplus(-l) and log(1 - D) = -softplus(l). One step of the
algorithm on one minibatch (`adversarial_step`) is the discriminator's update
(`discriminator_step`: ascend log D(x) + log(1 - D(G(z))) on m data and m noise samples) and, on
every k-th call, the generator's (`generator_step`: descend log(1 - D(G(z))), `minimax`, or
-log D(G(z)), `non-saturating`, on m fresh noise samples). Each function takes the modules whose
parameters the optimisers update and, where calling them is more than G(z) and D(x), how to call
them under a condition (a label, LAPGAN's low-pass image).

The paper's optimiser is SGD whose momentum rises linearly over the first epochs
(`ramp_momentum`); `player_optimizer` builds one player's optimiser from a
config with the fields `optimizer`, `lr`, `momentum` and `beta1`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlearn.errors import UserError
from genlearn.nn.optim import make_optimizer

N_CLASSES = 10  # MNIST's digits: the labels a conditional pair takes

Generate = Callable[[torch.Tensor, Any], torch.Tensor]  # (noise, condition) -> sample
Discriminate = Callable[[torch.Tensor, Any], torch.Tensor]  # (sample, condition) -> logits (n,)


def log_d(logits: torch.Tensor) -> torch.Tensor:
    """log D = log sigmoid(l) = -softplus(-l)."""
    return -F.softplus(-logits)


def log_one_minus_d(logits: torch.Tensor) -> torch.Tensor:
    """log(1 - D) = log sigmoid(-l) = -softplus(l)."""
    return -F.softplus(logits)


def checked_labels(labels, n: int, device: torch.device) -> torch.Tensor:
    """n digit labels as a long tensor on `device`; one line of refusal for anything else."""
    labels = torch.as_tensor(labels, dtype=torch.long).to(device)
    if labels.shape != (n,):
        raise UserError(f"labels must be one per sample ({n}), got shape {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= N_CLASSES):
        raise UserError(f"labels must be digits 0 to {N_CLASSES - 1}, got {labels.unique().tolist()}")
    return labels


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """y as a float one-hot code (n, 10)."""
    return F.one_hot(labels, N_CLASSES).float()


def uniform_labels(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """n labels uniform over the ten digits (MNIST's held-out classes are near uniform), on the
    generator's device when there is one."""
    device = generator.device if generator is not None else device
    return torch.randint(N_CLASSES, (n,), generator=generator, device=device)


def _grad_norm(params) -> float:
    norms = [p.grad.norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _players(
    generator: nn.Module,
    discriminator: nn.Module,
    generate: Generate | None,
    discriminate: Discriminate | None,
) -> tuple[Generate, Discriminate]:
    """How to call G and D: the given callables, or the modules themselves (the condition, when
    there is one, as their second argument; D's output squeezed to one logit per row)."""
    if generate is None:
        generate = lambda z, c: generator(z) if c is None else generator(z, c)  # noqa: E731
    if discriminate is None:
        discriminate = lambda x, c: (discriminator(x) if c is None else discriminator(x, c)).squeeze(1)  # noqa: E731
    return generate, discriminate


def discriminator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    d_opt: torch.optim.Optimizer,
    real: torch.Tensor,
    noise_fn: Callable[[int], torch.Tensor],
    condition: Any = None,
    generate: Generate | None = None,
    discriminate: Discriminate | None = None,
) -> dict[str, float]:
    """Algorithm 1's discriminator update: draw m = len(real) noise samples, ascend
    log D(x) + log(1 - D(G(z))) (descend its negative) on the real batch and G's samples, both
    under the same condition (the batch's labels, LAPGAN's low-pass images). Returns the loss,
    mean D(x), mean D(G(z)), D's accuracy at threshold 1/2 over both halves and its gradient norm."""
    generate, discriminate = _players(generator, discriminator, generate, discriminate)
    with torch.no_grad():
        fake = generate(noise_fn(real.shape[0]), condition)
    l_real, l_fake = discriminate(real, condition), discriminate(fake, condition)
    d_loss = -(log_d(l_real).mean() + log_one_minus_d(l_fake).mean())
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_grad = _grad_norm(discriminator.parameters())
    d_opt.step()
    l_real, l_fake = l_real.detach(), l_fake.detach()
    return {
        "d_loss": float(d_loss.detach()),
        "d_real": float(torch.sigmoid(l_real).mean()),
        "d_fake": float(torch.sigmoid(l_fake).mean()),
        "d_grad_norm": d_grad,
        "d_accuracy": float(((l_real > 0).float().mean() + (l_fake < 0).float().mean()) / 2),
    }


def generator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_opt: torch.optim.Optimizer,
    m: int,
    noise_fn: Callable[[int], torch.Tensor],
    loss: str = "non-saturating",
    condition: Any = None,
    generate: Generate | None = None,
    discriminate: Discriminate | None = None,
) -> dict[str, float]:
    """Algorithm 1's generator update on m fresh noise samples: descend log(1 - D(G(z)))
    (`minimax`) or -log D(G(z)) (`non-saturating`). D's parameters get no gradient."""
    generate, discriminate = _players(generator, discriminator, generate, discriminate)
    l_fake = discriminate(generate(noise_fn(m), condition), condition)
    if loss == "minimax":
        g_loss = log_one_minus_d(l_fake).mean()  # descend log(1 - D(G(z)))
    elif loss == "non-saturating":
        g_loss = -log_d(l_fake).mean()  # descend -log D(G(z))
    else:
        raise ValueError(f"loss must be 'non-saturating' or 'minimax', not {loss!r}")
    g_opt.zero_grad(set_to_none=True)
    discriminator.requires_grad_(False)  # D's parameters are not updated here: skip their gradients
    try:
        g_loss.backward()
    finally:
        discriminator.requires_grad_(True)
    stats = {"g_loss": float(g_loss.detach()), "g_grad_norm": _grad_norm(generator.parameters())}
    g_opt.step()
    return stats


def adversarial_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    real: torch.Tensor,
    noise_fn: Callable[[int], torch.Tensor],
    k: int = 1,
    loss: str = "non-saturating",
    condition: Any = None,
    *,
    d_updates: int = 0,
    generate: Generate | None = None,
    discriminate: Discriminate | None = None,
) -> dict[str, float]:
    """One step of Algorithm 1 on one minibatch: the discriminator's update and, when it is the
    k-th (`d_updates`, the discriminator updates made before this one, plus 1, divisible by k),
    the generator's update on fresh noise: k data minibatches per iteration of the algorithm.

    `generator` and `discriminator` are the modules whose parameters `g_opt` and `d_opt` update;
    `generate(z, condition)` and `discriminate(x, condition)` say how to call them when that is
    more than `G(z)` and `D(x)` (a conditional pair's inputs, a reshape); `noise_fn(m)` draws m
    noise samples of G's input. The caller keeps the counters and any moving average of G.
    Returns `discriminator_step`'s figures, and `g_loss` and `g_grad_norm` when G was updated."""
    stats = discriminator_step(
        generator, discriminator, d_opt, real, noise_fn, condition, generate, discriminate
    )
    if (d_updates + 1) % k == 0:
        stats |= generator_step(
            generator, discriminator, g_opt, real.shape[0], noise_fn, loss, condition, generate, discriminate
        )
    return stats


def player_optimizer(c: Any, net: nn.Module) -> torch.optim.Optimizer:
    """One player's optimiser: Adam (lr, beta_1) or the paper's SGD with momentum (ramped by
    `set_momentum`); a GAN's and each LAPGAN level's."""
    return make_optimizer(c.optimizer, net.parameters(), c.lr, momentum=c.momentum, beta1=c.beta1)


def ramped_momentum(c: Any, epoch: float) -> float:
    """The paper's SGD momentum after `epoch` epochs: rising linearly from `c.momentum` to
    `c.momentum_final` over `c.momentum_epochs` (the GAN paper's and LAPGAN's released code)."""
    ramp = min(1.0, epoch / c.momentum_epochs) if c.momentum_epochs else 1.0
    return c.momentum + (c.momentum_final - c.momentum) * ramp


def set_momentum(optimizers, momentum: float) -> None:
    """Every parameter group of every optimiser in `optimizers` at SGD momentum `momentum`."""
    for opt in optimizers:
        for g in opt.param_groups:
            g["momentum"] = momentum


def ramp_momentum(c: Any, optimizers, epoch: float) -> None:
    """With the paper's SGD (`c.optimizer`), every optimiser in `optimizers` at the momentum of its
    ramp after `epoch` epochs (`ramped_momentum`); any other optimiser is left as it is."""
    if c.optimizer == "sgd":
        set_momentum(optimizers, ramped_momentum(c, epoch))
