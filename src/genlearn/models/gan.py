r"""Generative adversarial nets (Goodfellow et al., NIPS 2014), trained by Algorithm 1.

A generator G maps noise z ~ p_z to data space; a discriminator D(x) gives the probability that
x came from the data rather than from G. They play the minimax game with value function

    min_G max_D V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p_z}[log(1 - D(G(z)))]

Algorithm 1 (minibatch stochastic gradient descent, momentum): for each training iteration,
k times: draw m noise samples and m data examples and ascend the discriminator's gradient

    grad_{theta_d} 1/m sum_i [log D(x_i) + log(1 - D(G(z_i)))]

then draw m fresh noise samples and descend the generator's gradient of

    1/m sum_i log(1 - D(G(z_i)))                          (`loss = "minimax"`), or minimise
    -1/m sum_i log D(G(z_i))                              (`loss = "non-saturating"`)

The second is the paper's recommendation (section 3): early on, D rejects G's samples with
confidence and log(1 - D(G(z))) saturates; -log D(G(z)) has the same fixed point and strong
gradients. D outputs a logit l, D = sigmoid(l), and every term is computed from logits:
log D = -softplus(-l) and log(1 - D) = -softplus(l).

Each call of `train_step` is one discriminator update on the loop's minibatch; every k-th call
also makes the generator update, so one iteration of Algorithm 1 consumes k data minibatches.
That update is `genlearn.nn.adversarial.adversarial_step`, a function of the two players rather
than of this class: LAPGAN trains each level of its pyramid with the same function.

Networks (`arch`):
- `mlp`, the paper's MNIST model (its published pylearn2 configuration): G: 100 uniform noise
  inputs on [-sqrt 3, sqrt 3] -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid, weights U(-0.05, 0.05),
  the output bias started at the logits of the training data's pixel means; D: maxout 240 units
  x 5 pieces -> maxout 240 x 5 -> 1 sigmoid, weights U(-0.005, 0.005), dropout keeping inputs
  with probability 0.8 and hidden units with 0.5. SGD with batches of 100, learning rate 0.1
  divided by 1.000004 every iteration (not below 1e-6), momentum rising linearly from 0.5 to 0.7
  over the first 250 epochs.
- `conv`, the modern baseline (`dcgan`, after Radford et al. 2016, small for a CPU): G: z (100,
  Gaussian) -> 64 x 7 x 7 -> transposed convolutions to 32 x 14 x 14 and 1 x 28 x 28, batch norm
  and ReLU between, sigmoid out; D: strided convolutions 1 -> 32 -> 64 channels with leaky ReLU
  (batch norm on the second), then a linear logit. Adam, lr 2e-4, beta_1 = 0.5. On the 60 x 60
  two-digit canvases (`dataset = mnist-2digit`, LAPGAN's comparison) the same layers run at
  15 -> 30 -> 60 (G) and 60 -> 30 -> 15 (D).

On 2-D toy data (`dataset = ring8` or `grid25`) the `mlp` networks output two linear
coordinates instead of 784 sigmoid pixels.

Conditional adversarial nets (Mirza & Osindero 2014; `conditional = true`, registered as `cgan`):
both players see extra information y, here the digit's label, and the game becomes

    min_G max_D V(D, G) = E_{x ~ p_data}[log D(x | y)] + E_{z ~ p_z}[log(1 - D(G(z | y) | y))]

G takes [z, onehot(y)]; D takes the image with onehot(y) beside it (ten constant 28 x 28 planes
for the convolutional D, ten more inputs for the maxout D). Each minibatch's fakes are drawn for
its real images' labels, so D must judge whether an image fits its label, not only whether it is
real. Sampling takes `labels` (uniform digits when none are given).

Monitors: mean D(x) and D(G(z)) over the minibatch, both losses and both gradient norms. A
discriminator loss near 0 (D separates perfectly and the minimax generator gets no gradient), or
a generator gradient norm near 0, is warned about once in the log.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from genlearn.config import IMAGE_DATASETS, LR_SCHEDULES, TOY_DATASETS, Common, bounded, choice
from genlearn.errors import UserError
from genlearn.models.base import GenerativeModel
from genlearn.nn.adversarial import (
    N_CLASSES,
    adversarial_step,
    checked_labels,
    generator_step,
    one_hot,
    player_optimizer,
    ramp_momentum,
    uniform_labels,
)

GAN_DATASETS = (*IMAGE_DATASETS, *TOY_DATASETS)
IMAGE_SHAPES = {"mnist": (1, 28, 28), "mnist-2digit": (1, 60, 60)}  # (C, H, W) of each image data set
# Collapse warnings, each after `_PATIENCE` consecutive updates: D's loss below _D_LOSS_COLLAPSE,
# or G's gradient norm below _G_GRAD_VANISH times the largest it has been in this process (the
# paper's networks start with gradients of 1e-7, so only a fall from an earlier level counts).
_D_LOSS_COLLAPSE = 1e-3
_G_GRAD_VANISH = 1e-4
_PATIENCE = 50


@dataclass
class Config(Common):
    arch: str = choice("mlp", ("mlp", "conv"), "networks: the paper's MLP/maxout pair, or convolutional")
    loss: str = choice("non-saturating", ("non-saturating", "minimax"), "generator objective")
    k: int = bounded(1, min=1, help="discriminator updates per generator update (Algorithm 1)")
    dataset: str = choice(
        "mnist",
        GAN_DATASETS,
        "training data: MNIST intensities, the 60 x 60 two-digit canvases or a 2-D mixture",
    )
    z_dim: int = bounded(100, min=1, help="noise dimension")
    noise: str = choice("uniform", ("uniform", "gaussian"), "p_z: U[-sqrt 3, sqrt 3] or N(0, 1)")
    g_hidden: int = bounded(1200, min=1, help="generator hidden units per layer (mlp)")
    d_units: int = bounded(240, min=1, help="discriminator maxout units per layer (mlp)")
    d_pieces: int = bounded(5, min=1, help="pieces per maxout unit (mlp)")
    d_input_keep: float = bounded(0.8, min=0.0, max=1.0, help="dropout: P(keep) of D's inputs")
    d_hidden_keep: float = bounded(0.5, min=0.0, max=1.0, help="dropout: P(keep) of D's hidden units")
    optimizer: str = choice("sgd", ("sgd", "adam"), "optimiser of both networks")
    momentum: float = bounded(0.5, min=0.0, max=1.0, help="SGD momentum at the start")
    momentum_final: float = bounded(0.7, min=0.0, max=1.0, help="SGD momentum after the ramp")
    momentum_epochs: float = bounded(250.0, min=0.0, help="epochs over which momentum rises")
    lr_schedule: str = choice("exponential", LR_SCHEDULES, "learning-rate schedule")
    lr_decay: float = bounded(1.000004, min=1.0, help="lr divided by this every step (exponential)")
    lr_final: float = bounded(1e-5, min=0.0, help="the decayed lr's floor as a fraction of lr")
    beta1: float = bounded(0.5, min=0.0, max=1.0, help="Adam's beta_1")
    g_channels: int = bounded(
        64, min=1, help="channels of G's 7 x 7 (15 x 15) layer, halved at twice the size (conv)"
    )
    d_channels: int = bounded(
        32, min=1, help="channels of D's 14 x 14 (30 x 30) layer, doubled at half the size (conv)"
    )
    g_ema: float = bounded(
        0.0, min=0.0, max=0.99999, help="decay of a moving average of G's weights that samples; 0 = off"
    )
    lr: float = bounded(0.1, min=0.0, help="learning rate")
    conditional: bool = field(
        default=False, metadata={"help": "class-conditional (Mirza & Osindero 2014): G and D see the label"}
    )

    def check(self) -> None:
        if self.conditional and self.dataset != "mnist":
            raise UserError(f"conditional=true needs MNIST's labels; dataset {self.dataset!r} has none")

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A config written before the loop's exponential schedule: `min_lr`, the absolute floor
        of SGD's decayed lr, is now `lr_final`, the floor as a fraction of lr."""
        values = dict(values)
        if "min_lr" in values:
            min_lr = values.pop("min_lr")
            lr = values.get("lr", cls.lr)
            values.setdefault("lr_final", min_lr / lr if lr else 0.0)
        return values


