"""x W^T + b through oneDNN where it is faster: the dense products of the RBM family, AIS and
DRAW's recurrent steps.

On CPUs where MKL's sgemm takes a slow path (AMD) oneDNN's fp32 linear
(`torch.ops.mkldnn._linear_pointwise`) is about twice as fast as torch.mm; it is checked once
against torch.addmm, and anything else (no oneDNN, a GPU, another dtype) goes through torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _onednn_linear_works() -> bool:
    """Whether oneDNN's fp32 linear (`torch.ops.mkldnn._linear_pointwise`) is here and agrees with
    torch.mm. On CPUs where MKL's sgemm takes a slow path (AMD) it is about twice as fast."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=g) for s in ((5, 7), (3, 7), (3,)))
        y = op(x.t().contiguous().t(), w, b, "none", [], "")
        return bool(torch.allclose(y, torch.addmm(b, x, w.t()), atol=1e-5))
    except Exception:  # not built with oneDNN, or the private op changed
        return False


_ONEDNN: bool | None = None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T + b without autograd: oneDNN for float32 on the CPU when it works, else torch."""
    global _ONEDNN
    if x.device.type == "cpu" and x.dtype == torch.float32:
        if _ONEDNN is None:
            _ONEDNN = _onednn_linear_works()
        if _ONEDNN:
            x, weight = dense(x), dense(weight)
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def dense(t: torch.Tensor) -> torch.Tensor:
    """A row- or column-major matrix as is; anything else (an expanded tensor with stride 0,
    which oneDNN handles a thousand times slower) copied."""
    rows, cols = t.shape
    if (t.stride(1) == 1 and t.stride(0) >= cols) or (t.stride(0) == 1 and t.stride(1) >= rows):
        return t
    return t.contiguous()
