"""Tests of the in-project MNIST classifier: accuracy, inputs, determinism and the weights cache.

A small classifier (2 epochs on 15,000 training images, about 10 s) is trained once into a
temporary cache directory shared with test_sample_metrics.py; the cache tests then corrupt, replace or forbid parts of it. Retraining
is replaced by a fake trainer where only the flow matters, so no test trains the full classifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch

from conftest import one_thread
from genlearn.errors import UserError
from genlearn.eval import classifier as clf

SMALL = {"epochs": 2, "train_limit": 15_000, "batch_size": 32}


@pytest.fixture(autouse=True)
def _fresh_memory_cache(monkeypatch):
    """Each test starts with an empty in-process cache (the disk cache is what is under test)."""
    monkeypatch.setattr(clf, "_LOADED", {})


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory, mnist_full) -> Path:
    """A cache directory holding a small trained classifier (the same as test_sample_metrics.py's)."""
    directory = tmp_path_factory.getbasetemp() / "small-classifier"
    with one_thread():
        clf.load_classifier(progress=False, cache_dir=directory, data=mnist_full, **SMALL)
    clf._LOADED.clear()
    return directory


def load_small(directory: Path, mnist_full, **kw) -> clf.MNISTClassifier:
    with one_thread():
        return clf.load_classifier(progress=False, cache_dir=directory, data=mnist_full, **{**SMALL, **kw})


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def fake_trainer(calls: list):
    """Stands in for train_classifier: records the call, returns untrained weights instantly."""

    def train(spec, device="cpu", progress=True, data=None):
        calls.append(spec)
        model = clf.MNISTClassifier().eval()
        return model, {"arch_version": clf.ARCH_VERSION, "training": dataclasses.asdict(spec)}

    return train


def forbid_training(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the classifier was retrained although a valid cache exists")

    monkeypatch.setattr(clf, "train_classifier", fail)


@pytest.mark.slow
def test_small_classifier_is_accurate(small_dir, mnist_full):
    model = load_small(small_dir, mnist_full)
    info = json.loads((small_dir / clf.INFO_FILE).read_text())
    with one_thread():
        acc = clf.accuracy(model, mnist_full.test_x, mnist_full.test_y)
    assert acc > 0.97
    assert info["test_accuracy"] == pytest.approx(acc, abs=1e-6)
    assert info["training"]["train_images"] == 15_000 and info["training"]["seed"] == 0


@pytest.mark.slow
def test_returns_eval_mode_frozen_model(small_dir, mnist_full):
    model = load_small(small_dir, mnist_full)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.slow
def test_features_and_logits_accept_both_layouts_and_chunk(small_dir, mnist_full):
    model = load_small(small_dir, mnist_full)
    x = mnist_full.valid_x[: clf.CHUNK + 7]  # crosses a chunk boundary
    with one_thread(), torch.no_grad():
        feats, logits = model.features(x), model(x)
        flat = model.features(x.flatten(1))
        pieces = torch.cat([model.features(x[:5]), model.features(x[5:])])
        direct = model._logits(x[:5])
    assert feats.shape == (len(x), clf.FEATURE_DIM) and logits.shape == (len(x), clf.NUM_CLASSES)
    torch.testing.assert_close(flat, feats)
    torch.testing.assert_close(pieces, feats, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(direct, logits[:5], rtol=1e-5, atol=1e-5)
    assert model.features(x[:0]).shape == (0, clf.FEATURE_DIM)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.rand(4, 28, 28), "shape"),
        (torch.rand(4, 3, 28, 28), "shape"),
        (torch.rand(4, 783), "shape"),
        (torch.rand(4, 1, 28, 28) * 255, "[0, 1]"),
        (torch.rand(4, 1, 28, 28) * 2 - 1, "[0, 1]"),
        (torch.full((4, 784), float("nan")), "[0, 1]"),
    ],
)
def test_rejects_bad_images(x, message):
    model = clf.MNISTClassifier().eval()
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model(x)


@pytest.mark.slow
def test_training_is_deterministic_and_leaves_rng_alone(mnist_full):
    spec = clf.TrainSpec(epochs=1, train_limit=512)
    before = torch.get_rng_state()
    with one_thread():
        a, info_a = clf.train_classifier(spec, progress=False, data=mnist_full, evaluate=False)
        b, _ = clf.train_classifier(spec, progress=False, data=mnist_full, evaluate=False)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb = state(a), state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with one_thread():
        c, _ = clf.train_classifier(
            dataclasses.replace(spec, seed=1), progress=False, data=mnist_full, evaluate=False
        )
    assert not torch.equal(state(c)["fc1.weight"], sa["fc1.weight"])
    assert info_a["training"]["epochs"] == 1 and info_a["arch_version"] == clf.ARCH_VERSION


