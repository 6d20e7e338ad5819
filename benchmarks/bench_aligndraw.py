"""Training speed of alignDRAW as a user meets it: `genlearn train aligndraw` against a
straightforward PyTorch alignDRAW, whole runs, wall clock.

Both sides train the paper's MNIST-with-captions model (Mansimov et al. 2016: T = 32, read and
write 8 x 8 on the 60 x 60 canvas, encoder and decoder LSTMs of 300, z of 150, alignment 512, a
bidirectional language LSTM of 128 each way, a learned prior) with RMSProp (lr 1e-3, decay 0.9),
the gradient's norm clipped at 10, batches of 100, on the same data: captioned composites drawn
afresh per batch by `genlearn.data.captions` (the same code on both sides), dynamically binarized.
At the end both compute the test bound on the 10,000 test and the 10,000 held-out-caption test
composites (no_grad, chunks of 1,000).

Ours: the command a user types, `genlearn train aligndraw --out DIR --set epochs=E ...`, progress
bar on a pseudo-terminal, metrics.jsonl, TensorBoard, checkpoints and the end-of-run pictures as
by default (eval_every=0: no per-epoch validation on either side).

Reference: the script REFERENCE below, written the usual way: `nn.LSTMCell` encoder and decoder
called once per step, `nn.Linear` heads (Q's mean and log-variance, the prior's mean and log sigma,
the write patch, the read's and the write's attention parameters, the alignment's U, W and v), the
Gaussian filterbanks built every step with plain tensor code as DRAW's paper writes them, the
alignment and the KL terms step by step, autograd for the whole backward pass, float32, a print
every 10 batches.

The two alternate (the order swaps every round), `--rounds` rounds of `--epochs` epochs of
`--train-limit` composites, both with OMP_NUM_THREADS = `--threads`. Reported: the best and the
spread of each side, training images per second of the whole run, and ratio = reference best /
ours best, which must be at least 2.

    python benchmarks/bench_aligndraw.py                    # 2 rounds x 1 epoch of 3,000, 2 threads
    python benchmarks/bench_aligndraw.py --rounds 1 --train-limit 200 --threads 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import genlearn_command, header, machine, run_timed  # noqa: E402

BATCH = 100

REFERENCE = r'''
"""alignDRAW written plainly: LSTMCell per step, filterbanks per step, autograd."""

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from genlearn.data import captions

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--train-limit", type=int, default=0)
args = p.parse_args()
torch.manual_seed(0)
T, A, B, ENC, DEC, Z, N_R, N_W, H, K = 32, 60, 60, 300, 300, 150, 8, 8, 128, 512


class AlignDRAW(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(len(captions.VOCAB), H)
        self.lang = nn.LSTM(H, H, batch_first=True, bidirectional=True)
        self.U = nn.Linear(2 * H, K)
        self.W = nn.Linear(DEC, K, bias=False)
        self.v = nn.Linear(K, 1, bias=False)
        self.encoder = nn.LSTMCell(2 * N_R * N_R + DEC, ENC)
        self.decoder = nn.LSTMCell(Z + 2 * H, DEC)
        self.mu, self.logvar = nn.Linear(ENC, Z), nn.Linear(ENC, Z)
        self.prior_mu, self.prior_logsigma = nn.Linear(DEC, Z), nn.Linear(DEC, Z)
        self.write_patch = nn.Linear(DEC, N_W * N_W)
        self.read_attention, self.write_attention = nn.Linear(DEC, 5), nn.Linear(DEC, 5)

    def filterbank(self, params, N):
        gx_, gy_, log_sigma2, log_delta, log_gamma = params.split(1, dim=1)
        gx, gy = (A + 1) / 2 * (gx_ + 1), (B + 1) / 2 * (gy_ + 1)
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
        Fx, Fy, gamma = self.filterbank(self.read_attention(h_dec), N_R)

        def glimpse(image):
            return (Fy @ image.view(-1, B, A) @ Fx.transpose(1, 2)).view(-1, N_R * N_R) * gamma

        return torch.cat([glimpse(x), glimpse(x_hat)], dim=1)

    def write(self, h_dec):
        w = self.write_patch(h_dec).view(-1, N_W, N_W)
        Fx, Fy, gamma = self.filterbank(self.write_attention(h_dec), N_W)
        return (Fy.transpose(1, 2) @ w @ Fx).view(-1, B * A) / gamma

    def loss(self, x, tokens, mask):
        n = x.shape[0]
        packed = pack_padded_sequence(self.embed(tokens), mask.sum(1), batch_first=True, enforce_sorted=False)
        h_lang, _ = pad_packed_sequence(self.lang(packed)[0], batch_first=True, total_length=tokens.shape[1])
        Uh = self.U(h_lang)
        canvas = torch.zeros(n, A * B)
        h_enc, c_enc = torch.zeros(n, ENC), torch.zeros(n, ENC)
        h_dec, c_dec = torch.zeros(n, DEC), torch.zeros(n, DEC)
        kl = 0
        for t in range(T):
            x_hat = x - torch.sigmoid(canvas)
            r = self.read(x, x_hat, h_dec)
            h_enc, c_enc = self.encoder(torch.cat([r, h_dec], dim=1), (h_enc, c_enc))
            mu, logvar = self.mu(h_enc), self.logvar(h_enc)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            if t == 0:
                mu_p, logsig_p = torch.zeros_like(mu), torch.zeros_like(mu)
            else:
                mu_p, logsig_p = torch.tanh(self.prior_mu(h_dec)), torch.tanh(self.prior_logsigma(h_dec))
            e = self.v(torch.tanh(Uh + self.W(h_dec).unsqueeze(1))).squeeze(2)
            alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=1)
            s = (alpha.unsqueeze(2) * h_lang).sum(1)
            h_dec, c_dec = self.decoder(torch.cat([z, s], dim=1), (h_dec, c_dec))
            canvas = canvas + self.write(h_dec)
            kl = kl + (logsig_p - 0.5 * logvar + (logvar.exp() + (mu - mu_p) ** 2) / (2 * torch.exp(2 * logsig_p)) - 0.5).sum(1)
        recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").sum(1)
        return recon + kl


data = captions.load(train_limit=args.train_limit)
model = AlignDRAW()
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9)
g = torch.Generator().manual_seed(0)
steps = len(data) // 100
for epoch in range(1, args.epochs + 1):
    for i in range(steps):
        batch = data.batch(torch.arange(100), True, g)
        loss = model.loss(batch["x"].flatten(1), batch["caption"], batch["caption_mask"]).mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        if i % 10 == 0:
            print(f"Train Epoch: {epoch} [{i * 100}/{steps * 100}]\tLoss: {loss.item():.3f}", flush=True)
model.eval()
with torch.no_grad():
    for name in ("test", "test_heldout"):
        split = data.split(name, binary=True)
        bound = torch.cat([model.loss(split["x"][i : i + 1000].flatten(1), split["caption"][i : i + 1000],
                                      split["caption_mask"][i : i + 1000]) for i in range(0, len(split["x"]), 1000)])
        print(f"====> {name} bound: {bound.mean().item():.3f}")
'''


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="runs of each side (alternating)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per run")
    p.add_argument("--train-limit", type=int, default=3000, help="composites per epoch (and training digits)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of both")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    if args.rounds < 1 or args.epochs < 1 or args.threads < 1 or args.train_limit < BATCH:
        p.error("--rounds, --epochs and --threads must be at least 1, --train-limit at least 100")
    if args.train_limit % BATCH:
        p.error(f"--train-limit must be a multiple of the batch size {BATCH} (both sides then agree)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.pop("PYTHONUNBUFFERED", None)
    torch.set_num_threads(args.threads)  # only so that the header's thread count is the children's
    header("`genlearn train aligndraw` vs a straightforward alignDRAW, whole runs, wall clock")
    images = args.epochs * min(args.train_limit, 10_000)
    work = Path(tempfile.mkdtemp(prefix="bench_aligndraw_"))
    script = work / "reference_aligndraw.py"
    script.write_text(REFERENCE)
    sets = [f"epochs={args.epochs}", f"train_limit={args.train_limit}", "eval_every=0"]
    walls: dict[str, list[float]] = {"genlearn": [], "reference": []}
    try:
        for r in range(args.rounds):
            for side in ("genlearn", "reference") if r % 2 == 0 else ("reference", "genlearn"):
                out = work / f"run{r}"
                if side == "genlearn":
                    cmd = [genlearn_command(), "train", "aligndraw", "--out", str(out), "--set", *sets]
                else:
                    cmd = [
                        sys.executable,
                        str(script),
                        "--epochs",
                        str(args.epochs),
                        "--train-limit",
                        str(args.train_limit),
                    ]
                wall, chunks, rc = run_timed(cmd, env, "pty")
                shutil.rmtree(out, ignore_errors=True)
                if rc != 0:
                    tail = b"".join(c for _, c in chunks)[-3000:].decode(errors="replace")
                    sys.exit(f"{side} run failed with status {rc}: {' '.join(cmd)}\n{tail}")
                walls[side].append(wall)
                print(
                    f"round {r + 1} {side:9s}: {wall:7.2f} s ({images / wall:.1f} training images/s)",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {side: min(w) for side, w in walls.items()}
    ratio = best["reference"] / best["genlearn"]
    print(
        f"\n{args.rounds} rounds x {args.epochs} epochs of {min(args.train_limit, 10_000)} composites, batch {BATCH},"
    )
    print("each run ending with the test bound on 10,000 + 10,000 held-out-caption composites")
    for side, w in walls.items():
        print(
            f"{side:9s}: best {best[side]:7.2f} s ({images / best[side]:.1f} training images/s of the whole run), "
            f"spread {max(w) / min(w) - 1:5.1%}; runs {[round(x, 2) for x in w]}"
        )
    per_round = [r / o for o, r in zip(walls["genlearn"], walls["reference"])]
    print(f"per-round ratios reference / genlearn: {[round(x, 3) for x in per_round]}")
    print(f"ratio reference best / genlearn best: {ratio:.3f}")
    print(f"target ratio >= 2.0: {'met' if ratio >= 2.0 else 'NOT met'}")
    if args.json:
        result = {"benchmark": "bench_aligndraw", "machine": machine(), "threads": args.threads, "walls_s": walls,
                  "images_per_run": images, "per_round_ratios": per_round, "ratio": ratio, "target_met": ratio >= 2.0}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
