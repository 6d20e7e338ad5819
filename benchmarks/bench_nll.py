"""Evaluation speed: the k=5000 importance-weighted NLL over the 10,000 test images.

genlearn's `iw_log_likelihood` (each image encoded once, (image, sample) rows decoded in large
chunks, streaming log-sum-exp) against a per-image loop written the way pythae's `get_nll` works:
for each image, 50 rounds of: repeat the image 100 times, encode the copies, sample, decode,
sigmoid + binary cross-entropy, collect; then a log-sum-exp over the 5,000 weights. The reference
runs under `torch.no_grad()` (pythae's does not), which only helps it.

The per-image loop over all 10,000 images would take the better part of an hour, so it runs on
`--ref-images` images and both are reported as seconds per image and extrapolated to 10,000; with
`--images 10000` ours runs on the whole test set. Both estimates on the shared images must agree
within Monte Carlo error (printed).

    python benchmarks/bench_nll.py [--run runs/vae] [--images 1000] [--ref-images 20]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import genlearn  # noqa: E402
from common import header, matmul_flops  # noqa: E402
from genlearn import registry  # noqa: E402
from genlearn.data import mnist  # noqa: E402
from genlearn.eval.likelihood import iw_log_likelihood  # noqa: E402

K = 5000


@torch.no_grad()
def reference_get_nll(model, data: torch.Tensor, n_samples: int = K, batch_size: int = 100) -> list[float]:
    """Per-image importance sampling in the style of pythae's VAE.get_nll (log p per image)."""
    n_full_batch = n_samples // batch_size
    log_p = []
    for i in range(len(data)):
        x = data[i].unsqueeze(0)
        log_p_x = []
        for _ in range(n_full_batch):
            x_rep = torch.cat(batch_size * [x])
            mu, log_var = model.encoder(x_rep).chunk(2, dim=-1)
            std = torch.exp(0.5 * log_var)
            z = mu + torch.randn_like(std) * std
            log_q_z_given_x = -0.5 * (log_var + (z - mu) ** 2 / torch.exp(log_var)).sum(dim=-1)
            log_p_z = -0.5 * (z**2).sum(dim=-1)
            recon_x = torch.sigmoid(model.decoder(z))
            log_p_x_given_z = -F.binary_cross_entropy(recon_x, x_rep, reduction="none").sum(dim=-1)
            log_p_x.append(log_p_x_given_z + log_p_z - log_q_z_given_x)  # log(2 pi) cancels
        log_p_x = torch.cat(log_p_x)
        log_p.append((torch.logsumexp(log_p_x, 0) - np.log(len(log_p_x))).item())
    return log_p


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", help="a trained vae run (default: the default VAE, untrained)")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--ref-images", type=int, default=20)
    p.add_argument("--device", default="cpu", help="cpu or cuda: both run there")
    args = p.parse_args()
    device = torch.device(args.device)
    header(f"importance-weighted NLL, k={K}: genlearn vs a per-image loop (pythae get_nll style)")
    model = genlearn.load(args.run) if args.run else registry.create("vae").eval()
    model.to(device)
    test = mnist.load().split("test", binary=True)["x"].flatten(1).to(device)
    peak = matmul_flops(device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":  # warm both up (kernel selection, allocator)
        reference_get_nll(model, test[:2])
        iw_log_likelihood(model, test[:100], K, generator=torch.Generator(device).manual_seed(1))
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")

    torch.manual_seed(0)
    sync()
    t0 = time.perf_counter()
    ref = reference_get_nll(model, test[: args.ref_images])
    sync()
    ref_per_image = (time.perf_counter() - t0) / args.ref_images

    t0 = time.perf_counter()
    ours = iw_log_likelihood(model, test[: args.images], K, generator=torch.Generator(device).manual_seed(0))
    sync()
    ours = ours.cpu()
    ours_per_image = (time.perf_counter() - t0) / args.images

    n = args.ref_images
    gap = float(np.mean(ref) - ours[:n].mean().item())
    spread = float(np.std(np.array(ref) - ours[:n].numpy()) / math.sqrt(n))
    dec = 2 * (50 * 200 + 200 * 200 + 200 * 784)  # decoder FLOP per (image, sample)
    print(f"matmul peak (float32): {peak / 1e9:.1f} GFLOP/s")
    print(
        f"reference (per image)  : {ref_per_image * 1e3:8.1f} ms/image -> {ref_per_image * 1e4 / 60:6.1f} min for 10,000"
    )
    print(
        f"genlearn (batched)     : {ours_per_image * 1e3:8.1f} ms/image -> {ours_per_image * 1e4 / 60:6.1f} min for 10,000"
    )
    print(f"decoder alone at genlearn's rate: {K * dec / ours_per_image / peak:.1%} of matmul peak")
    print(f"speed-up: {ref_per_image / ours_per_image:.1f}x  (target >= 20x)")
    print(
        f"agreement on {n} images: mean log p(x) reference {np.mean(ref):.3f}, genlearn {ours[:n].mean():.3f}, gap {gap:+.3f} +- {spread:.3f}"
    )
    if args.images >= 10000:
        print(f"test NLL (k={K}) over {args.images} images: {-ours.mean().item():.3f}")


if __name__ == "__main__":
    main()
