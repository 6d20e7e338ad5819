"""The class-conditional GAN (Mirza & Osindero 2014) and the path of a condition: the data's
labels reach `train_step`, `sample(n, labels=...)` draws what it is asked for, `genlearn sample
--labels`, the `label_agreement` metric, and exact resumption."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_user_error, needs_mnist, one_thread, resume_then_compare, run_cli, run_main
from genlearn import registry
from genlearn.errors import UserError
from genlearn.eval import classifier as clf
from genlearn.eval import metrics
from genlearn.models.base import GenerativeModel
from genlearn.viz.samples import parse_labels

SMALL = dict(g_channels=8, d_channels=8)


def make(**over):
    return registry.create("cgan", **{**SMALL, **over})


def test_the_label_reaches_both_networks():
    """G(z, y) and D(x, y) depend on y: the same noise (or image) with another label differs."""
    model = make().eval()
    z = model.noise(4, torch.Generator().manual_seed(0))
    three, seven = torch.full((4,), 3), torch.full((4,), 7)
    with torch.no_grad():
        assert not torch.equal(model.generate(z, three), model.generate(z, seven))
        x = torch.rand(4, 1, 28, 28)
        assert not torch.equal(model.discriminate(x, three), model.discriminate(x, seven))
    assert model.conditions == ("labels",)
    assert registry.create("dcgan").conditions == ()


def test_train_step_uses_the_batch_labels():
    """A batch of 1s moves only the weights that read the label 1, in D (the real images and the
    fakes are judged with it) and in G (the fakes are drawn for it): the weights of the other
    labels' one-hot inputs get no gradient, and Adam leaves a weight with none where it was."""
    torch.manual_seed(0)
    model, x = make(), torch.rand(8, 1, 28, 28)
    zd = model.config.z_dim
    g0, d0 = model.G[0].weight[:, zd:].detach().clone(), model.D[0].weight[:, 1:].detach().clone()
    stats = model.train_step({"x": x, "y": torch.full((8,), 1)})
    assert "g_loss" in stats  # this step updated G too
    moved_g = (model.G[0].weight[:, zd:] != g0).any(0)  # per label column of G's first layer
    moved_d = (model.D[0].weight[:, 1:] != d0).flatten(2).any(2).any(0)  # per label plane of D's
    assert moved_g.tolist() == [j == 1 for j in range(10)]
    assert moved_d.tolist() == [j == 1 for j in range(10)]


def test_sample_takes_labels_and_draws_them_uniformly_without():
    model = make()
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3, 9])
    images = model.sample(5, generator=g, labels=labels)
    assert images.shape == (5, 1, 28, 28) and 0 <= float(images.min()) <= float(images.max()) <= 1
    with torch.no_grad():  # G(z, y) for the noise the seed gives and the labels asked for
        asked = model.eval().generate(model.noise(5, torch.Generator().manual_seed(0)), labels)
    torch.testing.assert_close(images, asked)
    drawn = model.default_conditions(20_000, torch.Generator().manual_seed(0))["labels"]
    counts = torch.bincount(drawn, minlength=10).float() / len(drawn)
    assert float((counts - 0.1).abs().max()) < 0.01
    # with the same generator, default labels and those labels given explicitly agree
    a = model.sample(6, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    z_first = model.noise(6, g)  # sample draws z first, then the labels
    labels = torch.randint(10, (6,), generator=g)
    with torch.no_grad():
        b = model.eval().generate(z_first, labels)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "labels,match",
    [
        (torch.tensor([0, 10]), "digits 0 to 9"),
        (torch.tensor([-1, 3]), "digits 0 to 9"),
        (torch.tensor([1, 2, 3]), "one per sample"),
    ],
)
def test_bad_labels_are_refused(labels, match):
    with pytest.raises(UserError, match=match):
        make().sample(2, labels=labels)


def test_unconditional_models_refuse_labels_and_conditional_ones_refuse_captions():
    with pytest.raises(UserError, match="takes no labels"):
        registry.create("vae").sample(2, labels=torch.tensor([1, 2]))
    with pytest.raises(UserError, match="takes no captions"):
        make().sample(2, captions=["the digit 3 is at the top left of the image ."])


def test_conditional_needs_labelled_data():
    with pytest.raises(UserError, match="labels"):
        registry.create("gan", conditional=True, dataset="ring8")


@pytest.mark.parametrize(
    "text,expected",
    [("3,3,7", [3, 3, 7]), ("0-9", list(range(10))), ("1-3,7", [1, 2, 3, 7]), (" 5 ", [5])],
)
def test_parse_labels(text, expected):
    assert parse_labels(text) == expected


@pytest.mark.parametrize("text", ["a", "3-", "9-2", "1,,2"])
def test_parse_labels_refuses_nonsense(text):
    with pytest.raises(UserError):
        parse_labels(text)


