"""The run's own pictures say what they show (viz/figures.py): samples.png is `genlearn sample`'s
grid, pixel for pixel, under a title naming the count, the seed and what the pixels are; the
reconstructions' rows are labelled; the manifold has z1 and z2 axes at its Gaussian quantiles;
training.png plots losses to minimise, an ELBO negated. Tiny untrained models: fast, no MNIST."""

from __future__ import annotations

import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_thread
from genlearn import registry, runs
from genlearn.viz import figures, grids
from genlearn.viz import samples as drawing

TINY = {
    "vae": dict(latent_dim=2, hidden_units=8),
    "cgan": dict(g_channels=8, d_channels=8),
    "aligndraw": dict(
        T=3, enc_size=16, dec_size=16, z_size=4, read_n=3, write_n=3, lang_size=8, align_size=8
    ),
    "gan": dict(g_hidden=32, d_units=16, d_pieces=3, z_dim=8),
}
CAPTIONS = ["the digit 3 is on the left of the digit 8 .", "the digit 7 is at the top left of the image ."]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def tiny(name: str, **fields):
    return registry.create(name, **{**TINY.get(name, {}), **fields})


def rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def bare(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        return rgb(img)


def has_words(region: np.ndarray) -> bool:
    """Dark letters on the white band (a white band alone has none)."""
    return bool((region < 100).any())


# ---- samples.png -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, options, where",
    [
        ("vae", {}, "left"),  # no labels: the grid fills the width
        ("cgan", {"labels": range(10)}, "right"),  # the labels on the left of the grid
        ("aligndraw", {"captions": CAPTIONS}, "left"),  # the captions on its right
    ],
)
def test_samples_png_is_the_sample_grid_under_a_title(tmp_path, name, options, where):
    model = tiny(name)
    n = 20 if name == "aligndraw" else 100
    path = figures.titled_samples(model, tmp_path / "samples.png", n, **options)
    grid = bare(drawing.render_samples(model, n, **options))  # what `genlearn sample --out x.png` writes
    with Image.open(path) as img:
        picture = rgb(img)
    h, w = grid.shape[:2]
    assert picture.shape[0] > h  # the title band above
    body = picture[-h:, :w] if where == "left" else picture[-h:, -w:]
    assert np.array_equal(body, grid)  # pixel for pixel, nearest-neighbour upscaled: crisp
    assert has_words(picture[:-h])
    if options:  # a label or caption beside each row
        beside = picture[-h:, w:] if where == "left" else picture[-h:, :-w]
        assert beside.shape[1] > 30 and has_words(beside)
        for y in grids.tile_centres(len(next(iter(options.values()))), model.image_shape[1], 2, 2):
            assert has_words(beside[y - 6 : y + 6])


def test_the_title_says_what_the_pixels_are():
    said = {
        "vae": "Bernoulli means",
        "autoencoder": "not a generative model",
        "draw": "sigmoid(c_T)",
        "aligndraw": "given the caption",
        "gan": "generator's outputs G(z)",
        "cgan": "G(z, y)",
        "lapgan": "finest level",
        "rbm": "visible probabilities p(v | h) after 1,000 steps",
        "dbn": "p(x | h1)",
        "dbm": "visible probabilities p(v | h1)",
    }
    for name, words in said.items():
        model = tiny(name)
        title = figures.samples_title(model, 100)
        assert f"{name}: 100 samples, seed 0, 10 a row. Pixels: " in title and words in title, title
    gaussian = figures.sample_pixels(tiny("vae", likelihood="gaussian"))
    assert "Gaussian means" in gaussian


def test_every_model_says_what_its_samples_are():
    for name in registry.names():
        model = registry.create(name)
        assert figures.sample_pixels(model) != "the model's samples", name


