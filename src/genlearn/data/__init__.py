"""Data sets: pinned MNIST, two-digit MNIST (DRAW), 2-D toy mixtures (GAN mode tests).

`load(config)` picks the data set a model's config names in its `dataset` field; every data set
is a `base.DataSet`: `train_x` / `train_y` indexable by a tensor of indices, training batches as
dicts (`batch`), held-out splits as dicts (`split(name, binary)`).
"""

from __future__ import annotations

import math
from typing import Any

from genlearn.config import CAPTION_DATASETS, IMAGE_DATASETS, TOY_DATASETS
from genlearn.data.toy import TOYS
from genlearn.errors import UserError

assert set(TOYS) == set(TOY_DATASETS), "config.TOY_DATASETS must name the toy mixtures"
DATASETS = IMAGE_DATASETS + CAPTION_DATASETS + TOY_DATASETS


def load(config: Any, train: bool = True) -> Any:
    """The data set `config.dataset` names; `train=False` skips `train_limit` (evaluation)."""
    name = config.dataset
    limit = config.train_limit if train else 0
    if name == "mnist":
        from genlearn.data import mnist

        return mnist.load(config.data_dir, limit)
    if name == "mnist-2digit":
        from genlearn.data import two_digit

        return two_digit.load(config.data_dir, limit)
    if name == "mnist-captions":
        from genlearn.data import captions

        return captions.load(config.data_dir, limit)
    if name in TOY_DATASETS:
        from genlearn.data import toy

        data = toy.load_toy(name)
        if limit:
            data.train_x, data.train_y = data.train_x[:limit], data.train_y[:limit]
        return data
    raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def check_fits(model: Any, data: Any, dataset: str) -> None:
    """Refuse a model whose image size is not the data's (e.g. 28 x 28 DRAW on 60 x 60 images)."""
    shape = model.image_shape
    item = data.image_shape
    if shape is not None and math.prod(shape) != math.prod(item):
        raise UserError(
            f"the model's images are {'x'.join(map(str, shape))} but dataset {dataset!r} has "
            f"{'x'.join(map(str, item))}; set the model's size to match (e.g. height and width)"
        )
