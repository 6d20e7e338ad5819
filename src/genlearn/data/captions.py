"""MNIST with captions: one or two digits on a 60 x 60 canvas, described by a 12-token sentence
(Mansimov et al., ICLR 2016, their MNIST-with-captions experiment, as their public code builds it;
alignDRAW's data).

Eight caption types, drawn uniformly; D and E are the digits' symbols 0-9:

    the digit D is on the left of the digit E .        (two digits, side by side)
    the digit D is on the right of the digit E .
    the digit D is at the top of the digit E .         (two digits, one above the other)
    the digit D is at the bottom of the digit E .
    the digit D is at the top left of the image .      (one digit, in a corner)
    the digit D is at the top right | bottom left | bottom right of the image .

Every caption is 12 tokens over a vocabulary of 22 (`VOCAB`). Placement, as (row, column) of each
28 x 28 digit's top-left corner, inclusive ranges drawn uniformly: a left/right pair shares a row
in 16-18, the left digit's column is in 0-4 and the right one's in 28-32; a top/bottom pair shares
a column in 16-18, the top digit's row is in 0-2 and the bottom one's in 30-32; a single digit's
row is 0-2 (top) or 30-32 (bottom) and its column 0-4 (left) or 28-32 (right). Two digits combine
by the pixel-wise maximum (the public code pastes the second over the first, so where they
overlap, by up to 4 columns, its black border erased the first one's strokes).

Slots: the digit D (written first) is slot 0, E is slot 1. A caption "the digit 3 is on the left
of the digit 8" puts digit 3 (slot 0) on the left and 8 (slot 1) on the right; "on the right of"
swaps the places.

Held-out captions (`HELD_OUT`): a fixed, documented set of (caption type, slot, digit)
combinations never generated for training or validation; the split `test_heldout` is made only
of captions that contain one, so that drawing compositions never seen in training is measured on a
known set (the public code drew its banned set from an unseeded RNG at every run).

Positions (`POSITIONS`): the eight places a caption can name, the places of a side-by-side pair
(left, right), of a stacked pair (top, bottom) and the four corners. `reading_of` says which digit
a caption puts at each of them (EMPTY elsewhere): what the conformity checker reads off an image,
so that an image agrees with its caption when the two readings are equal.

Training composites are drawn afresh for every batch from the training digits by the loop's data
generator (whose state every checkpoint saves, so a resumed run sees the same ones); validation,
test and held-out test composites are fixed, from their own digits, by fixed seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from genlearn import files
from genlearn.data import mnist
from genlearn.data.base import DataSet, binarize
from genlearn.errors import UserError

SIZE, DIGIT = 60, 28
TYPES = ("left", "right", "top", "bottom", "top left", "top right", "bottom left", "bottom right")
TWO_DIGITS = 4  # the first four types describe two digits
CAPTION_LENGTH = 12
VOCAB = (
    "the", "digit", "is", "on", "at", "left", "right", "top", "bottom", "of", "image", ".",
    *map(str, range(10)),
)  # fmt: skip
# (caption type, slot, digit) combinations never generated for training or validation.
HELD_OUT = (
    ("left", 0, 3), ("right", 1, 7), ("top", 0, 5), ("bottom", 1, 2),
    ("top left", 0, 9), ("top right", 0, 0), ("bottom left", 0, 6), ("bottom right", 0, 4),
)  # fmt: skip
N_EVAL = 10_000  # composites in each of valid, test and test_heldout
N_TRAIN = 10_000  # training composites per epoch
SEEDS = {"valid": 201, "test": 202, "test_heldout": 203}
SPLITS = ("train", "valid", "test", "test_heldout")
# The places a caption can name; a caption of type k puts its first digit at POSITIONS[k] (the
# same order as TYPES), and a pair's second digit at the pair's other place (k ^ 1).
POSITIONS = ("left", "right", "top", "bottom", "top left", "top right", "bottom left", "bottom right")
EMPTY = 10  # the reading of a position where the caption puts no digit
_D, _E = 2, 10  # the token indices of the digits D and E ("the digit D is ... the digit E .")


def caption_text(kind: int, d: int, e: int) -> str:
    """The sentence of caption type `kind` (an index into TYPES) for digits d (and e)."""
    where = TYPES[kind]
    if kind < TWO_DIGITS:
        prep = "on the" if where in ("left", "right") else "at the"
        return f"the digit {d} is {prep} {where} of the digit {e} ."
    return f"the digit {d} is at the {where} of the image ."


def encode(text: str) -> torch.Tensor:
    """Token ids (CAPTION_LENGTH,) of a caption; unknown words and other lengths are refused."""
    words = text.split()
    unknown = [w for w in words if w not in VOCAB]
    if unknown:
        raise UserError(f"unknown word {unknown[0]!r} in caption {text!r}; the words are: {' '.join(VOCAB)}")
    if len(words) != CAPTION_LENGTH:
        raise UserError(f"a caption has {CAPTION_LENGTH} words, not {len(words)}: {text!r}")
    return torch.tensor([VOCAB.index(w) for w in words])


def decode(tokens: torch.Tensor) -> str:
    return " ".join(VOCAB[int(t)] for t in tokens)


MAX_CAPTIONS_BYTES = 16 * 2**20  # some hundred thousand captions


def read_captions_file(path: str | Path) -> list[str]:
    """The non-empty lines of a captions file (`genlearn sample --captions FILE`), stripped. Read
    as UTF-8 with or without a byte-order mark (which Windows editors write, and which would
    otherwise stick to the first word); a link or a pipe is read like a file. Every way the file
    cannot be read (missing, a directory, no permission, not UTF-8, too large) is one line."""
    if not files.lexists(path):
        raise UserError(f"cannot read captions from {files.shown(path)!r}: it does not exist")
    text = files.read_text(
        path, "captions file", follow_links=True, limit=MAX_CAPTIONS_BYTES, encoding="utf-8-sig"
    )
    captions = [line.strip() for line in text.splitlines() if line.strip()]
    if not captions:
        raise UserError(f"{files.shown(path)!r} has no captions; write one caption a line")
    return captions


def _held_out_digits(kind: torch.Tensor, slot: int) -> torch.Tensor:
    """(n, 10) bool: which digits are held out in `slot` for each composite's caption type."""
    banned = torch.zeros(len(TYPES), 10, dtype=torch.bool)
    for name, s, digit in HELD_OUT:
        if s == slot:
            banned[TYPES.index(name), digit] = True
    return banned[kind]


