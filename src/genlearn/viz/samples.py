"""Samples as files: the one place that turns (model, n, seed, temperature, labels, captions) into
what `genlearn sample --out FILE` writes, used by the command line, `genlearn.sample`, a run's own
pictures (`figures.write_run_figures`) and `genlearn compare`'s picture.

- `.png`: a grid of the samples, one row per label or caption when each is drawn several times
  (`grid_png`); 2-D points as a scatter plot (`scatter_png`).
- `.npz`: key `images` (float32, (n, C, H, W), [0, 1]), or `points` (n, 2) for 2-D data.
- `.gif`: the family's picture over time, with a companion `.png` beside it: alignDRAW's canvas
  with each word shaded by its alignment (+ the steps x words matrix), LAPGAN's pyramid coarse to
  fine (+ each level's image and residual), DRAW's canvas (+ a strip of steps).

Rendering is a pure function of its inputs: `render_samples(model, n, seed=, temperature=,
labels=, captions=)` draws with a generator seeded by `seed` (and the global RNG forked and
seeded alike, then restored), so the same run, n, seed, temperature and conditions give the same
bytes in any process, at any time, whatever was drawn before; `write_samples` writes exactly
those bytes (atomically), so a grid served from memory is byte-identical to the CLI's file.

The conditions are checked before anything is expanded or drawn: a label range beyond the digits
or absurdly long is one line, as is a number of samples that would not fit in memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlearn import files
from genlearn.errors import UserError

FORMATS = (".png", ".npz", ".gif")
LABEL_CLASSES = 10  # the labels a model takes are MNIST's digits (batch key `y`)
MAX_GRID = 10_000  # images in one .png grid
DEFAULT_N = 64  # samples without a condition
GIF_DEFAULT_N = 4  # samples of a conditional model's .gif without a condition
PER_CAPTION = 8  # samples of each caption in a .png (a grid row each); 1 in a .gif
SHOWN = 8  # samples in a .gif's companion picture
GRID_SCALE = 2  # pixels of a grid per pixel of a sample (nearest neighbour: digits stay crisp)


# ---- conditions --------------------------------------------------------------------------------
def parse_labels(labels: Any) -> list[int]:
    """Labels as digits: "3,3,7" -> [3, 3, 7], "0-9" -> [0, ..., 9] (ranges and digits mixed), an
    int, or any iterable of ints (a list, a range, a tensor). Every part is checked against the
    digits 0 to 9 before a range is expanded, so "0-100000000000" is one line, not a MemoryError."""
    if isinstance(labels, str):
        return _labels_of_text(labels)
    if isinstance(labels, torch.Tensor):
        labels = labels.flatten().tolist()
    values = [labels] if isinstance(labels, int) else list(labels)
    if not values:
        raise UserError("--labels is empty; give digits like 3,3,7 or 0-9")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise UserError(f"--labels expects digits 0 to {LABEL_CLASSES - 1}, not {value!r}")
        _check_digit(int(value), str(value))
    return [int(v) for v in values]


def _labels_of_text(text: str) -> list[int]:
    labels: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise UserError(f"--labels expects digits like 3,3,7 or 0-9, not {files.shown(text)!r}") from None
        _check_digit(first, part.strip())
        _check_digit(last, part.strip())
        if last < first:
            raise UserError(f"--labels range {part.strip()!r} runs backwards")
        labels.extend(range(first, last + 1))
    return labels


def _check_digit(value: int, written: str) -> None:
    if not 0 <= value < LABEL_CLASSES:
        raise UserError(
            f"--labels {files.shown(written)!r} is outside the digits 0 to {LABEL_CLASSES - 1} the model takes"
        )


def parse_captions(captions: str | Iterable[str]) -> list[str]:
    """A caption or a list of them (each a grid row); empty ones are refused."""
    texts = [captions] if isinstance(captions, str) else list(captions)
    if not texts or not all(isinstance(c, str) and c.strip() for c in texts):
        raise UserError(
            "a caption is empty; give words such as 'the digit 7 is at the top left of the image .'"
        )
    return [c.strip() for c in texts]


@dataclass(frozen=True)
class Plan:
    """What to draw: n samples, and the labels or captions of each row (`each` samples of every
    one, side by side: a grid row each when `each` > 1)."""

    n: int
    each: int = 1
    labels: tuple[int, ...] | None = None
    captions: tuple[str, ...] | None = None

    @property
    def nrow(self) -> int | None:
        """Columns of the grid: one row per label or caption drawn several times, else square."""
        return self.each if self.each > 1 else None

    def condition(self) -> dict[str, Any]:
        """The keyword arguments of the model's samplers: each label or caption `each` times."""
        if self.labels is not None:
            return {"labels": torch.tensor(self.labels).repeat_interleave(self.each)}
        if self.captions is not None:
            return {"captions": [c for c in self.captions for _ in range(self.each)]}
        return {}


