"""Training speed of DRAW: genlearn's `train_step` against a straightforward implementation.

Both train the paper's MNIST model with attention (Gregor et al. 2015, table 3: T = 64 glimpses,
LSTMs of 256 units, z of 100, a 2 x 2 read, a 5 x 5 write) on the same binarized MNIST batches,
with Adam (lr 1e-3) and the gradient's norm clipped at 10, at the same batch size.

The reference is written the way DRAW is usually written in PyTorch: `nn.LSTMCell` encoder and
decoder called once per step, `nn.Linear` heads for Q's mean and log-variance, the write patch
and the read and write attention parameters, the Gaussian filterbanks built every step with
plain tensor code, the KL term accumulated step by step, autograd for the whole backward pass,
float32 throughout.

genlearn runs with its default `matmul_dtype = "auto"` (bfloat16 operands, float32 accumulation,
on CPUs with native bfloat16 dot products; float32 elsewhere) and, for comparison, with float32.

Timing: each implementation lives in its own process (own heap, own CPU state); they take turns,
`--rounds` times `--steps` training steps each, after a warm-up. The figure per implementation is
the median over rounds of the process CPU time per step (the machine may be shared: CPU time does
not count the time another process holds the core), and the ratios come from those medians,
measured in one run. Wall-clock figures are printed too. FLOP counts are the matrix products of a
step (forward, and twice that for backward); the attention's small per-image products are left
out. Fractions are of torch.mm's float32 1024^2 rate (MKL; `common.matmul_flops`) and of the same
product through oneDNN, which genlearn uses and which is about twice as fast on AMD CPUs.

    OMP_NUM_THREADS=1 python benchmarks/bench_draw.py [--batch-size 100] [--rounds 5] [--steps 2]
    OMP_NUM_THREADS=1 python benchmarks/bench_draw.py --sweep 25,50,100,200 --matmul-dtype float32,bfloat16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import header, matmul_flops  # noqa: E402
from genlearn.models.draw import DRAW, Config  # noqa: E402

PAPER = dict(T=64, enc_size=256, dec_size=256, z_size=100, read_n=2, write_n=5, attention=True)


class ReferenceDRAW(nn.Module):
    """DRAW with attention, written plainly: LSTMCell per step, filterbanks per step, autograd."""

    def __init__(self, T=64, A=28, B=28, enc_size=256, dec_size=256, z_size=100, read_n=2, write_n=5):
        super().__init__()
        self.T, self.A, self.B = T, A, B
        self.enc_size, self.dec_size, self.read_n, self.write_n = enc_size, dec_size, read_n, write_n
        self.encoder = nn.LSTMCell(2 * read_n * read_n + dec_size, enc_size)
        self.decoder = nn.LSTMCell(z_size, dec_size)
        self.mu = nn.Linear(enc_size, z_size)
        self.logvar = nn.Linear(enc_size, z_size)
        self.write_patch = nn.Linear(dec_size, write_n * write_n)
        self.read_attention = nn.Linear(dec_size, 5)
        self.write_attention = nn.Linear(dec_size, 5)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)

    def filterbank(self, params, N):
        A, B = self.A, self.B
        gx_, gy_, log_sigma2, log_delta, log_gamma = params.split(1, dim=1)
        gx = (A + 1) / 2 * (gx_ + 1)
        gy = (B + 1) / 2 * (gy_ + 1)
        sigma2 = torch.exp(log_sigma2)
        delta = (max(A, B) - 1) / (N - 1) * torch.exp(log_delta)
        grid = torch.arange(1, N + 1, dtype=torch.float32).view(1, -1)
        mu_x = gx + (grid - N / 2 - 0.5) * delta
        mu_y = gy + (grid - N / 2 - 0.5) * delta
        a = torch.arange(1, A + 1, dtype=torch.float32).view(1, 1, -1)
        b = torch.arange(1, B + 1, dtype=torch.float32).view(1, 1, -1)
        Fx = torch.exp(-((a - mu_x.unsqueeze(2)) ** 2) / (2 * sigma2.unsqueeze(2)))
        Fy = torch.exp(-((b - mu_y.unsqueeze(2)) ** 2) / (2 * sigma2.unsqueeze(2)))
        Fx = Fx / Fx.sum(2, keepdim=True).clamp(min=1e-8)
        Fy = Fy / Fy.sum(2, keepdim=True).clamp(min=1e-8)
        return Fx, Fy, torch.exp(log_gamma)

    def read(self, x, x_hat, h_dec):
        N = self.read_n
        Fx, Fy, gamma = self.filterbank(self.read_attention(h_dec), N)

        def glimpse(image):
            return (Fy @ image.view(-1, self.B, self.A) @ Fx.transpose(1, 2)).view(-1, N * N) * gamma

        return torch.cat([glimpse(x), glimpse(x_hat)], dim=1)

    def write(self, h_dec):
        N = self.write_n
        w = self.write_patch(h_dec).view(-1, N, N)
        Fx, Fy, gamma = self.filterbank(self.write_attention(h_dec), N)
        return (Fy.transpose(1, 2) @ w @ Fx).view(-1, self.B * self.A) / gamma

    def loss(self, x):
        n = x.shape[0]
        canvas = torch.zeros(n, self.A * self.B)
        h_enc, c_enc = torch.zeros(n, self.enc_size), torch.zeros(n, self.enc_size)
        h_dec, c_dec = torch.zeros(n, self.dec_size), torch.zeros(n, self.dec_size)
        kl = 0
        for _ in range(self.T):
            x_hat = x - torch.sigmoid(canvas)
            r = self.read(x, x_hat, h_dec)
            h_enc, c_enc = self.encoder(torch.cat([r, h_dec], dim=1), (h_enc, c_enc))
            mu, logvar = self.mu(h_enc), self.logvar(h_enc)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            h_dec, c_dec = self.decoder(z, (h_dec, c_dec))
            canvas = canvas + self.write(h_dec)
            kl = kl + 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").sum(1)
        return (recon + kl).mean()

    def train_step(self, batch):
        loss = self.loss(batch["x"].flatten(1))
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters(), 10.0)
        self.optimizer.step()
        return {"loss": loss.item()}


def matmul_flops_per_image(c: Config) -> float:
    """Multiply-adds of one image's matrix products x 2 FLOP x 3 (forward + backward) x T."""
    E, D, Z = c.enc_size, c.dec_size, c.z_size
    read, write = 2 * c.read_n**2, c.write_n**2 + 5
    per_step = (read + D + E) * 4 * E + E * 2 * Z + (Z + D) * 4 * D + D * (write + 5)
    return 2 * 3 * per_step * c.T


