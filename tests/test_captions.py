"""MNIST with captions (alignDRAW's data): the sentences, the placements, the pixel-wise maximum,
the held-out combinations, and fixed held-out splits."""

from __future__ import annotations

import pytest
import torch

from conftest import needs_mnist
from genlearn.data import captions as cap
from genlearn.errors import UserError


def test_every_caption_is_twelve_words_of_a_twenty_two_word_vocabulary():
    assert len(cap.VOCAB) == 22 and len(set(cap.VOCAB)) == 22
    words = set()
    for kind in range(len(cap.TYPES)):
        for d in range(10):
            text = cap.caption_text(kind, d, (d + 3) % 10)
            tokens = cap.encode(text)
            assert tokens.shape == (cap.CAPTION_LENGTH,) and cap.decode(tokens) == text
            words.update(text.split())
    assert words == set(cap.VOCAB)
    assert cap.caption_text(0, 3, 8) == "the digit 3 is on the left of the digit 8 ."
    assert cap.caption_text(3, 3, 8) == "the digit 3 is at the bottom of the digit 8 ."
    assert cap.caption_text(6, 3, 8) == "the digit 3 is at the bottom left of the image ."


@pytest.mark.parametrize(
    "text, says",
    [
        ("the digit 3 is on the left of the digit eight .", "unknown word 'eight'"),
        ("the digit 3 .", "12 words, not 4"),
    ],
)
def test_unknown_words_and_other_lengths_are_refused(text, says):
    with pytest.raises(UserError, match=says):
        cap.encode(text)


def test_placements_follow_the_caption():
    plan = cap.layout(4000, torch.Generator().manual_seed(0))
    kind, pos = plan["kind"], plan["pos"]
    row, col = pos[..., 0], pos[..., 1]
    for k, name in enumerate(cap.TYPES):
        m = kind == k
        assert m.any(), name
        if k < 2:  # side by side: one row in 16-18, the described digit on its side
            assert (row[m, 0] == row[m, 1]).all() and row[m].min() >= 16 and row[m].max() <= 18
            left, right = (0, 1) if name == "left" else (1, 0)
            assert col[m, left].min() >= 0 and col[m, left].max() <= 4
            assert col[m, right].min() >= 28 and col[m, right].max() <= 32
        elif k < 4:  # stacked: one column in 16-18
            assert (col[m, 0] == col[m, 1]).all() and col[m].min() >= 16 and col[m].max() <= 18
            top, bottom = (0, 1) if name == "top" else (1, 0)
            assert row[m, top].max() <= 2 and row[m, bottom].min() >= 30 and row[m, bottom].max() <= 32
        else:  # one digit in the named corner
            rows = (0, 2) if "top" in name else (30, 32)
            cols = (0, 4) if "left" in name else (28, 32)
            assert rows[0] <= row[m, 0].min() and row[m, 0].max() <= rows[1]
            assert cols[0] <= col[m, 0].min() and col[m, 0].max() <= cols[1]
    counts = torch.bincount(kind, minlength=8).float() / len(kind)
    assert float((counts - 1 / 8).abs().max()) < 0.02  # types drawn uniformly


def test_two_digits_combine_by_the_pixelwise_maximum():
    """Where the right digit's black border overlaps the left digit's strokes, the strokes stay
    (the public code pasted the second digit over the first and erased them); where both have ink,
    the brighter wins (a sum would exceed either)."""
    left, right = torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28)
    left[0, 0, :, 24:26] = 0.6  # the left digit's stroke at canvas columns 24-25 ...
    right[0, 0, :, 2:4] = 0.9  # ... under the right digit's black columns 0-1 (canvas 24-25)
    left[0, 0, :, 27] = 0.6  # and under the right digit's faint ink at canvas column 27
    right[0, 0, :, 3] = 0.3
    digits = [left] * 5 + [right] * 5  # digits 0-4 look like `left`, 5-9 like `right`
    plan = {
        "kind": torch.tensor([0]),
        "labels": torch.tensor([[1, 8]]),
        "pos": torch.tensor([[[16, 0], [16, 24]]]),
    }
    canvas = cap.compose(digits, plan, torch.Generator().manual_seed(0))[0, 0]
    assert float(canvas[20, 24]) == pytest.approx(0.6) and float(canvas[20, 25]) == pytest.approx(0.6)
    assert float(canvas[20, 26]) == pytest.approx(0.9)
    assert float(canvas[20, 27]) == pytest.approx(0.6)  # max(0.6, 0.3): not 0.9, not 0.3
    assert float(canvas[10, 24]) == 0.0  # rows 16-43 only


