"""alignDRAW's alignment pictures: where the model looks in the caption while it draws.

alignDRAW (Mansimov et al., ICLR 2016) draws a canvas from a caption over T steps; at each step an
alignment weight alpha_t,j (a softmax over the caption's words) says how much word j feeds the
decoder. Two pictures make that visible:

- an animated GIF (`alignment_frames`, `save_alignment_gif`): one frame per step, one panel per
  caption with the canvas so far, DRAW's write window of that step as a red rectangle, and the
  caption written under the canvas, each word on a background shaded by its weight at that step
  (white = 0, full orange = 1, linear in between, so the shading needs no legend); a thin grey bar
  under the frame grows with t. Watching it shows whether the model attends to "7" while the
  window paints the 7, and to "top left" while it places it there.
- a PNG of the alignment matrix (`save_alignment_matrix`): for each caption a heatmap of steps
  (rows, t = 1..T) by words (columns), in the same white-to-orange map with a colour bar, the
  caption as its title, under a title saying what the panels are. It shows the whole attention schedule at once (e.g. the digit words early,
  the position words later), which the animation shows only step by step.

Inputs are as alignDRAW gives them for n captions: canvases (T, n, C, H, W) in [0, 1]; write
windows (T, n, 4) = (x0, y0, x1, y1) in 0-based canvas pixels; alphas (T, n, L) with L at least the
longest caption's word count and padding (word j >= the caption's length) ignored. Words are the
caption split on whitespace, as `genlearn.data.captions.encode` splits it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, features

from genlearn.viz.canvas import (
    BAR,
    RED,
    check_canvases,
    check_windows,
    draw_window,
    upscale,
    with_progress_bar,
)
from genlearn.viz.grids import grid, save_figure, save_gif

SHADE = (235, 105, 0)  # a word of weight 1 (weight 0 is white)
WHITE = (255, 255, 255)
TEXT = (0, 0, 0)
MARGIN = 6  # output pixels around and between the panels
TEXT_GAP = 4  # between a canvas and its caption
WORD_PAD = (2, 2)  # (x, y) between a word's box and its letters
WORD_GAP = 3  # between the boxes of neighbouring words
LINE_GAP = 2  # between lines of a caption
MAX_COLS = 4  # panels per row by default


def caption_words(captions: Sequence[str]) -> list[list[str]]:
    """Each caption's words (split on whitespace); a ValueError for a single string or an empty
    caption."""
    if isinstance(captions, str):
        raise ValueError("captions must be a sequence of strings, one per canvas, not one string")
    words = [str(c).split() for c in captions]
    for i, ws in enumerate(words):
        if not ws:
            raise ValueError(f"caption {i} is empty")
    return words


def check_alphas(alphas: torch.Tensor, captions: Sequence[str], T: int | None = None) -> torch.Tensor:
    """Alignment weights as (T, n, L) floats on the CPU, checked against the captions: n captions,
    L at least the longest caption's word count, T steps when given, finite values."""
    words = caption_words(captions)
    n, longest = len(words), max((len(ws) for ws in words), default=0)
    expected = f"(T{'' if T is None else f'={T}'}, n={n}, L>={longest})"
    what = f"{n} captions of up to {longest} words" + ("" if T is None else f" drawn over {T} steps")
    shape = tuple(alphas.shape) if isinstance(alphas, torch.Tensor) else type(alphas).__name__
    if not isinstance(alphas, torch.Tensor) or alphas.dim() != 3:
        raise ValueError(f"alphas must be {expected} for {what}, got {shape}")
    T_a, n_a, L = alphas.shape
    if n_a != n or L < longest or (T is not None and T_a != T):
        raise ValueError(f"alphas must be {expected} for {what}, got shape {shape}")
    alphas = alphas.detach().float().cpu()
    if not torch.isfinite(alphas).all():
        raise ValueError("alphas must be finite")
    return alphas