def onednn_flops(n: int = 1024, seconds: float = 2.0) -> float:
    """The same square product through oneDNN (what genlearn's DRAW uses on the CPU)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            op(a, b, None, "none", [], "")
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            op(a, b, None, "none", [], "")
            reps += 1
        return 2 * n**3 * reps / (time.perf_counter() - t0)
    except Exception:
        return float("nan")


def batches(batch_size: int, count: int) -> list[dict[str, torch.Tensor]]:
    """`count` binarized MNIST training batches (random binary images if MNIST is not cached)."""
    g = torch.Generator().manual_seed(0)
    try:
        from genlearn.data import mnist

        x = mnist.load().train_x[: batch_size * count]
    except Exception:
        x = torch.rand(batch_size * count, 1, 28, 28, generator=g) * 0.4
    x = torch.bernoulli(x, generator=g)
    return [{"x": chunk} for chunk in x.split(batch_size)]


def time_steps(model, data, steps: int, offset: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per training step over `steps` steps."""
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(steps):
        model.train_step(data[(offset + i) % len(data)])
    return (time.process_time() - c0) / steps, (time.perf_counter() - w0) / steps


def ours(batch_size: int) -> DRAW:
    torch.manual_seed(0)
    return DRAW(Config(batch_size=batch_size, **PAPER))