# ---- reconstructions.png ---------------------------------------------------------------------------
def test_reconstructions_rows_are_labelled_inputs_above_reconstructions(tmp_path):
    model = tiny("vae")
    x = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    path = figures.reconstructions(model, x, tmp_path / "r.png")
    with Image.open(path) as img:
        picture = rgb(img)
    tile, scale = 28 + 2, drawing.GRID_SCALE
    w, h = (10 * tile + 2) * scale, (6 * tile + 2) * scale  # 3 pairs of rows of 10
    body, margin, band = picture[-h:, -w:], picture[-h:, :-w], picture[:-h]
    assert has_words(band)
    assert margin.shape[1] >= grids.text_width("reconstruction", grids.font())
    for y in grids.tile_centres(6, 28, 2, scale):
        assert has_words(margin[y - 6 : y + 6])  # "input" / "reconstruction" beside every row

    def tile_at(row: int, col: int) -> np.ndarray:
        top, left = (2 + row * tile) * scale, (2 + col * tile) * scale
        return body[top : top + 28 * scale : scale, left : left + 28 * scale : scale, 0]

    as_bytes = lambda t: (t[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    assert np.array_equal(tile_at(0, 3), as_bytes(x[3]))  # row 1: the inputs
    assert np.array_equal(tile_at(1, 3), as_bytes(model.reconstruct(x[3:4])[0]))  # row 2: theirs
    assert np.array_equal(tile_at(2, 0), as_bytes(x[10]))


# ---- manifold.png ----------------------------------------------------------------------------------
def test_manifold_has_z_axes_at_the_gaussian_quantiles(tmp_path):
    model = tiny("vae")
    fig = figures.manifold_figure(model)
    ax = fig.axes[0]
    quantiles = [f"{v:.2f}" for v in torch.distributions.Normal(0, 1).icdf((torch.arange(20) + 0.5) / 20)]
    assert [t.get_text() for t in ax.get_xticklabels()] == quantiles
    assert quantiles[0] == "-1.96" and quantiles[-1] == "1.96" and quantiles[10] == "0.06"
    assert [t.get_text() for t in ax.get_yticklabels()] == quantiles[::-1]  # the top row: largest z2
    assert "z_1" in ax.get_xlabel() and "z_2" in ax.get_ylabel()
    title = fig._suptitle.get_text()
    assert r"\Phi^{-1}(u)" in title and "Kingma & Welling" in title and "20 $\\times$ 20" in title

    path = figures.save_manifold(model, tmp_path / "manifold.png")
    grid = grids.grid(figures.manifold(model), nrow=20)  # 602 x 602, the bare grid
    with Image.open(path) as img:
        picture = np.asarray(img.convert("L"))
    assert picture.shape[0] > grid.shape[0] + 100 and picture.shape[1] > grid.shape[1] + 60  # axes, title
    left, _, _, top = figures.MANIFOLD_MARGINS
    shown = picture[top : top + grid.shape[0], left : left + grid.shape[1]]
    assert np.array_equal(shown[2:-2, 2:-2], grid[2:-2, 2:-2])  # drawn one to one (the frame aside)


# ---- training.png ----------------------------------------------------------------------------------
def _plotted(ax) -> dict[str, list[float]]:
    """The curves of a panel by their legend label (references, drawn as dotted lines, too)."""
    return {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}


def vae_records() -> list[dict]:
    train = [{"step": s, "epoch": s / 10, "loss": 550.0 - s} for s in range(1, 31)]
    valid = [{"step": 10 * e, "epoch": e, "split": "valid", "elbo": -400.0 + 50 * e} for e in (1, 2, 3)]
    return train + valid + [{"step": 30, "epoch": 3, "split": "test", "elbo": -260.0}]


def test_training_curves_plot_the_elbo_as_a_loss_in_nats():
    fig = figures.training_figure(vae_records(), tiny("vae"))
    (ax,) = fig.axes[:1]
    curves = _plotted(ax)
    assert curves["validation set: -ELBO"] == [350.0, 300.0, 250.0]  # negated: a loss, like the training one
    assert curves["training batches (logged means): -ELBO"][0] == 549.0
    assert all(v > 0 for ys in curves.values() for v in ys)
    assert "nats per image" in ax.get_ylabel() and "lower is better" in ax.get_ylabel()
    assert "epoch" in ax.get_xlabel()
    assert {t.get_text() for t in ax.get_legend().get_texts()} == set(curves)


def test_a_gan_plots_its_players_losses_and_its_discriminator_as_probabilities():
    train = [{"step": s, "epoch": s / 10, "d_loss": 1.3, "g_loss": 0.7, "d_real": 0.6} for s in range(1, 21)]
    valid = [{"step": 10, "epoch": 1, "split": "valid", "d_real": 0.6, "d_fake": 0.4}]
    fig = figures.training_figure(train + valid, tiny("gan"))
    losses, outputs = fig.axes
    curves = _plotted(losses)
    assert any(k.startswith("discriminator: -log D(x)") for k in curves)
    assert "generator: -log D(G(z))" in curves  # the non-saturating loss
    assert math.isclose(curves["log 4: D = 1/2 everywhere"][0], math.log(4))
    assert "nats per sample" in losses.get_ylabel()
    assert _plotted(outputs)["D(x), validation images"] == [0.6]
    assert outputs.get_ylim() == (0.0, 1.0) and "probability" in outputs.get_ylabel()
    minimax = figures.training_figure(train + valid, tiny("gan", loss="minimax"))
    assert "generator: log(1 - D(G(z)))" in _plotted(minimax.axes[0])


def test_a_dbn_marks_where_each_layer_starts():
    train = [{"step": s, "epoch": s / 10, "layer": 1.0 + (s > 10), "recon": 200.0} for s in range(1, 21)]
    fig = figures.training_figure(train, tiny("dbn"))
    ax = fig.axes[0]
    assert [t.get_text().strip() for t in ax.texts] == ["layer 1", "layer 2"]
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"] == [1.1]


# ---- the run's pictures ----------------------------------------------------------------------------
def test_write_run_figures_writes_every_picture_with_words(tmp_path):
    model = tiny("vae")
    lines = [json.dumps(r) for r in vae_records()]
    (tmp_path / runs.METRICS_FILE).write_text("\n".join(lines) + "\n")
    data = SimpleNamespace(test_x=torch.rand(20, 1, 28, 28))
    names = figures.write_run_figures(model, data, tmp_path)
    assert names == ["samples.png", "reconstructions.png", "manifold.png", "training.png"]
    sizes = {}
    for name in names:
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG"
            sizes[name] = img.size
    assert sizes["samples.png"][0] == 604 and 640 < sizes["samples.png"][1] < 720  # 10 x 10, a title
    assert 640 < sizes["reconstructions.png"][0] < 800 and sizes["reconstructions.png"][1] > 248  # 2 rows
    assert 680 < sizes["manifold.png"][0] < 720 and 740 < sizes["manifold.png"][1] < 770
    assert 500 < sizes["training.png"][0] < 700 and 380 < sizes["training.png"][1] < 460
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]  # written atomically