def _held_out_slot() -> torch.Tensor:
    """(8,): the slot that carries each caption type's held-out digit (1 only for "right" and
    "bottom")."""
    return torch.tensor([next(s for t, s, _ in HELD_OUT if t == name) for name in TYPES])


def held_out_place(kind: torch.Tensor) -> torch.Tensor:
    """The position (n,), an index into POSITIONS, where a held-out caption of each type (n,)
    puts its held-out digit: a caption's first digit sits at POSITIONS[kind], a pair's second at
    the pair's other place."""
    kind = torch.as_tensor(kind).long().cpu()
    return torch.where(_held_out_slot()[kind] == 0, kind, kind ^ 1)


def _draw_labels(kind: torch.Tensor, slot: int, g: torch.Generator, held_out: bool) -> torch.Tensor:
    """A digit per composite for `slot`: uniform over the allowed ones (held_out False) or over
    the held-out ones where the caption type has one (held_out True)."""
    banned = _held_out_digits(kind, slot)
    weights = (banned if held_out else ~banned).float()
    weights[weights.sum(1) == 0] = 1.0  # no held-out digit for this type and slot: any digit
    return torch.multinomial(weights, 1, generator=g).squeeze(1)


def layout(n: int, g: torch.Generator, held_out: bool = False) -> dict[str, torch.Tensor]:
    """Caption types, the two slots' digit labels and the (row, col) corner of each slot's digit
    for n composites. With `held_out`, every caption contains one held-out combination."""
    kind = torch.randint(len(TYPES), (n,), generator=g)
    if held_out:
        carrier = _held_out_slot()[kind]
    labels = []
    for slot in (0, 1):
        drawn = _draw_labels(kind, slot, g, held_out=False)
        if held_out:
            drawn = torch.where(carrier == slot, _draw_labels(kind, slot, g, held_out=True), drawn)
        labels.append(drawn)
    u = lambda lo, hi: torch.randint(lo, hi + 1, (n,), generator=g)  # noqa: E731 (inclusive range)
    shared, near, far = u(16, 18), u(0, 4), u(28, 32)
    top, bottom = u(0, 2), u(30, 32)
    corner_row = torch.where((kind == 4) | (kind == 5), u(0, 2), u(30, 32))
    corner_col = torch.where((kind == 4) | (kind == 6), u(0, 4), u(28, 32))
    # slot 0's and slot 1's corners, by caption type
    first_left = kind == 0  # "D on the left of E": D at the left
    pos = torch.zeros(n, 2, 2, dtype=torch.long)
    side = kind <= 1
    pos[side, 0, 0] = pos[side, 1, 0] = shared[side]
    pos[side, 0, 1] = torch.where(first_left, near, far)[side]
    pos[side, 1, 1] = torch.where(first_left, far, near)[side]
    stacked = (kind == 2) | (kind == 3)
    first_top = kind == 2
    pos[stacked, 0, 1] = pos[stacked, 1, 1] = shared[stacked]
    pos[stacked, 0, 0] = torch.where(first_top, top, bottom)[stacked]
    pos[stacked, 1, 0] = torch.where(first_top, bottom, top)[stacked]
    single = kind >= TWO_DIGITS
    pos[single, 0, 0], pos[single, 0, 1] = corner_row[single], corner_col[single]
    return {"kind": kind, "labels": torch.stack(labels, 1), "pos": pos}


