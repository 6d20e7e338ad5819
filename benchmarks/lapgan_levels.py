"""Which level of a LAPGAN limits its samples: the Frechet distance (the in-project MNIST
classifier's features, as `genlearn eval --metric fid`) of the whole pyramid's samples beside that
of its finer levels completing real coarse images.

For each run directory: FID of `--n` samples; then for every level k > 0, FID of
`model.refine(I_k)`, where I_k is the real level-k image of `--n` validation images (with their
labels for the class-conditional form): G_{k-1}, ..., G_0 draw everything finer. If the finest
level alone, given the real 14 x 14 image, scores near the real images' floor while the whole
pyramid does not, the coarser levels are what to train harder. For scale, the same distance for
real validation images (the floor) and for real images blurred to level k and brought back up
by u(.) (what the levels above k must add). All against the statistics of the 10,000 test
images; seed 0.

    python benchmarks/lapgan_levels.py runs/lapgan [RUN ...] [--n 5000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import header  # noqa: E402
from genlearn.data import mnist  # noqa: E402
from genlearn.errors import UserError  # noqa: E402
from genlearn.eval import sample_metrics as sm  # noqa: E402
from genlearn.eval.classifier import load_classifier  # noqa: E402
from genlearn.models.lapgan import LAPGAN  # noqa: E402
from genlearn.nn.pyramid import downsample, upsample  # noqa: E402
from genlearn.registry import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LAPGAN run directories trained on MNIST")
    parser.add_argument("--n", type=int, default=5000, help="images per set (at most 10,000)")
    args = parser.parse_args()
    if not 2 <= args.n <= 10_000:
        sys.exit(f"error: --n must be 2 to 10,000, got {args.n}")
    header("LAPGAN: FID of the whole pyramid and of its finer levels over real coarse images")
    data = mnist.load()
    features = load_classifier().features
    held = sm.gaussian_stats(features(data.test_x.view(-1, 1, 28, 28)).double())

    @torch.no_grad()
    def fid(images: torch.Tensor) -> float:
        return sm.frechet_from_stats(*sm.gaussian_stats(features(images).double()), *held)

    real = data.valid_x[: args.n].view(-1, 1, 28, 28)
    labels = data.valid_y[: args.n]
    levels = [real]  # I_0, I_1, ...: the real pyramid's images, finest first
    while min(levels[-1].shape[-2:]) > 7:
        levels.append(downsample(levels[-1]))
    print(f"{'set':<58} {'FID':>8}")
    print(f"{'real validation images (the floor)':<58} {fid(real):>8.1f}")
    for k, image in enumerate(levels[1:], start=1):
        blurred = image
        for size in (x.shape[-2:] for x in reversed(levels[:k])):
            blurred = upsample(blurred, size)
        print(
            f"{f'real I_{k} ({image.shape[-1]} x {image.shape[-1]}) brought up by u(.)':<58} {fid(blurred):>8.1f}"
        )
    for run in args.runs:
        try:
            model = load_model(run)
        except UserError as exc:
            sys.exit(f"error: {exc}")
        if not isinstance(model, LAPGAN) or model.image_shape != (1, 28, 28):
            sys.exit(f"error: {run} is not a LAPGAN trained on MNIST")
        condition = {"labels": labels} if model.conditions else {}
        g = torch.Generator().manual_seed(0)
        print(f"{run}")
        print(f"{'  the whole pyramid: sample()':<58} {fid(model.sample(args.n, g, **condition)):>8.1f}")
        for k in range(model.coarsest, 0, -1):
            done = model.refine(levels[k], torch.Generator().manual_seed(0), **condition)
            finer = ", ".join(str(j) for j in range(k - 1, -1, -1))
            print(f"{f'  real I_{k} under level(s) {finer}: refine(I_{k})':<58} {fid(done):>8.1f}")


if __name__ == "__main__":
    main()
