"""Conformity of an alignDRAW run when z_t is drawn at a lower temperature: z = mu + tau sigma eps.

A probe, not a feature yet: it scales every standard-normal draw of the sampling by tau (the
metric's only random draws are the model's eps), so tau = 0 samples the prior's mean path.

    python benchmarks/aligndraw_temperature.py runs/aligndraw-cpu 1 0.5 0.25 0
"""

from __future__ import annotations

import sys

import torch

from genlearn import runs
from genlearn.data import captions
from genlearn.eval import metrics


def main() -> None:
    run, taus = sys.argv[1], [float(t) for t in sys.argv[2:]]
    model = runs.load_model(run)
    data = captions.load()
    split = data.split("test", binary=True)
    randn = torch.randn
    for tau in taus:
        torch.randn = lambda *a, tau=tau, **k: randn(*a, **k) * tau
        try:
            out = metrics.compute("conformity", model, split, data, metrics.Options())
        finally:
            torch.randn = randn
        print(
            f"tau {tau}: seen {out['conformity_seen']:.4f}, held out {out['conformity_heldout']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