class Maxout(nn.Module):
    """h_i = max_j (x W_ij + b_ij) over `pieces` linear pieces per unit (Goodfellow et al. 2013)."""

    def __init__(self, n_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(n_in, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).amax(dim=2)


def _uniform_init(module: nn.Module, bound: float) -> None:
    """pylearn2's `irange`: every weight U(-bound, bound), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def mlp_generator(c: Config, out_dim: int, sigmoid: bool) -> nn.Sequential:
    layers = [nn.Linear(c.z_dim + n_labels(c), c.g_hidden), nn.ReLU()]
    layers += [nn.Linear(c.g_hidden, c.g_hidden), nn.ReLU(), nn.Linear(c.g_hidden, out_dim)]
    if sigmoid:
        layers.append(nn.Sigmoid())
    net = nn.Sequential(*layers)
    _uniform_init(net, 0.05)
    return net


def mlp_discriminator(c: Config, in_dim: int) -> nn.Sequential:
    net = nn.Sequential(
        nn.Dropout(1 - c.d_input_keep),
        Maxout(in_dim + n_labels(c), c.d_units, c.d_pieces),
        nn.Dropout(1 - c.d_hidden_keep),
        Maxout(c.d_units, c.d_units, c.d_pieces),
        nn.Dropout(1 - c.d_hidden_keep),
        nn.Linear(c.d_units, 1),
    )
    _uniform_init(net, 0.005)
    return net


def conv_generator(c: Config, shape: tuple[int, int, int]) -> nn.Sequential:
    """z -> ch x s x s -> ch/2 x 2s x 2s -> image 4s x 4s, s = a quarter of the image's side."""
    ch, (channels, height, width) = c.g_channels, shape
    h, w = height // 4, width // 4
    return nn.Sequential(
        nn.Linear(c.z_dim + n_labels(c), ch * h * w),
        nn.Unflatten(1, (ch, h, w)),
        nn.BatchNorm2d(ch),
        nn.ReLU(),
        nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1),  # 14 x 14 (30 x 30)
        nn.BatchNorm2d(ch // 2),
        nn.ReLU(),
        nn.ConvTranspose2d(ch // 2, channels, 4, stride=2, padding=1),  # 28 x 28 (60 x 60)
        nn.Sigmoid(),
    )


def conv_discriminator(c: Config, shape: tuple[int, int, int]) -> nn.Sequential:
    """image -> ch at half the side -> 2 ch at a quarter -> logit."""
    ch, (channels, height, width) = c.d_channels, shape
    return nn.Sequential(
        nn.Conv2d(channels + n_labels(c), ch, 4, stride=2, padding=1),  # 14 x 14 (30 x 30)
        nn.LeakyReLU(0.2),
        nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1),  # 7 x 7 (15 x 15)
        nn.BatchNorm2d(2 * ch),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(2 * ch * (height // 4) * (width // 4), 1),
    )


def n_labels(c: Config) -> int:
    """Width of the label's one-hot code that a conditional pair appends to its inputs (0 if none)."""
    return N_CLASSES if c.conditional else 0


class GAN(GenerativeModel):
    """Generator G and discriminator D, each with its own optimiser, trained by Algorithm 1."""

    Config = Config

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        self.toy = c.dataset in TOY_DATASETS
        if self.toy and c.arch != "mlp":
            raise UserError(f"dataset {c.dataset} is 2-D points: it needs arch=mlp, not {c.arch}")
        self.image_shape = None if self.toy else IMAGE_SHAPES[c.dataset]
        if c.arch == "mlp":
            out = 2 if self.toy else math.prod(self.image_shape)
            self.G = mlp_generator(c, out, sigmoid=not self.toy)
            self.D = mlp_discriminator(c, out)
        else:
            self.G, self.D = conv_generator(c, self.image_shape), conv_discriminator(c, self.image_shape)
        self.out_shape = (2,) if self.toy else self.image_shape
        self.conditions = ("labels",) if c.conditional else ()
        # G_ema: the exponential moving average of G's weights and batch-norm statistics
        # (Yazici et al., ICLR 2019), updated after every generator step; it draws the samples.
        # G's own iterates circle around the game's equilibrium, their average sits nearer it.
        self.G_ema = None
        if c.g_ema > 0:
            self.G_ema = AveragedModel(self.G, multi_avg_fn=get_ema_multi_avg_fn(c.g_ema), use_buffers=True)
            self.G_ema.requires_grad_(False)
        # counters that the schedules and k depend on: buffers, so a resumed run continues them
        self.register_buffer("d_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("g_updates", torch.zeros((), dtype=torch.long))
        self.steps_per_epoch = 500  # set by `prepare`; only the momentum ramp uses it
        self.optimizers = {"d": player_optimizer(config, self.D), "g": player_optimizer(config, self.G)}
        # G's figures are reported every step, the latest ones (0 before G's first update when k > 1)
        self._last_g: dict[str, float] = {"g_loss": 0.0, "g_grad_norm": 0.0}
        self._collapsed = self._vanished = 0
        self._g_peak = 0.0
        self._warned: set[str] = set()

    @property
    def data_kind(self) -> str:
        return "points" if self.toy else "continuous"

    def prepare(self, data, batch_size: int) -> None:
        """Called by the training loop before the first step (a resumed run then loads its
        weights over this). Starts G's output bias at the logits of the training data's pixel
        means (the paper's `init_sigmoid_bias_from_marginals`), so G begins at the mean image,
        and learns how many steps an epoch has, for the momentum ramp (counted in epochs)."""
        self.steps_per_epoch = max(1, len(data.train_x) // batch_size)
        if self.toy or self.config.arch != "mlp":
            return
        p = data.train_images(len(data)).flatten(1).mean(0).clamp(1e-6, 1 - 1e-6)
        with torch.no_grad():
            self.G[-2].bias.copy_(torch.log(p / (1 - p)))

    # ----------------------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ p_z: uniform on [-sqrt 3, sqrt 3] (unit variance) or standard normal."""
        device = self.d_updates.device
        if self.config.noise == "uniform":
            u = torch.rand(n, self.config.z_dim, generator=generator, device=device)
            return (2 * u - 1) * math.sqrt(3)
        return torch.randn(n, self.config.z_dim, generator=generator, device=device)

    def generate(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, average: bool = False
    ) -> torch.Tensor:
        """G(z) (or G(z, y)) in the data's shape; with `average`, the moving-average generator's."""
        net = self.G_ema if average and self.G_ema is not None else self.G
        if self.config.conditional:
            z = torch.cat([z, one_hot(labels)], 1)
        return net(z).view(-1, *self.out_shape)

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's logit l(x) (or l(x, y)), shape (n,); D(x) = sigmoid(l). A conditional D sees the
        label as a one-hot code beside the pixels (mlp) or as ten constant planes (conv)."""
        if self.config.arch == "mlp":
            x = x.flatten(1)
            if self.config.conditional:
                x = torch.cat([x, one_hot(labels)], 1)
        else:
            x = x.view(-1, *self.image_shape)
            if self.config.conditional:
                planes = one_hot(labels)[:, :, None, None].expand(-1, -1, *self.image_shape[1:])
                x = torch.cat([x, planes], 1)
        return self.D(x).squeeze(1)

    def _momentum_ramp(self) -> None:
        """The paper's SGD momentum, rising linearly over `momentum_epochs` (the lr's decay is the
        loop's `exponential` schedule)."""
        ramp_momentum(self.config, self.optimizers.values(), int(self.d_updates) / self.steps_per_epoch)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.config
        y = batch["y"] if c.conditional else None  # fakes are drawn for the real batch's labels
        self._momentum_ramp()
        stats = adversarial_step(
            self.G,
            self.D,
            self.optimizers["g"],
            self.optimizers["d"],
            batch["x"],
            self.noise,
            k=c.k,
            loss=c.loss,
            condition=y,
            d_updates=int(self.d_updates),
            generate=self.generate,
            discriminate=self.discriminate,
        )
        self.d_updates += 1
        if "g_loss" in stats:
            self._after_generator_step(stats)
        stats = {key: stats[key] for key in ("d_loss", "d_real", "d_fake", "d_grad_norm")} | self._last_g
        self._watch(stats)
        return stats

    def _generator_step(self, m: int, y: torch.Tensor | None) -> None:
        """Algorithm 1's generator update alone, on m fresh noise samples (labels y, if any)."""
        c = self.config
        stats = generator_step(
            self.G,
            self.D,
            self.optimizers["g"],
            m,
            self.noise,
            loss=c.loss,
            condition=y,
            generate=self.generate,
            discriminate=self.discriminate,
        )
        self._after_generator_step(stats)

    def _after_generator_step(self, stats: dict[str, float]) -> None:
        self._last_g = {"g_loss": stats["g_loss"], "g_grad_norm": stats["g_grad_norm"]}
        if self.G_ema is not None:
            self.G_ema.update_parameters(self.G)
        self.g_updates += 1

    def _watch(self, stats: dict[str, float]) -> None:
        """Warn once when training has collapsed in one of the two ways that stall a GAN."""
        self._collapsed = self._collapsed + 1 if stats["d_loss"] < _D_LOSS_COLLAPSE else 0
        if self._collapsed >= _PATIENCE:
            self._warn(
                "d_collapse",
                f"the discriminator's loss has stayed below {_D_LOSS_COLLAPSE:g} for {_PATIENCE} "
                f"updates (step {int(self.d_updates)}): D rejects every sample and G may get no "
                "useful gradient; try loss=non-saturating, a lower lr or k=1",
            )
        norm = stats["g_grad_norm"]
        if math.isfinite(norm):
            self._g_peak = max(self._g_peak, norm)
            self._vanished = self._vanished + 1 if norm < _G_GRAD_VANISH * self._g_peak else 0
        if self._vanished >= _PATIENCE:
            self._warn(
                "g_vanish",
                f"the generator's gradient norm is {norm:.2e} at step {int(self.d_updates)}, "
                f"down from {self._g_peak:.2e}: its gradients have vanished",
            )

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # ----------------------------------------------------------------------------------------
    def default_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Labels uniform over the ten digits (MNIST's held-out classes are near uniform)."""
        if not self.config.conditional:
            return {}
        return {"labels": uniform_labels(n, generator, self.d_updates.device)}

    def _labels(self, n: int, generator: torch.Generator | None, condition: dict) -> torch.Tensor | None:
        """The labels of n samples: given (checked) or drawn; None for an unconditional GAN."""
        labels = self.conditions_for(n, generator, **condition).get("labels")
        return None if labels is None else checked_labels(labels, n, self.d_updates.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **condition) -> torch.Tensor:
        """n samples G(z): images (n, 1, 28, 28) in [0, 1], or points (n, 2) on toy data; from
        the moving-average generator when `g_ema` keeps one. A conditional GAN takes `labels`
        (n digits); without them it draws labels uniformly."""
        z = self.noise(n, generator)
        labels = self._labels(n, generator, condition)
        was = self.training
        self.eval()
        try:
            if labels is None:
                return torch.cat([self.generate(zb, average=True) for zb in z.split(1000)])
            parts = zip(z.split(1000), labels.split(1000))
            return torch.cat([self.generate(zb, yb, average=True) for zb, yb in parts])
        finally:
            self.train(was)

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Cheap held-out monitors: mean D(x) on the split and D(G(z)) on as many samples (for a
        conditional GAN, D(x, y) and D(G(z, y), y) with the split's labels). Parzen, FID, coverage
        and label agreement: `genlearn eval --metric`."""
        x = data["x"]
        y = data["y"] if self.config.conditional else None
        fake = self.sample(len(x), **({"labels": y} if y is not None else {}))
        chunks = y.split(1000) if y is not None else [None] * len(x.split(1000))

        def mean_d(images: torch.Tensor) -> float:
            parts = zip(images.split(1000), chunks)
            return float(torch.cat([torch.sigmoid(self.discriminate(b, c)) for b, c in parts]).mean())

        return {"d_real": mean_d(x), "d_fake": mean_d(fake)}
