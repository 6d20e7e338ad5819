"""`genlearn eval --metric parzen | fid | coverage`: the sample-based metrics as a user runs them,
on a tiny trained GAN and on stand-in models whose samples are known."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import assert_user_error, needs_mnist, one_thread, run_cli, run_main
from genlearn.errors import UserError
from genlearn.eval import classifier as clf
from genlearn.eval import metrics
from genlearn.eval.parzen import DEFAULT_SIGMAS
from genlearn.models.base import GenerativeModel

pytestmark = [pytest.mark.slow, needs_mnist]


@pytest.fixture(scope="module")
def small(small_classifier):
    return small_classifier


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gan") / "run"
    proc = run_cli("train", "dcgan", "--out", run, "--quiet", "--set", "epochs=1", "train_limit=2000")
    assert proc.returncode == 0, proc.stderr
    return run


def eval_json(run, metric: str, monkeypatch=None, classifier=None) -> dict:
    if classifier is not None:
        monkeypatch.setattr(clf, "load_classifier", lambda **_: classifier)
    proc = run_main("eval", run, "--metric", metric, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_parzen_of_a_gan_run_follows_the_protocol_and_is_recorded(gan_run):
    out = eval_json(gan_run, "parzen")
    assert out["parzen_sigma"] in DEFAULT_SIGMAS and out["parzen_real_train_sigma"] in DEFAULT_SIGMAS
    assert out["parzen_stderr"] > 0
    # the ceiling is a property of the data alone: 10,000 training images against the test set
    assert out["parzen_real_train"] == pytest.approx(241.19, abs=0.01)
    assert out["parzen"] < out["parzen_real_train"]  # one epoch on 2,000 images is far from it
    recorded = json.loads((gan_run / "results.json").read_text())["metrics"]
    assert recorded["parzen"] == out["parzen"]


def test_fid_and_coverage_of_a_gan_run(gan_run, small, monkeypatch):
    fid = eval_json(gan_run, "fid", monkeypatch, small)
    assert fid["fid"] > 5 * fid["fid_real"] > 0
    cov = eval_json(gan_run, "coverage", monkeypatch, small)
    assert sum(cov["class_histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert 0 <= cov["coverage_kl"] <= math.log(10) + 1e-9
    h = [p for p in cov["class_histogram"] if p > 0]  # KL(histogram || uniform) of the reported histogram
    assert cov["coverage_kl"] == pytest.approx(sum(p * math.log(10 * p) for p in h), abs=1e-3)
    assert 1 <= cov["classifier_score"] <= 10


def test_metrics_of_one_eval_share_one_draw_and_equal_separate_evals(gan_run, small, monkeypatch):
    """`--metric fid,coverage,nearest` draws the 10,000 samples once (nearest takes their first
    1,000) and gives exactly the figures of three separate evaluations."""
    monkeypatch.setattr(clf, "load_classifier", lambda **_: small)
    draws = []
    original = GenerativeModel.sample_in_chunks
    monkeypatch.setattr(
        GenerativeModel,
        "sample_in_chunks",
        lambda self, n, *a, **k: draws.append(n) or original(self, n, *a, **k),
    )
    alone = {m: eval_json(gan_run, m) for m in ("fid", "coverage", "nearest")}
    assert draws == [10_000, 10_000, 1000]
    draws.clear()
    proc = run_main("eval", gan_run, "--metric", "fid,coverage,nearest", "--json")
    assert proc.returncode == 0, proc.stderr
    together = {r["metric"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert draws == [10_000]
    for m, out in alone.items():
        figures = {k: v for k, v in out.items() if k not in ("seconds",)}
        assert {k: together[m][k] for k in figures} == figures


def test_a_metric_list_is_checked_before_anything_is_loaded(tmp_path):
    assert_user_error(run_main("eval", tmp_path, "--metric", "fid,bogus"), contains="unknown metric 'bogus'")
    assert_user_error(run_main("eval", tmp_path, "--metric", "fid,fid"), contains="named twice")


class _Replay(GenerativeModel):
    """A stand-in model whose samples are given images, drawn in order."""

    image_shape = (1, 28, 28)
    data_kind = "continuous"

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images, self.at = images, 0

    def sample(self, n: int, generator=None, **condition) -> torch.Tensor:
        out = self.images[self.at : self.at + n]
        self.at += n
        return out


def _opts() -> metrics.Options:
    return metrics.Options(seed=0, split="test", progress=False, k=1)


def test_a_model_that_samples_real_images_scores_like_real_images(mnist_full, small, monkeypatch, expect):
    monkeypatch.setattr(clf, "load_classifier", lambda **_: small)
    with one_thread():
        fid = metrics.compute("fid", _Replay(mnist_full.valid_x), {}, mnist_full, _opts())
        cov = metrics.compute("coverage", _Replay(mnist_full.valid_x), {}, mnist_full, _opts())
    assert fid["fid"] == pytest.approx(fid["fid_real"], rel=1e-9)  # the samples are the floor set
    expect("coverage KL of real images", cov["coverage_kl"], "<", 0.01)
    expect("classifier score of real images", cov["classifier_score"], ">", 9)


def test_a_model_of_one_digit_has_no_coverage(mnist_full, small, monkeypatch, expect):
    monkeypatch.setattr(clf, "load_classifier", lambda **_: small)
    ones = mnist_full.train_x[mnist_full.train_y == 1][:1000].repeat(10, 1, 1, 1)
    with one_thread():
        cov = metrics.compute("coverage", _Replay(ones), {}, mnist_full, _opts())
    expect("coverage KL of one digit", cov["coverage_kl"], ">", 0.9 * math.log(10))
    expect("classifier score of one digit", cov["classifier_score"], "<", 1.5)


def test_coverage_of_a_model_with_other_images_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(clf, "load_classifier", lambda **_: pytest.fail("loaded the classifier"))
    run = tmp_path / "d2"
    proc = run_cli(
        "train", "draw-2digit", "--out", run, "--quiet", "--set", "epochs=1", "train_limit=100", "T=2"
    )
    assert proc.returncode == 0, proc.stderr
    # refused before the classifier is loaded (or trained); `fid` of such a model is fid_canvas,
    # on the conformity checker's features (tests/test_conformity.py)
    assert_user_error(run_main("eval", run, "--metric", "coverage"), contains="it reads (1, 28, 28)")


def test_nearest_distances_are_the_brute_force_ones():
    from genlearn.eval.sample_metrics import nearest_distances

    g = torch.Generator().manual_seed(0)
    queries, refs = torch.rand(7, 1, 5, 5, generator=g), torch.rand(23, 1, 5, 5, generator=g)
    brute = torch.cdist(queries.flatten(1).double(), refs.flatten(1).double()).min(1).values
    assert torch.allclose(nearest_distances(queries, refs, chunk=4), brute, atol=1e-5)
    assert torch.allclose(nearest_distances(refs[3:5], refs), torch.zeros(2, dtype=torch.float64), atol=1e-3)


def test_nearest_distances_to_composed_canvases_need_not_hold_them():
    from genlearn.data.two_digit import Composer, layout
    from genlearn.eval.sample_metrics import nearest_distances

    g = torch.Generator().manual_seed(1)
    composer = Composer(torch.rand(30, 1, 28, 28, generator=g), *layout(40, 30, seed=2))
    queries = torch.rand(5, 1, 60, 60, generator=g)
    assert torch.equal(
        nearest_distances(queries, composer, chunk=7), nearest_distances(queries, composer.all())
    )
    assert nearest_distances(composer[[3, 17]], composer, chunk=7).max() < 1e-3


def test_nearest_catches_a_model_that_copies_training_images(mnist_full):
    with one_thread():
        copies = metrics.compute("nearest", _Replay(mnist_full.train_x[5000:6000]), {}, mnist_full, _opts())
        unseen = metrics.compute("nearest", _Replay(mnist_full.valid_x[:1000]), {}, mnist_full, _opts())
    assert copies["nearest_train_samples"] < 1e-2  # each sample is a training image
    # held-out images are as far from the training set whether they come as samples or as the split
    assert unseen["nearest_train_samples"] == pytest.approx(unseen["nearest_train_test"], rel=0.05)
    assert copies["nearest_train_test"] == unseen["nearest_train_test"] > 3


def test_temperature_is_refused_for_a_model_that_cannot_and_for_other_metrics(mnist_full):
    opts = metrics.Options(seed=0, temperature=0.5)
    with pytest.raises(UserError, match="temperature"):
        metrics.compute("nearest", _Replay(mnist_full.valid_x), {}, mnist_full, opts)
    with pytest.raises(UserError, match="applies to the metrics of samples"):
        metrics.compute("nll", _Replay(mnist_full.valid_x), {}, mnist_full, opts)
