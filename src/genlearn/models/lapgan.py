r"""LAPGAN: a Laplacian pyramid of adversarial networks (Denton, Chintala, Szlam & Fergus, NIPS 2015).

An image I = I_0 is generated coarse to fine through the Laplacian pyramid of `nn/pyramid.py`
(d: blur and halve, u: double and blur; I_{k+1} = d(I_k), h_k = I_k - u(I_{k+1}), k = 0..K-1,
so that K + 1 = `levels` and I_K is the coarsest image). Sampling (the lecture's slide 28):

    I~_K = G_K(z_K)                                         a plain GAN's sample, smallest
    I~_k = u(I~_{k+1}) + G_k(z_k, u(I~_{k+1})),   k = K-1, ..., 0

each G_k (k < K) a conditional generator of the band-pass residual h~_k given the upsampled
coarser image l_k = u(I~_{k+1}) and a noise plane z_k of l_k's size. Training (slide 29) runs the
other way, on the real pyramid of each minibatch: with l_k = u(I_{k+1}) of a real image,

    G_k(z_k, l_k) -> h~_k,       D_k(h, l_k): real h_k against generated h~_k,   k < K
    G_K(z_K) -> I~_K,            D_K(I): real I_K against G_K's,                  the coarsest

each level a (conditional) GAN trained by Algorithm 1 (`genlearn.nn.adversarial`, the steps the
GAN is trained with), with the level's pair, its optimisers and (l_k, label) as the condition.
The levels do not depend on one another in training (each sees the real pyramid, never another
level's samples), so they train together: every `train_step` makes one Algorithm-1 update of
every level on the same minibatch's pyramid, coarse to fine. `level_steps` ("n_0,...,n_K",
finest first) sets each level's budget: n_k updates per batch (0 freezes a level). The default
gives the finest level 1 and every coarser level 2: a coarser level costs a quarter of the next
finer one or less, yet it draws the digit's shape, which no finer level can mend. (How this
default, the presets' 1,4,4 and the other defaults below were chosen, with the measurements:
docs/notes/2026-12-06-lapgan-design.md.)

Data. MNIST intensities in [0, 1] ("continuous", as dcgan and cgan), or the 60 x 60 two-digit
canvases (`dataset = mnist-2digit`). The sizes come from the data: 28 -> 14 -> 7 and
60 -> 30 -> 15 with the default `levels = 3`. With the default padding (`d_padding = same`,
below) a level may be of any size; with the released code's unpadded discriminators
(`d_padding = none`) each residual level must be at least 9 pixels a side, so MNIST then allows
1-3 levels and the canvases 1-4.

Networks, after the paper's released CIFAR-10 code (facebook/eyescream,
`cifar/scripts/train_cifar_coarse_to_fine.lua`), widths `g_channels`, `d_channels` (64, 64):
- G_k (k < K): [z_k, l_k] (a noise plane U(-1, 1) beside the low-pass image) -> conv 7 x 7, 64,
  ReLU -> conv 7 x 7, 64, ReLU -> conv 5 x 5 -> h~_k, every convolution padded to keep the size,
  the output linear (a residual is signed).
- D_k (k < K): h + l_k (the released code adds the low-pass image to the residual before the
  first convolution, as the paper says, so D_k judges the image the residual makes) -> conv
  5 x 5, 64, ReLU -> conv 5 x 5 stride 2, 64, ReLU -> dropout 0.5 -> linear -> logit.
  Padding (`d_padding`): the released code's convolutions are unpadded (`none`), and then D_k
  never sees the last row and column of its input: the unpadded 5 x 5 convolution leaves
  H - 4 rows, an even count, and the stride-2 5 x 5 one reads rows 0..H - 6 of them, so row
  H - 5, the only one that holds input row H - 1, is dropped (28 x 28: 55 of 784 pixels
  unseen; 32 x 32 CIFAR-10 alike), where G_k, unchecked, may paint anything, and every finer
  level inherits it. The default, `same`, pads both convolutions by 2, so that D_k reads every
  pixel.
- The coarsest pair (7 x 7 on MNIST, 15 x 15 on the canvases), `coarse_arch`:
  `mlp`, the released code's coarsest level (its 8 x 8 CIFAR-10 model is `train_cifar.lua`'s
  fully connected pair): G_K: z (`z_dim` 100, U(-1, 1)) -> 1200 ReLU -> 1200 ReLU -> pixels,
  sigmoid (intensities in [0, 1]; the released code's output is linear on normalised CIFAR);
  D_K: pixels -> 600 ReLU -> dropout -> 600 ReLU -> dropout -> logit.
  `conv` (the default), dcgan's pair at the coarsest size: G_K: z -> linear to 64 x s x s ->
  batch norm, ReLU -> conv 3x3 32 -> batch norm, ReLU -> conv 3x3 -> sigmoid; D_K: conv 3x3 32
  -> leaky ReLU -> conv 4x4 stride 2, 64 -> batch norm, leaky ReLU -> logit. It is the default
  because, trained alone on MNIST's 7 x 7 images, the MLP pair collapsed onto one digit and the
  conv pair did not.
  `upconv`: the same D_K; G_K is dcgan's generator one upsampling short: z -> linear to 64 x s/2
  x s/2 -> batch norm, ReLU -> transposed conv 4x4 stride 2, 32 -> batch norm, ReLU -> conv 3x3
  -> sigmoid (an odd s drawn a pixel larger and cropped). At 14 x 14 it is cgan's generator
  without its last upsampling.

Class-conditional form (`conditional = true`, registered as `lapgan-conditional`): the label's
one-hot code enters every level, as the paper does for CIFAR-10: ten constant planes beside the
inputs of every G_k and D_k (k < K), ten more inputs of G_K and D_K. (The released code maps the
one-hot code through a learned linear layer to one plane; ten planes feeding a convolution are
the same as cgan's conditioning here.) Each minibatch's fakes are drawn for its real images'
labels; `sample(n, labels=...)` takes n digits, or draws them uniformly.

Sampling detail: each I~_k is clamped to [0, 1], the range of every real pyramid image (d and u
are convex combinations of pixels), so G_{k-1} is never asked to refine an image unlike any it
trained on; `sample_pyramid` reports the residual actually applied, h~_k = I~_k - u(I~_{k+1}),
so the samples are the collapse of their own pyramids.

Optimisation. The paper's settings (its released code): SGD, lr 0.02, momentum 0.5 rising to
0.7 (by 0.0008 an epoch), batch 128, G maximising log D(G(z)) (the non-saturating loss):
`--set optimizer=sgd lr=0.02` (the ramp: `momentum`, `momentum_final`, `momentum_epochs`; the
minimax loss of the GAN paper's text: `loss=minimax`); the released code's networks and schedule
in full add `coarse_arch=mlp d_padding=none level_steps=1,1,1`. The default is Adam (lr 2e-4,
beta_1 0.5, as dcgan) with the non-saturating loss, which started reliably on MNIST where both
SGD forms failed one seed of two.

Cost. The finest G's two 7 x 7, 64-channel convolutions at the full image size are most of a
training step's cost, which is far more than dcgan's step: an equal-time comparison has to weigh
it.

Monitors, per level (suffix _k, k = 0 the finest, K the coarsest): d_loss_k, d_accuracy_k (D's
accuracy on the real and generated halves at threshold 1/2), g_loss_k; and their sums d_loss,
g_loss. `evaluate`: mean D_k on real and generated inputs of every level on up to 1,000
held-out images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from genlearn.config import IMAGE_DATASETS, Common, bounded, choice
from genlearn.errors import UserError
from genlearn.models.base import GenerativeModel
from genlearn.nn.adversarial import (
    N_CLASSES,
    adversarial_step,
    checked_labels,
    one_hot,
    player_optimizer,
    ramp_momentum,
    uniform_labels,
)
from genlearn.nn.pyramid import downsample, pyramid_sizes, upsample

IMAGE_SIZES = {"mnist": (1, 28, 28), "mnist-2digit": (1, 60, 60)}  # (C, H, W) of each data set
MIN_RESIDUAL_SIDE = 9  # D_k's unpadded 5 x 5 and stride-2 5 x 5 convolutions (d_padding none) need 9
EVAL_IMAGES = 1000  # held-out images `evaluate` looks at
SAMPLE_CHUNK = 250  # images per pass through the networks when sampling
D_PADDING = {"same": 2, "none": 0}  # each residual D's padding of its 5 x 5 convolutions


@dataclass
class Config(Common):
    dataset: str = choice("mnist", IMAGE_DATASETS, "training data: mnist (28 x 28) or mnist-2digit (60 x 60)")
    levels: int = bounded(3, min=1, help="pyramid levels, the coarsest included (28 -> 14 -> 7: 3)")
    conditional: bool = field(
        default=False, metadata={"help": "class-conditional: every G_k and D_k sees the label"}
    )
    loss: str = choice("non-saturating", ("non-saturating", "minimax"), "generator objective")
    k: int = bounded(1, min=1, help="discriminator updates per generator update, per level (Algorithm 1)")
    level_steps: str = field(
        default="",
        metadata={
            "help": "Algorithm-1 updates of each level per batch, finest first, e.g. 1,1,2; "
            "empty = 1 for the finest, 2 for each coarser level"
        },
    )
    z_dim: int = bounded(100, min=1, help="noise dimension of the coarsest generator")
    g_channels: int = bounded(64, min=1, help="channels of each residual generator's hidden layers")
    d_channels: int = bounded(64, min=1, help="channels of each residual discriminator's hidden layers")
    coarse_arch: str = choice(
        "conv",
        ("conv", "upconv", "mlp"),
        "the coarsest pair: a small dcgan-like conv pair (upconv: its G upsamples from half the "
        "size), or the released code's MLP pair",
    )
    coarse_g_hidden: int = bounded(1200, min=1, help="hidden units per layer of the coarsest generator (mlp)")
    coarse_d_hidden: int = bounded(
        600, min=1, help="hidden units per layer of the coarsest discriminator (mlp)"
    )
    coarse_channels: int = bounded(64, min=2, help="channels of the coarsest G (conv); its D has half")
    d_padding: str = choice(
        "same",
        ("same", "none"),
        "padding of each residual D's convolutions: same (reads every pixel) or none (the released code)",
    )
    d_dropout: float = bounded(0.5, min=0.0, max=0.99, help="dropout before every discriminator's output")
    optimizer: str = choice("adam", ("adam", "sgd"), "optimiser of every network (the paper: sgd, lr 0.02)")
    lr: float = bounded(2e-4, min=0.0, help="learning rate (the paper's SGD: 0.02)")
    beta1: float = bounded(0.5, min=0.0, max=1.0, help="Adam's beta_1")
    momentum: float = bounded(0.5, min=0.0, max=1.0, help="SGD momentum at the start")
    momentum_final: float = bounded(0.7, min=0.0, max=1.0, help="SGD momentum after the ramp")
    momentum_epochs: float = bounded(250.0, min=0.0, help="epochs over which SGD momentum rises")

    def check(self) -> None:
        if self.conditional and self.dataset != "mnist":
            raise UserError(
                f"conditional=true needs MNIST's labels; dataset {self.dataset!r} has one label per digit"
            )
        sizes = level_sizes(self)
        small = [f"{h} x {w}" for h, w in sizes[:-1] if min(h, w) < MIN_RESIDUAL_SIDE]
        if small and self.d_padding == "none":
            raise UserError(
                f"levels={self.levels} makes a residual level of {small[0]} on {self.dataset}: each "
                f"residual level needs at least {MIN_RESIDUAL_SIDE} pixels a side with d_padding=none "
                f"(sizes {' -> '.join(str(h) for h, _ in sizes)}); use fewer levels or d_padding=same"
            )
        parse_level_steps(self.level_steps, self.levels)

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A config written before `coarse_arch` existed has the MLP coarsest pair (the default is
        now conv); one written before `d_padding` existed has the released code's unpadded
        discriminators and, where its `level_steps` was empty, one update of each level a batch
        (empty now gives the coarser levels 2)."""
        values = dict(values)
        if "coarse_g_hidden" in values and "coarse_arch" not in values:
            values["coarse_arch"] = "mlp"
        if "coarse_g_hidden" in values and "d_padding" not in values:
            values["d_padding"] = "none"
            if not str(values.get("level_steps", "")).strip():
                values["level_steps"] = ",".join(["1"] * int(values.get("levels", cls.levels)))
        return values