def plan(
    model: Any, n: int | None = None, labels: Any = None, captions: Any = None, gif: bool = False
) -> Plan:
    """How many samples with which conditions `genlearn sample` draws: without a condition `n`
    (default 64; 4 for a conditional model's .gif, whose frames are large); with labels one of
    each (or `n` spread evenly over them), with captions 8 of each (1 in a .gif)."""
    if labels is not None and captions is not None:
        raise UserError("give labels or captions, not both")
    asked = "labels" if labels is not None else "captions" if captions is not None else None
    if asked is None:
        n = (GIF_DEFAULT_N if gif and model.conditions else DEFAULT_N) if n is None else n
        _check_n(n)
        return Plan(n)
    if asked not in model.conditions:
        takes = ", ".join(model.conditions) or "no condition"
        flag = "--labels" if asked == "labels" else "--caption/--captions"
        raise UserError(f"model {model.name!r} takes no {asked} (it takes {takes}); leave out {flag}")
    if asked == "labels":
        given = parse_labels(labels)
        n, each = _spread(given, n, 1, "labels")
        return Plan(n, each, labels=tuple(given))
    texts = parse_captions(captions)
    n, each = _spread(texts, n, 1 if gif else PER_CAPTION, "captions")
    return Plan(n, each, captions=tuple(texts))


def _check_n(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"--n must be at least 1, got {n!r}")


def _spread(items: list, n: int | None, default_each: int, what: str) -> tuple[int, int]:
    """(n, how many of each item) for n samples spread evenly over `items` (one grid row each)."""
    n = len(items) * default_each if n is None else n
    _check_n(n)
    if n % len(items):
        raise UserError(f"--n {n} is not a positive multiple of the {len(items)} {what} given")
    return n, n // len(items)


def check_temperature(model: Any, temperature: float) -> float:
    """A temperature the model can sample at, or one line: 0 or more, and other than 1 only for a
    model that scales its prior's noise (the "temperature" ability)."""
    from genlearn.models.base import checked_temperature

    temperature = checked_temperature(temperature)
    if temperature != 1.0 and not model.can("temperature"):
        raise UserError(
            f"--temperature {temperature:g} does not apply to model {model.name!r}: it samples at "
            "temperature 1 only (a temperature scales the prior's noise of models that draw step by "
            "step, such as aligndraw); leave out --temperature"
        )
    return temperature


# ---- drawing -----------------------------------------------------------------------------------
# Copies of the samples held at once: the chunks and their concatenation, and the file's bytes
# (a grid's canvas, a compressed .npz) while it is encoded.
COPIES = {"": 2, ".png": 3, ".npz": 3, ".gif": 1}


def check_size(model: Any, p: Plan, suffix: str = "", steps: int = 1, picture_scale: int = 0) -> None:
    """Refuse, before anything is drawn or expanded, more samples than one picture holds or than
    fit in memory, counting every copy held at once (for a .gif: every step of every sample, and
    its frames)."""
    from genlearn.memory import check_sample_memory

    if suffix == ".png" and p.n > MAX_GRID:
        raise UserError(f"--n {p.n} is too many for one picture (at most {MAX_GRID}); use .npz")
    held = p.n * COPIES[suffix]
    check_sample_memory(model.image_shape, held, f"--n {p.n}", steps=steps, picture_scale=picture_scale)


class _Seeded:
    """A generator on the model's device seeded with `seed`, with the global RNG forked and seeded
    alike for the block (restored after it): what is drawn depends on the seed alone."""

    def __init__(self, model: Any, seed: int):
        self.device, self.seed = model.device, seed

    def __enter__(self) -> torch.Generator:
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)
        return torch.Generator(device=self.device).manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)