def test_held_out_combinations_never_appear_in_training_and_make_the_held_out_test():
    g = torch.Generator().manual_seed(1)
    banned = {(cap.TYPES.index(t), s, d) for t, s, d in cap.HELD_OUT}

    def combos(plan):
        out = set()
        for k, (d, e) in zip(plan["kind"].tolist(), plan["labels"].tolist()):
            out.add((k, 0, d))
            if k < cap.TWO_DIGITS:
                out.add((k, 1, e))
        return out

    assert not combos(cap.layout(20_000, g)) & banned
    held = cap.layout(2000, g, held_out=True)
    for k, (d, e) in zip(held["kind"].tolist(), held["labels"].tolist()):
        assert {(k, 0, d), (k, 1, e)} & banned, (cap.TYPES[k], d, e)


def test_held_out_place_is_where_the_caption_puts_its_held_out_digit():
    held = cap.layout(400, torch.Generator().manual_seed(2), held_out=True)
    tokens = cap.captions_of(held)
    kind = cap.caption_types(tokens)
    at_place = cap.reading_of(tokens).gather(1, cap.held_out_place(kind)[:, None]).squeeze(1)
    digit_of_type = {cap.TYPES.index(t): d for t, _, d in cap.HELD_OUT}
    assert at_place.tolist() == [digit_of_type[k] for k in kind.tolist()]
    # "the digit D is on the right of the digit 7 ." puts its held-out 7 at the left
    assert cap.held_out_place(torch.tensor([1, 3, 4])).tolist() == [0, 2, 4]


@needs_mnist
def test_splits_are_fixed_and_training_batches_follow_the_generator(mnist_full, monkeypatch):
    monkeypatch.setattr(cap.mnist, "load", lambda *a, **k: mnist_full)
    data = cap.load()
    assert data.image_shape == (1, 60, 60) and len(data) == cap.N_TRAIN
    one, two = data.split("test", binary=False), data.split("test", binary=False)
    assert torch.equal(one["x"], two["x"]) and torch.equal(one["caption"], two["caption"])
    assert one["x"].shape == (cap.N_EVAL, 1, 60, 60) and one["caption"].shape == (cap.N_EVAL, 12)
    assert float(one["x"].min()) >= 0 and float(one["x"].max()) <= 1
    b1 = data.batch(torch.arange(5), binary=True, generator=torch.Generator().manual_seed(4))
    b2 = data.batch(torch.arange(5), binary=True, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(b1[k], b2[k]) for k in b1)
    assert set(b1["x"].unique().tolist()) <= {0.0, 1.0}
    b3 = data.batch(torch.arange(5), binary=True, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(b1["caption"], b3["caption"])  # a batch's captions come from the generator
    # every held-out test caption carries its type's held-out digit at its place; no other split
    # holds a held-out combination
    held = data.split("test_heldout", binary=False)["caption"]
    kind = cap.caption_types(held)
    at_place = cap.reading_of(held).gather(1, cap.held_out_place(kind)[:, None]).squeeze(1)
    digit_of_type = torch.tensor([next(d for t, _, d in cap.HELD_OUT if t == name) for name in cap.TYPES])
    assert torch.equal(at_place, digit_of_type[kind])
    for split in ("valid", "test"):
        tokens = data.split(split, binary=False)["caption"]
        kind = cap.caption_types(tokens)
        at_place = cap.reading_of(tokens).gather(1, cap.held_out_place(kind)[:, None]).squeeze(1)
        assert not (at_place == digit_of_type[kind]).any(), split
