"""Training speed as a user sees it: `genlearn train vae` against a plain PyTorch script.

Both sides are whole processes timed from start to exit (wall clock, `time.perf_counter` around
the child), so start-up, data loading, progress output, logging, checkpoints, validation, the
final test and pictures all count. Nothing inside either process is timed on its own.

Ours: the command a user types, `genlearn train vae --out DIR --set epochs=E`, progress bar on
(no --quiet), metrics.jsonl, TensorBoard, checkpoints and the end-of-run pictures as by default.
Per epoch: 500 steps of the default VAE (784-200-200-50 tanh, Bernoulli decoder, Adam lr 1e-3,
batch 100) on dynamically binarized MNIST, then a validation ELBO on the 10,000 validation images
(eval_every=1; the last epoch has none, the test ELBO on 10,000 test images replaces it).

Reference: the script in REFERENCE below, written the way pytorch/examples/vae/main.py is: the
same network as separate nn.Linear layers (default init) with sigmoid outputs, Adam lr 1e-3,
batch 100, `loss_function` = binary cross-entropy summed + analytic KL summed, exactly as there,
divided by the batch size before backward (the mean negative ELBO per image, which is what ours
minimises; Adam barely notices the scale), and a print every `log_interval` = 10 batches as there.
The data are tensors in memory (`genlearn.data.mnist.load()`, the same loader as ours; no
DataLoader): a fresh random permutation per epoch, each batch binarized afresh with
`torch.bernoulli`. Per epoch: the training pass, then a test() pass over the 10,000 test images,
binarized once at start-up, in batches of 1000 (pytorch/examples uses the training batch size;
1000 is what our evaluation uses and is no slower). It saves no pictures and no checkpoints
(pytorch/examples saves two PNGs per epoch with torchvision, which is not installed here), so if
anything the reference is the lighter of the two.

Output: by default each child writes to a pseudo-terminal (24 rows, 100 columns), which is what
a user running in a terminal gets: tqdm draws its bar as on a terminal, and the reference's print
is line-buffered as on a terminal. `--output pipe` gives a plain pipe instead (tqdm still draws,
print becomes block-buffered). Either way the parent drains the output as it comes and stamps
each chunk with the time it arrived; those stamps (first output of each epoch) give a rough
breakdown of a run into start-up, epochs and end, reported for the fastest run of each side.

The two sides alternate (the order swaps every round), `--rounds` rounds of `--epochs` epochs (by
default 10, the VAE's default `epochs`: the run a user's plain `genlearn train vae` makes);
both run with OMP_NUM_THREADS = MKL_NUM_THREADS = `--threads`. Reported: the best and the spread
(slowest / fastest - 1) of each side, seconds per epoch, and ratio = reference best / ours best,
which must be at least 1.0.

    python benchmarks/bench_train_vae.py                       # 3 rounds x 10 epochs, 2 threads
    python benchmarks/bench_train_vae.py --rounds 1 --epochs 1 --train-limit 2000   # smoke test
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import genlearn_command, header, machine, run_timed  # noqa: E402

BATCH = 100

REFERENCE = r'''
"""pytorch/examples/vae/main.py, adapted: 784-200-200-50 tanh, binarized MNIST held in memory."""

import argparse

import torch
import torch.nn.functional as F
from torch import nn, optim

from genlearn.data import mnist

parser = argparse.ArgumentParser(description="VAE MNIST Example")
parser.add_argument("--batch-size", type=int, default=100)
parser.add_argument("--test-batch-size", type=int, default=1000)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--log-interval", type=int, default=10)
parser.add_argument("--train-limit", type=int, default=0)
args = parser.parse_args()

torch.manual_seed(args.seed)
device = torch.device("cpu")
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

data = mnist.load()
train_x = data.train_x.flatten(1)
if args.train_limit:
    train_x = train_x[: args.train_limit]
test_x = torch.bernoulli(data.test_x.flatten(1))  # binarized once, as test sets are


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 200)
        self.fc2 = nn.Linear(200, 200)
        self.fc31 = nn.Linear(200, 50)
        self.fc32 = nn.Linear(200, 50)
        self.fc4 = nn.Linear(50, 200)
        self.fc5 = nn.Linear(200, 200)
        self.fc6 = nn.Linear(200, 784)

    def encode(self, x):
        h = torch.tanh(self.fc2(torch.tanh(self.fc1(x))))
        return self.fc31(h), self.fc32(h)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h = torch.tanh(self.fc5(torch.tanh(self.fc4(z))))
        return torch.sigmoid(self.fc6(h))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


model = VAE().to(device)
optimizer = optim.Adam(model.parameters(), lr=1e-3)


# Reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def train(epoch):
    model.train()
    train_loss = 0
    n = len(train_x)
    perm = torch.randperm(n)
    for batch_idx, idx in enumerate(perm.split(args.batch_size)):
        data = torch.bernoulli(train_x[idx]).to(device)  # dynamic binarization
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar) / len(data)  # per image
        loss.backward()
        train_loss += loss.item() * len(data)
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print(
                "Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}".format(
                    epoch,
                    batch_idx * len(data),
                    n,
                    100.0 * batch_idx * args.batch_size / n,
                    loss.item(),
                )
            )
    print("====> Epoch: {} Average loss: {:.4f}".format(epoch, train_loss / n))


def test(epoch):
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for data in test_x.split(args.test_batch_size):
            data = data.to(device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
    test_loss /= len(test_x)
    print("====> Test set loss: {:.4f}".format(test_loss))


if __name__ == "__main__":
    for epoch in range(1, args.epochs + 1):
        train(epoch)
        test(epoch)
'''

# The first output of epoch k on each side: tqdm's bar description (drawn when the bar opens,
# before the epoch's first step) and the reference's log line after its first step.
EPOCH_MARK = {
    "genlearn": re.compile(rb"epoch (\d+)/\d+"),
    "reference": re.compile(rb"Train Epoch: (\d+) \[0/"),
}
FINAL_LOSS = {
    "genlearn": re.compile(rb"test elbo (-?[0-9.]+)"),  # -> negated below
    "reference": re.compile(rb"Test set loss: (-?[0-9.]+)"),
}


def phases(side: str, wall: float, chunks: list[tuple[float, bytes]], epochs: int) -> dict[str, float]:
    """Start-up (to epoch 1's first output), each whole epoch but the last (training and its
    held-out pass), and the last epoch with everything after it (to exit), from the output stamps."""
    text = b"".join(c for _, c in chunks)
    ends = []
    total = 0
    for _, c in chunks:
        total += len(c)
        ends.append(total)
    starts: dict[int, float] = {}
    for m in EPOCH_MARK[side].finditer(text):
        k = int(m.group(1))
        if k not in starts:
            starts[k] = chunks[bisect.bisect_left(ends, m.end())][0]
    if sorted(starts) != list(range(1, epochs + 1)):
        return {}
    out = {"startup_s": starts[1], "last_epoch_and_end_s": wall - starts[epochs]}
    middle = [starts[k + 1] - starts[k] for k in range(1, epochs)]
    if middle:
        out["middle_epoch_s"] = statistics.mean(middle)
    return out


def final_loss(side: str, chunks: list[tuple[float, bytes]]) -> float | None:
    found = FINAL_LOSS[side].findall(b"".join(c for _, c in chunks))
    if not found:
        return None
    value = float(found[-1])
    return -value if side == "genlearn" else value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", "--repeats", type=int, default=3, help="runs of each side (alternating)")
    p.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="epochs per run (10: what `genlearn train vae` runs by default)",
    )
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS / MKL_NUM_THREADS of both")
    p.add_argument("--train-limit", type=int, default=0, help="first N training images only (smoke test)")
    p.add_argument("--output", choices=("pty", "pipe"), default="pty", help="where children write")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    if args.rounds < 1 or args.epochs < 1 or args.threads < 1:
        p.error("--rounds, --epochs and --threads must be at least 1")
    if args.train_limit % BATCH:
        p.error(f"--train-limit must be a multiple of the batch size {BATCH} (both sides then agree)")

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.pop("PYTHONUNBUFFERED", None)
    torch.set_num_threads(args.threads)  # only so that the header's thread count is the children's
    header("`genlearn train vae` vs a pytorch/examples-style script, whole runs, wall clock")
    print(f"# children: OMP_NUM_THREADS={args.threads}, output to a {args.output}", flush=True)
    n_train = args.train_limit or 50_000

    work = Path(tempfile.mkdtemp(prefix="bench_train_vae_"))
    ref_script = work / "reference_vae.py"
    ref_script.write_text(REFERENCE)
    sets = [f"epochs={args.epochs}"] + ([f"train_limit={args.train_limit}"] if args.train_limit else [])
    ref_args = ["--epochs", str(args.epochs)]
    if args.train_limit:
        ref_args += ["--train-limit", str(args.train_limit)]

    runs: dict[str, list[dict]] = {"genlearn": [], "reference": []}
    try:
        for r in range(args.rounds):
            order = ("genlearn", "reference") if r % 2 == 0 else ("reference", "genlearn")
            for side in order:
                out = work / f"run{r}"
                if side == "genlearn":
                    cmd = [genlearn_command(), "train", "vae", "--out", str(out), "--set", *sets]
                else:
                    cmd = [sys.executable, str(ref_script), *ref_args]
                wall, chunks, rc = run_timed(cmd, env, args.output)
                shutil.rmtree(out, ignore_errors=True)
                if rc != 0:
                    tail = b"".join(c for _, c in chunks)[-3000:].decode(errors="replace")
                    sys.exit(f"{side} run failed with status {rc}: {' '.join(cmd)}\n{tail}")
                run = {
                    "wall_s": wall,
                    "phases": phases(side, wall, chunks, args.epochs),
                    "final_test_loss": final_loss(side, chunks),
                }
                runs[side].append(run)
                print(f"round {r + 1} {side:9s}: {wall:7.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    for side, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        best = min(range(len(rs)), key=lambda i: walls[i])
        summary[side] = {
            "best_s": walls[best],
            "spread": max(walls) / min(walls) - 1,
            "per_epoch_s": walls[best] / args.epochs,
            "walls_s": walls,
            "phases_of_best": rs[best]["phases"],
            "final_test_loss": rs[best]["final_test_loss"],
        }
    ours, ref = summary["genlearn"], summary["reference"]
    ratio = ref["best_s"] / ours["best_s"]
    met = ratio >= 1.0

    print(f"\n{args.rounds} rounds x {args.epochs} epochs of {n_train} images, batch {BATCH}")
    for side, label in (("genlearn", "genlearn train vae"), ("reference", "reference script")):
        s = summary[side]
        ph = s["phases_of_best"]
        parts = [f"start-up {ph['startup_s']:.2f} s"] if ph else []
        if "middle_epoch_s" in ph:
            parts.append(f"epoch (train + held-out) {ph['middle_epoch_s']:.2f} s")
        if ph:
            parts.append(f"last epoch to exit {ph['last_epoch_and_end_s']:.2f} s")
        loss = s["final_test_loss"]
        print(
            f"{label:19s}: best {s['best_s']:7.2f} s ({s['per_epoch_s']:.2f} s/epoch), "
            f"spread {s['spread']:5.1%}; runs {[round(w, 2) for w in s['walls_s']]}"
        )
        print(
            f"{'':19s}  best run: {'; '.join(parts) or 'no epoch marks found'}"
            + (f"; final test loss {loss:.2f} nats/image" if loss is not None else "")
        )
    per_round = [r["wall_s"] / o["wall_s"] for o, r in zip(runs["genlearn"], runs["reference"])]
    print(f"per-round ratios reference / genlearn: {[round(x, 3) for x in per_round]}")
    print(f"ratio reference best / genlearn best: {ratio:.3f}")
    print(f"target ratio >= 1.0: {'met' if met else 'NOT met'}")

    if args.json:
        result = {
            "benchmark": "bench_train_vae",
            "machine": machine(),
            "threads": args.threads,
            "output": args.output,
            "rounds": args.rounds,
            "epochs": args.epochs,
            "train_images": n_train,
            "genlearn": ours,
            "reference": ref,
            "per_round_ratios": per_round,
            "ratio": ratio,
            "target_met": met,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
