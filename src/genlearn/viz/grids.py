"""Image grids written with Pillow (no torchvision), and the two ways every picture is written:
`save_image` (a Pillow image; `save_gif` a looping GIF's frames) and `save_figure` (a
matplotlib figure), both atomically through `genlearn.files` (a temporary beside the file, then
a rename; never through a link), so a full disk or a stop part-way keeps the previous picture;
and the words a run's pictures carry (`with_title`, `with_row_labels`, `with_column_labels`),
added around a grid in white bands so that its own pixels stay as they are."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, features

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


def save_gif(frames: Sequence[Image.Image], path: str | Path, duration_ms: int, hold_ms: int) -> Path:
    """Write `frames` as a looping GIF, atomically: `duration_ms` a frame and the last (the
    finished picture) held for `hold_ms` (never less than a frame), each frame drawn whole over
    the last (disposal 1, no optimisation), so every frame shows as it was drawn."""
    durations = [duration_ms] * (len(frames) - 1) + [max(hold_ms, duration_ms)]
    return save_image(
        frames[0],
        path,
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        optimize=False,
        disposal=1,
    )


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


# ---- words on pictures ------------------------------------------------------------------------------
# A picture a newcomer reads without help says what it shows: a title band above it and labels
# beside its rows or above its columns, drawn with Pillow so that the grid under them keeps its
# pixels (nearest-neighbour upscaled, not resampled by a plotting library).
TEXT_SIZE = 13  # pixels of the title's and labels' letters
TEXT_MARGIN = 6  # pixels around the words
MIN_TITLE_WIDTH = 420  # a narrower picture is widened (white on its right) so a title fits in a few lines
INK = (0, 0, 0)
PAPER = (255, 255, 255)


def font(size: int = TEXT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at `size` pixels where FreeType can size it, else its fixed bitmap font
    (Pillow < 10.1): no font file is looked for on the machine, so every machine draws the same."""
    if features.check_module("freetype2"):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has no sized default font
            pass
    return ImageFont.load_default()


def text_width(text: str, face: Any) -> int:
    """Pixels `text` spans in `face`."""
    left, _, right, _ = face.getbbox(text)
    return right - left


def line_height(face: Any) -> int:
    """Pixels from one line of `face` to the next (letters with ascenders and descenders, and a gap)."""
    _, top, _, bottom = face.getbbox("Agjy|")
    return bottom - top + 3


def wrap(text: str, face: Any, width: int) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` pixels (a longer word alone);
    newlines in `text` start new lines."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}" if line else word
            if line and text_width(trial, face) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def with_title(img: Image.Image, title: str, size: int = TEXT_SIZE) -> Image.Image:
    """`img` (as RGB, in the bottom-left corner) under a white band holding `title`,
    wrapped to the picture's width (widened to MIN_TITLE_WIDTH with white on the right when it is
    narrower). The picture's own pixels are kept as they are: only white is added."""
    face = font(size)
    width = max(img.width, MIN_TITLE_WIDTH)
    lines = wrap(title, face, width - 2 * TEXT_MARGIN)
    step = line_height(face)
    band = 2 * TEXT_MARGIN + step * len(lines)
    out = Image.new("RGB", (width, band + img.height), PAPER)
    out.paste(_rgb(img), (0, band))
    draw = ImageDraw.Draw(out)
    top = face.getbbox("Agjy|")[1]
    for i, line in enumerate(lines):
        draw.text((TEXT_MARGIN, TEXT_MARGIN - top + i * step), line, fill=INK, font=face)
    return out


def with_row_labels(
    img: Image.Image, labels: Sequence[tuple[int, str]], side: str = "left", size: int = TEXT_SIZE
) -> Image.Image:
    """`img` (as RGB) with a white margin on `side` ("left" or "right") holding each label
    vertically centred on its row's centre y (pixels of `img`)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    face = font(size)
    margin = 2 * TEXT_MARGIN + max((text_width(text, face) for _, text in labels), default=0)
    out = Image.new("RGB", (img.width + margin, img.height), PAPER)
    out.paste(_rgb(img), (margin if side == "left" else 0, 0))
    draw = ImageDraw.Draw(out)
    _, top, _, bottom = face.getbbox("Agjy|")
    for y, text in labels:
        left = face.getbbox(text)[0]
        x = margin - TEXT_MARGIN - text_width(text, face) if side == "left" else img.width + TEXT_MARGIN
        draw.text((x - left, y - (top + bottom) / 2), text, fill=INK, font=face)
    return out


def with_column_labels(
    img: Image.Image, labels: Sequence[tuple[int, str]], size: int = TEXT_SIZE
) -> Image.Image:
    """`img` (as RGB) under a white band holding each label centred on its column's centre x
    (pixels of `img`)."""
    face = font(size)
    band = 2 * TEXT_MARGIN + line_height(face)
    out = Image.new("RGB", (img.width, img.height + band), PAPER)
    out.paste(_rgb(img), (0, band))
    draw = ImageDraw.Draw(out)
    top = face.getbbox("Agjy|")[1]
    for x, text in labels:
        left, _, right, _ = face.getbbox(text)
        draw.text((x - (left + right) / 2, TEXT_MARGIN - top), text, fill=INK, font=face)
    return out


def tile_centres(count: int, size: int, pad: int = 2, scale: int = 1) -> list[int]:
    """The centre, in output pixels, of each of `count` rows (or columns) of tiles `size` pixels
    long in a `grid` picture upscaled `scale` times."""
    return [round(scale * (pad + i * (size + pad) + size / 2)) for i in range(count)]
