"""LAPGAN (Denton et al. 2015): the sample is the collapse of its own pyramid, the levels follow
the data, zero residuals give the upsampled coarse image, every level is one step of the GAN's
own Algorithm 1, learning on MNIST, the class-conditional form, exact resumption, the pictures
and the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_user_error, needs_mnist, one_thread, resume_then_compare, run_cli, run_main
from genlearn import registry, runs
from genlearn.errors import UserError
from genlearn.models import lapgan
from genlearn.nn.pyramid import collapse, downsample, laplacian_pyramid, upsample
from genlearn.viz import pyramid as viz

TINY = dict(g_channels=4, d_channels=4, coarse_g_hidden=16, coarse_d_hidden=8, z_dim=8)


def make(name: str = "lapgan", **over) -> lapgan.LAPGAN:
    return registry.create(name, **{**TINY, **over})


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------
# the pyramid of a sample


@pytest.mark.parametrize(
    "dataset,sizes", [("mnist", [7, 14, 28]), ("mnist-2digit", [15, 30, 60])], ids=["mnist", "2digit"]
)
def test_levels_follow_the_data(dataset, sizes):
    model = make(dataset=dataset)
    assert model.image_shape == (1, sizes[-1], sizes[-1])
    images, residuals = model.sample_pyramid(3, torch.Generator().manual_seed(0))
    assert [tuple(x.shape) for x in images] == [(3, 1, s, s) for s in sizes]
    assert [tuple(h.shape) for h in residuals] == [(3, 1, s, s) for s in sizes[1:]]
    # the networks were built for those sizes: D_k's linear layer reads its level's feature map
    batch = torch.rand(4, 1, sizes[-1], sizes[-1])
    stats = model.train_step({"x": batch, "y": torch.zeros(4, dtype=torch.long)})
    assert {f"d_loss_{k}" for k in range(3)} <= set(stats)


def test_level_count_is_checked_against_the_data():
    assert make(dataset="mnist-2digit", levels=4).sizes == [(60, 60), (30, 30), (15, 15), (8, 8)]
    assert make(levels=1).sample(2).shape == (2, 1, 28, 28)  # a plain GAN on the whole image
    assert make(levels=4).sizes == [(28, 28), (14, 14), (7, 7), (4, 4)]
    with pytest.raises(UserError, match="at least 9 pixels"):
        make(levels=4, d_padding="none")  # D_2's unpadded convolutions cannot read a 7 x 7 residual
    with pytest.raises(UserError, match="level_steps"):
        make(level_steps="1,1")
    with pytest.raises(UserError, match="level_steps"):
        make(level_steps="0,0,0")
    with pytest.raises(UserError, match="labels"):
        make(dataset="mnist-2digit", conditional=True)


def test_the_sample_is_the_collapse_of_its_own_pyramid():
    torch.manual_seed(0)
    model = make().eval()
    images, residuals = model.sample_pyramid(5, torch.Generator().manual_seed(3))
    sample = model.sample(5, torch.Generator().manual_seed(3))
    assert torch.equal(images[-1], sample)  # the finest image is the sample, bit for bit
    assert 0 <= float(sample.min()) and float(sample.max()) <= 1
    rebuilt = collapse([*reversed(residuals), images[0]])
    torch.testing.assert_close(rebuilt, sample, atol=1e-6, rtol=0)
    # slide 28 from the same seed, noise in the documented order (z_K, then planes coarse to fine):
    # I~_2 = G_2(z_2); I~_k = clamp(u(I~_{k+1}) + G_k(z_k, u(I~_{k+1})), 0, 1)
    g = torch.Generator().manual_seed(3)
    z, planes = model.coarse_noise(5, g), {k: model.noise_plane(k, 5, g) for k in (1, 0)}
    with torch.no_grad():
        image = model.G[2](z, None)
        assert torch.equal(images[0], image)
        for j, k in enumerate((1, 0)):
            low = upsample(image, model.sizes[k])
            image = (low + model.G[k](planes[k], (low, None))).clamp(0, 1)
            assert torch.equal(images[j + 1], image) and torch.equal(residuals[j], image - low)
            assert float(residuals[j].abs().max()) > 0  # an untrained G_k still adds something


def test_sampling_in_chunks_draws_the_same_pyramid(monkeypatch):
    """All noise is drawn before the networks run, so the chunk size changes nothing."""
    model = make().eval()
    whole = model.sample_pyramid(5, torch.Generator().manual_seed(3))
    monkeypatch.setattr(lapgan, "SAMPLE_CHUNK", 2)
    chunked = model.sample_pyramid(5, torch.Generator().manual_seed(3))
    for a, b in zip(whole[0] + whole[1], chunked[0] + chunked[1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert model.sample(0).shape == (0, 1, 28, 28)


def test_zero_residuals_give_the_upsampled_coarse_image():
    model = make().eval()
    with torch.no_grad():
        for G in model.G[: model.coarsest]:
            G.net[-1].weight.zero_()
            G.net[-1].bias.zero_()
    images, residuals = model.sample_pyramid(4, torch.Generator().manual_seed(1))
    assert all(float(h.abs().max()) == 0 for h in residuals)
    coarse = images[0]
    expected = upsample(upsample(coarse, (14, 14)), (28, 28))
    torch.testing.assert_close(model.sample(4, torch.Generator().manual_seed(1)), expected, atol=0, rtol=0)
    # and that coarse image is G_K(z_K) for the first noise the generator gives
    z = model.coarse_noise(4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(coarse, model.G[-1](z))


def test_refine_completes_a_coarse_image_with_the_finer_levels():
    """refine(I_k) runs G_{k-1}, ..., G_0 from a given image, its noise planes drawn coarse to
    fine: the sample's own I~_1 gives the formula's I~_0; zero residuals only upsample."""
    torch.manual_seed(0)
    model = make().eval()
    images, _ = model.sample_pyramid(3, torch.Generator().manual_seed(2))
    low = upsample(images[1], (28, 28))
    with torch.no_grad():
        plane = model.noise_plane(0, 3, torch.Generator().manual_seed(5))
        expected = (low + model.G[0](plane, (low, None))).clamp(0, 1)
    assert torch.equal(model.refine(images[1], torch.Generator().manual_seed(5)), expected)
    assert model.refine(images[0]).shape == (3, 1, 28, 28)
    with torch.no_grad():
        for G in model.G[: model.coarsest]:
            G.net[-1].weight.zero_()
            G.net[-1].bias.zero_()
    coarse = torch.rand(2, 1, 7, 7)
    assert torch.equal(model.refine(coarse), upsample(upsample(coarse, (14, 14)), (28, 28)))
    with pytest.raises(UserError, match="coarser level"):
        model.refine(torch.rand(2, 1, 28, 28))  # the finest level has nothing to refine
    conditional = make("lapgan-conditional").eval()
    assert conditional.refine(torch.rand(2, 1, 14, 14), labels=torch.tensor([3, 7])).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("padding", [0, 2])
def test_label_maps_equal_convolving_the_label_planes(padding):
    """conv_with_label_planes is the convolution of [x, ten constant label planes], values and
    gradients, for one-hot and for any other code (the convolution is linear in the planes)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2 + 10, 6, 5, padding=padding, stride=2)
    x = torch.randn(4, 2, 14, 14)
    for code in (torch.nn.functional.one_hot(torch.tensor([3, 0, 9, 3]), 10).float(), torch.rand(4, 10)):
        planes = code[:, :, None, None].expand(-1, -1, 14, 14)
        plain = conv(torch.cat([x, planes], 1))
        fast = lapgan.conv_with_label_planes(conv, x, code)
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
        grad_plain = torch.autograd.grad(plain.square().sum(), conv.weight)[0]
        grad_fast = torch.autograd.grad(fast.square().sum(), conv.weight)[0]
        torch.testing.assert_close(grad_fast, grad_plain, atol=1e-4, rtol=1e-4)


