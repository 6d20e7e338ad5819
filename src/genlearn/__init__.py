"""genlearn: deep generative models of the lecture, trained, sampled and evaluated one way.

>>> import genlearn
>>> model = genlearn.load("runs/vae")      # any run directory written by `genlearn train`
>>> images = model.sample(16)              # (16, 1, 28, 28), values in [0, 1]
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(run_dir):
    """The trained model of a run directory, in eval mode (weights from model.safetensors)."""
    from genlearn.registry import load_model

    return load_model(run_dir)
