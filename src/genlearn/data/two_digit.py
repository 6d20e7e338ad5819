"""Two MNIST digits at random positions on a 60 x 60 canvas: DRAW's "MNIST generation with two
digits" (Gregor et al. 2015, section 4.3).

Each image places two 28 x 28 MNIST digits at uniformly random offsets on a black 60 x 60 canvas;
where they overlap the intensities are added and clipped at 1, as in the paper. Image i of a split
is built from digit i of that MNIST split and a second digit drawn from the same split, so the test
images contain only test digits and none of the training digits.

The images are not stored: which digits and where is drawn once per split from a fixed seed
(`SEEDS`), 4 integers per image, and each batch is composed on the fly when it is indexed
(`Composer`). Every run therefore sees the same virtual data set, and the held-out splits are
binarized with the fixed seed 0 like binarized MNIST, so every model scores the same test images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlearn.data import mnist
from genlearn.data.base import DataSet

SIZE = 60  # the canvas is SIZE x SIZE
DIGIT = 28
SEEDS = {"train": 101, "valid": 102, "test": 103}  # which digits and where, per split


@dataclass
class Composer:
    """Indexable like an image tensor: `composer[idx]` composes those images, (len(idx), 1, 60, 60).

    `digits` are the split's MNIST images (n_digits, 1, 28, 28); image i is digits[pairs[i, 0]]
    at offset offsets[i, 0] plus digits[pairs[i, 1]] at offsets[i, 1], each offset a (row, column)
    of the digit's top-left corner, clipped at 1.
    """

    digits: torch.Tensor
    pairs: torch.Tensor  # (n, 2) long
    offsets: torch.Tensor  # (n, 2, 2) long: [image, digit, (row, col)]

    def __len__(self) -> int:
        return self.pairs.shape[0]

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            idx = torch.arange(len(self))[idx]
        idx = torch.as_tensor(idx, dtype=torch.long)
        return compose(self.digits, self.pairs[idx], self.offsets[idx])

    def all(self, chunk: int = 2000) -> torch.Tensor:
        return torch.cat([self[i : i + chunk] for i in range(0, len(self), chunk)])


def compose(digits: torch.Tensor, pairs: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Paste digits[pairs[:, j]] at offsets[:, j] for j = 0, 1 onto black canvases; add, clip at 1."""
    n = pairs.shape[0]
    canvas = torch.zeros(n, SIZE * SIZE)
    span = torch.arange(DIGIT)
    for j in range(pairs.shape[1]):
        rows = offsets[:, j, 0, None] + span  # (n, 28)
        cols = offsets[:, j, 1, None] + span
        where = (rows[:, :, None] * SIZE + cols[:, None, :]).reshape(n, -1)  # flat canvas positions
        canvas.scatter_add_(1, where, digits[pairs[:, j]].reshape(n, -1))
    return canvas.clamp_(max=1.0).view(n, 1, SIZE, SIZE)


def layout(n_images: int, n_digits: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pairs, offsets) of a split: image i uses digit i (mod n_digits) and a random second one."""
    g = torch.Generator().manual_seed(seed)
    first = torch.arange(n_images) % n_digits
    second = torch.randint(n_digits, (n_images,), generator=g)
    offsets = torch.randint(SIZE - DIGIT + 1, (n_images, 2, 2), generator=g)
    return torch.stack([first, second], 1), offsets


@dataclass
class TwoDigitMNIST(DataSet):
    """The three splits, composed on demand; the same interface as `mnist.MNIST`."""

    train_x: Composer
    train_y: torch.Tensor  # (n, 2): the two digits' labels
    valid_x: Composer
    valid_y: torch.Tensor
    test_x: Composer
    test_y: torch.Tensor

    def split(self, name: str, binary: bool) -> dict[str, torch.Tensor]:
        """A held-out split as a batch dict; `binary` gives the fixed (seed 0) binarization."""
        self.check_split(name)
        x, y = getattr(self, f"{name}_x").all(), getattr(self, f"{name}_y")
        return {"x": mnist.binarize_fixed(x) if binary else x, "y": y}


def load(data_dir: str = "", train_limit: int = 0) -> TwoDigitMNIST:
    """Two-digit images built from the pinned MNIST splits (one per MNIST image of each split)."""
    base = mnist.load(data_dir)
    parts = {}
    for split in ("train", "valid", "test"):
        digits, labels = getattr(base, f"{split}_x"), getattr(base, f"{split}_y")
        n = len(digits)
        if split == "train" and train_limit:
            n = min(n, train_limit)
        pairs, offsets = layout(n, len(digits), SEEDS[split])
        parts[f"{split}_x"] = Composer(digits, pairs, offsets)
        parts[f"{split}_y"] = labels[pairs]
    return TwoDigitMNIST(**parts)
