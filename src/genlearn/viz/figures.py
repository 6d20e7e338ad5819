"""The pictures every run directory gets, chosen by the model's declared capabilities.

- samples.png: 100 samples (every model), as `genlearn sample RUN --n 100 --out samples.png`
  writes them (`viz.samples`, seed 0); for 2-D points, a scatter plot of 2,500 over the modes;
  for a model that takes labels, a 10 x 10 grid with one row per class.
- reconstructions.png: test images (odd rows) above their reconstructions (even rows).
- manifold.png: for a 2-D latent space, the decoder's mean over a grid of z whose coordinates are
  evenly spaced on the unit square and mapped through the inverse Gaussian CDF, as in Kingma &
  Welling's figure 4.
- alignment-seen.gif / .png, alignment-heldout.gif / .png (a model that takes captions): the
  canvas over time with each word shaded by its alignment weight, and the steps x words matrix,
  for a few test captions seen in training and a few held out; samples.png then has a row of 10
  per caption, listed in samples-captions.txt.
- canvas.gif / .png (a model that can `sample_canvases`, DRAW): 16 canvases over time, and a
  strip of steps of 8 of them.
- pyramid.gif / .png (a model that can `sample_pyramid`, LAPGAN): 6 samples coarse to fine, and
  each level's image and residual (viz/pyramid.py); a model that takes labels draws digits 0 to 5.
- training.png: the training loss (and validation metrics) over steps, from metrics.jsonl.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genlearn import runs
from genlearn.files import atomic_write
from genlearn.viz.grids import save_figure, save_grid
from genlearn.viz.samples import write_samples

CLASSES = 10  # a labelled model's samples.png: a row per digit
PER_ROW = 10
POINTS = 2500  # 2-D samples in the scatter plot
CANVASES = 16  # DRAW's canvas.gif
PYRAMIDS = 6  # LAPGAN's pyramid.gif and pyramid.png


def manifold(model, steps: int = 20) -> torch.Tensor:
    """Decoder means over a steps x steps grid of z = Phi^-1(u), u evenly spaced in (0, 1)^2."""
    u = torch.linspace(0.5 / steps, 1 - 0.5 / steps, steps)
    coords = torch.distributions.Normal(0.0, 1.0).icdf(u)
    zy, zx = torch.meshgrid(coords.flip(0), coords, indexing="ij")
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=1)
    with torch.no_grad():
        return model.decode_mean(z.to(model.device))


def training_curve(run_dir: Path) -> Path | None:
    path = run_dir / runs.METRICS_FILE
    if not path.exists():
        return None
    records = runs.read_records(path)  # a line a crash cut short is skipped
    keys = next(
        (ks for ks in (("loss",), ("d_loss", "g_loss"), ("recon",)) if any(ks[0] in r for r in records)), None
    )
    train = [r for r in records if "split" not in r and keys and keys[0] in r]
    valid = [r for r in records if r.get("split") == "valid"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next((k for k in ("elbo", "loss", "recon") if valid and k in valid[0]), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5, 3.5), squeeze=False)
    ax = axes[0, 0]
    for key in keys:
        ax.plot([r["epoch"] for r in train], [r[key] for r in train], lw=0.8, label=key)
    if len(keys) > 1:
        ax.legend()
    losses = sorted(r[k] for r in train[len(train) // 20 :] for k in keys)  # past the first 5%
    if len(losses) > 10:  # keep the first steps' huge losses from flattening the curve
        ax.set_ylim(losses[0] - 0.05 * (losses[-1] - losses[0]), losses[int(0.98 * (len(losses) - 1))])
    ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax.grid(alpha=0.3)
    if metric:
        ax = axes[0, 1]
        ax.plot([r["epoch"] for r in valid], [r[metric] for r in valid], marker=".", lw=0.8)
        ax.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = save_figure(fig, run_dir / "training.png", dpi=100)
    plt.close(fig)
    return out


def reconstructions(model, images, out: Path, rows: int = 5, per_row: int = 10) -> Path:
    """Up to `rows` rows of `per_row` held-out images, each row above its reconstructions (fewer
    when the split is smaller: a data_dir with a few test images still gets its picture)."""
    per_row = min(per_row, len(images))
    rows = max(1, min(rows, len(images) // per_row))
    x = images[: rows * per_row].to(model.device)
    recon = model.reconstruct(x)
    pairs = torch.stack([x.view(rows, per_row, *x.shape[1:]), recon.view(rows, per_row, *x.shape[1:])], 1)
    return save_grid(pairs.flatten(0, 2), out, nrow=per_row)


def write_run_figures(model, data, run_dir: str | Path) -> list[str]:
    """Write the pictures this model supports into `run_dir`; returns their file names. The
    samples and the pictures over time are written by `viz.samples.write_samples`, as `genlearn
    sample` writes them, with seed 0: samples.png of an unconditional model is `genlearn sample
    RUN --n 100 --out samples.png`, of a labelled one `--labels 0-9 --n 100`."""
    run_dir = Path(run_dir)
    model.eval()
    written = _samples_picture(model, data, run_dir)
    if model.can("reconstruct"):
        written.append(reconstructions(model, data.test_x, run_dir / "reconstructions.png"))
    if model.can("latent_2d"):
        written.append(save_grid(manifold(model), run_dir / "manifold.png", nrow=20, scale=1))
    written += _pictures_over_time(model, data, run_dir)
    curve = training_curve(run_dir)
    if curve:
        written.append(curve)
    model.train()
    return [p.name for p in written]


def _samples_picture(model, data, run_dir: Path) -> list[Path]:
    """samples.png: 2-D points as a scatter over the true modes; a row per class for a model that
    takes labels; a row per caption the data set shows (listed in samples-captions.txt) for one
    that takes captions; else 100 samples, 10 a row."""
    out = run_dir / "samples.png"
    if model.image_shape is None:
        return write_samples(model, out, POINTS, modes=data.modes).paths
    if "labels" in model.conditions:
        return write_samples(model, out, CLASSES * PER_ROW, labels=range(CLASSES)).paths
    if "captions" in model.conditions:
        shown = [c for cond in data.figure_conditions().values() for c in cond.get("captions", [])]
        atomic_write(
            run_dir / "samples-captions.txt", "".join(f"row {i + 1}: {c}\n" for i, c in enumerate(shown))
        )
        return write_samples(model, out, len(shown) * PER_ROW, captions=shown).paths
    return write_samples(model, out, PER_ROW * PER_ROW).paths


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
