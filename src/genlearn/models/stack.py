"""What the stacks of binary RBMs share, the deep belief net (`models/dbn.py`) and the deep
Boltzmann machine (`models/dbm.py`): each RBM's config from the stack's, the preparation before the
first step, and the schedule of a stack trained in stages (a DBN layer by layer; a DBM's two
pretraining RBMs, then joint training), each stage's learning rate annealed as if it were trained
alone.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

from genlearn.models import rbm

BASE_RATE_IMAGES = 10_000  # training images that set an upper RBM's initial visible biases
MAX_EXACT_UNITS = 16  # exact likelihoods enumerate hidden layers of at most this many units
CHUNK = 500  # images per chunk in the bounds and the exact likelihoods


def rbm_config(config, n_visible: int, n_hidden: int, **override) -> rbm.Config:
    """The Config of one RBM of a stack: the stack's RBM fields (method, k, lr, momentum ramp,
    weight decay, initial weights, batch size), its sizes, and any overrides."""
    fields = {name: getattr(config, name) for name in ("method", "k", "lr") if name not in override}
    fields.update(
        n_visible=n_visible,
        n_hidden=n_hidden,
        momentum=config.momentum,
        momentum_final=config.momentum_final,
        momentum_epochs=config.momentum_epochs,
        weight_decay=config.weight_decay,
        init_std=config.init_std,
        batch_size=config.batch_size,
    )
    fields.update(override)
    return rbm.Config(**fields)


def prepare_stack(rbms, data, batch_size: int) -> tuple[int, torch.Tensor]:
    """What a stack of RBMs (DBN, DBM) needs before its first step: the bottom RBM's `prepare`
    (visible biases at the pixels' base rate), one epoch length for every RBM of the stack, and
    the first training images, from which the upper RBMs' base rates are set when their turn
    comes. Returns (steps per epoch, those images)."""
    rbms[0].prepare(data, batch_size)
    steps = max(1, len(data.train_x) // batch_size)
    for layer in rbms:
        layer.steps_per_epoch = steps
    return steps, data.train_x[:BASE_RATE_IMAGES]


def in_chunks(up: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device) -> torch.Tensor:
    """`up(images)`, a pass up the stack, CHUNK images at a time on `device`, the parts joined."""
    return torch.cat([up(part.to(device)) for part in images.split(CHUNK)])


def start_upper_rbm(layer: rbm.RBM, below: torch.Tensor, batch_size: int, steps_per_epoch: int) -> None:
    """An upper RBM of a stack begins its training: its `prepare` on `below`, the activity of the
    layer under it (visible biases at its base rate, PCD chains drawn from them), and the stack's
    epoch length for its momentum ramp."""
    layer.prepare(SimpleNamespace(train_x=below), batch_size)
    layer.steps_per_epoch = steps_per_epoch


def stage_at(step: int, stage_steps: int, stages: int) -> int:
    """The stage a stack trains at (0-based) `step` when every stage but the last lasts
    `stage_steps` steps and the last takes the rest (all steps if `stage_steps` is 0)."""
    return stages - 1 if stage_steps <= 0 else min(step // stage_steps, stages - 1)


def stage_progress(step: int, total_steps: int, stage_steps: int, stages: int) -> float:
    """How far `step` is through its own stage (see `stage_at`), in [0, 1): what the training
    loop's lr schedule follows for a stack that anneals each stage as if it were trained alone."""
    stage = stage_at(step, stage_steps, stages)
    start = stage * stage_steps
    end = total_steps if stage == stages - 1 else start + stage_steps
    return (step - start) / max(end - start, 1)
