"""genlearn: deep generative models of the lecture, trained, sampled and evaluated one way.

    import genlearn

    run = genlearn.train("vae", "runs/my-vae", epochs=5)           # as `genlearn train vae --out ...`
    model = genlearn.load("runs/my-vae")                            # any run directory
    images = genlearn.sample("runs/my-vae", 16, out="grid.png")     # (16, 1, 28, 28) in [0, 1]
    figures = genlearn.evaluate("runs/my-vae", "elbo", "nll", k=500)
    print(genlearn.compare(["runs/my-vae", "runs/demo-vae"]).text())

The functions live in `genlearn.api`, with runnable examples in their docstrings; torch and the
models load only when one is called. A user mistake raises `genlearn.UserError`.
"""

from __future__ import annotations

import sys
import types

from genlearn.api import Run, compare, evaluate, export, load, sample, train
from genlearn.errors import UserError

__version__ = "0.1.0"

__all__ = ["Run", "UserError", "__version__", "compare", "evaluate", "export", "load", "sample", "train"]


class _Package(types.ModuleType):
    """`genlearn.train` is the API's function, although `genlearn/train/` is a subpackage (the
    training loop): importing a subpackage binds its name on the package, which would replace
    the function the first time the loop is imported. The subpackage stays importable by its
    full name (`from genlearn.train import loop`); only the binding is kept off the package."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and callable(self.__dict__.get(name)):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
