"""2-D Gaussian mixtures for measuring mode collapse: VEEGAN's ring and grid (Srivastava et al. 2017).

* ``ring8``: 8 modes evenly spaced on a circle of radius 2, at angles 2 pi k / 8, k = 0..7.
* ``grid25``: 25 modes on the 5 x 5 grid {-4, -2, 0, 2, 4}^2.

Every mode is an isotropic Gaussian of standard deviation ``STD`` = 0.02 with equal weight, so the
modes are far apart (1.53 between ring neighbours, 2 on the grid, i.e. 75-100 standard deviations)
and a generator that drops one is easy to catch. On the width: public ring code of the unrolled-GAN
lineage (Metz et al. 2017), which VEEGAN-derived code reuses, draws std 0.01 on a ring of radius 1,
the same shape as 0.02 on radius 2. VEEGAN's own statement of the grid's width was not checked
here, and PacGAN (Lin et al. 2018), repeating VEEGAN's setup, is recalled (unverified) to use a
wider grid mode (std 0.05). Hence ``load_toy(..., std=...)``; scores at different widths are not
comparable.

Scoring (``mode_stats``, VEEGAN's protocol on ``N_EVAL_SAMPLES`` = 2,500 generated points): a sample
is *high quality* when it lies within 3 standard deviations of its nearest mode, and a mode is
*captured* when it is the nearest mode of at least one high-quality sample. Note that in two
dimensions "within 3 std" is a disc, and the squared distance of a true sample to its mode over
std^2 is chi-square with 2 degrees of freedom: the true mixture itself scores only
1 - exp(-9/2) = 98.89% high quality, not the one-dimensional 99.73%.

The ring's constructor avoids a slip found in that public code: ``linspace(0, 2 pi, 8)`` repeats its
endpoint (0 and 2 pi are the same angle), which silently leaves 7 distinct modes, one of double
weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.data.base import DataSet
from genlearn.errors import UserError

STD = 0.02  # standard deviation of every mode (VEEGAN's 2-D experiments)
N_EVAL_SAMPLES = 2500  # generated points scored by mode_stats in the protocol
THRESHOLD = 3.0  # a sample within THRESHOLD * std of its nearest mode is high quality


def ring(n_modes: int = 8, radius: float = 2.0) -> Tensor:
    """(n_modes, 2) centres on a circle: angles 2 pi k / n_modes, k = 0..n_modes-1, all distinct."""
    _check_positive("n_modes", n_modes, integer=True)
    _check_positive("radius", radius)
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid(side: int = 5, spacing: float = 2.0) -> Tensor:
    """(side^2, 2) centres of a side x side square grid centred on the origin, row by row."""
    _check_positive("side", side, integer=True)
    _check_positive("spacing", spacing)
    coords = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    xs, ys = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()


TOYS: dict[str, Callable[[], Tensor]] = {"ring8": ring, "grid25": grid}


def _check_positive(name: str, value, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 or not math.isfinite(value):
        what = "a positive integer" if integer else "a positive number"
        raise UserError(f"{name} must be {what}, got {value!r}")


def _check_modes(modes: Tensor) -> Tensor:
    if not isinstance(modes, Tensor) or modes.dim() != 2 or modes.shape[0] == 0:
        shape = tuple(modes.shape) if isinstance(modes, Tensor) else type(modes).__name__
        raise UserError(f"modes must be a tensor of shape (m, dim) with m >= 1, got {shape}")
    return modes


def sample_with_labels(
    modes: Tensor, n: int, std: float = STD, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """n points of the equal-weight mixture, float32 (n, dim), and the index of each point's mode."""
    modes = _check_modes(modes)
    _check_positive("std", std)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"the number of samples must be a non-negative integer, got {n!r}")
    labels = torch.randint(modes.shape[0], (n,), generator=generator)
    noise = torch.randn(n, modes.shape[1], generator=generator, dtype=torch.float64)
    return (modes.double()[labels] + std * noise).float(), labels


def sample_mixture(
    modes: Tensor, n: int, std: float = STD, generator: torch.Generator | None = None
) -> Tensor:
    """n points (n, dim) of the equal-weight Gaussian mixture with these mode centres."""
    return sample_with_labels(modes, n, std, generator)[0]


@dataclass
class Toy2D(DataSet):
    """The three splits of a toy mixture, like `mnist.MNIST`: points (n, 2) float32 and, as labels,
    the index of the mode each point was drawn from; plus the mixture itself (`modes`, `std`)."""

    train_x: Tensor
    train_y: Tensor
    valid_x: Tensor
    valid_y: Tensor
    test_x: Tensor
    test_y: Tensor
    modes: Tensor
    std: float
    name: str = ""

    def split(self, name: str, binary: bool) -> dict[str, Tensor]:
        """A split as a batch dict; the points are continuous, so `binary` must be False."""
        if binary:
            raise UserError(
                f"the toy data set {self.name or '2-D mixture'} is continuous; it cannot be binarized"
            )
        self.check_split(name)
        return {"x": getattr(self, f"{name}_x"), "y": getattr(self, f"{name}_y")}

    def sample_stats(self, model) -> dict[str, float]:
        """VEEGAN's mode statistics of N_EVAL_SAMPLES of the model's points."""
        return mode_stats(model.sample(N_EVAL_SAMPLES), self.modes, self.std)


def load_toy(
    name: str, n_train: int = 100_000, n_eval: int = 10_000, seed: int = 0, *, std: float = STD
) -> Toy2D:
    """The mixture `name` (ring8 or grid25) with n_train training and n_eval validation and test
    points each, drawn from one generator seeded `seed`: the same seed gives the same data set."""
    if name not in TOYS:
        raise UserError(f"unknown toy data set {name!r}; known: {', '.join(TOYS)}")
    modes = TOYS[name]()
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for split, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        splits[f"{split}_x"], splits[f"{split}_y"] = sample_with_labels(modes, n, std, g)
    return Toy2D(**splits, modes=modes, std=std, name=name)


def mode_stats(
    samples: Tensor, modes: Tensor, std: float = STD, threshold: float = THRESHOLD
) -> dict[str, int | float]:
    """VEEGAN's scores of generated points: ``{"modes_captured", "modes", "high_quality"}``.

    A sample is high quality when its distance to the nearest mode is at most `threshold` * `std`;
    a mode is captured when it is the nearest mode of at least one high-quality sample. Samples
    that are NaN or Inf (a diverged generator) count as low quality.
    """
    modes = _check_modes(modes)
    _check_positive("std", std)
    _check_positive("threshold", threshold)
    if not isinstance(samples, Tensor) or samples.dim() != 2 or samples.shape[1] != modes.shape[1]:
        shape = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        raise UserError(f"samples must have shape (n, {modes.shape[1]}) like the modes, got {shape}")
    if samples.shape[0] == 0:
        raise UserError("mode_stats needs at least one sample")
    # Explicit differences in float64: no cancellation, unlike cdist's matrix-product shortcut.
    dist = (
        (samples.detach().cpu().double()[:, None, :] - modes.detach().cpu().double()[None])
        .pow(2)
        .sum(-1)
        .sqrt()
    )
    nearest, which = dist.min(dim=1)
    good = nearest <= threshold * std  # False for NaN
    return {
        "modes_captured": int(which[good].unique().numel()),
        "modes": int(modes.shape[0]),
        "high_quality": good.double().mean().item(),
    }
