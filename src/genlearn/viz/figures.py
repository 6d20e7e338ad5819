"""The pictures every run directory gets, chosen by the model's declared capabilities.

- samples.png: 100 samples (every model); for 2-D points, a scatter plot of 2,500 over the modes;
  for a model that takes labels, a 10 x 10 grid with one row per class.
- reconstructions.png: test images (odd rows) above their reconstructions (even rows).
- manifold.png: for a 2-D latent space, the decoder's mean over a grid of z whose coordinates are
  evenly spaced on the unit square and mapped through the inverse Gaussian CDF, as in Kingma &
  Welling's figure 4.
- alignment-seen.gif / .png, alignment-heldout.gif / .png (a model that takes captions): the
  canvas over time with each word shaded by its alignment weight, and the steps x words matrix,
  for a few test captions seen in training and a few held out; samples.png then has a row of 10
  per caption, listed in samples-captions.txt.
- pyramid.png (a model that can `sample_pyramid`, LAPGAN): for 6 samples, each level's image and
  residual, coarse to fine (viz/pyramid.py); a model that takes labels draws digits 0 to 5.
- training.png: the training loss (and validation metrics) over steps, from metrics.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genlearn.viz.grids import save_grid


def manifold(model, steps: int = 20) -> torch.Tensor:
    """Decoder means over a steps x steps grid of z = Phi^-1(u), u evenly spaced in (0, 1)^2."""
    u = torch.linspace(0.5 / steps, 1 - 0.5 / steps, steps)
    coords = torch.distributions.Normal(0.0, 1.0).icdf(u)
    zy, zx = torch.meshgrid(coords.flip(0), coords, indexing="ij")
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=1)
    with torch.no_grad():
        return model.decode_mean(z.to(model.device))


def training_curve(run_dir: Path) -> Path | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
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
    out = run_dir / "training.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def scatter(points: torch.Tensor, modes: torch.Tensor | None, out: Path) -> Path:
    """2-D samples as dots, the true modes as crosses."""
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
    fig.savefig(out, dpi=100)
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


def class_rows(n_classes: int = 10, per_class: int = 10) -> torch.Tensor:
    """Labels for a grid with one row per class: 0 x per_class, 1 x per_class, ..."""
    return torch.arange(n_classes).repeat_interleave(per_class)


def write_run_figures(model, data, run_dir: str | Path) -> list[str]:
    """Write the pictures this model supports into `run_dir`; returns their file names."""
    run_dir = Path(run_dir)
    model.eval()
    if model.image_shape is None:  # 2-D points (GANs on toy mixtures): a scatter plot over the modes
        written = [scatter(model.sample(2500), data.modes, run_dir / "samples.png")]
    elif "labels" in model.conditions:  # a 10 x 10 grid, one row per class
        labels = class_rows().to(model.device)
        written = [save_grid(model.sample(len(labels), labels=labels), run_dir / "samples.png", nrow=10)]
    elif "captions" in model.conditions:  # a row of 10 per caption the data set shows
        shown = [c for cond in data.figure_conditions().values() for c in cond.get("captions", [])]
        captions = [c for c in shown for _ in range(10)]
        written = [
            save_grid(model.sample(len(captions), captions=captions), run_dir / "samples.png", nrow=10)
        ]
        (run_dir / "samples-captions.txt").write_text(
            "".join(f"row {i + 1}: {c}\n" for i, c in enumerate(shown))
        )
    else:
        written = [save_grid(model.sample(100), run_dir / "samples.png", nrow=10)]
    if model.can("reconstruct"):
        written.append(reconstructions(model, data.test_x, run_dir / "reconstructions.png"))
    if model.can("latent_2d"):
        written.append(save_grid(manifold(model), run_dir / "manifold.png", nrow=20, scale=1))
    if model.can("sample_alignments"):  # alignDRAW: the canvas and the words it attends to, over time
        from genlearn.viz.alignment import save_alignment_gif, save_alignment_matrix

        for tag, condition in data.figure_conditions().items():
            n = len(next(iter(condition.values())))
            canvases, windows, alphas, captions = model.sample_alignments(n, **condition)
            written.append(
                save_alignment_gif(canvases, windows, alphas, captions, run_dir / f"alignment-{tag}.gif")
            )
            written.append(save_alignment_matrix(alphas, captions, run_dir / f"alignment-{tag}.png"))
    elif model.can("sample_canvases"):  # DRAW: the canvas over time, as in the paper's figures
        from genlearn.viz.canvas import save_canvas_gif, save_canvas_strip

        canvases, windows = model.sample_canvases(16)
        written.append(save_canvas_gif(canvases, run_dir / "canvas.gif", windows=windows))
        written.append(save_canvas_strip(canvases[:, :8], run_dir / "canvas.png"))
    if model.can("sample_pyramid"):  # LAPGAN: each level's image and residual, coarse to fine
        from genlearn.viz.pyramid import save_pyramid_png

        shown = 6
        condition = (
            {"labels": torch.arange(shown, device=model.device)} if "labels" in model.conditions else {}
        )
        images, residuals = model.sample_pyramid(shown, **condition)
        written.append(save_pyramid_png(images, residuals, run_dir / "pyramid.png"))
    curve = training_curve(run_dir)
    if curve:
        written.append(curve)
    model.train()
    return [p.name for p in written]