def level_sizes(c: Config) -> list[tuple[int, int]]:
    """(H, W) of every level, finest (k = 0) first: 28, 14, 7 for MNIST and 3 levels."""
    _, height, width = IMAGE_SIZES[c.dataset]
    try:
        return pyramid_sizes(height, width, c.levels)
    except ValueError as exc:
        raise UserError(f"bad value for 'levels': {exc}") from None


def parse_level_steps(text: str, levels: int) -> list[int]:
    """`level_steps` as one count per level, finest first: "" -> [1, 2, ..., 2]."""
    if not text.strip():
        return [1] + [2] * (levels - 1)
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError:
        steps = []
    if len(steps) != levels or min(steps) < 0 or max(steps) == 0:
        raise UserError(
            f"bad value for 'level_steps': {text!r}; give {levels} counts >= 0, finest level first "
            f"(e.g. {','.join(['1'] * levels)}), not all 0"
        )
    return steps


# ------------------------------------------------------------------------------------------------
# The networks of one level


def conv_with_label_planes(conv: nn.Conv2d, x: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
    """conv(cat([x, label planes])), without convolving the planes image by image.

    Speed: a convolution is linear in its input planes, and label l's plane is a constant, so
    its part of the output is onehot[:, l] times one map, conv(a plane of ones) through l's
    filters, the same for every image: ten maps a batch (one small convolution) and a matrix
    product replace the ten planes' share of the convolution (most of the first convolution's
    cost at level 0: 12 input planes, 2 of them the image's). The weights are `conv`'s own, so
    saved runs load unchanged; sums run in another order (float rounding apart, equal)."""
    if onehot is None:
        return conv(x)
    channels = x.shape[1]
    weight = conv.weight
    out = F.conv2d(x, weight[:, :channels], conv.bias, conv.stride, conv.padding)
    hidden, labels = weight.shape[0], weight.shape[1] - channels
    per_label = weight[:, channels:].transpose(0, 1).reshape(labels * hidden, 1, *weight.shape[-2:])
    maps = F.conv2d(x.new_ones(1, 1, *x.shape[-2:]), per_label, None, conv.stride, conv.padding)
    return out + (onehot @ maps.view(labels, -1)).view_as(out)


class ResidualGenerator(nn.Module):
    """G_k: [noise plane, l_k (, label planes)] -> conv 7x7 -> ReLU -> conv 7x7 -> ReLU -> conv 5x5."""

    def __init__(self, channels: int, hidden: int, n_labels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1 + channels + n_labels, hidden, 7, padding=3),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 7, padding=3),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 5, padding=2),
        )

    def forward(
        self, noise: torch.Tensor, condition: tuple[torch.Tensor, torch.Tensor | None]
    ) -> torch.Tensor:
        low, onehot = condition
        return self.net[1:](conv_with_label_planes(self.net[0], torch.cat([noise, low], 1), onehot))


