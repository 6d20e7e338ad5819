"""genlearn: deep generative models of the lecture, trained, sampled and evaluated one way.

>>> import genlearn
>>> run = genlearn.train("vae", "runs/my-vae", epochs=5)           # as `genlearn train vae --out ...`
>>> model = genlearn.load("runs/my-vae")                            # any run directory
>>> images = genlearn.sample("runs/my-vae", 16, out="grid.png")     # (16, 1, 28, 28) in [0, 1]
>>> figures = genlearn.evaluate("runs/my-vae", "elbo", "nll", k=500)
>>> print(genlearn.compare(["runs/my-vae", "runs/demo-vae"]).text())

The functions live in `genlearn.api` (imported here; torch only loads when one is called).
"""

from __future__ import annotations

from genlearn.api import Run, compare, evaluate, export, load, sample, train
from genlearn.errors import UserError

__version__ = "0.1.0"

__all__ = ["Run", "UserError", "__version__", "compare", "evaluate", "export", "load", "sample", "train"]
