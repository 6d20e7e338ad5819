"""The one mean-and-standard-error helper that every held-out figure is reported with."""

from __future__ import annotations

import math

import torch


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean of `values` and its standard error std / sqrt(n), accumulated in float64; the
    standard error of a single value is NaN (it cannot be estimated)."""
    v = values.detach().flatten().to(torch.float64)
    n = v.numel()
    stderr = (v.std() / math.sqrt(n)).item() if n > 1 else math.nan
    return v.mean().item(), stderr
