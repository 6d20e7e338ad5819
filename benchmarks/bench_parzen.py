"""Parzen-window speed: 10,000 samples against the 10,000 MNIST test images (d = 784).

genlearn's `parzen_log_likelihood` (float64 distance expansion, one matrix product per chunk of
test rows, log-sum-exp) against the straightforward loop of the GAN paper's own script: one test
image at a time, its squared distances to all samples by broadcasting, then a log-sum-exp. The
loop runs on `--ref-images` images and is extrapolated to 10,000; both must agree on them.

    python benchmarks/bench_parzen.py [--ref-images 200]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import header  # noqa: E402
from genlearn.data import mnist  # noqa: E402
from genlearn.eval.parzen import parzen_log_likelihood  # noqa: E402

SIGMA = 0.2


def reference(samples: torch.Tensor, data: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per test image: ||x - s_i||^2 over all samples by broadcasting (float32), log-sum-exp."""
    n, d = samples.shape
    const = math.log(n) + d / 2 * math.log(2 * math.pi * sigma**2)
    out = []
    for x in data:
        sq = ((samples - x) ** 2).sum(1)
        out.append(torch.logsumexp(-sq / (2 * sigma**2), 0) - const)
    return torch.stack(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ref-images", type=int, default=200)
    args = p.parse_args()
    header("Parzen window, 10,000 samples x 10,000 test images: genlearn vs a per-image loop")
    data = mnist.load()
    samples = data.train_x[:10_000].flatten(1)  # real images stand in for a model's samples
    test = data.test_x.flatten(1)

    t0 = time.perf_counter()
    ref = reference(samples, test[: args.ref_images], SIGMA)
    ref_per_image = (time.perf_counter() - t0) / args.ref_images

    t0 = time.perf_counter()
    ours = parzen_log_likelihood(samples, test, SIGMA)
    ours_total = time.perf_counter() - t0

    gap = (ours[: args.ref_images] - ref.double()).abs().max().item()
    print(
        f"reference (per image): {ref_per_image * 1e3:7.2f} ms/image -> {ref_per_image * 1e4:7.1f} s for 10,000"
    )
    print(f"genlearn (batched)   : {ours_total / 1e4 * 1e3:7.2f} ms/image -> {ours_total:7.1f} s for 10,000")
    print(
        f"speed-up: {ref_per_image * 1e4 / ours_total:.1f}x;  max |difference| on shared images: {gap:.2e} nats"
    )
    print(f"mean log-likelihood of the test images at sigma {SIGMA}: {ours.mean().item():.2f}")


if __name__ == "__main__":
    main()