def draw(model: Any, p: Plan, seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """The plan's samples, (n, C, H, W) in [0, 1] or (n, 2) points, on the CPU as float32."""
    from genlearn.config import check_seed

    check_seed(seed)
    model.eval()
    with _Seeded(model, seed) as generator:
        return model.sample_in_chunks(p.n, generator=generator, temperature=temperature, **p.condition())


def checked_draw(
    model: Any,
    n: int | None,
    seed: int,
    temperature: float,
    labels: Any,
    captions: Any,
    suffix: str = "",
) -> tuple[torch.Tensor, Plan]:
    """The samples `genlearn sample` draws with these options, and their plan: the temperature,
    the conditions and the size (for a file of `suffix`, "" for none) checked before anything
    is drawn."""
    temperature = check_temperature(model, temperature)
    p = plan(model, n, labels, captions)
    check_size(model, p, suffix)
    return draw(model, p, seed, temperature), p


# ---- pictures as bytes ----------------------------------------------------------------------------
def grid_image(images: torch.Tensor, nrow: int | None = None, scale: int = GRID_SCALE) -> Any:
    """The samples (n, C, H, W) in [0, 1] as one Pillow image, `nrow` to a row (square by
    default), upscaled `scale` times with nearest neighbour."""
    from PIL import Image

    from genlearn.viz.grids import grid

    img = Image.fromarray(grid(images.clamp(0, 1), nrow))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def png_bytes(img: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def grid_png(images: torch.Tensor, nrow: int | None = None, scale: int = GRID_SCALE) -> bytes:
    """`grid_image` as PNG bytes."""
    return png_bytes(grid_image(images, nrow, scale))


def scatter_png(points: torch.Tensor, modes: torch.Tensor | None = None) -> bytes:
    """2-D samples as dots (the true modes as crosses, when given), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pts = points.detach().cpu()
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, label=f"{len(pts)} samples")
    if modes is not None:
        ax.scatter(modes[:, 0], modes[:, 1], marker="x", c="red", s=40, label="modes")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def npz_bytes(samples: torch.Tensor, points: bool) -> bytes:
    """Key `images` (float32, [0, 1]) or `points`, compressed."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{"points" if points else "images": samples.numpy()})
    return buffer.getvalue()


def picture_bytes(model: Any, samples: torch.Tensor, p: Plan, suffix: str, modes: Any = None) -> bytes:
    """What a .png or .npz of these samples holds: a grid (a row per label or caption), a scatter
    of 2-D points, or the arrays."""
    if suffix == ".npz":
        return npz_bytes(samples, points=model.image_shape is None)
    if model.image_shape is None:
        return scatter_png(samples, modes)
    return grid_png(samples, p.nrow)


def render_samples(
    model: Any,
    n: int | None = None,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    labels: Any = None,
    captions: Any = None,
    format: str = "png",
) -> bytes:
    """The bytes of `genlearn sample RUN --n N --seed S --temperature T [--labels L | --caption C]
    --out x.png` (or x.npz with format="npz") for a loaded model, without touching the disk: a
    pure function of its arguments (the PNG's bytes are the same in every call and process)."""
    suffix = "." + format.lower().lstrip(".")
    if suffix not in (".png", ".npz"):
        raise UserError(f"format must be png or npz, not {format!r} (a .gif is written by write_samples)")
    samples, p = checked_draw(model, n, seed, temperature, labels, captions, suffix)
    return picture_bytes(model, samples, p, suffix)


# ---- files ----------------------------------------------------------------------------------------
@dataclass
class Written:
    """What `write_samples` drew and wrote: the samples (for a .gif, the finished images), the
    files in the order written, and a line for each saying what it holds."""

    samples: torch.Tensor
    paths: list[Path]
    lines: list[str]


def check_out(out: str | Path) -> Path:
    """An output file genlearn can write samples to: .png, .npz or .gif (any case), in a directory
    that exists."""
    path = files.check_path(out, "--out")
    if path.suffix.lower() not in FORMATS:
        got = repr(path.suffix) if path.suffix else "no extension"
        raise UserError(f"--out must end in .png, .npz or .gif (got {got})")
    if not path.parent.is_dir():
        raise UserError(f"directory {files.shown(path.parent)!r} does not exist")
    return path


def write_samples(
    model: Any,
    out: str | Path,
    n: int | None = None,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    labels: Any = None,
    captions: Any = None,
    modes: Any = None,
) -> Written:
    """Write what `genlearn sample --out FILE` writes: `.png` / `.npz` from `render_samples`'s
    bytes, `.gif` the family's picture over time (and its companion .png). `modes`: the true modes
    of 2-D data, drawn as crosses on a scatter plot (a run's own picture)."""
    out = check_out(out)
    suffix = out.suffix.lower()
    if suffix == ".gif":
        temperature = check_temperature(model, temperature)
        return _write_gif(model, out, plan(model, n, labels, captions, gif=True), seed, temperature)
    samples, p = checked_draw(model, n, seed, temperature, labels, captions, suffix)
    files.atomic_write(out, picture_bytes(model, samples, p, suffix, modes))
    return Written(samples, [out], [f"wrote {p.n} samples to {out}"])


def gif_sampler(model: Any) -> tuple[str, Any]:
    """The picture over time a model's .gif shows (its capability and sampler), or one line saying
    it has none. alignDRAW's alignments come before its canvases."""
    samplers = {
        "sample_alignments": lambda: model.sample_alignments,
        "sample_pyramid": lambda: model.sample_pyramid,
        "sample_canvases": lambda: model.sample_canvases,
    }
    for kind, sampler in samplers.items():
        if model.can(kind):
            return kind, sampler()
    raise UserError(
        f"a .gif does not apply to model {model.name!r}: it has no sample_canvases(n, generator) "
        "(the drawing over time) and no sample_pyramid(n, generator) (the pyramid coarse to fine); "
        "write .png or .npz"
    )


# pixels of a .gif's frames per pixel of a sample, for the memory check (viz.canvas, pyramid, alignment)
GIF_SCALE = {"sample_alignments": 3, "sample_pyramid": 3, "sample_canvases": 2}


def _gif_steps(sampler: Any, model: Any, options: dict[str, Any]) -> int:
    """The steps of the model's picture over time, from one sample drawn aside (by a generator of
    its own: the samples themselves do not change)."""
    with _Seeded(model, 0) as generator, torch.no_grad():
        return len(sampler(1, generator=generator, **options)[0])


def _write_gif(model: Any, out: Path, p: Plan, seed: int, temperature: float) -> Written:
    kind, sampler = gif_sampler(model)
    options = model.sampling_options(temperature)
    model.eval()
    check_size(model, p, ".gif", _gif_steps(sampler, model, options), GIF_SCALE[kind])
    with _Seeded(model, seed) as generator, torch.no_grad():
        drawn = sampler(p.n, generator=generator, **p.condition(), **options)
    png, shown = out.with_suffix(".png"), min(p.n, SHOWN)
    if kind == "sample_alignments":
        from genlearn.viz.alignment import save_alignment_gif, save_alignment_matrix

        canvases, windows, alphas, texts = drawn
        save_alignment_gif(canvases, windows, alphas, texts, out)
        save_alignment_matrix(alphas[:, :shown], texts[:shown], png)
        lines = [
            f"wrote the canvas and the words' alignment of {p.n} samples over {len(canvases)} steps to {out}",
            f"wrote the alignment matrix (steps x words) of {shown} of them to {png}",
        ]
        return Written(canvases[-1], [out, png], lines)
    if kind == "sample_pyramid":
        from genlearn.viz.pyramid import save_pyramid_gif, save_pyramid_png

        images, residuals = drawn
        save_pyramid_gif(images, residuals, out, nrow=p.nrow)
        save_pyramid_png([x[:shown] for x in images], [h[:shown] for h in residuals], png)
        lines = [
            f"wrote the pyramid of {p.n} samples, coarse to fine over {len(images)} levels, to {out}",
            f"wrote each level's image and residual of {shown} of them to {png}",
        ]
        return Written(images[-1], [out, png], lines)
    from genlearn.viz.canvas import save_canvas_gif, save_canvas_strip

    canvases, windows = drawn
    save_canvas_gif(canvases, out, windows=windows)
    save_canvas_strip(canvases[:, :shown], png)
    return Written(
        canvases[-1],
        [out, png],
        [f"wrote the canvas of {p.n} samples over {len(canvases)} steps to {out} and {png}"],
    )