def test_training_sees_the_real_laplacian_pyramid():
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    lows, residuals, coarsest = make().real_pyramid(x)
    reference = laplacian_pyramid(x, 3)
    assert all(torch.equal(a, b) for a, b in zip([*residuals, coarsest], reference))
    # l_k = u(I_{k+1}) with I_{k+1} = d^{k+1}(x), for each level below the coarsest
    assert torch.equal(lows[0], upsample(downsample(x), (28, 28)))
    assert torch.equal(lows[1], upsample(downsample(downsample(x)), (14, 14)))


# --------------------------------------------------------------------------------------------
# training: Algorithm 1 per level


def test_every_level_is_one_step_of_the_gans_algorithm_1(monkeypatch):
    """train_step calls the GAN's own adversarial_step once per level (n_k times with
    level_steps), coarse to fine, each with its level's pair, real input and condition."""
    from genlearn.models import gan

    calls = []

    def spy(G, D, g_opt, d_opt, real, noise_fn, **kw):
        calls.append((G, D, real.clone(), kw["condition"]))
        return gan.adversarial_step(G, D, g_opt, d_opt, real, noise_fn, **kw)

    monkeypatch.setattr(lapgan, "adversarial_step", spy)
    model = make(level_steps="1,2,1")
    x = torch.rand(5, 1, 28, 28)
    model.train_step({"x": x, "y": torch.zeros(5, dtype=torch.long)})
    assert [(c[0], c[1]) for c in calls] == [(model.G[k], model.D[k]) for k in (2, 1, 1, 0)]
    lows, residuals, coarsest = model.real_pyramid(x)
    # I_K for the coarsest pair, then h_k with l_k for level k (twice for level 1)
    for (_, _, real, _), want in zip(calls, [coarsest, residuals[1], residuals[1], residuals[0]]):
        assert torch.equal(real, want)
    assert calls[0][3] is None  # the coarsest level is a plain GAN
    for (_, _, _, (low, onehot)), k in zip(calls[1:], (1, 1, 0)):
        assert torch.equal(low, lows[k]) and onehot is None
    assert model.d_updates.tolist() == [1, 2, 1] and model.g_updates.tolist() == [1, 2, 1]


