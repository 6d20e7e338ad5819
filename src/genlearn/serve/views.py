"""The explorer's views of a loaded model, each a pure function of the model's weights and the
query: the same query gives the same answer, in any process, whatever was asked before.

Samples go through `genlearn.api.render_samples`, the function that writes `genlearn sample`'s
files, so a served grid is byte-identical to the command's. The drawings over time come from the
samplers the `.gif` of `genlearn sample` draws from, seeded the same way, so their last frame is
the grid's sample; the Gibbs chains from the model's `gibbs_chain`; the latent plane from its
inference network (`features`) and decoder (`decode_mean`); the scores from what the model says
of an image (its ELBO, DRAW's bound, an RBM's free energy, a stack's variational bound); the
nearest training image from the `nearest` metric's search. Every call here runs under
`cache.COMPUTE` (see there).
"""

from __future__ import annotations

import base64
import io
import math
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from genlearn import api
from genlearn.errors import UserError
from genlearn.models.base import chain_steps
from genlearn.viz import samples as drawing
from genlearn.viz.figures import MANIFOLD_STEPS, manifold, manifold_coordinates

# Caps of what one request may ask for (the command line draws any number).
MAX_SAMPLES = 256  # samples.png
MAX_PROCESS = 64  # images of a drawing over time
MAX_SCORED = 64  # samples scored and searched for their nearest training image
MAX_CHAIN_STEPS = 200
MAX_LATENT = 10_000  # encoded test images in the latent view
MAX_STRIP = 32  # images of an interpolation strip
PROCESS_N = 16  # images of a drawing over time, and of a scored grid, unless asked
CHAIN_STEPS, CHAIN_EVERY = 100, 5
PCA_IMAGES = 2000  # test images whose codes fix the latent view's plane (whatever n is asked)
PROCESS_KINDS = {
    "sample_alignments": "alignment",
    "sample_canvases": "canvas",
    "sample_pyramid": "pyramid",
    "gibbs_chain": "gibbs",
}
CHAIN_STARTS = ("noise", "data", "zeros")


@dataclass(frozen=True)
class Draw:
    """What a grid is drawn with: as `genlearn sample`'s options (n None: the command's default)."""

    n: int | None = None
    seed: int = 0
    temperature: float = 1.0
    labels: str | None = None
    caption: str | None = None

    @property
    def captions(self) -> list[str] | None:
        return None if self.caption is None else [self.caption]


# ---- what a run offers ----------------------------------------------------------------------------
def process_kind(model: Any) -> str | None:
    """The drawing over time the process view shows: alignDRAW's alignments, DRAW's canvases,
    LAPGAN's pyramid, a Boltzmann machine's Gibbs chain; None for the others."""
    return next((kind for cap, kind in PROCESS_KINDS.items() if model.can(cap)), None)


def views(model: Any) -> list[str]:
    """The views the explorer offers for the model, from its declared abilities."""
    offered = ["samples"]
    if model.can("encode") and model.can("decode"):
        offered.append("latent")
    if model.can("latent_2d"):
        offered.append("manifold")
    if process_kind(model) is not None:
        offered.append("process")
    if model.image_shape is not None:
        offered.append("scores")
    return offered


def require_view(model: Any, view: str) -> None:
    if view not in views(model):
        raise UserError(
            f"the {view} view does not apply to model {model.name!r}; it offers {', '.join(views(model))}"
        )


# ---- commands ---------------------------------------------------------------------------------------
def sample_command(path: str, d: Draw, out: str, n: int | None = None) -> str:
    """The `genlearn sample` line that writes this picture (`n` given: always spelled out)."""
    parts = ["genlearn", "sample", path]
    n = d.n if n is None else n
    if n is not None:
        parts += ["--n", str(n)]
    parts += ["--seed", str(d.seed)]
    if d.temperature != 1.0:
        parts += ["--temperature", f"{d.temperature:g}"]
    if d.labels is not None:
        parts += ["--labels", d.labels]
    if d.caption is not None:
        parts += ["--caption", d.caption]
    return shlex.join([*parts, "--out", out])


