"""The VAE itself: its bound, both decoders, the Kingma & Welling preset, and learning on MNIST."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genlearn import config as cfg
from genlearn import registry
from genlearn.data import mnist
from genlearn.nn.distributions import bernoulli_log_prob, kl_std_normal

ROOT = Path(__file__).resolve().parents[1]


def test_elbo_is_reconstruction_minus_analytic_kl():
    model = registry.create("vae", latent_dim=3, hidden_units=16)
    x = torch.bernoulli(torch.full((5, 784), 0.3), generator=torch.Generator().manual_seed(1))
    elbo = model.elbo(x, generator=torch.Generator().manual_seed(7))
    mean, logvar = model.encode(x)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    z = mean + torch.exp(0.5 * logvar) * eps
    expected = bernoulli_log_prob(x, model.decode(z)) - kl_std_normal(mean, logvar)
    torch.testing.assert_close(elbo, expected)
    assert (elbo < 0).all()  # a Bernoulli likelihood of binary data is below 1


def test_kl_is_zero_exactly_at_the_prior():
    assert kl_std_normal(torch.zeros(4, 6), torch.zeros(4, 6)).abs().max().item() == 0.0
    assert (kl_std_normal(torch.full((1, 6), 0.5), torch.zeros(1, 6)) > 0).all()


def test_gaussian_decoder_estimates_mean_and_variance():
    model = registry.create("vae", likelihood="gaussian", latent_dim=4, hidden_units=32)
    assert model.data_kind == "continuous"
    assert model.decoder[-1].out_features == 2 * 784  # mean and log-variance per pixel
    x = torch.rand(6, 784)
    z = torch.randn(6, 3, 4)
    ll = model.log_likelihood(x, z)
    assert ll.shape == (6, 3)
    # written out from the decoder's raw output: the first half is the mean's logit, the second
    # the log-variance, floored at min_logvar (pushed below it here so the floor shows)
    with torch.no_grad():
        model.decoder[-1].bias[784:] = model.config.min_logvar - 5
        ll = model.log_likelihood(x, z)
        out = model.decode(z[:, 0])
    mean, logvar = out[:, :784].sigmoid(), out[:, 784:].clamp(min=model.config.min_logvar)
    assert (out[:, 784:] < model.config.min_logvar).any()
    by_hand = -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / logvar.exp()).sum(1)
    torch.testing.assert_close(ll[:, 0], by_hand, rtol=1e-5, atol=1e-3)


def test_kingma_welling_preset_is_reachable_by_config_alone():
    values = cfg.read_toml(ROOT / "configs" / "vae-kingma2014.toml")
    assert values.pop("model") == "vae"
    model = registry.instantiate("vae", registry.make_config("vae", values))
    linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [500, 2 * 20]  # one hidden layer of 500 units
    assert isinstance(model.optimizers["model"], torch.optim.Adagrad)
    assert isinstance(model.encoder[1], torch.nn.Tanh)


def test_elbo_rises_on_real_mnist_and_both_decoders_learn(seed, expect):
    data = mnist.load(train_limit=3000)
    for likelihood in ("bernoulli", "gaussian"):
        model = registry.create("vae", likelihood=likelihood, hidden_units=100, latent_dim=10, seed=seed)
        held_out = data.split("valid", binary=model.data_kind == "binary")["x"][:1000]
        g = torch.Generator().manual_seed(seed)
        before = model.evaluate({"x": held_out})["elbo"]
        for step in range(150):
            x = data.train_x[(step * 100) % 3000 : (step * 100) % 3000 + 100]
            if model.data_kind == "binary":
                x = mnist.binarize(x, g)
            model.train_step({"x": x})
        after = model.evaluate({"x": held_out})["elbo"]
        expect(f"{likelihood} ELBO gain (nats)", after - before, ">", 100)
