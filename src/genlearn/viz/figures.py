"""The pictures every run directory gets, chosen by the model's declared capabilities. Each says
what it shows, so that a newcomer reads it without help: a title line, and labels on its axes,
rows or columns.

- samples.png: 100 samples at seed 0 (every model), under a title saying how many, the seed, and
  what the pixels are (decoder or Bernoulli means, a Gibbs chain's visible probabilities, a
  generator's outputs, DRAW's canvas); a model that takes labels has a row per digit (labelled
  on the left), one that takes captions a row per caption (written on the right, and listed in
  samples-captions.txt). The grid under the title is, pixel for pixel, `genlearn sample RUN --n
  100 --out x.png` (`--labels 0-9` for a labelled model), which stays a bare grid. For 2-D
  points, a scatter plot of 2,500 over the true modes.
- reconstructions.png: rows of held-out test images labelled "input", each above a row labelled
  "reconstruction", under a title saying how the model reconstructs.
- manifold.png: for a 2-D latent space, the decoder's means over a 20 x 20 grid of z whose
  coordinates are evenly spaced on the unit square and mapped through the inverse Gaussian CDF,
  as in Kingma & Welling's figure 4, with z1 and z2 axes ticked at those quantiles.
- alignment-seen.gif / .png, alignment-heldout.gif / .png (a model that takes captions): the
  canvas over time with each word shaded by its alignment weight, and the steps x words matrix,
  for a few test captions seen in training and a few held out (viz/alignment.py).
- canvas.gif / .png (a model that can `sample_canvases`, DRAW): 16 canvases over time, and a
  strip of steps of 8 of them, the steps labelled (viz/canvas.py).
- pyramid.gif / .png (a model that can `sample_pyramid`, LAPGAN): 6 samples coarse to fine, and
  each level's image and residual, labelled (viz/pyramid.py); a model that takes labels draws
  digits 0 to 5.
- training.png: the training curves from metrics.jsonl in one convention: losses to minimise (an
  ELBO or a bound is plotted negated, as the loss it is), in nats per image where they are nats,
  the validation set's figure beside the training batches' in the same panel; a GAN's two
  players' losses named as such, and its discriminator's held-out outputs as probabilities.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlearn import runs
from genlearn.files import atomic_write
from genlearn.viz import samples as drawing
from genlearn.viz.grids import (
    grid,
    save_figure,
    save_image,
    tile_centres,
    with_row_labels,
    with_title,
)
from genlearn.viz.samples import write_samples

CLASSES = 10  # a labelled model's samples.png: a row per digit
PER_ROW = 10
POINTS = 2500  # 2-D samples in the scatter plot
CANVASES = 16  # DRAW's canvas.gif
PYRAMIDS = 6  # LAPGAN's pyramid.gif and pyramid.png
SEED = 0  # of every picture's samples
MANIFOLD_STEPS = 20  # z values along each axis of manifold.png
PAD = 2  # grid()'s padding between tiles
MANIFOLD_MARGINS = (70, 20, 70, 80)  # pixels left, right, below and above manifold.png's grid


def _family(model: Any) -> str:
    """The model's class name, or its nearest ancestor's that the tables below know."""
    for cls in type(model).__mro__:
        if cls.__name__ in SAMPLE_PIXELS:
            return cls.__name__
    return type(model).__name__


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- manifold.png ---------------------------------------------------------------------------------
def manifold_coordinates(steps: int = MANIFOLD_STEPS) -> torch.Tensor:
    """z = Phi^-1(u) for `steps` values of u evenly spaced in (0, 1), ascending: the Gaussian
    quantiles (i + 1/2) / steps, so that each tile of the manifold stands for equal prior mass."""
    u = torch.linspace(0.5 / steps, 1 - 0.5 / steps, steps)
    return torch.distributions.Normal(0.0, 1.0).icdf(u)


def manifold(model, steps: int = MANIFOLD_STEPS) -> torch.Tensor:
    """Decoder means over a steps x steps grid of z = Phi^-1(u), u evenly spaced in (0, 1)^2: row
    by row from the largest z2 (top) down, z1 growing to the right (as the picture shows them)."""
    coords = manifold_coordinates(steps)
    zy, zx = torch.meshgrid(coords.flip(0), coords, indexing="ij")
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=1)
    with torch.no_grad():
        return model.decode_mean(z.to(model.device))


def manifold_figure(model, steps: int = MANIFOLD_STEPS):
    """The manifold grid drawn one image pixel per screen pixel (nearest neighbour: crisp), with
    z1 along the bottom and z2 up the side, each tile ticked at its Gaussian quantile, under a
    title saying what the grid is."""
    plt = _matplotlib()
    images = manifold(model, steps).float().cpu()
    picture = grid(images, nrow=steps)
    rgb = picture if picture.ndim == 3 else np.stack([picture] * 3, axis=-1)  # shown as is: no colour map
    height, width = picture.shape[:2]
    left, right, bottom, top = MANIFOLD_MARGINS
    W, H, dpi = width + left + right, height + bottom + top, 100
    fig = plt.figure(figsize=(W / dpi, H / dpi), dpi=dpi)
    ax = fig.add_axes((left / W, bottom / H, width / W, height / H))  # one grid pixel per picture pixel
    ax.imshow(rgb, interpolation="nearest", extent=(0, width, height, 0))
    coords = [f"{v:.2f}" for v in manifold_coordinates(steps).tolist()]
    ax.set_xticks(tile_centres(steps, images.shape[-1], PAD), coords, rotation=90, fontsize=7)
    ax.set_yticks(tile_centres(steps, images.shape[-2], PAD), coords[::-1], fontsize=7)  # top: largest z2
    ax.set_xlabel(r"$z_1$ (Gaussian quantile $\Phi^{-1}(u_1)$)")
    ax.set_ylabel(r"$z_2$ (Gaussian quantile $\Phi^{-1}(u_2)$)")
    fig.suptitle(
        rf"{model.name}: decoder means $E[x \mid z]$ at $z = \Phi^{{-1}}(u)$ on an evenly spaced"
        "\n"
        rf"{steps} $\times$ {steps} grid of $u$ in $(0, 1)^2$, as in Kingma & Welling's figure 4",
        fontsize=10,
        y=1 - 12 / H,
        va="top",
    )
    return fig


def save_manifold(model, out: Path, steps: int = MANIFOLD_STEPS) -> Path:
    """Write `manifold_figure` (manifold.png)."""
    plt = _matplotlib()
    fig = manifold_figure(model, steps)
    path = save_figure(fig, out, dpi=100)
    plt.close(fig)
    return path


# ---- training.png ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """A logged figure drawn as a curve: its key in metrics.jsonl, what the legend calls it, and
    whether it is plotted negated (an ELBO or a log-likelihood, higher is better, drawn as the
    loss it is the negative of)."""

    key: str
    label: str
    negate: bool = False


@dataclass(frozen=True)
class Panel:
    """One plot of training.png: the training batches' curves and the validation set's in one
    convention and unit (the y label says which); `reference` a dotted level worth knowing (y,
    what it means); `stage` a logged key whose changes are marked (a DBN's layer, a DBM's phase)."""

    title: str
    ylabel: str
    train: tuple[Curve, ...] = ()
    valid: tuple[Curve, ...] = ()
    reference: tuple[float, str] | None = None
    limits: tuple[float, float] | None = None
    stage: str | None = None


NATS = "nats per image, lower is better"  # a loss panel's unit, on the y label's second line
EPOCHS = "epoch (passes over the training set)"
TRAIN_LABEL = "training batches (logged means)"
VALID_LABEL = "validation set"
LOG4 = 1.3862943611198906  # the discriminator's loss where D = 1/2 on every input


def _gan_panels(model) -> list[Panel]:
    """A GAN's two players' losses (each minimises its own), and its discriminator's mean output
    on held-out images and on samples (probabilities: 1/2 where it cannot tell them apart)."""
    y = ", y" if "labels" in model.conditions else ""  # a conditional GAN's D and G see the label
    d, fake = f"D(x{y})", f"D(G(z{y}){y})"
    g_loss = f"log(1 - {fake})" if model.config.loss == "minimax" else f"-log {fake}"
    pyramid = _family(model) == "LAPGAN"
    data = "points" if model.image_shape is None else "images"
    losses = Panel(
        title="the two players' losses"
        + (", summed over levels" if pyramid else "")
        + " (each minimises its own)",
        ylabel="loss (nats per sample)",
        train=(
            Curve("d_loss", f"discriminator: -log {d} - log(1 - {fake})"),
            Curve("g_loss", f"generator: {g_loss}"),
        ),
        reference=None if pyramid else (LOG4, "log 4: D = 1/2 everywhere"),
    )
    outputs = Panel(
        title="discriminator's mean output, held out" + (" (mean over levels)" if pyramid else ""),
        ylabel="D's output: probability of 'real'",
        valid=(Curve("d_real", f"{d}, validation {data}"), Curve("d_fake", f"{fake}, samples")),
        reference=(0.5, "1/2: D cannot tell them apart"),
        limits=(0.0, 1.0),
    )
    return [losses, outputs]


def _likelihood_panel(what: str) -> Panel:
    """The exact or bounded log-likelihood a tiny Boltzmann machine logs on the validation set,
    as the loss it is the negative of."""
    return Panel(
        title=f"-{what} (validation)",
        ylabel=f"-{what}\n({NATS})",
        valid=(
            Curve("log_likelihood", "-log p(x), exact", negate=True),
            Curve("bound", "-bound", negate=True),
        ),
    )


def training_panels(model) -> list[Panel]:
    """The panels of the model's training.png: what each logged figure is, in one convention."""
    family = _family(model)
    if family == "VAE":
        return [
            Panel(
                title="negative ELBO: the loss a VAE minimises",
                ylabel=f"-ELBO\n({NATS})",
                train=(Curve("loss", f"{TRAIN_LABEL}: -ELBO"),),
                valid=(Curve("elbo", f"{VALID_LABEL}: -ELBO", negate=True),),
            )
        ]
    if family == "Autoencoder":
        unit = NATS if model.config.loss == "bce" else "summed over pixels, per image; lower is better"
        what = "cross-entropy" if model.config.loss == "bce" else "squared error"
        return [
            Panel(
                title=f"reconstruction {what}",
                ylabel=f"reconstruction {what}\n({unit})",
                train=(Curve("loss", TRAIN_LABEL),),
                valid=(Curve("recon", VALID_LABEL),),
            )
        ]
    if family in ("DRAW", "AlignDRAW"):
        return [
            Panel(
                title="L = L^x + L^z, the negative variational bound",
                ylabel=f"-bound on log p(x)\n({NATS})",
                train=(Curve("loss", f"{TRAIN_LABEL}: L"),),
                valid=(Curve("nll_bound", f"{VALID_LABEL}: L"),),
            )
        ]
    if family in ("GAN", "LAPGAN"):
        return _gan_panels(model)
    if family in ("RBM", "DBN", "DBM"):
        layered = {"DBN": "layer", "DBM": "phase"}.get(family)
        recon = Panel(
            title="reconstruction cross-entropy" + (" of the RBM being trained" if layered else ""),
            ylabel=f"reconstruction cross-entropy\n({NATS})",
            train=(Curve("recon", TRAIN_LABEL),),
            valid=(Curve("recon", VALID_LABEL),),
            stage=layered,
        )
        return [recon, _likelihood_panel("log p(x)")]
    return [Panel(title="training loss", ylabel="loss (as logged)", train=(Curve("loss", TRAIN_LABEL),))]