def python_snippet(path: str, *lines: str) -> str:
    """A few lines of Python that reproduce a view without a command of its own."""
    head = ["import torch", "import genlearn", f"model = genlearn.load({path!r})"]
    return "\n".join([*head, *lines])


# ---- pictures -------------------------------------------------------------------------------------
def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


FRAME_SCALE = 1  # a timeline's frames are not upscaled (the page enlarges them, crisp): 4x fewer pixels


def frame_png(images: torch.Tensor, nrow: int | None = None) -> bytes:
    """One frame of a timeline: the grid of the images at that step, as `grid_png` lays it out but
    not upscaled and quickly compressed (a timeline has up to 201 frames)."""
    buffer = io.BytesIO()
    drawing.grid_image(images.float().cpu(), nrow, scale=FRAME_SCALE).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def layout(n: int, shape: tuple[int, ...], nrow: int | None) -> dict[str, int]:
    """Where image i of a timeline's frame (`frame_png`) lies: column i % columns, row
    i // columns, its top-left corner at ((pad + column (width + pad)) scale, (pad + row (height
    + pad)) scale) pixels."""
    columns = nrow or max(1, math.ceil(math.sqrt(n)))
    return {
        "columns": columns,
        "rows": math.ceil(n / columns),
        "pad": 2,
        "scale": FRAME_SCALE,
        "height": int(shape[-2]),
        "width": int(shape[-1]),
    }


