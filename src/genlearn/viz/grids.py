"""Image grids written with Pillow (no torchvision), and the two ways every picture is written:
`save_image` (a Pillow image, a GIF's frames included) and `save_figure` (a matplotlib figure),
both atomically through `genlearn.files` (a temporary beside the file, then a rename; never
through a link), so a full disk or a stop part-way keeps the previous picture."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from genlearn import files
from genlearn.errors import UserError


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


def _format(path: Path) -> str:
    """Pillow's format name for the file's suffix (PNG, GIF, ...)."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UserError(
            f"cannot write {files.shown(path)}: {path.suffix or 'no suffix'!r} is not a picture type"
        )
    return fmt


def save_image(img: Image.Image, path: str | Path, **params: Any) -> Path:
    """Write a Pillow image atomically, in the format its suffix names; `params` go to
    `Image.save` (e.g. `save_all=True, append_images=frames[1:]` for a GIF's frames)."""
    path = Path(path)
    fmt = _format(path)
    with files.atomic_output(path) as fh:
        img.save(fh, format=fmt, **params)
    return path


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write a matplotlib figure atomically, in the format its suffix names; `kwargs` go to
    `savefig` (e.g. dpi=100)."""
    path = Path(path)
    with files.atomic_output(path) as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".").lower() or "png", **kwargs)
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    """Write a grid PNG, upscaled `scale` times with nearest neighbour so digits stay crisp."""
    img = Image.fromarray(grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return save_image(img, path)