@pytest.mark.parametrize("k", [1, 2])
def test_each_level_updates_d_every_step_and_g_every_kth(k):
    torch.manual_seed(0)
    model = make(k=k, level_steps="1,0,1")
    for step in range(1, 2 * k + 1):
        before = [(params(model.G[j]), params(model.D[j])) for j in range(3)]
        model.train_step({"x": torch.rand(6, 1, 28, 28)})
        for j, (g, d) in enumerate(before):
            if j == 1:  # level_steps 0: frozen
                assert same(params(model.G[j]), g) and same(params(model.D[j]), d)
                continue
            assert not same(params(model.D[j]), d)
            assert same(params(model.G[j]), g) != (step % k == 0)
    assert model.d_updates.tolist() == [2 * k, 0, 2 * k] and model.g_updates.tolist() == [2, 0, 2]


def test_residual_networks_read_the_low_pass_image():
    """G_k's residual depends on l_k; D_k judges h + l_k, the image the residual makes."""
    model = make().eval()
    G, D = model.G[0], model.D[0]
    z = model.noise_plane(0, 3)
    low = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert not torch.equal(G(z, (low, None)), G(z, (low.flip(-1), None)))
        h = torch.randn(3, 1, 28, 28)
        torch.testing.assert_close(D(h, (low, None)), D(h + low - 0.5, (torch.full_like(low, 0.5), None)))


