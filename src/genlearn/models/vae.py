r"""Variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014).

Generative model and approximate posterior:

    p(z) = N(0, I)
    p_theta(x | z) = Bernoulli(x | sigmoid(f_theta(z)))                (binarized data), or
                   = N(x | mu_theta(z), diag(sigma^2_theta(z)))        (continuous data)
    q_phi(z | x)   = N(z | mu_phi(x), diag(sigma^2_phi(x)))

Training maximises the evidence lower bound, one reparameterized sample per image:

    L(theta, phi; x) = -KL(q_phi(z|x) || p(z)) + E_{q_phi(z|x)}[log p_theta(x | z)]
    z = mu_phi(x) + sigma_phi(x) * eps,   eps ~ N(0, I)
    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)

The default architecture is the IWAE paper's one-stochastic-layer model (Burda et al. 2016):
784-200-200-50 with tanh, Adam. Kingma & Welling's original (one hidden layer of 500 units,
Adagrad) is `--config configs/vae-kingma2014.toml`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlearn.config import Common, bounded, choice
from genlearn.models.base import GenerativeModel
from genlearn.nn.distributions import (
    bernoulli_log_prob,
    gaussian_log_prob,
    kl_std_normal,
    reparameterize,
)
from genlearn.nn.mlp import ACTIVATIONS, mlp
from genlearn.nn.optim import make_optimizer
from genlearn.nn.stats import mean_and_stderr

IMAGE_SHAPE = (1, 28, 28)


@dataclass
class Config(Common):
    latent_dim: int = bounded(50, min=1, help="dimension of z")
    hidden_units: int = bounded(200, min=1, help="units per hidden layer")
    hidden_layers: int = bounded(2, min=1, help="hidden layers in encoder and decoder each")
    activation: str = choice("tanh", tuple(ACTIVATIONS), "hidden nonlinearity")
    likelihood: str = choice("bernoulli", ("bernoulli", "gaussian"), "p(x|z); picks the data")
    optimizer: str = choice("adam", ("adam", "adagrad", "sgd"), "optimiser")
    weight_decay: float = bounded(0.0, min=0.0, help="L2 penalty (a Gaussian prior on weights)")
    min_logvar: float = bounded(-8.0, infinite=True, help="floor on the Gaussian decoder's log-variance")


class VAE(GenerativeModel):
    """Encoder q_phi(z|x) and decoder p_theta(x|z), both MLPs, trained on the ELBO."""

    Config = Config
    image_shape = IMAGE_SHAPE

    @property
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        """An inference network and log p(x|z), a decoder of any z; the manifold picture when z is 2-D."""
        own = frozenset({"encode", "features", "reconstruct", "log_likelihood", "decode"})
        return own | {"latent_2d"} if self.latent_dim == 2 else own

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        d = math.prod(IMAGE_SHAPE)
        hidden = [config.hidden_units] * config.hidden_layers
        self.encoder = mlp([d, *hidden, 2 * config.latent_dim], config.activation)
        out = d if config.likelihood == "bernoulli" else 2 * d
        self.decoder = mlp([config.latent_dim, *hidden, out], config.activation)
        self.optimizers = {
            "model": make_optimizer(config.optimizer, self.parameters(), config.lr, config.weight_decay)
        }

    @property
    def data_kind(self) -> str:
        """Which MNIST the loop feeds: binarized for a Bernoulli decoder, intensities otherwise."""
        return "binary" if self.config.likelihood == "bernoulli" else "continuous"

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q_phi(z|x): mean and log-variance, each (n, latent_dim); x is (n, 784)."""
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Parameters of p_theta(x|z): logits (Bernoulli) or [mean, logvar] (Gaussian)."""
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_theta(x|z) for x (n, d) and z (n, s, L) -> (n, s); z may also be (n, L) -> (n,)."""
        params = self.decode(z)
        if z.dim() == 3:
            x = x.unsqueeze(1)
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_prob(x, params)
        mean, logvar = self._gaussian(params)
        return gaussian_log_prob(x, mean, logvar)

    def _gaussian(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean_logit, logvar = params.chunk(2, dim=-1)
        return torch.sigmoid(mean_logit), logvar.clamp(min=self.config.min_logvar)

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L(theta, phi; x) per image with one reparameterized sample and the analytic KL."""
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar, generator)
        return self.log_likelihood(x, z) - kl_std_normal(mean, logvar)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        x = batch["x"].flatten(1)
        opt = self.optimizers["model"]
        loss = -self.elbo(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def mean_image(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z] as images in [0, 1]."""
        if self.config.likelihood == "bernoulli":
            mean = torch.sigmoid(params)
        else:
            mean = self._gaussian(params)[0]
        return mean.reshape(-1, *IMAGE_SHAPE)

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z] for each row of z: the manifold picture's images."""
        return self.mean_image(self.decode(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **condition) -> torch.Tensor:
        """x ~ E[p_theta(x|z)], z ~ N(0, I): mean images, the usual way VAE samples are shown."""
        self.conditions_for(n, generator, **condition)  # it takes none: refuse any
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode_mean(z)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean E[z|x]: the learned representation a linear probe reads."""
        return self.encode(x.flatten(1))[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each image."""
        mean, _ = self.encode(x.flatten(1))
        return self.mean_image(self.decode(mean))

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Held-out ELBO in nats per image, with its standard error over images.

        The importance-weighted estimate of log p(x) is `genlearn eval RUN --metric nll`.
        """
        x = data["x"].flatten(1)
        was = self.training
        self.eval()
        try:
            values = torch.cat([self.elbo(xb) for xb in x.split(1000)])
        finally:
            self.train(was)
        mean, stderr = mean_and_stderr(values)
        return {"elbo": mean, "elbo_stderr": stderr}
