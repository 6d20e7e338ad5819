"""Training speed: `genlearn train vae` against a plain PyTorch loop of the same model.

The reference is written the way pytorch/examples' VAE is: a DataLoader over the images, the model's
forward returning (reconstruction, mu, logvar), binary cross-entropy on sigmoid outputs plus the
analytic KL, Adam. Both train the default VAE (784-200-200-50, tanh, batch 100) on dynamically
binarized MNIST for the same number of epochs, alternating, best of `--repeats`. The figure is
images per second of steady-state training (start-up and the final evaluation excluded from both)
and the ratio ours / reference, which must be at least 1.0; each is also given as a fraction of
the machine's measured matmul FLOP/s.

    python benchmarks/bench_train_vae.py [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import header, matmul_flops  # noqa: E402
from genlearn import registry  # noqa: E402
from genlearn.data import mnist  # noqa: E402
from genlearn.train import loop  # noqa: E402

SIZES = [784, 200, 200, 50]


class ReferenceVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 200), nn.Linear(200, 200)
        self.fc31, self.fc32 = nn.Linear(200, 50), nn.Linear(200, 50)
        self.fc4, self.fc5, self.fc6 = nn.Linear(50, 200), nn.Linear(200, 200), nn.Linear(200, 784)

    def encode(self, x):
        h = torch.tanh(self.fc2(torch.tanh(self.fc1(x))))
        return self.fc31(h), self.fc32(h)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc6(torch.tanh(self.fc5(torch.tanh(self.fc4(z))))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def reference_epochs(train_x: torch.Tensor, epochs: int) -> float:
    """Images per second of the pytorch/examples-style loop."""
    torch.manual_seed(0)
    model = ReferenceVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train_x), batch_size=100, shuffle=True
    )
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for (x,) in loader:
            x = torch.bernoulli(x)
            opt.zero_grad()
            recon, mu, logvar = model(x)
            bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / len(x)
            loss.backward()
            opt.step()
            n += len(x)
    return n / (time.perf_counter() - t0)


def genlearn_epochs(data: mnist.MNIST, epochs: int) -> float:
    """Images per second of `genlearn train vae` (the loop's own timer: steps, data, logging)."""
    model = registry.create("vae", epochs=epochs, eval_every=0, checkpoint_every=1e9)
    with tempfile.TemporaryDirectory() as out:
        config = model.config
        t0 = time.perf_counter()
        res = loop.fit(model, config, out, "vae", progress=False, data=data)
        wall = time.perf_counter() - t0
    return res["steps"] * config.batch_size / res["train_time_s"], wall


def flops_per_image() -> float:
    """Forward multiply-adds x 2 FLOP, x 3 for forward + backward, encoder + decoder."""
    enc = sum(a * b for a, b in zip(SIZES[:-2], SIZES[1:-1])) + SIZES[-2] * 2 * SIZES[-1]
    dec = sum(a * b for a, b in zip(SIZES[::-1][:-1], SIZES[::-1][1:]))
    return 2 * 3 * (enc + dec)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    header("genlearn train vae vs a pytorch/examples-style loop")
    data = mnist.load()
    train_x = data.train_x.flatten(1)
    peak = matmul_flops()
    ref, ours = [], []
    for _ in range(args.repeats):
        ref.append(reference_epochs(train_x, args.epochs))
        ours.append(genlearn_epochs(data, args.epochs)[0])
    best_ref, best_ours = max(ref), max(ours)
    fpi = flops_per_image()
    print(f"matmul peak (1024^2 float32): {peak / 1e9:.1f} GFLOP/s; model: {fpi / 1e6:.2f} MFLOP per image")
    print(f"reference loop : {best_ref:9.0f} images/s  ({best_ref * fpi / peak:6.1%} of matmul peak)")
    print(f"genlearn train : {best_ours:9.0f} images/s  ({best_ours * fpi / peak:6.1%} of matmul peak)")
    print(f"ratio genlearn / reference: {best_ours / best_ref:.2f}  (target >= 1.0)")
    print(f"runs (images/s): reference {[round(r) for r in ref]}, genlearn {[round(r) for r in ours]}")


if __name__ == "__main__":
    main()
