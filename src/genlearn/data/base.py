"""What the training loop and the metrics use of a data set, whatever it holds.

A data set keeps its three splits in memory (or composes them on demand) as `train_x`,
`train_y`, `valid_x`, ... indexable by a tensor of indices. The loop asks it for training batches
as dicts (`batch`), the metrics for held-out splits as dicts (`split`); the keys are `x` and, where
the data set has them, conditions (`y` labels, `caption` tokens). Neither knows what the keys mean.
"""

from __future__ import annotations

from typing import Any

import torch

from genlearn.errors import UserError

SPLITS = ("train", "valid", "test")


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: a fresh Bernoulli draw each call (training batches)."""
    return torch.bernoulli(x, generator=generator)


class DataSet:
    """The interface every data set has (MNIST, two-digit MNIST, the 2-D toy mixtures)."""

    train_x: Any
    train_y: torch.Tensor
    # further test splits scored apart from "test" (e.g. held-out captions): results get their
    # figures with the split's name after "test_" as a suffix (nll_bound_heldout)
    test_parts: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.train_x)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one training example: (C, H, W) for images, (2,) for points."""
        return tuple(self.train_x[:1].shape[1:])

    def batch(self, idx: torch.Tensor, binary: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The training examples `idx` as a batch dict; `binary` binarizes the images afresh with
        `generator` (whose state the loop checkpoints, so a resumed run draws the same pixels)."""
        x = self.train_x[idx]
        if binary:
            x = binarize(x, generator)
        return {"x": x, "y": self.train_y[idx]}

    def split(self, name: str, binary: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_images(self, n: int) -> torch.Tensor:
        """n real training images (intensities), the same ones every call: the real-data ceiling
        of the sample-based metrics."""
        return self.train_x[:n]

    def all_train_images(self) -> Any:
        """Every training image (intensities), indexable like a tensor by a slice or a tensor of
        indices, with a length: a composed data set composes them on demand, chunk by chunk,
        rather than holding them all (50,000 canvases of 60 x 60 are 720 MB)."""
        return self.train_x

    def check_split(self, name: str) -> None:
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; choose train, valid or test")

    def figure_conditions(self) -> dict[str, dict[str, Any]]:
        """Named sets of conditions a run's pictures show (e.g. seen and held-out captions); none
        by default (labelled models show one row per class)."""
        return {}

    def sample_stats(self, model: Any) -> dict[str, float]:
        """Figures of a model's samples that only this data set can give (the toy mixtures' mode
        counts); none for image data, whose sample metrics are `genlearn eval --metric`."""
        return {}