def test_defaults_are_adam_and_non_saturating_and_the_papers_sgd_is_reachable():
    model = registry.create("lapgan")
    c = model.config
    assert (c.optimizer, c.loss, c.lr, c.g_channels, c.d_channels) == ("adam", "non-saturating", 2e-4, 64, 64)
    assert isinstance(model.optimizers["g0"], torch.optim.Adam) and len(model.optimizers) == 6
    sizes = [tuple(m.weight.shape) for m in model.G[0].net if isinstance(m, torch.nn.Conv2d)]
    assert sizes == [(64, 2, 7, 7), (64, 64, 7, 7), (1, 64, 5, 5)]
    sizes = [
        tuple(m.weight.shape) for m in model.D[0].net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    assert sizes == [(64, 1, 5, 5), (64, 64, 5, 5), (1, 64 * 14 * 14)]  # padded: 28 -> 28 -> 14
    assert model.level_steps == [1, 2, 2]
    paper = make(optimizer="sgd", lr=0.02, momentum_epochs=10, d_padding="none", level_steps="1,1,1")
    sizes = [tuple(m.weight.shape) for m in paper.D[0].net if isinstance(m, torch.nn.Linear)]
    assert sizes == [(1, 4 * 10 * 10)]  # the released code's unpadded D: 28 -> 24 -> 10
    assert isinstance(paper.optimizers["d2"], torch.optim.SGD)
    paper.steps_per_epoch = 100
    paper.steps.fill_(500)  # halfway through the ramp
    paper.train_step({"x": torch.rand(4, 1, 28, 28)})
    assert paper.optimizers["g1"].param_groups[0]["momentum"] == pytest.approx(0.6)


def _d_judgements(model, generators, x) -> list[dict[str, float]]:
    """How each level's D_k judges real inputs of x's pyramid against the outputs of `generators`
    (a list of G_k) for the same l_k: the mean probability it gives real inputs less the mean it
    gives generated ones, and the probability that it scores a real input above a generated one
    (the area under its ROC curve, which no threshold enters)."""
    lows, residuals, coarsest = model.real_pyramid(x)
    out = []
    with torch.no_grad():
        for k in range(model.coarsest + 1):
            if k == model.coarsest:
                real, condition, z = coarsest, None, model.coarse_noise(len(x))
            else:
                real, condition, z = residuals[k], (lows[k], None), model.noise_plane(k, len(x))
            fake = generators[k](z, condition)
            l_real = model.D[k](real, condition).flatten()
            l_fake = model.D[k](fake, condition).flatten()
            out.append(
                {
                    "gap": float(torch.sigmoid(l_real).mean() - torch.sigmoid(l_fake).mean()),
                    "auc": float((l_real[:, None] > l_fake[None, :]).float().mean()),
                }
            )
    return out


@needs_mnist
def test_lapgan_learns_mnist(mnist_full, seed, expect):
    """600 steps (small networks) on MNIST: every discriminator, which at first gives
    every input about the same probability, learns to tell held-out real inputs of its level from
    its generator's outputs as it was at the start; the samples' pixel mean moves most of the way
    from its start to the data's; and the finest generated residuals take on the real ones' size.

    "Tells apart" is the gap between the mean probabilities D gives the two (0.00-0.01 before
    training at every level and seed tried, 0.42-0.87 after) and the ROC area (no threshold). At
    300 steps the finest level's gap was 0.18 for one seed of five and its residuals' size ratio
    0.52: the finest pair is the slowest to settle, and 600 steps give it what it needs. Not
    D's accuracy at its threshold: an untrained D_k may put both on one side (chance) or, at the
    coarsest level, already on two sides by a hair; and after training that accuracy also counts
    the real inputs D calls real, which drift towards one half as the generator catches up (the
    game's equilibrium), level by level and by CPU rounding."""

    import copy

    train, held_out = mnist_full.train_x[:6000], mnist_full.test_x[:500]
    data_mean = float(train.mean())
    with one_thread():
        torch.manual_seed(seed)
        model = make(g_channels=8, d_channels=8, coarse_channels=16, z_dim=16, lr=1e-3, seed=seed).eval()
        first_generators = copy.deepcopy(model.G)
        before_training = _d_judgements(model, first_generators, held_out)
        images, residuals = model.sample_pyramid(500, torch.Generator().manual_seed(seed + 1))
        before = float(images[-1].mean())
        real_h0 = model.real_pyramid(held_out)[1][0]
        ratio_before = float(residuals[-1].std() / real_h0.std())
        model.train()
        g = torch.Generator().manual_seed(seed)
        for _ in range(600):
            model.train_step({"x": train[torch.randint(len(train), (32,), generator=g)]})
        model.eval()
        learnt = _d_judgements(model, first_generators, held_out)
        images, residuals = model.sample_pyramid(500, torch.Generator().manual_seed(seed + 1))
    for k, (start, end) in enumerate(zip(before_training, learnt)):
        expect(
            f"D_{k}: probability gap, real less first G_{k}'s outputs, before", abs(start["gap"]), "<", 0.05
        )
        expect(f"D_{k}: probability gap, real less first G_{k}'s outputs, after", end["gap"], ">", 0.25)
        expect(f"D_{k}: ROC area, real against the first G_{k}'s outputs, after", end["auc"], ">", 0.95)
    after = float(images[-1].mean())
    expect(
        "pixel mean's distance from the data's, after / before",
        abs(after - data_mean) / abs(before - data_mean),
        "<",
        0.25,
    )
    ratio = float(residuals[-1].std() / real_h0.std())
    expect("finest residuals' std / real ones' before", ratio_before, "<", 0.4)
    expect("finest residuals' std / real ones' after", ratio, ">", 0.5)
    expect("finest residuals' std / real ones' after (upper)", ratio, "<", 2.0)


# --------------------------------------------------------------------------------------------
# the class-conditional form


def test_conditional_form_takes_labels_at_every_level():
    model = make("lapgan-conditional").eval()
    assert model.conditions == ("labels",) and registry.create("lapgan", **TINY).conditions == ()
    three, seven = (torch.full((4,), d) for d in (3, 7))
    a = model.sample_pyramid(4, torch.Generator().manual_seed(0), labels=three)
    b = model.sample_pyramid(4, torch.Generator().manual_seed(0), labels=seven)
    for level_a, level_b in zip(a[0] + a[1], b[0] + b[1]):
        assert not torch.equal(level_a, level_b)
    onehot3, onehot7 = lapgan.one_hot(three), lapgan.one_hot(seven)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():  # each network on its own, with the same other inputs, reads the label
        for k in range(2):
            low = torch.rand(4, 1, *model.sizes[k])
            h = torch.rand(4, 1, *model.sizes[k])
            plane = model.noise_plane(k, 4)
            assert not torch.equal(model.G[k](plane, (low, onehot3)), model.G[k](plane, (low, onehot7)))
            assert not torch.equal(model.D[k](h, (low, onehot3)), model.D[k](h, (low, onehot7)))
        z = model.coarse_noise(4)
        assert not torch.equal(model.G[2](z, onehot3), model.G[2](z, onehot7))
        coarse = torch.rand(4, 1, 7, 7)
        assert not torch.equal(model.D[2](coarse, onehot3), model.D[2](coarse, onehot7))
    stats = model.train_step({"x": x, "y": three})
    assert all(np.isfinite(v) for v in stats.values())


def test_conditional_defaults_are_uniform_labels():
    model = make("lapgan-conditional")
    drawn = model.default_conditions(20_000, torch.Generator().manual_seed(0))["labels"]
    counts = torch.bincount(drawn, minlength=10).float() / len(drawn)
    assert float((counts - 0.1).abs().max()) < 0.01
    assert model.sample(3).shape == (3, 1, 28, 28)


@pytest.mark.parametrize(
    "labels,match",
    [
        (torch.tensor([0, 10]), "digits 0 to 9"),
        (torch.tensor([-1, 3]), "digits 0 to 9"),
        (torch.tensor([1, 2, 3]), "one per sample"),
    ],
)
def test_bad_labels_are_refused_in_one_line(labels, match):
    with pytest.raises(UserError, match=match) as info:
        make("lapgan-conditional").sample(2, labels=labels)
    assert "\n" not in str(info.value)


def test_conditions_a_model_does_not_take_are_refused():
    with pytest.raises(UserError, match="takes no labels"):
        make().sample(2, labels=torch.tensor([1, 2]))
    with pytest.raises(UserError, match="takes no captions"):
        make("lapgan-conditional").sample(2, captions=["the digit 3"])


# --------------------------------------------------------------------------------------------
# pictures


def _toy_pyramid():
    images = [torch.full((2, 1, 7, 7), 0.5), torch.rand(2, 1, 14, 14), torch.rand(2, 1, 28, 28)]
    residuals = [torch.zeros(2, 1, 14, 14), torch.zeros(2, 1, 28, 28)]
    residuals[1][:, :, :14] = 0.2  # top half brighter, bottom half darker
    residuals[1][:, :, 14:] = -0.4
    return images, residuals


def test_pyramid_picture_has_a_column_per_image_and_residual_and_signed_colours():
    images, residuals = _toy_pyramid()
    columns = viz.pyramid_columns(images, residuals)
    assert [label.split()[0] for label, _ in columns] == ["I2", "h1", "I1", "h0", "I0"]
    assert columns[0][0] == "I2 (7x7)" and columns[-1][0] == "I0 (28x28)"
    assert columns[3][0] == "h0 +/-0.40"  # each residual scaled to its own largest |h|
    assert all(codes.shape == (2, 28, 28) for _, codes in columns)
    pal = np.array(viz.palette()).reshape(-1, 3)
    h0 = columns[3][1][0]
    red, green, blue = pal[h0[0, 0]]  # +0.2 of 0.4: half-way from white to red
    assert red == 255 and green == blue and abs(green - 128) <= 4
    assert tuple(pal[h0[-1, -1]]) == (0, 0, 255)  # -0.4: full blue
    assert tuple(pal[columns[1][1][0][5, 5]]) == (255, 255, 255)  # zero: white
    assert set(np.unique(columns[0][1])) == {viz.image_codes(np.array(0.5))}  # 7x7 grey, enlarged 4x
    img = viz.pyramid_picture(images, residuals, scale=2)
    assert img.size == ((5 * 30 + 2) * 2, (2 * 30 + 2) * 2 + viz.HEADER)
    frames = viz.pyramid_frames(images, residuals, scale=1)
    assert len(frames) == 5 and len({f.size for f in frames}) == 1


def test_pyramid_pictures_refuse_mismatched_levels():
    images, residuals = _toy_pyramid()
    with pytest.raises(ValueError, match="one residual fewer"):
        viz.pyramid_columns(images, residuals[:1])
    with pytest.raises(ValueError, match="residuals\\[0\\]"):
        viz.pyramid_columns(images, [residuals[1], residuals[1]])


# --------------------------------------------------------------------------------------------
# runs: resumption, the run's pictures, the command line

RUN_SETS = [f"{k}={v}" for k, v in TINY.items()] + ["train_limit=200", "batch_size=50", "eval_every=0"]


@needs_mnist
def test_resumed_lapgan_run_equals_an_uninterrupted_one(tmp_path):
    resume_then_compare(tmp_path, "lapgan", [*RUN_SETS, "k=2", "level_steps=1,1,2"])


@needs_mnist
def test_resumed_conditional_sgd_run_equals_an_uninterrupted_one(tmp_path):
    """The paper's SGD: the momentum ramp continues from the saved step counter."""
    resume_then_compare(
        tmp_path, "lapgan-conditional", [*RUN_SETS, "optimizer=sgd", "lr=0.02", "momentum_epochs=1"]
    )


@pytest.fixture(scope="module")
def lapgan_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lapgan")
    out = {}
    for name in ("lapgan", "lapgan-conditional"):
        proc = run_cli("train", name, "--out", root / name, "--quiet", "--set", *RUN_SETS, "epochs=1")
        assert proc.returncode == 0, proc.stderr
        out[name] = root / name
    return out


@needs_mnist
def test_run_directory_has_the_pyramid_picture(lapgan_runs):
    for run in lapgan_runs.values():
        results = runs.results(run)
        assert "pyramid.png" in results["figures"]
        assert {"d_real_0", "d_fake_2", "d_real", "d_fake"} <= set(results["metrics"])
        with Image.open(run / "pyramid.png") as img:  # 5 columns, 6 samples, under a title
            assert img.width == (5 * 30 + 2) * 3 and 20 < img.height - ((6 * 30 + 2) * 3 + viz.HEADER) < 120


@needs_mnist
def test_cli_writes_the_coarse_to_fine_gif(lapgan_runs, tmp_path):
    out = tmp_path / "p.gif"
    proc = run_main("sample", lapgan_runs["lapgan"], "--n", "9", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "coarse to fine over 3 levels" in proc.stdout
    gif = Image.open(out)
    assert gif.n_frames == 5  # I2, h1, I1, h0, I0
    assert (tmp_path / "p.png").is_file()
    # the GIF's frames are the pyramid of the seed's samples, coarse to fine, and its last frame
    # shows the samples `genlearn sample --out .npz` gives for the same seed
    proc = run_main("sample", lapgan_runs["lapgan"], "--n", "9", "--out", tmp_path / "s.npz")
    assert proc.returncode == 0, proc.stderr
    model = registry.load_model(lapgan_runs["lapgan"])
    images, residuals = model.sample_pyramid(9, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(np.load(tmp_path / "s.npz")["images"], images[-1].numpy(), rtol=0, atol=1e-6)
    for i, frame in enumerate(viz.pyramid_frames(images, residuals)):
        gif.seek(i)
        assert np.array_equal(np.asarray(gif.convert("RGB")), np.asarray(frame.convert("RGB"))), i


@needs_mnist
def test_cli_conditional_gif_and_label_errors(lapgan_runs, tmp_path):
    run = lapgan_runs["lapgan-conditional"]
    proc = run_main("sample", run, "--labels", "3,7", "--n", "4", "--out", tmp_path / "c.gif")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "c.gif").n_frames == 5
    assert_user_error(
        run_main("sample", run, "--labels", "12", "--out", tmp_path / "x.png"), contains="digits 0 to 9"
    )
    unconditional = lapgan_runs["lapgan"]
    assert_user_error(
        run_main("sample", unconditional, "--labels", "3", "--out", tmp_path / "x.gif"), contains="labels"
    )


@pytest.mark.parametrize("arch", ["conv", "upconv", "mlp"])
@pytest.mark.parametrize("dataset, conditional", [("mnist", False), ("mnist", True), ("mnist-2digit", False)])
def test_every_coarsest_pair_makes_and_judges_the_coarsest_images(arch, dataset, conditional):
    model = make(
        coarse_arch=arch, dataset=dataset, conditional=conditional, g_channels=4, d_channels=4,
        coarse_channels=8, coarse_g_hidden=16, coarse_d_hidden=8, z_dim=8,
    )  # fmt: skip
    side = model.sizes[-1][0]
    labels = torch.tensor([3, 7]) if conditional else None
    onehot = None if labels is None else torch.nn.functional.one_hot(labels, 10).float()
    with torch.no_grad():
        coarse = model.G[-1](model.coarse_noise(2), onehot)
    assert coarse.shape == (2, 1, side, side) and 0 <= float(coarse.min()) and float(coarse.max()) <= 1
    assert model.D[-1](coarse, onehot).shape == (2, 1)
    assert model.sample(2, **({"labels": labels} if conditional else {})).shape == (2, *model.image_shape)


def seen_pixels(D: torch.nn.Module, size: tuple[int, int], residual: bool) -> torch.Tensor:
    """(H, W) bool: which input pixels D's logit depends on. With every weight and bias positive
    and a positive input, every ReLU passes, so a pixel's gradient is zero only where no path
    of the network reads it."""
    D = D.eval()
    with torch.no_grad():
        for p in D.parameters():
            p.fill_(0.01)
    x = torch.ones(1, 1, *size, requires_grad=True)
    (D(x, (torch.zeros_like(x), None)) if residual else D(x)).sum().backward()
    return x.grad[0, 0] > 0


@pytest.mark.parametrize("dataset", ["mnist", "mnist-2digit"])
def test_every_discriminator_reads_every_pixel(dataset):
    """The default D_k sees the whole residual; the released code's unpadded D_k (d_padding
    none) is blind to exactly its last row and column, where G_k then paints unchecked lines."""
    for padding in ("same", "none"):
        model = make(dataset=dataset, d_padding=padding)
        for level, size in enumerate(model.sizes):
            seen = seen_pixels(model.D[level], size, residual=level < model.coarsest)
            if padding == "same" or level == model.coarsest:
                assert seen.all(), (padding, level)
            else:
                expected = torch.ones(size, dtype=torch.bool)
                expected[-1, :] = expected[:, -1] = False
                assert torch.equal(seen, expected), (padding, level)


def test_a_run_saved_before_coarse_arch_keeps_its_mlp_pair(tmp_path):
    """Runs written before `coarse_arch` existed have the MLP coarsest pair, and before
    `d_padding` existed the unpadded discriminators: they still load."""
    from genlearn import config as cfg
    from genlearn import runs

    model = make(
        coarse_arch="mlp", g_channels=4, d_channels=4, coarse_g_hidden=16, coarse_d_hidden=8, z_dim=8
    )
    text = cfg.to_toml(model.config, "lapgan", "0.1.0")
    old = "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("coarse_arch", "coarse_channels", "d_padding"))
    )
    (tmp_path / runs.CONFIG_FILE).write_text(old + "\n")
    config = registry.run_config(tmp_path)[1]
    assert (config.coarse_arch, config.d_padding, config.level_steps) == ("mlp", "none", "1,1,1")
    assert lapgan.LAPGAN(config).level_steps == [1, 1, 1]  # a resumed old run keeps its schedule


def test_default_level_steps_give_the_coarser_levels_two_updates():
    assert make().level_steps == [1, 2, 2]
    assert make(dataset="mnist-2digit", levels=4).level_steps == [1, 2, 2, 2]
    assert make(levels=1).level_steps == [1]
