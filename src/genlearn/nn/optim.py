"""The optimiser factory of every model: one optimiser, or one per player of an adversarial pair."""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("adam", "adagrad", "sgd", "rmsprop")


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    beta1: float = 0.9,
) -> torch.optim.Optimizer:
    """Adam (first-moment decay `beta1`), Adagrad, SGD with momentum, or RMSProp (squared-gradient
    average decaying by 0.9, as alignDRAW's code trains); `weight_decay` is an L2 penalty on every
    parameter."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