class _Oracle(GenerativeModel):
    """A stand-in conditional model: for label y it returns real test images of digit y (or of
    digit y + 1 when `wrong`), so the classifier's agreement is known."""

    image_shape = (1, 28, 28)
    data_kind = "continuous"
    conditions = ("labels",)

    def __init__(self, data, wrong: bool = False):
        super().__init__()
        self.by_digit = [data.test_x[data.test_y == d] for d in range(10)]
        self.wrong = wrong

    def sample(self, n, generator=None, **condition):
        labels = self.conditions_for(n, generator, **condition)["labels"]
        shown = (labels + 1) % 10 if self.wrong else labels
        count = torch.zeros(10, dtype=torch.long)
        out = []
        for y in shown.tolist():
            pool = self.by_digit[y]
            out.append(pool[int(count[y]) % len(pool)])
            count[y] += 1
        return torch.stack(out)

    def default_conditions(self, n, generator=None):
        return {"labels": torch.randint(10, (n,), generator=generator)}


@needs_mnist
def test_label_agreement_is_the_classifier_accuracy_on_what_was_asked(
    mnist_full, small_classifier, monkeypatch, expect
):
    """Real digits of the asked class agree as often as the classifier is right; digits of the
    next class almost never agree."""
    small = small_classifier
    monkeypatch.setattr(clf, "load_classifier", lambda **_: small)
    opts = metrics.Options()
    with one_thread():
        right = metrics.compute("label_agreement", _Oracle(mnist_full), {}, mnist_full, opts)
        wrong = metrics.compute("label_agreement", _Oracle(mnist_full, wrong=True), {}, mnist_full, opts)
    accuracy = clf.accuracy(small, mnist_full.test_x, mnist_full.test_y)
    assert right["label_agreement"] == pytest.approx(accuracy, abs=0.02)
    expect("label agreement of real digits", right["label_agreement"], ">", 0.9)
    expect("label agreement of the next class's digits", wrong["label_agreement"], "<", 0.1)
    assert len(right["label_agreement_per_class"]) == 10
    assert 0 < right["label_agreement_stderr"] < 0.01


def test_label_agreement_refuses_a_model_without_labels():
    model = registry.create("dcgan")
    with pytest.raises(UserError, match="takes no labels"):
        metrics.compute("label_agreement", model, {}, None, metrics.Options())


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cgan") / "run"
    sets = [f"{k}={v}" for k, v in SMALL.items()] + ["train_limit=300", "batch_size=50", "epochs=1"]
    proc = run_cli("train", "cgan", "--out", run_dir, "--quiet", "--set", *sets, "eval_every=0")
    assert proc.returncode == 0, proc.stderr
    return run_dir


@needs_mnist
def test_cli_samples_a_row_per_label(cgan_run, tmp_path):
    out = tmp_path / "digits.npz"
    proc = run_main("sample", cgan_run, "--labels", "0-9", "--n", "30", "--out", out)
    assert proc.returncode == 0, proc.stderr
    import numpy as np

    images = np.load(out)["images"]
    assert images.shape == (30, 1, 28, 28)
    # G(z, y) for the seed's noise and three of each digit, in order
    model = registry.load_model(cgan_run).eval()
    labels = torch.arange(10).repeat_interleave(3)
    with torch.no_grad():
        again = model.generate(model.noise(30, torch.Generator().manual_seed(0)), labels, average=True)
    np.testing.assert_allclose(images, again.numpy(), rtol=0, atol=1e-6)
    png = run_main("sample", cgan_run, "--labels", "3,3,7", "--out", tmp_path / "g.png")
    assert png.returncode == 0 and "wrote 3 samples" in png.stdout


@needs_mnist
@pytest.mark.parametrize(
    "args,contains",
    [
        (["--labels", "1-3", "--n", "4"], "multiple"),
        (["--labels", "12"], "digits 0 to 9"),
        (["--labels", "x"], "--labels"),
    ],
)
def test_cli_bad_labels_are_one_error_line(cgan_run, tmp_path, args, contains):
    proc = run_main("sample", cgan_run, "--out", tmp_path / "x.png", *args)
    assert_user_error(proc, contains=contains)


@needs_mnist
def test_run_picture_is_a_grid_with_a_row_per_class(cgan_run, tmp_path, monkeypatch):
    from PIL import Image

    from genlearn.viz.figures import write_run_figures

    with Image.open(cgan_run / "samples.png") as grid:  # 10 x 10 (604 pixels), labels left, a title above
        assert grid.size[0] > 604 + 40 and grid.size[1] > 604 + 20
    model, asked = registry.load_model(cgan_run), []
    sample = model.sample
    monkeypatch.setattr(model, "sample", lambda n, **kw: asked.append(kw["labels"]) or sample(n, **kw))
    write_run_figures(model, None, tmp_path)
    assert torch.equal(asked[0].cpu(), torch.arange(10).repeat_interleave(10))  # row r: ten r's


@needs_mnist
def test_resumed_cgan_run_equals_an_uninterrupted_one(tmp_path):
    sets = [f"{k}={v}" for k, v in SMALL.items()] + ["train_limit=200", "batch_size=50", "eval_every=0"]
    resume_then_compare(tmp_path, "cgan", sets)
