"""GAN (Goodfellow et al. 2014): Algorithm 1's update pattern, losses from logits, the paper's
networks and schedules, collapse warnings, learning on 2-D data, exact resumption."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import needs_mnist, one_thread, resume_then_compare
from genlearn import registry
from genlearn.data.base import DataSet
from genlearn.models import gan
from genlearn.models.gan import GAN, Maxout
from genlearn.nn.adversarial import log_d, log_one_minus_d

TINY = dict(g_hidden=32, d_units=16, d_pieces=3, z_dim=8)


def make(**over) -> GAN:
    return registry.create("gan", **{**TINY, **over})


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_log_d_terms_from_logits_equal_the_probability_forms_and_stay_finite():
    logits = torch.tensor([-30.0, -3.0, 0.0, 2.5, 30.0], dtype=torch.float64)
    d = torch.sigmoid(logits)
    torch.testing.assert_close(log_d(logits)[1:4], torch.log(d)[1:4])
    torch.testing.assert_close(log_one_minus_d(logits)[1:4], torch.log1p(-d)[1:4])
    # where the probability forms give -inf (sigmoid(-800) underflows to 0, 1 - sigmoid(800)
    # rounds to 0, in float64 too), the logit forms stay exact
    far = torch.tensor([-800.0, 800.0], dtype=torch.float64)
    assert torch.log(torch.sigmoid(far))[0].item() == -math.inf  # the naive form fails here
    assert log_d(far)[0].item() == -800.0 and log_one_minus_d(far)[1].item() == -800.0
    assert log_d(logits)[0].item() == pytest.approx(-30.0, rel=1e-9)
    assert log_one_minus_d(logits)[-1].item() == pytest.approx(-30.0, rel=1e-9)


def test_non_saturating_loss_keeps_the_gradient_the_minimax_loss_loses():
    """Early in training D(G(z)) ~ 0: d/dl log(1 - D) = -D vanishes, d/dl -log D = D - 1 does not."""
    logit = torch.tensor(-8.0, requires_grad=True)
    (minimax,) = torch.autograd.grad(log_one_minus_d(logit), logit)
    (nonsat,) = torch.autograd.grad(-log_d(logit), logit)
    assert abs(minimax.item()) == pytest.approx(torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-5)
    assert abs(minimax.item()) < 1e-3 and abs(nonsat.item()) > 0.999


def test_maxout_is_the_max_over_pieces():
    torch.manual_seed(0)
    layer = Maxout(6, units=4, pieces=3)
    x = torch.randn(5, 6)
    pieces = F.linear(x, layer.linear.weight, layer.linear.bias).view(5, 4, 3)
    torch.testing.assert_close(layer(x), pieces.max(dim=2).values)


def test_paper_networks_have_the_published_sizes():
    model = registry.create("gan")
    sizes = [tuple(m.weight.shape) for m in model.G if isinstance(m, torch.nn.Linear)]
    assert sizes == [(1200, 100), (1200, 1200), (784, 1200)]
    maxouts = [m for m in model.D if isinstance(m, Maxout)]
    assert [(m.units, m.pieces) for m in maxouts] == [(240, 5), (240, 5)]
    drops = [m.p for m in model.D if isinstance(m, torch.nn.Dropout)]
    assert drops == pytest.approx([0.2, 0.5, 0.5])
    z = model.noise(100_000)
    assert z.abs().max().item() <= math.sqrt(3) and z.var().item() == pytest.approx(1.0, abs=0.02)
    assert isinstance(model.optimizers["d"], torch.optim.SGD)
    assert isinstance(registry.create("dcgan").optimizers["g"], torch.optim.Adam)


class _Data(DataSet):
    def __init__(self, x):
        self.train_x = x


def test_generator_starts_at_the_data_marginals():
    torch.manual_seed(0)
    x = torch.rand(1000, 1, 28, 28) ** 3
    model = make()
    model.prepare(_Data(x), batch_size=100)
    p = x.flatten(1).mean(0)
    torch.testing.assert_close(torch.sigmoid(model.G[-2].bias), p, rtol=1e-4, atol=1e-6)
    assert model.steps_per_epoch == 10


@pytest.mark.parametrize("k", [1, 3])
def test_algorithm_1_k_discriminator_updates_per_generator_update(k):
    torch.manual_seed(0)
    model = make(k=k)
    model.prepare(_Data(torch.rand(200, 1, 28, 28)), batch_size=20)
    for step in range(1, 2 * k + 1):
        g_before, d_before = params(model.G), params(model.D)
        model.train_step({"x": torch.rand(20, 1, 28, 28)})
        assert not same(params(model.D), d_before)  # every call updates D
        assert same(params(model.G), g_before) != (step % k == 0)  # every k-th also G
    assert int(model.d_updates) == 2 * k and int(model.g_updates) == 2


def test_generator_update_leaves_the_discriminator_alone():
    model = make()
    d_before = params(model.D)
    model._generator_step(10, None)
    assert same(params(model.D), d_before)
    assert all(p.grad is None for p in model.D.parameters())


def test_sgd_schedules_follow_the_paper():
    """lr 0.1 divided by 1.000004 every iteration (the loop's exponential schedule), not below
    1e-6; momentum rising linearly from 0.5 to 0.7 (the model's ramp)."""
    from genlearn.train.loop import lr_factor

    model = make(momentum_epochs=10)
    c = model.config
    assert c.lr_schedule == "exponential"
    assert c.lr * lr_factor(c, 1000, 0.0) == pytest.approx(0.1 / 1.000004**1000)
    assert c.lr * lr_factor(c, 10**8, 0.0) == pytest.approx(1e-6)
    model.steps_per_epoch = 100
    model.d_updates.fill_(500)  # epoch 5 of a 10-epoch ramp
    model._momentum_ramp()
    assert model.optimizers["d"].param_groups[0]["momentum"] == pytest.approx(0.6)
    assert model.optimizers["g"].param_groups[0]["momentum"] == pytest.approx(0.6)


def test_collapse_warnings_fire_once():
    model = make()
    with pytest.warns(RuntimeWarning, match="discriminator's loss"):
        for _ in range(gan._PATIENCE):
            model._watch({"d_loss": 1e-5, "g_grad_norm": 1.0})
    import warnings

    model = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3 * gan._PATIENCE):  # tiny from the start (the paper's init): no warning
            model._watch({"d_loss": 1.0, "g_grad_norm": 1e-7})
        model._watch({"d_loss": 1.0, "g_grad_norm": 1.0})
        for _ in range(gan._PATIENCE - 1):
            model._watch({"d_loss": 1.0, "g_grad_norm": 1e-6})
    with pytest.warns(RuntimeWarning, match="vanished"):  # fell 10^6-fold for _PATIENCE updates
        model._watch({"d_loss": 1.0, "g_grad_norm": 1e-6})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model._watch({"d_loss": 1.0, "g_grad_norm": 0.0})  # already warned: silent


def test_toy_gan_learns_the_ring(seed, expect):
    """A small GAN on the ring of 8 moves its samples onto the ring and several modes in 3,000 steps
    (at 1,200 the mean distance from the ring was still 0.16-0.48 across seeds, against 0.07-0.16
    at 3,000)."""
    from genlearn.data import toy

    with one_thread():
        torch.manual_seed(seed)
        model = make(
            dataset="ring8",
            optimizer="adam",
            lr=1e-3,
            g_hidden=64,
            d_units=32,
            d_input_keep=1,
            d_hidden_keep=1,
            seed=seed,
        )
        ring = toy.ring()
        before = model.sample(2000)
        g = torch.Generator().manual_seed(seed + 1)
        for _ in range(3000):
            model.train_step({"x": toy.sample_mixture(ring, 100, generator=g)})
        after = model.sample(2000)
    radius = lambda pts: (pts.norm(dim=1) - 2.0).abs().mean().item()  # noqa: E731
    expect("mean distance from the ring before", radius(before), ">", 0.8)
    expect("mean distance from the ring after", radius(after), "<", 0.4)
    expect("modes captured", toy.mode_stats(model.sample(2500), ring)["modes_captured"], ">=", 4)


@needs_mnist
def test_resumed_gan_run_equals_an_uninterrupted_one(tmp_path):
    sets = [f"{k}={v}" for k, v in TINY.items()] + [
        "train_limit=300",
        "batch_size=50",
        "eval_every=0",
        "k=2",
        "log_every=2",
    ]
    resume_then_compare(tmp_path, "gan", sets)
    results = json.loads((tmp_path / "half" / "results.json").read_text())
    assert set(results["metrics"]) == {"d_real", "d_fake"}
    # metrics.jsonl logs the lr the SGD steps used, decayed every step, not the base lr
    lines = (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()
    logged = [r["lr"] for r in map(json.loads, lines) if "lr" in r]
    assert len(logged) > 2 and 0.1 > logged[0] > logged[-1] > 0 and logged == sorted(logged, reverse=True)
    assert logged[0] == pytest.approx(0.1 / 1.000004, rel=1e-9)  # logged after step 2, at step 1's lr


def test_conv_networks_on_2d_data_are_refused():
    from genlearn.errors import UserError

    with pytest.raises(UserError, match="arch=mlp"):
        registry.create("dcgan", dataset="ring8")


def test_generator_average_follows_the_ema_recursion_and_draws_the_samples():
    torch.manual_seed(0)
    decay = 0.9
    model = registry.create("dcgan", g_channels=8, d_channels=4, z_dim=8, g_ema=decay)
    x = torch.rand(6, 1, 28, 28)
    model.train_step({"x": x})  # the first update copies G
    assert same(params(model.G_ema.module), params(model.G))
    before = params(model.G_ema.module)
    model.train_step({"x": x})
    expected = [decay * b + (1 - decay) * g for b, g in zip(before, params(model.G))]
    assert all(torch.allclose(e, a, atol=1e-7) for e, a in zip(expected, params(model.G_ema.module)))
    assert not same(params(model.G_ema.module), params(model.G))
    model.eval()
    torch.manual_seed(1)
    z = model.noise(4)
    torch.manual_seed(1)
    drawn = model.sample(4)
    assert torch.equal(drawn, model.generate(z, average=True))
    assert not torch.allclose(drawn, model.generate(z))  # not G's own


@needs_mnist
def test_resumed_run_with_a_generator_average_equals_an_uninterrupted_one(tmp_path):
    sets = [
        "g_channels=8",
        "d_channels=4",
        "z_dim=8",
        "g_ema=0.9",
        "train_limit=200",
        "batch_size=50",
        "eval_every=0",
    ]
    resume_then_compare(tmp_path, "dcgan", sets)


@needs_mnist
def test_dcgan_on_the_two_digit_canvases_draws_and_judges_60x60():
    """The conv pair at 60 x 60 (LAPGAN's comparison): G's 15 -> 30 -> 60 and D's 60 -> 30 -> 15,
    trained on real canvases: D learns to tell them from G's early samples."""
    from genlearn.data import two_digit

    model = registry.create("dcgan", dataset="mnist-2digit", g_channels=16, d_channels=8)
    assert model.image_shape == (1, 60, 60)
    data = two_digit.load(train_limit=400)
    model.prepare(data, 50)
    g = torch.Generator().manual_seed(0)
    with one_thread():
        stats = [
            model.train_step(data.batch(torch.arange(i * 50, i * 50 + 50) % 400, False, g)) for i in range(12)
        ]
        x = model.sample(6)
        logits = model.discriminate(data.train_x[:6])
    assert x.shape == (6, 1, 60, 60) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert logits.shape == (6,)
    assert stats[-1]["d_loss"] < stats[0]["d_loss"], [s["d_loss"] for s in stats]


def test_conditional_gan_on_the_canvases_is_refused():
    from genlearn.errors import UserError

    with pytest.raises(UserError, match="needs MNIST's labels"):
        registry.create("cgan", dataset="mnist-2digit")
