"""How much the Parzen-window protocol rewards blur: the estimate for a set of 10,000 images, and
for the same images after a small Gaussian blur, side by side (the reference is the unblurred set,
measured in the same run).

The sets are 10,000 real training images (the estimator's "ceiling") and, for each run directory
given, 10,000 of that model's samples (seed 0); beside each, the mean squared distance from a test
image to its nearest image of the set. Each is scored by the GAN paper's protocol as
`genlearn eval --metric parzen` does: sigma chosen on the first 1,000 validation images from the
protocol's grid, then the mean log-likelihood of the 10,000 test images with its standard error.
A blur cannot make a set of images more like handwriting, so whatever it adds is what the
estimator pays for smoothness (Theis, van den Oord & Bethge, ICLR 2016).

    python benchmarks/parzen_blur.py [RUN_DIR ...] [--blur 0.5 0.7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import header  # noqa: E402
from genlearn.data import mnist  # noqa: E402
from genlearn.eval import parzen as pz  # noqa: E402
from genlearn.registry import load_model  # noqa: E402


def gaussian_blur(images: torch.Tensor, std: float) -> torch.Tensor:
    """Each 28 x 28 image convolved with a normalised 5 x 5 Gaussian of `std` pixels (zero padding)."""
    if std <= 0:
        return images
    taps = torch.exp(-(torch.arange(-2.0, 3.0) ** 2) / (2 * std**2))
    taps = taps / taps.sum()
    kernel = (taps[:, None] * taps[None, :])[None, None]
    return F.conv2d(images.view(-1, 1, 28, 28).float(), kernel, padding=2)


def score(images: torch.Tensor, valid: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    flat = images.flatten(1)
    return pz.parzen_estimate(flat, test, pz.select_sigma(flat, valid))


def nearest_squared_distance(images: torch.Tensor, test: torch.Tensor) -> float:
    """Mean over test images of the squared L2 distance to the nearest image of the set: what a
    narrow kernel's estimate mostly depends on."""
    flat = images.flatten(1).double()
    return (
        torch.cat([torch.cdist(t.double(), flat).min(1).values ** 2 for t in test.split(500)]).mean().item()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="run directories whose samples to score as well")
    parser.add_argument("--blur", type=float, nargs="+", default=[0.5, 0.7], help="blur widths in pixels")
    args = parser.parse_args()
    header("Parzen window on blurred images")
    data = mnist.load()
    valid, test = data.valid_x[: pz.N_VALID].flatten(1), data.test_x.flatten(1)
    sets = {"real training images": data.train_x[: pz.N_SAMPLES]}
    for run in args.runs:
        torch.manual_seed(0)
        with torch.no_grad():
            sets[f"samples of {run}"] = load_model(run).sample(pz.N_SAMPLES).detach().cpu()
    print(f"{'set':<40} {'blur px':>7} {'parzen':>8} {'stderr':>7} {'sigma':>6} {'gain':>7} {'nn d^2':>7}")
    for name, images in sets.items():
        base = score(images, valid, test)
        d2 = nearest_squared_distance(images, test)
        print(
            f"{name:<40} {0.0:>7.2f} {base['mean']:>8.2f} {base['stderr']:>7.2f} {base['sigma']:>6.3f} {'':>7} {d2:>7.2f}"
        )
        for std in args.blur:
            r = score(gaussian_blur(images, std), valid, test)
            gain = r["mean"] - base["mean"]
            print(
                f"{'':<40} {std:>7.2f} {r['mean']:>8.2f} {r['stderr']:>7.2f} {r['sigma']:>6.3f} {gain:>+7.2f}"
            )


if __name__ == "__main__":
    main()
