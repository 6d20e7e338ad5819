"""LAPGAN's pyramid, coarse to fine, as on the lecture's slide 28: each level's image and the
residual that the next finer level adds to its upsampled version.

Inputs are what `sample_pyramid(n)` returns: `images` [I~_K, ..., I~_0], coarse to fine, each
(n, 1, H_k, W_k) in [0, 1], and `residuals` [h~_{K-1}, ..., h~_0], one fewer, with images[j + 1]
= u(images[j]) + residuals[j]. Level k counts from 0, the finest, as in the paper.

- `save_pyramid_png`: one row per sample; the columns run coarse to fine, I~_K, h~_{K-1},
  I~_{K-1}, ..., h~_0, I~_0, under a header naming each column and a title saying what the rows,
  columns and colours are.
- `save_pyramid_gif`: one frame per column of that picture, each the n samples' tiles of that
  level in a grid: the image grows coarse to fine, with the residual that refines it shown
  between two images.

Every tile is enlarged (nearest neighbour, by the integer factor that brings it closest to the
finest size, centred in a cell of that size) so that the levels line up. Images are grey on
[0, 1]. Residuals are signed and much fainter at coarse levels, so they are drawn on a diverging
map centred on 0: white at 0, red for positive (the level adds intensity), blue for negative,
each level scaled to +/- its own largest |h~_k| over the samples shown; the header gives that
scale ("h1 +/-0.31"). One fixed 256-colour palette (128 greys, 64 reds, 64 blues) serves both
pictures, so the GIF's frames never flicker and no colour is approximated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from genlearn.viz.grids import save_gif, save_image, with_title

GREYS = 128  # palette entries 0..127: black to white
RAMP = 64  # 128..191: white to red (h > 0), 192..255: white to blue (h < 0)
BACKGROUND = 96  # the mid-dark grey between tiles (a white gap would vanish beside a residual)
BLACK, WHITE = 0, GREYS - 1
PAD = 2  # pixels between tiles, before upscaling
HEADER = 14  # pixels of header text, after upscaling


def palette() -> list[int]:
    """The 256 RGB entries, flattened: greys, then the red ramp, then the blue ramp."""
    colours = [(round(k * 255 / (GREYS - 1)),) * 3 for k in range(GREYS)]
    for k in range(RAMP):
        fade = round(255 * (1 - k / (RAMP - 1)))
        colours.append((255, fade, fade))
    for k in range(RAMP):
        fade = round(255 * (1 - k / (RAMP - 1)))
        colours.append((fade, fade, 255))
    return [v for rgb in colours for v in rgb]


def image_codes(x: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1] as palette indices of the grey ramp."""
    return np.rint(np.clip(x, 0, 1) * (GREYS - 1)).astype(np.uint8)


def residual_codes(h: np.ndarray, bound: float) -> np.ndarray:
    """Signed residuals as palette indices: white at 0, full red at +bound, full blue at -bound."""
    t = np.clip(h / bound, -1, 1) if bound > 0 else np.zeros_like(h)
    steps = np.rint(np.abs(t) * (RAMP - 1)).astype(np.int64)
    return np.where(t >= 0, GREYS + steps, GREYS + RAMP + steps).astype(np.uint8)


