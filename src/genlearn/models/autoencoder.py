r"""Traditional autoencoder for feature learning, trained on reconstruction error (lecture slides 1-3).

An encoder f maps an image x in [0, 1]^784 to a code h, a decoder g maps the code back:

    h     = f(x)                      MLP 784 -> hidden ... -> code_dim, linear code layer
    x_hat = g(h)                      mirrored MLP code_dim -> hidden ... -> 784

and both are trained by minimising the reconstruction error of each image, summed over pixels:

    L(x) = -sum_j [x_j log x_hat_j + (1 - x_j) log(1 - x_hat_j)],  x_hat = sigmoid(g(h))   (loss = "bce")
    L(x) = sum_j (x_j - x_hat_j)^2,                                 x_hat = g(h)            (loss = "mse")

The data are MNIST intensities, not binarized; with "bce" on intensities the minimum of L(x) is
the entropy sum_j H(x_j), not 0, so the numbers are comparable between autoencoders only.
With hidden_layers = 0 and loss = "mse" the model is linear and its codes span the same subspace
as the first code_dim principal components.

Supervised feature learning then uses the codes h = f(x) as features: `features(x)` is what
`genlearn eval RUN --metric probe` fits a linear classifier on (see genlearn.eval.probe).

An autoencoder is not a generative model: nothing defines p(x). To honour the `sample` contract
anyway, samples are decodings of codes drawn from a diagonal Gaussian fitted to the training codes,

    h ~ N(m, diag(v)),   x = x_hat(h),

where m and v are running estimates of the per-dimension mean and variance of the codes of the
training batches (the registered buffers `code_mean`, `code_var`, saved with the weights). Each
training step moves them towards the batch's mean and (unbiased) variance with the weight
max(1 / t, 0.01) at the t-th step: an exact average over the first 100 steps, then an
exponential moving average over roughly the last 100 batches, which follows the codes as the
encoder changes. Such samples show what the decoder does near the training codes; they are not
draws from a model of the data, and the aggregate code distribution is far from Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from genlearn.config import Common, bounded, choice
from genlearn.models.base import GenerativeModel
from genlearn.nn.mlp import ACTIVATIONS, mlp
from genlearn.nn.optim import make_optimizer
from genlearn.nn.stats import mean_and_stderr

IMAGE_SHAPE = (1, 28, 28)
STATS_MOMENTUM = 0.01  # floor of the running code statistics' update weight


@dataclass
class Config(Common):
    code_dim: int = bounded(32, min=1, help="dimension of the code h")
    hidden_units: int = bounded(500, min=1, help="units per hidden layer")
    hidden_layers: int = bounded(1, min=0, help="hidden layers in encoder and decoder each; 0 = linear")
    activation: str = choice("relu", tuple(ACTIVATIONS), "hidden nonlinearity")
    loss: str = choice("bce", ("bce", "mse"), "reconstruction error: cross-entropy or squared error")
    optimizer: str = choice("adam", ("adam", "adagrad", "sgd"), "optimiser")
    weight_decay: float = bounded(0.0, min=0.0, help="L2 penalty on the weights")


class Autoencoder(GenerativeModel):
    """MLP encoder h = f(x) and mirrored decoder x_hat = g(h), trained on reconstruction error."""

    Config = Config
    image_shape = IMAGE_SHAPE
    capabilities = frozenset({"encode", "features", "reconstruct", "decode"})

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.code_dim = config.code_dim
        d = math.prod(IMAGE_SHAPE)
        hidden = [config.hidden_units] * config.hidden_layers
        self.encoder = mlp([d, *hidden, config.code_dim], config.activation)
        self.decoder = mlp([config.code_dim, *hidden[::-1], d], config.activation)
        self.register_buffer("code_mean", torch.zeros(config.code_dim))
        self.register_buffer("code_var", torch.ones(config.code_dim))
        self.register_buffer("code_updates", torch.zeros((), dtype=torch.int64))
        self.optimizers = {
            "model": make_optimizer(config.optimizer, self.parameters(), config.lr, config.weight_decay)
        }

    @property
    def data_kind(self) -> str:
        """The loop feeds MNIST intensities in [0, 1], never binarized images."""
        return "continuous"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes h = f(x), (n, code_dim), for x of shape (n, 1, 28, 28) or (n, 784)."""
        return self.encoder(x.reshape(len(x), -1))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The codes as frozen features for supervised learning (the linear probe)."""
        return self.encode(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """g(h): logits of x_hat (loss "bce") or x_hat itself (loss "mse"), (n, 784)."""
        return self.decoder(code)

    def mean_image(self, params: torch.Tensor) -> torch.Tensor:
        """Decoder outputs as images (n, 1, 28, 28) in [0, 1]."""
        if self.config.loss == "bce":
            images = torch.sigmoid(params)
        else:
            images = params.clamp(0.0, 1.0)
        return images.reshape(-1, *IMAGE_SHAPE)

    def reconstruction_loss(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """L(x) per image, summed over pixels: (n,)."""
        if self.config.loss == "bce":
            return F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(-1)
        return (params - x).pow(2).sum(-1)

    @torch.no_grad()
    def _update_code_stats(self, code: torch.Tensor) -> None:
        self.code_updates += 1
        weight = max(1.0 / self.code_updates.item(), STATS_MOMENTUM)
        if len(code) > 1:
            batch_mean, batch_var = code.mean(0), code.var(0)
        else:  # one image: its squared distance from the running mean estimates the variance
            batch_mean, batch_var = code[0], (code[0] - self.code_mean).pow(2)
        self.code_mean.lerp_(batch_mean, weight)
        self.code_var.lerp_(batch_var, weight)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        x = batch["x"].flatten(1)
        opt = self.optimizers["model"]
        code = self.encode(x)
        loss = self.reconstruction_loss(x, self.decode(code)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self._update_code_stats(code.detach())
        return {"loss": loss.item()}

    @torch.no_grad()
    def decode_mean(self, code: torch.Tensor) -> torch.Tensor:
        """x_hat = g(h) of each code h as images (n, 1, 28, 28) in [0, 1] (the latent view)."""
        return self.mean_image(self.decode(code))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat = g(f(x)) as images (n, 1, 28, 28) in [0, 1]."""
        return self.mean_image(self.decode(self.encode(x)))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **condition) -> torch.Tensor:
        """Decodings of h ~ N(code_mean, diag(code_var)): not a generative model's samples.

        The Gaussian is fitted to the training codes (running estimates kept during training);
        see the module docstring.
        """
        self.conditions_for(n, generator, **condition)  # it takes none: refuse any
        device = self.code_mean.device
        eps = torch.randn(n, self.code_dim, generator=generator, device=device)
        code = self.code_mean + self.code_var.clamp(min=0).sqrt() * eps
        return self.mean_image(self.decode(code))

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Held-out reconstruction error L(x) per image, with its standard error over images."""
        x = data["x"].flatten(1)
        values = torch.cat([self.reconstruction_loss(c, self.decode(self.encode(c))) for c in x.split(2000)])
        mean, stderr = mean_and_stderr(values)
        return {"recon": mean, "recon_stderr": stderr}