def _worker(kind: str, batch_size: int, config: dict, conn) -> None:
    """One implementation in its own process (its own heap and CPU state), timed on command."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if kind == "reference":
        model = ReferenceDRAW()
    else:
        model = DRAW(Config(batch_size=batch_size, **{**PAPER, **config}))
    data = batches(batch_size, 8)
    time_steps(model, data, 2, 0)  # warm-up
    conn.send("ready")
    offset = 2
    while (steps := conn.recv()) is not None:
        conn.send(time_steps(model, data, steps, offset))
        offset += steps


def compare(args, peak: float, peak_onednn: float) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    dtypes = args.matmul_dtype.split(",") if args.matmul_dtype else ["auto", "float32"]
    kinds = {"reference": {}, **{f"genlearn {d}": {"matmul_dtype": d} for d in dtypes}}
    workers = {}
    for name, config in kinds.items():
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(name.split()[0], args.batch_size, config, there))
        proc.start()
        workers[name] = (proc, here)
    for _, conn in workers.values():
        assert conn.recv() == "ready"
    cpu = {k: [] for k in workers}
    wall = {k: [] for k in workers}
    for _ in range(args.rounds):  # one implementation at a time, alternating
        for name, (_, conn) in workers.items():
            conn.send(args.steps)
            c, w = conn.recv()
            cpu[name].append(c)
            wall[name].append(w)
    for proc, conn in workers.values():
        conn.send(None)
        proc.join()
    fpi = matmul_flops_per_image(Config(**PAPER))
    n = args.batch_size
    resolved = DRAW(Config(T=1, enc_size=1, dec_size=1, z_size=1)).matmul_dtype()
    print(
        f"batch {n}; each implementation in its own process, {args.rounds} rounds x {args.steps} "
        f"steps, alternating; medians over rounds. genlearn's default matmul_dtype 'auto' is "
        f"{resolved} here; the reference is float32 throughout"
    )
    rate = {}
    for name in workers:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        rate[name] = n / c
        print(
            f"{name:18s}: {n / c:7.1f} images/s by CPU time ({c * 1e3:6.0f} ms/step), "
            f"{n / w:7.1f} by wall clock; {n / c * fpi / peak:6.1%} of the matmul peak, "
            f"{n / c * fpi / peak_onednn:6.1%} of oneDNN's"
        )
    for name in workers:
        if name != "reference":
            print(
                f"ratio {name} / reference (CPU time): {rate[name] / rate['reference']:.2f}  (target >= 2.5)"
            )
    print("per-round ms/step: " + "; ".join(f"{k} {[round(v * 1e3) for v in cpu[k]]}" for k in workers))


def sweep(sizes: list[int], rounds: int, steps: int, dtypes: list[str]) -> None:
    print("genlearn DRAW (paper config) training throughput by batch size: CPU time, median of rounds")
    for dtype in dtypes:
        for n in sizes:
            torch.manual_seed(0)
            model, data = DRAW(Config(batch_size=n, matmul_dtype=dtype, **PAPER)), batches(n, 4)
            time_steps(model, data, 1, 0)
            cpu = [time_steps(model, data, steps, r * steps)[0] for r in range(rounds)]
            c = statistics.median(cpu)
            name = model.matmul_dtype()
            print(
                f"{name:8s} batch {n:4d}: {n / c:7.1f} images/s ({c * 1e3:5.0f} ms/step; best round {n / min(cpu):.1f})"
            )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=Config().batch_size)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--sweep", type=str, default="", help="comma-separated batch sizes (genlearn only)")
    p.add_argument(
        "--matmul-dtype",
        default="",
        help="genlearn variants to time, e.g. float32,bfloat16 (default: auto,float32)",
    )
    args = p.parse_args()
    header("DRAW training step (paper MNIST config, attention): genlearn vs a straightforward PyTorch DRAW")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"# OMP_NUM_THREADS={threads}; the machine is shared with other jobs while this runs, so "
        "figures are process CPU time (wall clock alongside) and the two are interleaved"
    )
    peak, peak_onednn = matmul_flops(), onednn_flops()
    fpi = matmul_flops_per_image(Config(**PAPER))
    print(
        f"matmul peak (1024^2 float32, torch.mm/MKL): {peak / 1e9:.1f} GFLOP/s; same through oneDNN: "
        f"{peak_onednn / 1e9:.1f} GFLOP/s; model: {fpi / 1e6:.0f} MFLOP per training image"
    )
    if args.sweep:
        dtypes = args.matmul_dtype.split(",") if args.matmul_dtype else [Config().matmul_dtype]
        sweep([int(s) for s in args.sweep.split(",")], args.rounds, args.steps, dtypes)
    else:
        compare(args, peak, peak_onednn)


if __name__ == "__main__":
    main()
