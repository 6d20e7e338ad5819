r"""The in-project checker behind `genlearn eval RUN --metric conformity` (alignDRAW):
a small network that reads which digit, if any, sits in each of the eight places a caption of
MNIST with captions can name (`captions.POSITIONS`), so that a sample drawn for a caption conforms
when the checker's reading equals the caption's (`captions.reading_of`).

Why a network of our own: nothing published reads these 60 x 60 composites, and the places are
fixed by the data set (a side-by-side pair's left and right places, a stacked pair's top and
bottom, the four corners), so a small network trained on composites drawn the way the data set
draws them reads them almost perfectly; its exact-match accuracy on the real test composites (all
eight places right) is recorded with its weights and reported beside every conformity figure as
the ceiling a perfect model could reach.

Architecture (``ARCH_VERSION`` 1, 1.1 M parameters; the stride-2 first layer keeps it cheap)::

    x (n, 1, 60, 60) in [0, 1]
    conv 5x5 stride 2, 16 -> BatchNorm -> ReLU    (16, 30, 30)
    conv 3x3 stride 2, 32 -> BatchNorm -> ReLU    (32, 15, 15)
    conv 3x3 stride 2, 64 -> BatchNorm -> ReLU    (64, 8, 8)
    conv 3x3, 64 -> BatchNorm -> ReLU             (64, 8, 8)
    fc 4096 -> 256 -> ReLU -> fc 8 x 11           logits of digit 0-9 or EMPTY in each place

How it was chosen (600 steps of 128 each, exact match on the test composites, one thread): the
first three layers alone reach 87%; with batch normalisation 95%, at the same cost; the fourth
convolution adds a point (96%) for 30% more time, where twice the channels everywhere give the same
at 2.6 times the cost and a wider fc layer nothing. Every error left is a misread digit, mostly in
side-by-side pairs (their boxes may overlap by 4 columns); empty places are read right.

Training recipe (``TrainSpec``): composites drawn afresh for every batch from the MNIST
*training* digits with `captions.layout` and `captions.compose`, all from one seeded generator,
so the test and held-out test composites (test digits) are never seen. Targets are
`reading_of(captions_of(plan))`. Three departures from the data set's own training
distribution, each so that the checker reads what is on the canvas rather than what usually is:

- a quarter of every batch is laid out as the held-out test split is (`layout(held_out=True)`):
  the checker judges places, not captions, and without them it would never see, e.g., a 9 in
  the top left corner (a held-out combination), which is exactly what a model that generalises
  draws;
- one pair in ten loses one of its two digits (that place reads EMPTY), so that a sample with a
  missing digit is not read as a complete pair from habit;
- half of the images are binarized afresh (a Bernoulli draw per pixel), since models trained on
  binarized data may sample binary canvases while others sample intensities; the other half stay
  intensities, as the test composites are.

Adam (lr 2e-3) with a cosine decay to 0 over ``DEFAULT_STEPS`` = 2,400 steps of 128 composites,
seed 0 for the initial weights and all drawing (inside a forked RNG; the caller's RNG state is
untouched). It reaches 98.50% exact match on the 10,000 test composites and 98.83% on the 10,000
held-out test composites (98.07% and 98.28% on their fixed binarizations) in 296 s on one CPU
thread (AMD EPYC, torch 2.13, about 1,040 composites/s with the other core busy); it reads about
4,500 canvases/s. The cached JSON records the figures of the weights it holds.

The weights are cached under ``mnist.cache_dir()/conformity/`` as ``checker.safetensors`` and
``checker.json`` through the classifier's `WeightsCache`: used when checksum, architecture version
and recipe match, otherwise retrained (with a one-line warning when a cache was there) and
rewritten atomically; loaded checkers are memoised per process.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from genlearn.data import captions, mnist
from genlearn.data.base import binarize
from genlearn.errors import UserError
from genlearn.eval.classifier import WeightsCache, checked_intensities, in_chunks

ARCH_VERSION = 1
N_POSITIONS = len(captions.POSITIONS)
N_CLASSES = 11  # digits 0-9 and captions.EMPTY
SUBDIR = "conformity"
WEIGHTS_FILE = "checker.safetensors"
INFO_FILE = "checker.json"
DEFAULT_STEPS = 2400


def as_canvases(x: Tensor, what: str = "images") -> Tensor:
    """(n, 1, 60, 60) intensities in [0, 1] as float; other shapes or ranges are refused."""
    return checked_intensities(x, (1, captions.SIZE, captions.SIZE), what)


class ConformityChecker(nn.Module):
    """Reads the digit or EMPTY in each of the eight places; see the module docstring."""

    arch_version = ARCH_VERSION

    def __init__(self) -> None:
        super().__init__()
        widths, kernels, strides = (1, 16, 32, 64, 64), (5, 3, 3, 3), (2, 2, 2, 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, k, stride=s, padding=k // 2, bias=False)
            for a, b, k, s in zip(widths, widths[1:], kernels, strides)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(b) for b in widths[1:])
        self.fc1 = nn.Linear(64 * 8 * 8, 256)
        self.fc2 = nn.Linear(256, N_POSITIONS * N_CLASSES)
        # exact-match accuracies on the real test composites, from training or the cached JSON
        self.accuracies: dict[str, float] = {}

    def _features(self, x: Tensor) -> Tensor:
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(norm(conv(h)))
        return F.relu(self.fc1(h.flatten(1)))

    def _logits(self, x: Tensor) -> Tensor:
        return self.fc2(self._features(x)).view(-1, N_POSITIONS, N_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """The 256 activations before the readout (n, 256): what a Frechet distance on 60 x 60
        canvases compares (`genlearn eval --metric fid` on such a model)."""
        return in_chunks(self._features, as_canvases(x), self.fc2.weight.device, (self.fc1.out_features,))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (n, 8, 11)."""
        return in_chunks(self._logits, as_canvases(x), self.fc2.weight.device, (N_POSITIONS, N_CLASSES))