@contextmanager
def seeded(model: Any, seed: int) -> Iterator[torch.Generator]:
    """A generator seeded with `seed` on the model's device, the global RNG forked and seeded alike
    for the block: what `genlearn sample` draws with (`viz.samples`)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        yield torch.Generator(device=model.device).manual_seed(seed)


def check_n(n: int, cap: int, what: str) -> None:
    if n > cap:
        raise UserError(
            f"--n {n} is more than the explorer {what} at once (at most {cap}); genlearn sample draws any number"
        )


def planned(model: Any, d: Draw, cap: int, what: str, gif: bool = False, default: int | None = None) -> Any:
    """The plan `genlearn sample` draws (its checks of n, labels and captions), within `cap`;
    `default`: n when neither n nor a condition is given (else the command's own default)."""
    drawing.check_temperature(model, d.temperature)
    n = d.n if d.n is not None or d.labels is not None or d.caption is not None else default
    p = drawing.plan(model, n, d.labels, d.captions, gif=gif)
    check_n(p.n, cap, what)
    return p


# ---- samples ----------------------------------------------------------------------------------------
def samples_png(model: Any, d: Draw) -> bytes:
    """The grid `genlearn sample RUN --n N --seed S ... --out x.png` writes, byte for byte."""
    planned(model, d, MAX_SAMPLES, "draws")
    return api.render_samples(
        model, d.n, seed=d.seed, temperature=d.temperature, labels=d.labels, captions=d.captions
    )


# ---- the latent plane -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Plane:
    """The latent view's plane in code space: code = mean + x axes[0] + y axes[1] (for a 2-D
    latent, mean 0 and the unit axes)."""

    mean: torch.Tensor
    axes: torch.Tensor  # (2, d)
    names: tuple[str, str]
    explained: tuple[float, float] | None = None

    def code(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.mean + x[:, None] * self.axes[0] + y[:, None] * self.axes[1]

    def coordinates(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.mean) @ self.axes.T


def encoded(model: Any, images: torch.Tensor) -> torch.Tensor:
    """The codes of images (the posterior means of a VAE), 1,000 at a time, float32."""
    return torch.cat([model.features(part.to(model.device)).float().cpu() for part in images.split(1000)])


def test_split(model: Any, data: Any) -> dict[str, torch.Tensor]:
    """The test images as the model's metrics see them (binarized for a binary model)."""
    return data.split("test", binary=model.data_kind == "binary")


def plane(model: Any, data: Any) -> Plane:
    """The plane of the latent view: z itself for a 2-D latent, else the two principal
    components of the codes of the first PCA_IMAGES test images (each axis signed so that its
    largest entry is positive: the same plane in every process)."""
    codes = encoded(model, test_split(model, data)["x"][:PCA_IMAGES])
    d = codes.shape[1]
    if d == 2:
        return Plane(torch.zeros(2), torch.eye(2), ("z1", "z2"))
    mean = codes.mean(0)
    _, s, vh = torch.linalg.svd((codes - mean).double(), full_matrices=False)
    axes = vh[:2].float()
    if len(axes) < 2:  # a 1-D code: the second axis stays at 0
        axes = torch.cat([axes, torch.zeros(2 - len(axes), d)])
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    share = (s**2 / (s**2).sum()).tolist() + [0.0, 0.0]
    return Plane(mean, axes, ("PC1", "PC2"), (round(share[0], 4), round(share[1], 4)))


def latent_json(model: Any, data: Any, flat: Plane, n: int) -> dict[str, Any]:
    """The first n test images in the plane, with their digits (-1 without labels)."""
    split = test_split(model, data)
    if not 1 <= n <= min(MAX_LATENT, len(split["x"])):
        raise UserError(f"--n must be 1 to {min(MAX_LATENT, len(split['x']))} test images, got {n}")
    xy = flat.coordinates(encoded(model, split["x"][:n]))
    digits = split["y"][:n].tolist() if "y" in split and split["y"].dim() == 1 else [-1] * n
    points = [[round(float(a), 4), round(float(b), 4), int(c)] for (a, b), c in zip(xy.tolist(), digits)]
    lo, hi = xy.min(0).values, xy.max(0).values
    margin = (hi - lo).clamp(min=1e-6) * 0.05
    bounds = [
        float(lo[0] - margin[0]),
        float(hi[0] + margin[0]),
        float(lo[1] - margin[1]),
        float(hi[1] + margin[1]),
    ]
    out: dict[str, Any] = {
        "axes": list(flat.names),
        "dim": int(flat.axes.shape[1]),
        "points": points,
        "bounds": [round(b, 4) for b in bounds],
    }
    if flat.explained is not None:
        out["explained"] = list(flat.explained)
    if model.can("latent_2d"):
        out["manifold"] = {"steps": MANIFOLD_STEPS, "z": manifold_coordinates().tolist()}
    return out


def decode_png(model: Any, flat: Plane, x: float, y: float) -> bytes:
    """The image decoded at (x, y) of the plane, as a one-image grid."""
    code = flat.code(torch.tensor([x]), torch.tensor([y]))
    return drawing.grid_png(model.decode_mean(code.to(model.device)).float().cpu())


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the codes a and b at fractions t: along the great circle
    through them, their norms interpolated linearly; linear when they are (anti)parallel."""
    na, nb = a.norm(), b.norm()
    if float(na) < 1e-8 or float(nb) < 1e-8:
        return (1 - t)[:, None] * a + t[:, None] * b
    cos = torch.clamp(torch.dot(a / na, b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if float(torch.sin(omega)) < 1e-6:
        return (1 - t)[:, None] * a + t[:, None] * b
    direction = (
        torch.sin((1 - t) * omega)[:, None] * a / na + torch.sin(t * omega)[:, None] * b / nb
    ) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)[:, None]


def interpolate_png(
    model: Any, flat: Plane, a: tuple[float, float], b: tuple[float, float], steps: int, mode: str
) -> bytes:
    """`steps` images from a to b (plane coordinates) in one row: linear in code space, or
    spherical (slerp of the full codes)."""
    if not 2 <= steps <= MAX_STRIP:
        raise UserError(f"steps must be 2 to {MAX_STRIP}, got {steps}")
    ends = flat.code(torch.tensor([a[0], b[0]]), torch.tensor([a[1], b[1]]))
    t = torch.linspace(0, 1, steps)
    if mode == "linear":
        codes = (1 - t)[:, None] * ends[0] + t[:, None] * ends[1]
    elif mode == "spherical":
        codes = slerp(ends[0], ends[1], t)
    else:
        raise UserError(f"mode must be linear or spherical, not {mode!r}")
    return drawing.grid_png(model.decode_mean(codes.to(model.device)).float().cpu(), nrow=steps)


def manifold_png(model: Any) -> bytes:
    """The decoder's means over the 20 x 20 grid of z of the run's manifold.png
    (`viz.figures.manifold`), a bare grid at 1x, for the page to put its cursor on: the tile of
    row r and column c is z = (z[c], z[19 - r]), z from `manifold_coordinates`."""
    return drawing.grid_png(manifold(model, MANIFOLD_STEPS).float().cpu(), nrow=MANIFOLD_STEPS, scale=1)


# ---- drawings over time ---------------------------------------------------------------------------
def process_json(model: Any, d: Draw, path: str) -> dict[str, Any]:
    """DRAW's canvas, alignDRAW's canvas and alignments, LAPGAN's pyramid: what the `.gif` of
    `genlearn sample` shows, frame by frame, with the attention windows and alignments as data."""
    kind, sampler = drawing.gif_sampler(model)
    p = planned(model, d, MAX_PROCESS, "draws over time", gif=True, default=PROCESS_N)
    options = model.sampling_options(d.temperature)
    with seeded(model, d.seed) as generator:
        drawn = sampler(p.n, generator=generator, **p.condition(), **options)
    out: dict[str, Any] = {"kind": PROCESS_KINDS[kind]}
    if kind == "sample_pyramid":
        from genlearn.viz.pyramid import pyramid_columns, pyramid_frames

        images, residuals = drawn
        frames = [drawing.png_bytes(f) for f in pyramid_frames(images, residuals, nrow=p.nrow)]
        out["labels"] = [label for label, _ in pyramid_columns(images, residuals)]
    else:
        canvases, windows = drawn[0], drawn[1]
        frames = [frame_png(c, p.nrow) for c in canvases]
        out["labels"] = [f"t = {t + 1}/{len(canvases)}" for t in range(len(canvases))]
        out["layout"] = layout(p.n, tuple(canvases.shape[2:]), p.nrow)
        if windows is not None:
            out["windows"] = [
                [[round(float(v), 2) for v in box] for box in step] for step in windows.tolist()
            ]
        if kind == "sample_alignments":
            alphas, texts = drawn[2], drawn[3]
            words = [text.split(" ") for text in texts]
            out["captions"] = list(texts)
            out["words"] = words
            out["alignment"] = [
                [[round(float(a), 4) for a in step[i][: len(w)]] for i, w in enumerate(words)]
                for step in alphas.tolist()
            ]
    out |= {"steps": len(frames), "frames": [data_url(f) for f in frames]}
    out["command"] = sample_command(path, d, "process.gif", n=p.n)
    return out


def chain_json(
    model: Any, data: Any | None, path: str, n: int, seed: int, start: str, steps: int, every: int
) -> dict[str, Any]:
    """A Boltzmann machine's Gibbs chain from noise, zeros or test images picked by the seed,
    frame by frame (`gibbs_chain`)."""
    check_n(n, MAX_PROCESS, "draws over time")
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if start not in CHAIN_STARTS:
        raise UserError(f"start must be {', '.join(CHAIN_STARTS)}, not {start!r}")
    if steps > MAX_CHAIN_STEPS:
        raise UserError(f"steps {steps} is more than the explorer runs a chain (at most {MAX_CHAIN_STEPS})")
    kept = chain_steps(steps, every)
    lines = [f"g = torch.Generator().manual_seed({seed})"]
    if start == "data":
        lines = [
            "from genlearn import data",
            'test = data.load(model.config, train=False).split("test", binary=False)["x"]',
            *lines,
            f"start = test[torch.randperm(len(test), generator=g)[:{n}]]",
        ]
    with seeded(model, seed) as generator:
        first: Any = start
        if start == "data":
            test = data.split("test", binary=False)["x"]
            first = test[torch.randperm(len(test), generator=generator)[:n]].to(model.device)
        frames = model.gibbs_chain(n, steps, first, generator, every=every).float().cpu()
    call = "start" if start == "data" else repr(start)
    lines.append(
        f"frames = model.gibbs_chain({n}, {steps}, {call}, g, every={every})  # (frames, n, C, H, W)"
    )
    return {
        "kind": "gibbs",
        "steps": len(frames),
        "labels": [f"step {k}" for k in kept],
        "layout": layout(n, tuple(frames.shape[2:]), None),
        "chain": {"start": start, "every": every, "steps": kept},
        "frames": [data_url(frame_png(f)) for f in frames],
        "command": python_snippet(path, *lines),
    }


# ---- what the model says of its samples -------------------------------------------------------------
def score_of(model: Any, results: dict[str, Any]) -> dict[str, str] | None:
    """The per-image score the model gives (name, unit, which way is better, what it is)."""
    log_z = results.get("metrics", {}).get("ais_log_z")
    if model.can("log_likelihood"):
        return _score("ELBO", "higher", "one posterior sample, seeded")
    if model.can("nll_bound"):
        given = " given its caption" if "captions" in model.conditions else ""
        return _score("bound on -log p(x)" + given, "lower", "L^x + L^z, one sample of the latents, seeded")
    if model.can("free_energy"):
        if log_z is not None:
            return _score("log p(x)", "higher", "-F(x) - log Z, log Z by AIS")
        return _score("free energy F(x)", "lower", "p(x) = exp(-F(x)) / Z")
    if model.can("ais_bound"):
        if log_z is not None:
            return _score("bound on log p(x)", "higher", "variational bound, log Z by AIS")
        return _score(
            "bound on log p(x) + log Z", "higher", "variational bound before log Z (AIS has not been run)"
        )
    return None


def _score(name: str, better: str, about: str) -> dict[str, str]:
    """A score as the page shows it: every score genlearn gives is in nats per image."""
    return {"name": name, "unit": "nats", "better": better, "about": about}


def scores(
    model: Any, results: dict[str, Any], x: torch.Tensor, condition: dict[str, Any], seed: int
) -> list[float]:
    """The score of each image x (n, C, H, W), as `score_of` names it."""
    flat = x.flatten(1).to(model.device)
    log_z = results.get("metrics", {}).get("ais_log_z")
    with seeded(model, seed) as generator:
        if model.can("log_likelihood"):
            from genlearn.eval.likelihood import elbo

            values = elbo(model, flat, generator=generator)
        elif model.can("nll_bound"):
            values = model.nll_bound(flat, **condition)
        elif model.can("free_energy"):
            values = model.free_energy(flat)
            values = -values - log_z if log_z is not None else values
        else:
            values = model.bound_terms(flat, generator=generator)
            values = values - log_z if log_z is not None else values
    return [round(float(v), 4) for v in values.double().cpu()]


def scores_json(model: Any, results: dict[str, Any], references: Any, d: Draw, path: str) -> dict[str, Any]:
    """The samples of the grid with the same query, each with what the model says of it and its
    nearest training image."""
    from genlearn.eval.sample_metrics import nearest_neighbours

    p = planned(model, d, MAX_SCORED, "scores", default=PROCESS_N)
    x = drawing.draw(model, p, d.seed, d.temperature)
    condition = p.condition()
    if not condition and "captions" in model.conditions:  # the captions `sample` drew first
        with seeded(model, d.seed) as generator:
            condition = model.default_conditions(p.n, generator)
    about = score_of(model, results)
    values = (
        scores(model, results, x, condition if "captions" in condition else {}, d.seed) if about else None
    )
    distances, index = nearest_neighbours(x, references)
    nearest = references[index]
    items = []
    for i in range(p.n):
        item: dict[str, Any] = {"index": i}
        if about is not None and values is not None:
            item["score"] = {k: about[k] for k in ("name", "unit", "better")} | {"value": values[i]}
        item["nearest"] = {
            "distance": round(float(distances[i]), 4),
            "index": int(index[i]),
            "image": data_url(drawing.grid_png(nearest[i : i + 1].float())),
        }
        items.append(item)
    out: dict[str, Any] = {"samples": items}
    if about is not None:
        out["score"] = about
    if condition:
        shown = condition.get("labels", condition.get("captions"))
        key = "labels" if "labels" in condition else "captions"
        out["conditions"] = {key: shown.tolist() if isinstance(shown, torch.Tensor) else list(shown)}
    out["command"] = sample_command(path, d, "samples.png", n=p.n)
    return out
