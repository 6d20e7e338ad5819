"""DRAW's canvas over time: an animated GIF (one frame per step, the write window drawn in red) and
a strip of chosen steps (rows = samples, columns = steps headed t = 1..T, under a title; the
paper's and the lecture's "Time ->" figure). Both take canvases as `DRAW.sample_canvases` returns them: (T, n, 1, H, W) in [0, 1].
The drawing pieces (tile origin, upscaling, window outline, progress bar) are shared with
viz/alignment.py, alignDRAW's pictures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from genlearn.viz.grids import grid, save_gif, save_image, tile_centres, with_column_labels, with_title

PAD = 2  # grid()'s default padding between tiles
RED = (255, 0, 0)
BAR = (90, 90, 90)


def check_canvases(canvases: torch.Tensor) -> torch.Tensor:
    """Canvases as (T, n, C, H, W) floats on the CPU; a ValueError for any other number of axes."""
    if canvases.dim() != 5:
        raise ValueError(f"canvases must be (T, n, C, H, W), got shape {tuple(canvases.shape)}")
    return canvases.detach().float().cpu()


def tile_origin(i: int, cols: int, h: int, w: int, pad: int = PAD) -> tuple[int, int]:
    """Top-left pixel (x, y) of tile i in a grid() picture (before any upscaling)."""
    r, c = divmod(i, cols)
    return pad + c * (w + pad), pad + r * (h + pad)


def upscale(img: Image.Image, scale: int) -> Image.Image:
    """`scale` times larger with nearest neighbour, so that pixels stay crisp."""
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def check_windows(windows: torch.Tensor | None, T: int, n: int) -> torch.Tensor | None:
    """Write windows as (T, n, 4) floats on the CPU; a ValueError names the expected shape."""
    if windows is None:
        return None
    windows = windows.detach().float().cpu()
    if windows.dim() != 3 or windows.shape[:2] != (T, n) or windows.shape[-1] != 4:
        raise ValueError(f"windows must be (T={T}, n={n}, 4), got shape {tuple(windows.shape)}")
    return windows


def draw_window(
    draw: ImageDraw.ImageDraw,
    window: Sequence[float],
    origin: tuple[int, int],
    h: int,
    w: int,
    scale: int = 1,
    colour: tuple[int, int, int] = RED,
) -> bool:
    """Outline the write window (x0, y0, x1, y1), in the pixels of an h x w canvas, on the canvas
    drawn `scale` times larger with its top-left corner at `origin` (output pixels).

    The outline runs through the pixels holding the corners (pixel a spans [a - 0.5, a + 0.5)),
    clipped to the canvas so that neighbours stay clean. A window with a non-finite coordinate is
    not drawn (returns False)."""
    x0, y0, x1, y1 = (float(v) for v in window)
    if not all(map(math.isfinite, (x0, y0, x1, y1))):
        return False
    left, right = sorted(min(max(math.floor(v + 0.5), 0), w - 1) for v in (x0, x1))
    top, bottom = sorted(min(max(math.floor(v + 0.5), 0), h - 1) for v in (y0, y1))
    ox, oy = origin
    box = [ox + left * scale, oy + top * scale, ox + (right + 1) * scale - 1, oy + (bottom + 1) * scale - 1]
    draw.rectangle(box, outline=colour, width=1)
    return True


def with_progress_bar(img: Image.Image, t: int, T: int, scale: int = 1) -> Image.Image:
    """`img` on a white strip 3 * scale pixels taller whose grey bar grows with the step t of T
    (so that no two frames of an animation are the same)."""
    bar = 3 * scale
    framed = Image.new("RGB", (img.width, img.height + bar), (255, 255, 255))
    framed.paste(img, (0, 0))
    length = round(framed.width * (t + 1) / T)
    ImageDraw.Draw(framed).rectangle(
        [0, framed.height - bar + scale, max(length - 1, 0), framed.height - 1], fill=BAR
    )
    return framed


def canvas_frames(
    canvases: torch.Tensor,
    windows: torch.Tensor | None = None,
    nrow: int | None = None,
    scale: int = 2,
    progress: bool = True,
) -> list[Image.Image]:
    """One RGB picture per step: the n canvases tiled, the write window of each as a red
    rectangle (when `windows` (T, n, 4) = (x0, y0, x1, y1) in pixels is given), and a thin bar
    under the grid that grows with t (so that no two frames are the same)."""
    canvases = check_canvases(canvases)
    T, n, _, h, w = canvases.shape
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    windows = check_windows(windows, T, n)
    frames = []
    for t in range(T):
        tiles = grid(canvases[t], nrow=cols)
        rgb = np.stack([tiles] * 3, axis=-1) if tiles.ndim == 2 else tiles
        img = upscale(Image.fromarray(rgb), scale)
        if windows is not None:
            draw = ImageDraw.Draw(img)
            for i in range(n):
                ox, oy = tile_origin(i, cols, h, w)
                draw_window(draw, windows[t, i].tolist(), (ox * scale, oy * scale), h, w, scale)
        frames.append(with_progress_bar(img, t, T, scale) if progress else img)
    return frames


def save_canvas_gif(
    canvases: torch.Tensor,
    path: str | Path,
    windows: torch.Tensor | None = None,
    nrow: int | None = None,
    scale: int = 2,
    duration_ms: int = 80,
    hold_ms: int = 1500,
) -> Path:
    """Write the canvases (T, n, 1, H, W) as a looping GIF of T frames, `duration_ms` each and the
    last held for `hold_ms`; write windows (T, n, 4) drawn as red rectangles when given."""
    frames = canvas_frames(canvases, windows, nrow=nrow, scale=scale)
    return save_gif(frames, path, duration_ms, hold_ms)


def default_steps(T: int, count: int = 10) -> tuple[int, ...]:
    """`count` steps spread evenly over 0..T-1, the last one included."""
    return tuple(sorted({round(i * (T - 1) / max(count - 1, 1)) for i in range(count)}))


def save_canvas_strip(
    canvases: torch.Tensor,
    path: str | Path,
    steps: Sequence[int] | None = None,
    scale: int = 2,
    title: str | None = None,
) -> Path:
    """A PNG whose rows are samples and whose columns are the canvases after the chosen steps,
    each column headed by its step (t = 1..T), under a title (by default `strip_title`).

    `steps` index the first axis of `canvases` (0 = after the first glimpse, -1 = the last);
    by default ten steps evenly spread from the first to the last.
    """
    canvases = check_canvases(canvases)
    T, n = canvases.shape[:2]
    steps = default_steps(T) if steps is None else tuple(steps)
    for s in steps:
        if not -T <= s < T:
            raise ValueError(f"step {s} is outside the {T} canvases")
    tiles = torch.stack([canvases[list(steps), i] for i in range(n)])  # (n, len(steps), C, H, W)
    img = upscale(Image.fromarray(grid(tiles.flatten(0, 1), nrow=len(steps))), scale)
    h, w = canvases.shape[-2:]
    shown = [s % T + 1 for s in steps]
    img = with_column_labels(
        img, list(zip(tile_centres(len(steps), w, PAD, scale), (f"t={t}" for t in shown)))
    )
    return save_image(with_title(img, title or strip_title(T, n)), path)


def strip_title(T: int, n: int) -> str:
    """What the strip shows: DRAW's canvas, the steps its columns are, its rows' samples."""
    return (
        f"DRAW's canvas sigmoid(c_t) after step t of {T} (columns, t above each), {n} samples (rows): "
        "each sample is drawn step by step, the last column is the finished sample"
    )