def check_pyramid(
    images: Sequence[torch.Tensor], residuals: Sequence[torch.Tensor]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The levels as (n, H, W) float arrays on the CPU, coarse to fine; a ValueError naming what
    does not fit (the count of residuals, the number of samples, one channel, growing sizes)."""
    if len(images) < 1 or len(residuals) != len(images) - 1:
        raise ValueError(
            f"a pyramid has one residual fewer than images: got {len(images)} images and {len(residuals)} residuals"
        )
    n = images[0].shape[0]
    out: list[list[np.ndarray]] = [[], []]
    for kind, levels in enumerate((images, residuals)):
        for j, level in enumerate(levels):
            if level.dim() != 4 or level.shape[0] != n or level.shape[1] != 1:
                raise ValueError(
                    f"every level must be (n={n}, 1, H, W); {('images', 'residuals')[kind]}[{j}] "
                    f"is {tuple(level.shape)}"
                )
            out[kind].append(level.detach().float().cpu()[:, 0].numpy())
    for j, residual in enumerate(out[1]):
        if residual.shape != out[0][j + 1].shape:
            raise ValueError(
                f"residuals[{j}] is {residual.shape[1:]} but images[{j + 1}] is {out[0][j + 1].shape[1:]}"
            )
    return out[0], out[1]


def _fit(codes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, h, w) tiles enlarged by the integer factor that fits height x width, centred there."""
    n, h, w = codes.shape
    factor = max(1, min(height // h, width // w))
    big = codes.repeat(factor, axis=1).repeat(factor, axis=2)[:, :height, :width]
    cell = np.full((n, height, width), BACKGROUND, dtype=np.uint8)
    top, left = (height - big.shape[1]) // 2, (width - big.shape[2]) // 2
    cell[:, top : top + big.shape[1], left : left + big.shape[2]] = big
    return cell


def pyramid_columns(
    images: Sequence[torch.Tensor], residuals: Sequence[torch.Tensor]
) -> list[tuple[str, np.ndarray]]:
    """(label, palette codes (n, H_0, W_0)) of every column, coarse to fine: I~_K, h~_{K-1},
    I~_{K-1}, ..., h~_0, I~_0; each residual scaled to its own largest |h~|."""
    imgs, res = check_pyramid(images, residuals)
    K = len(imgs) - 1
    height, width = imgs[-1].shape[1:]
    columns = [(f"I{K} ({imgs[0].shape[1]}x{imgs[0].shape[2]})", _fit(image_codes(imgs[0]), height, width))]
    for j, residual in enumerate(res):
        level = K - 1 - j
        bound = float(np.abs(residual).max()) if residual.size else 0.0
        columns.append((f"h{level} +/-{bound:.2f}", _fit(residual_codes(residual, bound), height, width)))
        image = imgs[j + 1]
        columns.append(
            (f"I{level} ({image.shape[1]}x{image.shape[2]})", _fit(image_codes(image), height, width))
        )
    return columns


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _tiled(tiles: np.ndarray, cols: int) -> np.ndarray:
    """(m, H, W) codes tiled `cols` to a row with PAD pixels of background around each."""
    m, h, w = tiles.shape
    rows = math.ceil(m / cols)
    out = np.full((rows * (h + PAD) + PAD, cols * (w + PAD) + PAD), BACKGROUND, dtype=np.uint8)
    for i in range(m):
        r, c = divmod(i, cols)
        out[PAD + r * (h + PAD) : PAD + r * (h + PAD) + h, PAD + c * (w + PAD) : PAD + c * (w + PAD) + w] = (
            tiles[i]
        )
    return out


def _picture(codes: np.ndarray, scale: int, labels: Sequence[tuple[int, str]]) -> Image.Image:
    """A "P" image of `codes` upscaled `scale` times under a white header holding each label at
    its x position (in output pixels)."""
    body = Image.fromarray(codes, mode="P").resize(
        (codes.shape[1] * scale, codes.shape[0] * scale), Image.NEAREST
    )
    img = Image.new("P", (body.width, body.height + HEADER), WHITE)
    img.putpalette(palette())
    img.paste(body, (0, HEADER))
    draw = ImageDraw.Draw(img)
    for x, text in labels:
        draw.text((x, 1), text, fill=BLACK, font=_font())
    return img


def pyramid_picture(
    images: Sequence[torch.Tensor], residuals: Sequence[torch.Tensor], scale: int = 3
) -> Image.Image:
    """The samples' pyramids side by side: one row per sample, columns coarse to fine."""
    columns = pyramid_columns(images, residuals)
    n, h, w = columns[0][1].shape
    tiles = np.stack([codes for _, codes in columns], axis=1).reshape(-1, h, w)  # row-major: sample, column
    labels = [((PAD + c * (w + PAD)) * scale, label) for c, (label, _) in enumerate(columns)]
    return _picture(_tiled(tiles, len(columns)), scale, labels)


def save_pyramid_png(
    images: Sequence[torch.Tensor], residuals: Sequence[torch.Tensor], path: str | Path, scale: int = 3
) -> Path:
    """Write `pyramid_picture` as a PNG, under a title saying what its rows and columns are."""
    picture = pyramid_picture(images, residuals, scale)
    return save_image(with_title(picture, pyramid_title(len(images), images[0].shape[0])), path)


def pyramid_title(levels: int, n: int) -> str:
    """What pyramid.png shows: the samples, the levels' images and the residuals' colours."""
    K = levels - 1
    return (
        f"LAPGAN's pyramid of {n} samples (rows), coarse to fine (columns): I{K} is drawn first; "
        f"each finer image Ik (its size in brackets) is the upsampled I(k+1) plus the residual hk its "
        "generator draws (red adds intensity, blue removes it, white 0; each hk scaled to the +/- "
        "shown). I0 is the sample."
    )


def pyramid_frames(
    images: Sequence[torch.Tensor], residuals: Sequence[torch.Tensor], nrow: int | None = None, scale: int = 3
) -> list[Image.Image]:
    """One frame per column of `pyramid_picture`, coarse to fine: the n samples' tiles of that
    level in a grid of `nrow` to a row, the column's label in the header."""
    columns = pyramid_columns(images, residuals)
    n = columns[0][1].shape[0]
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    return [
        _picture(_tiled(codes, cols), scale, [(PAD * scale, f"step {i + 1}/{len(columns)}: {label}")])
        for i, (label, codes) in enumerate(columns)
    ]


def save_pyramid_gif(
    images: Sequence[torch.Tensor],
    residuals: Sequence[torch.Tensor],
    path: str | Path,
    nrow: int | None = None,
    scale: int = 3,
    duration_ms: int = 900,
    hold_ms: int = 2500,
) -> Path:
    """Write `pyramid_frames` as a looping GIF, `duration_ms` a frame and the last (the finished
    samples) held for `hold_ms`."""
    frames = pyramid_frames(images, residuals, nrow=nrow, scale=scale)
    return save_gif(frames, path, duration_ms, hold_ms)
