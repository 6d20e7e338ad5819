"""Optimiser construction shared by the models that own one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], config: Any) -> torch.optim.Optimizer:
    """Adam, Adagrad or SGD(momentum) from the config's `lr`, `weight_decay`, `momentum`."""
    weight_decay = getattr(config, "weight_decay", 0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, weight_decay=weight_decay)
    if name == "sgd":
        momentum = getattr(config, "momentum", 0.9)
        return torch.optim.SGD(params, lr=config.lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")