STAGE_NAMES = {"phase": {0: "bottom RBM", 1: "top RBM", 2: "joint"}}


def _present(curves: Sequence[Curve], records: list[dict]) -> list[Curve]:
    return [c for c in curves if any(c.key in r for r in records)]


def _points(records: list[dict], curve: Curve) -> tuple[list[float], list[float]]:
    sign = -1.0 if curve.negate else 1.0
    kept = [r for r in records if curve.key in r and "epoch" in r]
    return [r["epoch"] for r in kept], [sign * r[curve.key] for r in kept]


def _draw_panel(ax, panel: Panel, train: list[dict], valid: list[dict]) -> None:
    """The panel's curves (training thin, validation with markers), its reference level and
    stages, its labels and a legend naming every curve."""
    shown = []
    for curve in _present(panel.train, train):
        xs, ys = _points(train, curve)
        ax.plot(xs, ys, lw=0.8, label=curve.label)
        shown += ys[len(ys) // 20 :]  # past the first 5%
    for curve in _present(panel.valid, valid):
        xs, ys = _points(valid, curve)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=curve.label)
        shown += ys
    if panel.reference:
        level, meaning = panel.reference
        ax.axhline(level, color="grey", ls=":", lw=1, label=meaning)
    if panel.stage:
        _mark_stages(ax, panel.stage, train)
    if panel.limits:
        ax.set_ylim(*panel.limits)
    elif len(shown) > 10:  # keep the first steps' huge losses from flattening the curve
        ordered = sorted(shown)
        low, high = ordered[0], ordered[int(0.98 * (len(ordered) - 1))]
        if high > low:
            ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set(xlabel=EPOCHS, ylabel=panel.ylabel, title=panel.title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _mark_stages(ax, key: str, records: list[dict]) -> None:
    """Each stage's name (a DBN's layer, a DBM's phase: the logged `key`) at the bottom where it
    starts, after a dotted vertical line where it follows another."""
    names = STAGE_NAMES.get(key, {})
    last = None
    for r in records:
        if key in r and r[key] != last:
            if last is not None:
                ax.axvline(r["epoch"], color="grey", ls=":", lw=0.8)
            last = r[key]
            name = names.get(int(last), f"{key} {int(last)}")
            ax.text(r["epoch"], 0.02, f" {name}", fontsize=8, transform=ax.get_xaxis_transform(), va="bottom")


def training_figure(records: list[dict], model):
    """The figure of training.png from metrics.jsonl's records: a panel per quantity that was
    logged (see `training_panels`), or None when no training figure was."""
    train = [r for r in records if "split" not in r]
    valid = [r for r in records if r.get("split") == "valid"]
    panels = [p for p in training_panels(model) if _present(p.train, train) or _present(p.valid, valid)]
    if not any(_present(p.train, train) for p in panels):
        return None
    plt = _matplotlib()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _draw_panel(ax, panel, train, valid)
    fig.suptitle(f"{model.name}: training curves", fontsize=11)
    fig.tight_layout()
    return fig


def training_curve(run_dir: Path, model) -> Path | None:
    """training.png from the run's metrics.jsonl, or None when it logged no training figure."""
    path = run_dir / runs.METRICS_FILE
    if not path.exists():
        return None
    fig = training_figure(runs.read_records(path), model)  # a line a crash cut short is skipped
    if fig is None:
        return None
    out = save_figure(fig, run_dir / "training.png", dpi=100)
    _matplotlib().close(fig)
    return out


# ---- reconstructions.png --------------------------------------------------------------------------
RECONSTRUCTION = {
    "VAE": "the decoder's mean at the posterior mean E[z | x]",
    "Autoencoder": "the decoder's output g(f(x))",
    "DRAW": "the canvas sigmoid(c_T) with z_1..z_T drawn from Q(z | x)",
    "RBM": "p(v | h) at h = p(h | x): one mean-field step up and back down",
    "DBN": "mean field up to the top layer and back down",
    "DBM": "p(v | mu1), with mu1 from mean-field inference",
}


def reconstructions(model, images, out: Path, rows: int = 5, per_row: int = 10) -> Path:
    """Up to `rows` rows of `per_row` held-out images, each row (labelled "input") above its
    reconstructions (labelled "reconstruction"), under a title saying what a reconstruction is
    (fewer rows when the split is smaller: a data_dir with a few test images still gets its
    picture)."""
    per_row = min(per_row, len(images))
    rows = max(1, min(rows, len(images) // per_row))
    x = images[: rows * per_row].to(model.device)
    recon = model.reconstruct(x)
    pairs = torch.stack([x.view(rows, per_row, *x.shape[1:]), recon.view(rows, per_row, *x.shape[1:])], 1)
    body = drawing.grid_image(pairs.flatten(0, 2).float().cpu(), nrow=per_row)
    centres = tile_centres(2 * rows, x.shape[-2], PAD, drawing.GRID_SCALE)
    labelled = with_row_labels(body, [(y, ("input", "reconstruction")[i % 2]) for i, y in enumerate(centres)])
    how = RECONSTRUCTION.get(_family(model), "the model's reconstruction")
    title = (
        f"{model.name}: {rows * per_row} held-out test images (rows 'input') and their reconstructions "
        f"(the row below each; {how})"
    )
    return save_image(with_title(labelled, title), out)


# ---- samples.png ----------------------------------------------------------------------------------
def _gibbs_steps(model) -> int:
    """The Gibbs steps `sample` runs by default (its `steps` argument's default)."""
    return inspect.signature(model.sample).parameters["steps"].default


def _gan_pixels(model) -> str:
    generator = "the moving-average generator's" if model.config.g_ema > 0 else "the generator's"
    output = "G(z, y)" if "labels" in model.conditions else "G(z)"
    return f"{generator} outputs {output}, z drawn from its noise prior: intensities, not sampled pixels"


def _vae_pixels(model) -> str:
    means = "Bernoulli means" if model.config.likelihood == "bernoulli" else "Gaussian means"
    return f"the decoder's means E[x | z] ({means}) at z ~ N(0, I), not sampled pixels"


SAMPLE_PIXELS = {
    "VAE": _vae_pixels,
    "Autoencoder": lambda m: (
        "the decoder's outputs g(h) at codes h drawn from a Gaussian fitted to the training codes "
        "(an autoencoder is not a generative model: these are not its samples)"
    ),
    "DRAW": lambda m: (
        f"DRAW's canvas sigmoid(c_T) after T = {m.config.T} steps from the prior: Bernoulli means of "
        "x given the sampled z_1..z_T, not sampled pixels"
    ),
    "AlignDRAW": lambda m: (
        f"the canvas sigmoid(c_T) after T = {m.config.T} steps: Bernoulli means of x given the caption "
        "and the sampled z_1..z_T, not sampled pixels"
    ),
    "GAN": _gan_pixels,
    "LAPGAN": lambda m: (
        "the pyramid's finest level I0: the generators' outputs, coarse to fine (pyramid.png shows "
        "the levels), not sampled pixels"
    ),
    "RBM": lambda m: (
        f"visible probabilities p(v | h) after {_gibbs_steps(m):,} steps of a Gibbs chain from the "
        "base rate (the chain's own states are binary)"
    ),
    "DBN": lambda m: (
        f"probabilities p(x | h1) after {_gibbs_steps(m):,} Gibbs steps in the top RBM and one pass "
        "down the directed layers (the chain's own states are binary)"
    ),
    "DBM": lambda m: (
        f"visible probabilities p(v | h1) after {_gibbs_steps(m):,} Gibbs steps over all layers "
        "(the chain's own states are binary)"
    ),
}


def sample_pixels(model) -> str:
    """What the pixels of the model's samples are, in words (`sample` of its family)."""
    describe = SAMPLE_PIXELS.get(_family(model))
    return describe(model) if describe else "the model's samples"


def samples_title(model, n: int, rows: str = "") -> str:
    """samples.png's title: how many samples, the seed, what the rows are, what the pixels are."""
    arranged = rows or f", {PER_ROW} a row"
    return f"{model.name}: {n:,} samples, seed {SEED}{arranged}. Pixels: {sample_pixels(model)}."


def titled_samples(
    model,
    out: Path,
    n: int,
    labels: Sequence[int] | None = None,
    captions: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write `genlearn sample RUN --n N [--labels L | --captions C] --seed 0`'s grid, pixel for
    pixel, under a title, with each row's label on the left or caption on the right."""
    p = drawing.plan(model, n, labels, captions)
    drawing.check_size(model, p, ".png")
    images = drawing.draw(model, p, SEED)
    body = drawing.grid_image(images, p.nrow)
    height = images.shape[-2]
    if p.labels is not None:
        centres = tile_centres(len(p.labels), height, PAD, drawing.GRID_SCALE)
        body = with_row_labels(body, [(y, f"label {label}") for y, label in zip(centres, p.labels)])
        rows = f": each row is one label (on its left), {p.each} samples given it"
    elif p.captions is not None:
        centres = tile_centres(len(p.captions), height, PAD, drawing.GRID_SCALE)
        texts = row_labels or p.captions
        body = with_row_labels(body, list(zip(centres, texts)), side="right")
        rows = f": each row is one caption (on its right), {p.each} samples given it"
    else:
        rows = ""
    return save_image(with_title(body, samples_title(model, p.n, rows)), out)


def scatter_samples(model, out: Path, modes: torch.Tensor | None) -> Path:
    """2-D samples as dots over the data's true modes (crosses), under a title."""
    plt = _matplotlib()
    points = drawing.draw(model, drawing.plan(model, POINTS), SEED)
    fig, ax = plt.subplots(figsize=(5.0, 5.3))
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, label=f"{POINTS:,} samples G(z)")
    if modes is not None:
        ax.scatter(
            modes[:, 0], modes[:, 1], marker="x", c="red", s=40, label=f"the data's {len(modes)} modes"
        )
    ax.set_aspect("equal")
    ax.set(xlabel="x1", ylabel="x2")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(
        f"{model.name}: {POINTS:,} samples G(z) (dots), seed {SEED}, and the data's modes", fontsize=10
    )
    fig.tight_layout()
    path = save_figure(fig, out, dpi=100)
    plt.close(fig)
    return path


def _samples_picture(model, data, run_dir: Path) -> list[Path]:
    """samples.png: 2-D points as a scatter over the true modes; a row per class for a model that
    takes labels; a row per caption the data set shows (listed in samples-captions.txt, each
    marked seen in training or held out) for one that takes captions; else 100 samples, 10 a
    row."""
    out = run_dir / "samples.png"
    if model.image_shape is None:
        return [scatter_samples(model, out, data.modes)]
    if "labels" in model.conditions:
        return [titled_samples(model, out, CLASSES * PER_ROW, labels=range(CLASSES))]
    if "captions" in model.conditions:
        shown = [(tag, c) for tag, cond in data.figure_conditions().items() for c in cond.get("captions", [])]
        captions = [c for _, c in shown]
        atomic_write(
            run_dir / "samples-captions.txt",
            "".join(f"row {i + 1}: {c}\n" for i, c in enumerate(captions)),
        )
        marks = [f"{c}  ({'held out' if tag == 'heldout' else tag})" for tag, c in shown]
        return [titled_samples(model, out, len(captions) * PER_ROW, captions=captions, row_labels=marks)]
    return [titled_samples(model, out, PER_ROW * PER_ROW)]


# ---- the run's pictures ---------------------------------------------------------------------------
def write_run_figures(model, data, run_dir: str | Path) -> list[str]:
    """Write the pictures this model supports into `run_dir`; returns their file names. The
    samples are drawn as `genlearn sample` draws them, with seed 0: the grid of samples.png is
    `genlearn sample RUN --n 100 --out x.png` (`--labels 0-9` for a labelled model) under a
    title; the pictures over time are written by `viz.samples.write_samples` as `genlearn sample
    --out x.gif` writes them."""
    run_dir = Path(run_dir)
    model.eval()
    written = _samples_picture(model, data, run_dir)
    if model.can("reconstruct"):
        written.append(reconstructions(model, data.test_x, run_dir / "reconstructions.png"))
    if model.can("latent_2d"):
        written.append(save_manifold(model, run_dir / "manifold.png"))
    written += _pictures_over_time(model, data, run_dir)
    curve = training_curve(run_dir, model)
    if curve:
        written.append(curve)
    model.train()
    return [p.name for p in written]


def _pictures_over_time(model, data, run_dir: Path) -> list[Path]:
    """alignDRAW: the canvas and the words it attends to for each set of captions the data set
    shows (alignment-TAG.gif and the steps x words matrix alignment-TAG.png); DRAW: 16 canvases
    (canvas.gif, canvas.png); LAPGAN: 6 pyramids (pyramid.gif, and pyramid.png, each level's
    image and residual), digits 0 to 5 for a model that takes labels."""
    if model.can("sample_alignments"):
        written = []
        for tag, condition in data.figure_conditions().items():
            out = run_dir / f"alignment-{tag}.gif"
            written += write_samples(model, out, captions=condition["captions"]).paths
        return written
    if model.can("sample_canvases"):
        return write_samples(model, run_dir / "canvas.gif", CANVASES).paths
    if model.can("sample_pyramid"):
        labels = range(PYRAMIDS) if "labels" in model.conditions else None
        return write_samples(model, run_dir / "pyramid.gif", PYRAMIDS, labels=labels).paths
    return []