@pytest.mark.slow
def test_json_holds_sha256_of_weights(small_dir):
    info = json.loads((small_dir / clf.INFO_FILE).read_text())
    blob = (small_dir / clf.WEIGHTS_FILE).read_bytes()
    assert info["sha256"] == hashlib.sha256(blob).hexdigest()
    assert info["arch_version"] == clf.ARCH_VERSION
    assert info["weights_file"] == clf.WEIGHTS_FILE
    assert set(safetensors.torch.load(blob)) == set(clf.MNISTClassifier().state_dict())
    assert not list(small_dir.glob("*.tmp")), "atomic writes left temporaries behind"


@pytest.mark.slow
def test_second_load_uses_the_disk_cache(small_dir, mnist_full, monkeypatch):
    expected = safetensors.torch.load_file(str(small_dir / clf.WEIGHTS_FILE))
    forbid_training(monkeypatch)
    model = load_small(small_dir, mnist_full)
    got = state(model)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


@pytest.mark.slow
def test_repeated_calls_reuse_the_loaded_model(small_dir, mnist_full, monkeypatch):
    first = load_small(small_dir, mnist_full)
    monkeypatch.setattr(clf, "_load_cached", lambda *a: pytest.fail("read the disk again"))
    assert load_small(small_dir, mnist_full) is first


@pytest.fixture
def cache_copy(small_dir, tmp_path) -> Path:
    directory = tmp_path / "classifier"
    shutil.copytree(small_dir, directory)
    return directory


@pytest.mark.slow
def test_corrupt_weights_retrain_with_a_warning(cache_copy, mnist_full, monkeypatch, capsys):
    weights = cache_copy / clf.WEIGHTS_FILE
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF  # a flipped bit in the last weight: still a loadable file
    weights.write_bytes(bytes(blob))
    calls: list = []
    monkeypatch.setattr(clf, "train_classifier", fake_trainer(calls))
    load_small(cache_copy, mnist_full)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(calls) == 1 and calls[0] == clf.TrainSpec(**SMALL)
    assert len(lines) == 1 and lines[0].startswith("warning:") and "sha256" in lines[0], lines
    info = json.loads((cache_copy / clf.INFO_FILE).read_text())
    assert info["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    clf._LOADED.clear()
    forbid_training(monkeypatch)
    load_small(cache_copy, mnist_full)  # the rewritten cache is valid


def _drop_json(d: Path) -> None:
    (d / clf.INFO_FILE).unlink()


def _garble_json(d: Path) -> None:
    (d / clf.INFO_FILE).write_text("{not json")


def _old_arch(d: Path) -> None:
    info = json.loads((d / clf.INFO_FILE).read_text())
    (d / clf.INFO_FILE).write_text(json.dumps({**info, "arch_version": clf.ARCH_VERSION - 1}))


def _truncate_weights(d: Path) -> None:
    blob = (d / clf.WEIGHTS_FILE).read_bytes()
    (d / clf.WEIGHTS_FILE).write_bytes(blob[: len(blob) // 2])


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_drop_json, _garble_json, _old_arch, _truncate_weights])
def test_unusable_cache_is_retrained(cache_copy, mnist_full, monkeypatch, capsys, damage):
    damage(cache_copy)
    calls: list = []
    monkeypatch.setattr(clf, "train_classifier", fake_trainer(calls))
    load_small(cache_copy, mnist_full)
    assert len(calls) == 1
    assert capsys.readouterr().err.startswith("warning:")


@pytest.mark.slow
def test_cache_trained_with_other_settings_is_not_used(cache_copy, mnist_full, monkeypatch):
    calls: list = []
    monkeypatch.setattr(clf, "train_classifier", fake_trainer(calls))
    load_small(cache_copy, mnist_full, epochs=3)
    assert calls == [clf.TrainSpec(**{**SMALL, "epochs": 3})]


@pytest.mark.slow
def test_missing_cache_trains_without_warning(tmp_path, mnist_full, monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(clf, "train_classifier", fake_trainer(calls))
    load_small(tmp_path / "new", mnist_full)
    assert len(calls) == 1 and "warning" not in capsys.readouterr().err
    assert (tmp_path / "new" / clf.WEIGHTS_FILE).is_file()


def test_default_cache_dir_follows_genlearn_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLEARN_CACHE", str(tmp_path))
    assert clf.default_cache_dir() == tmp_path / "classifier"


def test_invalid_settings_are_user_errors():
    with pytest.raises(UserError):
        clf.load_classifier(epochs=0, cache_dir="/nonexistent")