@torch.no_grad()
def read_positions(checker: ConformityChecker, images: Tensor) -> Tensor:
    """The digit (0-9) or captions.EMPTY the checker reads in each of POSITIONS: (n, 8) long, on
    the CPU."""
    was_training = checker.training
    checker.eval()
    try:
        return checker(as_canvases(images, "the images to check")).argmax(2).cpu()
    finally:
        checker.train(was_training)


def exact_match(checker: ConformityChecker, images: Tensor, tokens: Tensor) -> Tensor:
    """(n,) bool: whether the checker's reading of each image equals its caption's in all eight
    places."""
    return (read_positions(checker, images) == captions.reading_of(tokens)).all(1)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Everything that determines the trained weights (besides torch version and device)."""

    steps: int = DEFAULT_STEPS
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    held_out_share: float = 0.25  # of each batch laid out as the held-out test split is
    drop_share: float = 0.1  # of pairs that lose one digit
    binarize_share: float = 0.5  # of images binarized afresh

    def check(self) -> None:
        shares = (self.held_out_share, self.drop_share, self.binarize_share)
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise UserError(f"invalid conformity checker training settings: {self}")
        if not all(0 <= s <= 1 for s in shares):
            raise UserError(f"invalid conformity checker training settings: {self}")


def _drop_one(plan: dict[str, Tensor], target: Tensor, share: float, g: torch.Generator) -> dict[str, Tensor]:
    """A plan in which `share` of the pairs keep only one (random) digit, and `target` (modified
    in place) reads EMPTY at the other's place. A pair keeping one digit is composed as a
    one-digit plan whose slot 0 is the kept digit at its pair place."""
    kind, labels, pos = plan["kind"], plan["labels"].clone(), plan["pos"].clone()
    n = len(kind)
    drop = (kind < captions.TWO_DIGITS) & (torch.rand(n, generator=g) < share)
    slot = torch.randint(2, (n,), generator=g)  # the slot that goes
    swap = drop & (slot == 0)
    labels[swap] = labels[swap].flip(1)
    pos[swap] = pos[swap].flip(1)
    rows = drop.nonzero().squeeze(1)
    target[rows, kind[rows] ^ slot[rows]] = captions.EMPTY  # slot 0 sits at kind, slot 1 at kind ^ 1
    single = torch.where(drop, torch.full_like(kind, captions.TWO_DIGITS), kind)
    return {"kind": single, "labels": labels, "pos": pos}


def draw_batch(digits: list[Tensor], n: int, spec: TrainSpec, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """n training composites (n, 1, 60, 60) and their readings (n, 8), drawn with `g` as the
    recipe says (held-out layouts, dropped digits, binarization)."""
    n_held = round(n * spec.held_out_share)
    parts = [captions.layout(n - n_held, g), captions.layout(n_held, g, held_out=True)]
    plan = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    target = captions.reading_of(captions.captions_of(plan))
    x = captions.compose(digits, _drop_one(plan, target, spec.drop_share, g), g)
    binary = torch.rand(n, generator=g) < spec.binarize_share
    x = torch.where(binary[:, None, None, None], binarize(x, g), x)
    return x, target


def _train_steps(
    checker: ConformityChecker, digits: list[Tensor], spec: TrainSpec, device, progress: bool
) -> None:
    """Adam with a per-step cosine learning rate decaying to 0; every batch drawn afresh."""
    opt = torch.optim.Adam(checker.parameters(), lr=spec.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / spec.steps))
    )
    g = torch.Generator().manual_seed(spec.seed)
    checker.train()
    with tqdm(total=spec.steps, desc="conformity checker", unit="step", disable=not progress) as bar:
        for step in range(spec.steps):
            x, target = draw_batch(digits, spec.batch_size, spec, g)
            logits = checker._logits(x.to(device))
            loss = F.cross_entropy(logits.reshape(-1, N_CLASSES), target.to(device).reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            if step % 100 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    checker.eval()


def measure(checker: ConformityChecker, data: captions.CaptionedMNIST) -> dict[str, float]:
    """Exact-match accuracy on the 10,000 test and 10,000 held-out test composites (intensities)."""
    out = {}
    for name in ("test", "test_heldout"):
        split = data.split(name, binary=False)
        out[name] = round(exact_match(checker, split["x"], split["caption"]).double().mean().item(), 6)
    return out


def train_checker(
    spec: TrainSpec = TrainSpec(),
    device: str | torch.device = "cpu",
    progress: bool = True,
    data: captions.CaptionedMNIST | None = None,
    evaluate: bool = True,
) -> tuple[ConformityChecker, dict[str, Any]]:
    """Train from scratch as `spec` says; returns the checker (eval mode) and its training details
    (with `evaluate`, its exact-match accuracies on the test and held-out test composites)."""
    spec.check()
    device = torch.device(device)
    data = data if data is not None else captions.load()
    digits = data.digits["train"]
    start = time.perf_counter()
    cuda = [device.index or 0] if device.type == "cuda" else []  # whose RNG state fork_rng keeps
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(spec.seed)
        checker = ConformityChecker().to(device)
        _train_steps(checker, digits, spec, device, progress)
    seconds = time.perf_counter() - start
    info: dict[str, Any] = {"arch_version": ARCH_VERSION}
    if evaluate:
        checker.accuracies = measure(checker, data)
        info["test_accuracy"] = checker.accuracies["test"]
        info["test_heldout_accuracy"] = checker.accuracies["test_heldout"]
    images = spec.steps * spec.batch_size
    info["training"] = {
        **dataclasses.asdict(spec),
        "train_digits": sum(len(d) for d in digits),
        "optimizer": "Adam, cosine decay to 0 per step",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 1),
        "images_per_second": round(images / seconds, 1),
        "torch": torch.__version__,
    }
    return checker, info


def default_cache_dir() -> Path:
    return mnist.cache_dir() / SUBDIR


def _cache(directory: str | Path) -> WeightsCache:
    return WeightsCache(Path(directory), WEIGHTS_FILE, INFO_FILE, ARCH_VERSION)


def _recorded(info: dict[str, Any] | None) -> dict[str, float]:
    info = info or {}
    keys = {"test": "test_accuracy", "test_heldout": "test_heldout_accuracy"}
    return {name: info[key] for name, key in keys.items() if isinstance(info.get(key), (int, float))}


_LOADED: dict[tuple[str, str, TrainSpec], ConformityChecker] = {}


def load_checker(
    device: str | torch.device = "cpu",
    progress: bool = True,
    *,
    cache_dir: str | Path | None = None,
    steps: int = DEFAULT_STEPS,
    batch_size: int = TrainSpec.batch_size,
    seed: int = TrainSpec.seed,
    data: captions.CaptionedMNIST | None = None,
) -> ConformityChecker:
    """The trained checker in eval mode with frozen weights, from memory, the disk cache, or
    training; `checker.accuracies` holds its exact-match accuracies on the test and held-out test
    composites ({"test": ..., "test_heldout": ...}).

    `cache_dir` defaults to ``mnist.cache_dir()/conformity``; `steps`, `batch_size` and `seed`
    exist so tests can train a small one quickly (a cache trained with other settings is retrained, not
    used). An unusable cache prints a one-line warning to stderr and is
    retrained; `progress` shows a tqdm bar while training. `data` saves composing MNIST again.
    """
    spec = TrainSpec(steps=steps, batch_size=batch_size, seed=seed)
    spec.check()
    cache = _cache(cache_dir if cache_dir is not None else default_cache_dir())
    device = torch.device(device)
    key = (str(cache.directory.resolve()), str(device), spec)
    if key in _LOADED:
        return _LOADED[key]
    checker, problem = cache.load(ConformityChecker, dataclasses.asdict(spec))
    if checker is not None:
        checker.accuracies = _recorded(cache.read_info())
    else:
        if problem:
            print(f"warning: {problem}; retraining the conformity checker", file=sys.stderr)
        elif progress:
            print(f"training the conformity checker once (cached in {cache.directory})", file=sys.stderr)
        checker, info = train_checker(spec, device=device, progress=progress, data=data)
        cache.save(checker, info)
    checker = checker.to(device).eval().requires_grad_(False)
    _LOADED[key] = checker
    return checker