def caption_font(scale: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font, at a size that grows with `scale` where FreeType can size it."""
    if features.check_module("freetype2"):
        try:
            return ImageFont.load_default(size=max(10, 4 * scale))
        except TypeError:  # Pillow < 10.1 has no sized default font
            pass
    return ImageFont.load_default()


def shade(weight: float) -> tuple[int, int, int]:
    """The background of a word of alignment weight `weight`: white at 0, SHADE at 1, linear."""
    a = min(max(float(weight), 0.0), 1.0)
    return tuple(round(255 + (c - 255) * a) for c in SHADE)


Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class AlignmentLayout:
    """Where everything sits in a frame (output pixels, progress bar excluded: it goes below).

    size: (width, height); canvas_origins[i]: top-left of caption i's canvas, drawn `scale` times
    larger; word_boxes[i][j]: (x0, y0, x1, y1), inclusive, of word j of caption i (no box for
    padding); text_origins[i][j]: where its text is drawn."""

    size: tuple[int, int]
    scale: int
    canvas_origins: tuple[tuple[int, int], ...]
    words: tuple[tuple[str, ...], ...]
    word_boxes: tuple[tuple[Box, ...], ...]
    text_origins: tuple[tuple[tuple[int, int], ...], ...]
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont


def alignment_layout(
    captions: Sequence[str], h: int, w: int, scale: int = 3, ncol: int | None = None
) -> AlignmentLayout:
    """Lay out one panel per caption (its h x w canvas `scale` times larger, the caption wrapped
    to the canvas's width under it), `ncol` panels a row (by default up to MAX_COLS)."""
    words = caption_words(captions)
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    n = len(words)
    cols = max(1, min(ncol or MAX_COLS, n))
    font = caption_font(scale)
    _, top, _, bottom = font.getbbox("Agjy|")  # one baseline and box height for every word
    pad_x, pad_y = WORD_PAD
    box_h = bottom - top + 2 * pad_y
    pw = w * scale
    rel_boxes, rel_text, text_h = [], [], 0
    for ws in words:
        boxes, texts, x, y = [], [], 0, 0
        for word in ws:
            left, _, right, _ = font.getbbox(word)
            box_w = right - left + 2 * pad_x
            if x > 0 and x + box_w > pw:  # wrap; a word wider than the canvas gets a line of its own
                x, y = 0, y + box_h + LINE_GAP
            boxes.append((x, y, x + box_w - 1, y + box_h - 1))
            texts.append((x + pad_x - left, y + pad_y - top))
            x += box_w + WORD_GAP
        rel_boxes.append(boxes)
        rel_text.append(texts)
        text_h = max(text_h, y + box_h)
    panel_h = h * scale + TEXT_GAP + text_h
    rows = math.ceil(n / cols)
    size = (MARGIN + cols * (pw + MARGIN), MARGIN + rows * (panel_h + MARGIN))
    origins, word_boxes, text_origins = [], [], []
    for i in range(n):
        r, c = divmod(i, cols)
        ox, oy = MARGIN + c * (pw + MARGIN), MARGIN + r * (panel_h + MARGIN)
        ty = oy + h * scale + TEXT_GAP
        origins.append((ox, oy))
        word_boxes.append(tuple((ox + a, ty + b, ox + c_, ty + d) for a, b, c_, d in rel_boxes[i]))
        text_origins.append(tuple((ox + a, ty + b) for a, b in rel_text[i]))
    return AlignmentLayout(
        size=size,
        scale=scale,
        canvas_origins=tuple(origins),
        words=tuple(tuple(ws) for ws in words),
        word_boxes=tuple(word_boxes),
        text_origins=tuple(text_origins),
        font=font,
    )


def _check_inputs(
    canvases: torch.Tensor, windows: torch.Tensor | None, alphas: torch.Tensor, captions: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    canvases = check_canvases(canvases)
    T, n, c = canvases.shape[:3]
    if c not in (1, 3):
        raise ValueError(f"canvases must have 1 or 3 channels, got shape {tuple(canvases.shape)}")
    n_captions = len(caption_words(captions))
    if n_captions != n:
        raise ValueError(f"{n_captions} captions for {n} canvases of shape {tuple(canvases.shape)}")
    return canvases, check_windows(windows, T, n), check_alphas(alphas, captions, T)


def alignment_frames(
    canvases: torch.Tensor,
    windows: torch.Tensor | None,
    alphas: torch.Tensor,
    captions: Sequence[str],
    scale: int = 3,
    ncol: int | None = None,
    progress: bool = True,
) -> list[Image.Image]:
    """One RGB frame per step t: each caption's canvas after step t with the write window of step
    t in red (when `windows` is given) and the caption under it, word j on a background shaded by
    alphas[t, i, j]; a grey bar under the frame grows with t. Positions: `alignment_layout`."""
    canvases, windows, alphas = _check_inputs(canvases, windows, alphas, captions)
    T, n, _, h, w = canvases.shape
    layout = alignment_layout(captions, h, w, scale, ncol)
    frames = []
    for t in range(T):
        img = Image.new("RGB", layout.size, WHITE)
        draw = ImageDraw.Draw(img)
        draw.fontmode = "1"  # letters without anti-aliasing: few colours, so the GIF stays exact
        for i in range(n):
            tile = Image.fromarray(grid(canvases[t, i : i + 1], pad=0)).convert("RGB")
            img.paste(upscale(tile, scale), layout.canvas_origins[i])
            if windows is not None:
                draw_window(draw, windows[t, i].tolist(), layout.canvas_origins[i], h, w, scale)
            for j, (word, box, xy) in enumerate(
                zip(layout.words[i], layout.word_boxes[i], layout.text_origins[i])
            ):
                draw.rectangle(box, fill=shade(alphas[t, i, j]))
                draw.text(xy, word, fill=TEXT, font=layout.font)
        frames.append(with_progress_bar(img, t, T, scale) if progress else img)
    return frames


def _gif_palette() -> np.ndarray:
    """One palette (256, 3) for every frame, so that nothing flickers between frames: 160 greys
    for the canvases, 94 shades for the words, the window's red and the bar's grey."""
    colours = [(round(k * 255 / 159),) * 3 for k in range(160)]
    colours += [shade(k / 93) for k in range(94)]
    colours += [RED, BAR]
    return np.array(colours, dtype=np.int64)


def _to_palette(frame: Image.Image, palette: np.ndarray) -> Image.Image:
    """`frame` as a "P" image of `palette`, each colour mapped to its nearest entry exactly (PIL's
    own mapping is approximate: white can become (252, 252, 252))."""
    rgb = np.asarray(frame.convert("RGB"), dtype=np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unique, inverse = np.unique(codes.ravel(), return_inverse=True)
    colours = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], axis=1)
    nearest = ((colours[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)
    out = Image.fromarray(nearest[inverse].reshape(codes.shape).astype(np.uint8), mode="P")
    out.putpalette(palette.astype(np.uint8).ravel().tolist())
    return out


def save_alignment_gif(
    canvases: torch.Tensor,
    windows: torch.Tensor | None,
    alphas: torch.Tensor,
    captions: Sequence[str],
    path: str | Path,
    duration_ms: int = 120,
    hold_ms: int = 2000,
    scale: int = 3,
    ncol: int | None = None,
) -> Path:
    """Write `alignment_frames` as a looping GIF of T frames, `duration_ms` each and the last held
    for `hold_ms`."""
    frames = alignment_frames(canvases, windows, alphas, captions, scale=scale, ncol=ncol)
    palette = _gif_palette()
    frames = [_to_palette(f, palette) for f in frames]
    return save_gif(frames, path, duration_ms, hold_ms)


def alignment_matrix_figure(alphas: torch.Tensor, captions: Sequence[str], ncol: int | None = None):
    """(figure, axes): one heatmap per caption of alphas[:, i, :len(words)] (rows = steps 1..T,
    columns = the caption's words, padding left out), in a row or a grid of `ncol` (by default up
    to MAX_COLS) a row, one colour bar for all (the scale is fixed to [0, 1], as in the GIF)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    words = caption_words(captions)
    alphas = check_alphas(alphas, captions)
    T, n = alphas.shape[:2]
    cols = max(1, min(ncol or MAX_COLS, n))
    rows = math.ceil(n / cols)
    longest = max(len(ws) for ws in words)
    cell_w, cell_h = max(3.2, 0.3 * longest + 1.2), max(3.0, 0.11 * T + 2.0)
    fig = Figure(figsize=(cols * cell_w + 1.0, rows * cell_h), layout="constrained")
    FigureCanvasAgg(fig)
    grid_axes = fig.subplots(rows, cols, squeeze=False)
    cmap = LinearSegmentedColormap.from_list("alignment", [(1, 1, 1), tuple(v / 255 for v in SHADE)])
    axes, image = [], None
    for i, ws in enumerate(words):
        ax = grid_axes[i // cols][i % cols]
        m = len(ws)
        image = ax.imshow(
            alphas[:, i, :m].numpy(),
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, m - 0.5, T + 0.5, 0.5),
        )
        ax.set_xticks(range(m), ws, rotation=90, fontsize=9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("step t")
        ax.set_title(textwrap.fill(captions[i], width=max(24, int(cell_w * 13))), fontsize=9)
        axes.append(ax)
    for ax in grid_axes.flat[n:]:
        ax.set_axis_off()
    fig.colorbar(image, ax=grid_axes.ravel().tolist(), shrink=0.8, label="alignment weight")
    fig.suptitle(
        "alignDRAW's alignment: the weight of each word of the caption (columns) at each drawing step t "
        "(rows), one panel per caption; each row sums to 1",
        fontsize=10,
    )
    return fig, axes


def save_alignment_matrix(
    alphas: torch.Tensor, captions: Sequence[str], path: str | Path, ncol: int | None = None
) -> Path:
    """Write `alignment_matrix_figure` as a PNG."""
    fig, _ = alignment_matrix_figure(alphas, captions, ncol=ncol)
    return save_figure(fig, path, dpi=100)