class ResidualDiscriminator(nn.Module):
    """D_k: h + l_k (, label planes) -> conv 5x5 -> ReLU -> conv 5x5 stride 2 -> ReLU -> dropout
    -> linear: one logit per image. `pad` 2 reads every pixel; 0 (the released code) is blind
    to the last row and column (the module docstring)."""

    def __init__(
        self, channels: int, hidden: int, size: tuple[int, int], n_labels: int, dropout: float, pad: int
    ):
        super().__init__()
        h, w = ((s + 2 * pad - 4 + 2 * pad - 5) // 2 + 1 for s in size)
        self.net = nn.Sequential(
            nn.Conv2d(channels + n_labels, hidden, 5, padding=pad),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 5, stride=2, padding=pad),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(hidden * h * w, 1),
        )

    def forward(
        self, residual: torch.Tensor, condition: tuple[torch.Tensor, torch.Tensor | None]
    ) -> torch.Tensor:
        low, onehot = condition
        return self.net[1:](conv_with_label_planes(self.net[0], residual + low, onehot))


class CoarseGenerator(nn.Module):
    """G_K: [z (, one-hot label)] -> hidden ReLU -> hidden ReLU -> pixels, sigmoid."""

    def __init__(self, c: Config, shape: tuple[int, int, int], n_labels: int):
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(
            nn.Linear(c.z_dim + n_labels, c.coarse_g_hidden),
            nn.ReLU(),
            nn.Linear(c.coarse_g_hidden, c.coarse_g_hidden),
            nn.ReLU(),
            nn.Linear(c.coarse_g_hidden, math.prod(shape)),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        inputs = z if onehot is None else torch.cat([z, onehot], 1)
        return self.net(inputs).view(-1, *self.shape)


class CoarseDiscriminator(nn.Module):
    """D_K: [pixels (, one-hot label)] -> hidden ReLU -> dropout -> hidden ReLU -> dropout -> logit."""

    def __init__(self, c: Config, shape: tuple[int, int, int], n_labels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(math.prod(shape) + n_labels, c.coarse_d_hidden),
            nn.ReLU(),
            nn.Dropout(c.d_dropout),
            nn.Linear(c.coarse_d_hidden, c.coarse_d_hidden),
            nn.ReLU(),
            nn.Dropout(c.d_dropout),
            nn.Linear(c.coarse_d_hidden, 1),
        )

    def forward(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        return self.net(x if onehot is None else torch.cat([x, onehot], 1))


class CoarseConvGenerator(nn.Module):
    """G_K (`coarse_arch = conv`), dcgan's generator at the coarsest size s: [z (, one-hot)] ->
    linear to ch x s x s -> BN -> ReLU -> conv 3x3 ch/2 -> BN -> ReLU -> conv 3x3 -> sigmoid."""

    def __init__(self, c: Config, shape: tuple[int, int, int], n_labels: int):
        super().__init__()
        ch, (channels, h, w) = c.coarse_channels, shape
        self.net = nn.Sequential(
            nn.Linear(c.z_dim + n_labels, ch * h * w),
            nn.Unflatten(1, (ch, h, w)),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.Conv2d(ch, ch // 2, 3, padding=1),
            nn.BatchNorm2d(ch // 2),
            nn.ReLU(),
            nn.Conv2d(ch // 2, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z if onehot is None else torch.cat([z, onehot], 1))


class CoarseConvDiscriminator(nn.Module):
    """D_K (`coarse_arch = conv`), dcgan's discriminator at the coarsest size: [pixels (, label
    planes)] -> conv 3x3 ch/2 -> leaky ReLU -> conv 4x4 stride 2, ch -> BN -> leaky ReLU -> logit."""

    def __init__(self, c: Config, shape: tuple[int, int, int], n_labels: int):
        super().__init__()
        ch, (channels, h, w) = c.coarse_channels, shape
        half_h, half_w = (h - 2) // 2 + 1, (w - 2) // 2 + 1
        self.net = nn.Sequential(
            nn.Conv2d(channels + n_labels, ch // 2, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch // 2, ch, 4, stride=2, padding=1),
            nn.BatchNorm2d(ch),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(ch * half_h * half_w, 1),
        )

    def forward(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        return self.net[1:](conv_with_label_planes(self.net[0], x, onehot))


class CoarseUpconvGenerator(nn.Module):
    """G_K (`coarse_arch = upconv`), dcgan's generator one upsampling short: [z (, one-hot)] ->
    linear to ch x s/2 x s/2 -> BN -> ReLU -> transposed conv 4x4 stride 2, ch/2 -> BN -> ReLU ->
    conv 3x3 -> sigmoid, at s x s (an odd s is drawn one pixel larger and cropped)."""

    def __init__(self, c: Config, shape: tuple[int, int, int], n_labels: int):
        super().__init__()
        ch, (channels, h, w) = c.coarse_channels, shape
        self.shape = shape
        self.net = nn.Sequential(
            nn.Linear(c.z_dim + n_labels, ch * ((h + 1) // 2) * ((w + 1) // 2)),
            nn.Unflatten(1, (ch, (h + 1) // 2, (w + 1) // 2)),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1),
            nn.BatchNorm2d(ch // 2),
            nn.ReLU(),
            nn.Conv2d(ch // 2, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        _, h, w = self.shape
        return self.net(z if onehot is None else torch.cat([z, onehot], 1))[..., :h, :w]


COARSE = {
    "mlp": (CoarseGenerator, CoarseDiscriminator),
    "conv": (CoarseConvGenerator, CoarseConvDiscriminator),
    "upconv": (CoarseUpconvGenerator, CoarseConvDiscriminator),
}


# ------------------------------------------------------------------------------------------------


class LAPGAN(GenerativeModel):
    """K + 1 adversarial pairs, one per pyramid level: G[k], D[k] for level k (0 the finest)."""

    Config = Config
    capabilities = frozenset({"sample_pyramid"})

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        channels = IMAGE_SIZES[c.dataset][0]
        self.sizes = level_sizes(c)  # finest first
        self.image_shape = (channels, *self.sizes[0])
        self.coarsest = len(self.sizes) - 1  # K
        self.level_steps = parse_level_steps(c.level_steps, c.levels)
        self.conditions = ("labels",) if c.conditional else ()
        labels = N_CLASSES if c.conditional else 0
        residual = self.sizes[:-1]
        coarse_shape = (channels, *self.sizes[-1])
        coarse_g, coarse_d = COARSE[c.coarse_arch]
        self.G = nn.ModuleList(
            [ResidualGenerator(channels, c.g_channels, labels) for _ in residual]
            + [coarse_g(c, coarse_shape, labels)]
        )
        self.D = nn.ModuleList(
            [
                ResidualDiscriminator(
                    channels, c.d_channels, size, labels, c.d_dropout, D_PADDING[c.d_padding]
                )
                for size in residual
            ]
            + [coarse_d(c, coarse_shape, labels)]
        )
        # per-level counters (k and the figures depend on them) and the steps (SGD's momentum
        # ramp): buffers, so that a resumed run continues them
        self.register_buffer("d_updates", torch.zeros(c.levels, dtype=torch.long))
        self.register_buffer("g_updates", torch.zeros(c.levels, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.steps_per_epoch = 500  # set by `prepare`; only the momentum ramp uses it
        self.optimizers = {}
        for level in range(c.levels):
            self.optimizers[f"g{level}"] = player_optimizer(c, self.G[level])
            self.optimizers[f"d{level}"] = player_optimizer(c, self.D[level])
        # each level's latest generator figures (0 until its first generator update)
        self._last_g = [0.0] * c.levels

    @property
    def data_kind(self) -> str:
        return "continuous"

    def prepare(self, data, batch_size: int) -> None:
        """How many steps an epoch has, for SGD's momentum ramp (counted in epochs)."""
        self.steps_per_epoch = max(1, len(data.train_x) // batch_size)

    # ---- the pyramid and the noise ---------------------------------------------------------------
    def real_pyramid(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """(lows, residuals, coarsest) of real images: l_k = u(I_{k+1}) and h_k = I_k - l_k for
        k = 0..K-1 (finest first), and I_K; [*residuals, coarsest] is `laplacian_pyramid(x, K + 1)`."""
        lows, residuals = [], []
        image = x
        for _ in range(self.coarsest):
            coarser = downsample(image)
            low = upsample(coarser, image.shape[-2:])
            lows.append(low)
            residuals.append(image - low)
            image = coarser
        return lows, residuals, image

    def coarse_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_K ~ U(-1, 1)^z_dim (the released code's noise)."""
        return 2 * torch.rand(n, self.config.z_dim, generator=generator, device=self.steps.device) - 1

    def noise_plane(self, level: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_k ~ U(-1, 1), one plane of level k's size."""
        shape = (n, 1, *self.sizes[level])
        return 2 * torch.rand(shape, generator=generator, device=self.steps.device) - 1

    # ---- training -------------------------------------------------------------------------------
    def _momentum_ramp(self) -> None:
        """SGD's momentum ramp (the released code's), counted in epochs of training steps."""
        ramp_momentum(self.config, self.optimizers.values(), int(self.steps) / self.steps_per_epoch)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One Algorithm-1 update of every level (n_k of level k with `level_steps`) on the real
        pyramid of this minibatch, coarse to fine; fakes drawn for the batch's labels."""
        c = self.config
        x = batch["x"]
        onehot = one_hot(batch["y"]) if c.conditional else None
        lows, residuals, coarsest = self.real_pyramid(x)
        self._momentum_ramp()
        stats: dict[str, float] = {"d_loss": 0.0, "g_loss": 0.0}
        per_level: dict[str, float] = {}
        for level in reversed(range(c.levels)):
            if level == self.coarsest:
                real, condition = coarsest, onehot
                noise = self.coarse_noise
            else:
                real, condition = residuals[level], (lows[level], onehot)
                noise = lambda m, level=level: self.noise_plane(level, m)  # noqa: E731
            for _ in range(self.level_steps[level]):
                out = adversarial_step(
                    self.G[level],
                    self.D[level],
                    self.optimizers[f"g{level}"],
                    self.optimizers[f"d{level}"],
                    real,
                    noise,
                    k=c.k,
                    loss=c.loss,
                    condition=condition,
                    d_updates=int(self.d_updates[level]),
                )
                self.d_updates[level] += 1
                if "g_loss" in out:
                    self.g_updates[level] += 1
                    self._last_g[level] = out["g_loss"]
            if self.level_steps[level]:
                per_level |= {
                    f"d_loss_{level}": out["d_loss"],
                    f"d_accuracy_{level}": out["d_accuracy"],
                    f"g_loss_{level}": self._last_g[level],
                }
                stats["d_loss"] += out["d_loss"]
                stats["g_loss"] += self._last_g[level]
        self.steps += 1
        return stats | per_level

    # ---- sampling -------------------------------------------------------------------------------
    def default_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Labels uniform over the ten digits (MNIST's held-out classes are near uniform)."""
        if not self.config.conditional:
            return {}
        return {"labels": uniform_labels(n, generator, self.steps.device)}

    @torch.no_grad()
    def sample_pyramid(
        self, n: int, generator: torch.Generator | None = None, **condition: Any
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(images, residuals), coarse to fine: images [I~_K, ..., I~_0], each (n, C, H_k, W_k)
        in [0, 1]; residuals [h~_{K-1}, ..., h~_0], with images[j + 1] = u(images[j]) +
        residuals[j]. Noise and labels are drawn from `generator`: z_K, the labels (when not
        given), then the noise planes coarse to fine."""
        z = self.coarse_noise(n, generator)
        onehot = self._onehot(n, generator, **condition)
        planes = {level: self.noise_plane(level, n, generator) for level in reversed(range(self.coarsest))}
        coarsest = self.G[self.coarsest]
        return self._refine_in_chunks(
            n, self.coarsest, lambda part, onehot: coarsest(z[part], onehot), planes, onehot
        )

    @torch.no_grad()
    def refine(
        self, coarse: torch.Tensor, generator: torch.Generator | None = None, **condition: Any
    ) -> torch.Tensor:
        """Full-size samples that complete given coarse images: `coarse` (n, C, H_k, W_k) stands
        for I~_k at the level k > 0 of its size (a real image's I_k, say), and G_{k-1}, ..., G_0
        draw the finer levels, as the paper's figures complete real low-resolution images. Which
        level limits the samples shows here: feed the real I_k and score the result. Labels as
        `sample`; the noise planes are drawn from `generator` coarse to fine, after the labels."""
        shapes = [(self.image_shape[0], *size) for size in self.sizes[1:]]
        if coarse.dim() != 4 or tuple(coarse.shape[1:]) not in shapes:
            raise UserError(
                f"refine takes images of a coarser level, (n, C, H, W) with (C, H, W) one of "
                f"{', '.join(' x '.join(map(str, s)) for s in shapes)}; got {tuple(coarse.shape)}"
            )
        level = 1 + shapes.index(tuple(coarse.shape[1:]))
        n = len(coarse)
        onehot = self._onehot(n, generator, **condition)
        planes = {k: self.noise_plane(k, n, generator) for k in reversed(range(level))}
        images, _ = self._refine_in_chunks(n, level, lambda part, onehot: coarse[part], planes, onehot)
        return images[-1]

    def _onehot(self, n: int, generator: torch.Generator | None, **condition: Any) -> torch.Tensor | None:
        """The one-hot code of the given (or drawn, from `generator`) labels; None if unconditional."""
        labels = self.conditions_for(n, generator, **condition).get("labels")
        return None if labels is None else one_hot(checked_labels(labels, n, self.steps.device))

    def _refine_in_chunks(
        self,
        n: int,
        level: int,
        start: Callable[[slice, torch.Tensor | None], torch.Tensor],
        planes: dict[int, torch.Tensor],
        onehot: torch.Tensor | None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """`_refine` from I~_level = start(part, its one-hot codes), SAMPLE_CHUNK images at a time
        in eval mode, the chunks' pyramids joined level by level."""
        parts = [slice(i, i + SAMPLE_CHUNK) for i in range(0, n, SAMPLE_CHUNK)] or [slice(0, 0)]
        was = self.training
        self.eval()
        try:
            chunks = []
            for part in parts:
                codes = None if onehot is None else onehot[part]
                image = start(part, codes)
                chunks.append(self._refine(image, level, {k: v[part] for k, v in planes.items()}, codes))
        finally:
            self.train(was)
        images = [torch.cat([ch[0][j] for ch in chunks]) for j in range(level + 1)]
        residuals = [torch.cat([ch[1][j] for ch in chunks]) for j in range(level)]
        return images, residuals

    def _refine(
        self, image: torch.Tensor, level: int, planes: dict[int, torch.Tensor], onehot: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """I~_k = clamp(u(I~_{k+1}) + G_k(z_k, u(I~_{k+1})), 0, 1) for k = level - 1, ..., 0, from
        `image` at `level`: ([image, I~_{level-1}, ..., I~_0], [h~_{level-1}, ..., h~_0])."""
        images, residuals = [image], []
        for k in reversed(range(level)):
            low = upsample(image, self.sizes[k])
            image = (low + self.G[k](planes[k], (low, onehot))).clamp(0, 1)
            images.append(image)
            residuals.append(image - low)
        return images, residuals

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **condition: Any) -> torch.Tensor:
        """n samples I~_0, (n, C, H, W) in [0, 1]: the finest level of `sample_pyramid`. A
        conditional LAPGAN takes `labels` (n digits); without them it draws labels uniformly."""
        return self.sample_pyramid(n, generator, **condition)[0][-1]

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Cheap held-out monitors on the split's first 1,000 images: every level's mean D_k on
        the real pyramid (d_real_k) and on its generator's outputs for the same l_k and labels
        (d_fake_k), and their means over the levels. Parzen, FID, coverage and label agreement:
        `genlearn eval --metric`."""
        x = data["x"][:EVAL_IMAGES]
        onehot = one_hot(data["y"][:EVAL_IMAGES]) if self.config.conditional else None
        was = self.training
        self.eval()
        try:
            lows, residuals, coarsest = self.real_pyramid(x)
            out: dict[str, float] = {}
            for level in range(self.config.levels):
                if level == self.coarsest:
                    real, condition, z = coarsest, onehot, self.coarse_noise(len(x))
                else:
                    real, condition, z = (
                        residuals[level],
                        (lows[level], onehot),
                        self.noise_plane(level, len(x)),
                    )
                fake = self.G[level](z, condition)
                D = self.D[level]
                out[f"d_real_{level}"] = float(torch.sigmoid(D(real, condition)).mean())
                out[f"d_fake_{level}"] = float(torch.sigmoid(D(fake, condition)).mean())
        finally:
            self.train(was)
        levels = range(self.config.levels)
        out["d_real"] = sum(out[f"d_real_{k}"] for k in levels) / len(levels)
        out["d_fake"] = sum(out[f"d_fake_{k}"] for k in levels) / len(levels)
        return out