def compose(digits: list[torch.Tensor], plan: dict[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """The canvases (n, 1, 60, 60): for each slot a random image of its digit from `digits` (a
    list of the split's images of each digit 0-9), pasted at its corner, combined by the maximum."""
    kind, labels, pos = plan["kind"], plan["labels"], plan["pos"]
    n = len(kind)
    canvas = torch.zeros(n, SIZE, SIZE)
    span = torch.arange(DIGIT)
    for slot in (0, 1):
        used = torch.ones(n, dtype=torch.bool) if slot == 0 else kind < TWO_DIGITS
        pick = torch.stack(
            [
                digits[d][torch.randint(len(digits[d]), (1,), generator=g)][0, 0]
                for d in labels[:, slot].tolist()
            ]
        )
        rows = pos[:, slot, 0, None] + span
        cols = pos[:, slot, 1, None] + span
        where = (rows[:, :, None] * SIZE + cols[:, None, :]).reshape(n, -1)
        layer = torch.zeros(n, SIZE * SIZE).scatter_(1, where, pick.reshape(n, -1))
        canvas = torch.where(used[:, None, None], torch.maximum(canvas, layer.view(n, SIZE, SIZE)), canvas)
    return canvas.unsqueeze(1)


def captions_of(plan: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token ids (n, 12) of the plan's captions."""
    kind, labels = plan["kind"].tolist(), plan["labels"].tolist()
    return torch.stack([encode(caption_text(k, d, e)) for k, (d, e) in zip(kind, labels)])


def _templates() -> tuple[torch.Tensor, torch.Tensor]:
    """Each caption type's tokens (8, 12) and which of them are digits (8, 12) bool."""
    tokens = torch.stack([encode(caption_text(k, 0, 0)) for k in range(len(TYPES))])
    digit = torch.zeros_like(tokens, dtype=torch.bool)
    digit[:, _D] = True
    digit[:TWO_DIGITS, _E] = True
    return tokens, digit


def caption_types(tokens: torch.Tensor) -> torch.Tensor:
    """The caption type (n,), an index into TYPES, of each caption (token ids (n, 12)).

    Every word except the digits is matched against the eight sentences, so anything that is not
    one of them is refused rather than read as something else.
    """
    tokens = torch.as_tensor(tokens).long().cpu()
    if tokens.dim() != 2 or tokens.shape[1] != CAPTION_LENGTH:
        raise UserError(
            f"captions must be token ids of shape (n, {CAPTION_LENGTH}), not {tuple(tokens.shape)}"
        )
    templates, digit = _templates()
    first = VOCAB.index("0")
    is_digit = (tokens >= first) & (tokens < first + 10)
    words_match = ((tokens[:, None] == templates) | digit).all(2)  # (n, 8)
    match = words_match & (is_digit[:, None] | ~digit).all(2)
    found = match.any(1)
    if not found.all():
        bad = int((~found).nonzero()[0, 0])
        raise UserError(f"not a caption of MNIST with captions: {decode(tokens[bad])!r}")
    return match.long().argmax(1)


def reading_of(tokens: torch.Tensor) -> torch.Tensor:
    """The digit (n, 8) each caption (token ids (n, 12)) puts at each of POSITIONS, EMPTY where it
    puts none: "the digit 3 is on the right of the digit 8 ." reads 8 at left and 3 at right."""
    kind = caption_types(tokens)
    first = VOCAB.index("0")
    tokens = torch.as_tensor(tokens).long().cpu()
    return _reading(kind, tokens[:, _D] - first, tokens[:, _E] - first)


def _reading(kind: torch.Tensor, d: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """The reading (n, 8) of captions of types `kind` with first digits d and second digits e
    (ignored for one-digit types)."""
    n = len(kind)
    out = torch.full((n, len(POSITIONS)), EMPTY, dtype=torch.long)
    rows = torch.arange(n)
    out[rows, kind] = d
    pair = kind < TWO_DIGITS
    out[rows[pair], kind[pair] ^ 1] = e[pair]  # left <-> right, top <-> bottom
    return out


@dataclass
class CaptionedMNIST(DataSet):
    """The splits of MNIST with captions; `train_x` is only an index of N_TRAIN per epoch."""

    digits: dict[str, list[torch.Tensor]]  # split -> images of each digit 0..9
    vocabulary = VOCAB  # the caption words, token id = index (a captioned model checks it has them)
    test_parts = ("test_heldout",)  # scored apart from "test": nll_bound_heldout
    train_x: torch.Tensor  # arange(N_TRAIN): which composites an epoch has (drawn at batch time)
    train_y: torch.Tensor

    def batch(self, idx: torch.Tensor, binary: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """len(idx) fresh training composites from the training digits, drawn with `generator`."""
        return self._draw("train", len(idx), generator, binary)

    def split(self, name: str, binary: bool) -> dict[str, torch.Tensor]:
        if name not in SPLITS or name == "train":
            raise UserError(f"unknown held-out split {name!r}; choose valid, test or test_heldout")
        g = torch.Generator().manual_seed(SEEDS[name])
        source = "test" if name == "test_heldout" else name
        out = self._draw(source, N_EVAL, g, binary=False, held_out=name == "test_heldout")
        if binary:
            out["x"] = mnist.binarize_fixed(out["x"])
        return out

    def _draw(self, source: str, n: int, g: torch.Generator, binary: bool, held_out: bool = False) -> dict:
        plan = layout(n, g, held_out)
        x = compose(self.digits[source], plan, g)
        tokens = captions_of(plan)
        labels = plan["labels"].clone()
        labels[plan["kind"] >= TWO_DIGITS, 1] = -1  # one digit: no second label
        return {
            "x": binarize(x, g) if binary else x,
            "caption": tokens,
            "caption_mask": torch.ones_like(tokens, dtype=torch.bool),
            "y": labels,
        }

    @property
    def image_shape(self) -> tuple[int, ...]:
        return (1, SIZE, SIZE)

    def train_images(self, n: int) -> torch.Tensor:
        """n training composites (intensities), the same ones every call (seed 204)."""
        return self._draw("train", n, torch.Generator().manual_seed(204), binary=False)["x"]

    def all_train_images(self) -> torch.Tensor:
        """An epoch's worth of training composites (there is no fixed training set: each epoch
        draws its own), the same ones every call."""
        return self.train_images(len(self))

    def figure_conditions(self) -> dict[str, dict[str, list[str]]]:
        """A run's pictures show 4 captions of the test split (seen in training) and 4 of the
        held-out test split: the first of each caption type, so that every type is shown."""
        shown = {}
        for tag, name in (("seen", "test"), ("heldout", "test_heldout")):
            g = torch.Generator().manual_seed(SEEDS[name])
            plan = layout(400, g, held_out=name == "test_heldout")
            kinds = plan["kind"].tolist()
            firsts = [kinds.index(k) for k in (0, 3, 4, 7) if k in kinds]
            shown[tag] = {"captions": [decode(t) for t in captions_of(plan)[firsts]]}
        return shown

    # The fixed splits' intensity images, composed once (about a second each), for code that
    # reads `data.valid_x` / `data.test_x` as it does for MNIST.
    @cached_property
    def valid_x(self) -> torch.Tensor:
        return self.split("valid", binary=False)["x"]

    @cached_property
    def test_x(self) -> torch.Tensor:
        return self.split("test", binary=False)["x"]


def load(data_dir: str = "", train_limit: int = 0) -> CaptionedMNIST:
    base = mnist.load(data_dir)
    digits = {}
    for split in ("train", "valid", "test"):
        x, y = getattr(base, f"{split}_x"), getattr(base, f"{split}_y")
        if split == "train" and train_limit:
            x, y = x[:train_limit], y[:train_limit]
        digits[split] = [x[y == d] for d in range(10)]
    n = N_TRAIN if not train_limit else min(N_TRAIN, train_limit)
    return CaptionedMNIST(digits, torch.arange(n), torch.zeros(n, dtype=torch.long))
