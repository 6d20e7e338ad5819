"""Image grids written with Pillow (no torchvision)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(n, C, H, W) in [0, 1] -> one uint8 array (rows*H, cols*W[, 3]) with `pad` pixels between."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    canvas = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), pad_value)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        canvas[:, top : top + h, left : left + w] = images[i]
    array = (canvas.numpy() * 255.0 + 0.5).astype(np.uint8)
    return array[0] if c == 1 else array.transpose(1, 2, 0)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    """Write a grid PNG, upscaled `scale` times with nearest neighbour so digits stay crisp."""
    img = Image.fromarray(grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    img.save(path)
    return path
