"""Two-digit MNIST (DRAW section 4.3): composition, determinism, held-out digits, and the
`draw-2digit` model training on it from the command line."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import assert_user_error, needs_mnist, run_cli
from genlearn.data import two_digit
from genlearn.data.two_digit import DIGIT, SIZE, compose


def _digit(value: float = 1.0) -> torch.Tensor:
    d = torch.zeros(1, 1, DIGIT, DIGIT)
    d[0, 0, 3:25, 10:18] = value
    return d


def test_one_digit_lands_at_its_offset_and_nowhere_else():
    digits = torch.rand(3, 1, DIGIT, DIGIT)
    pairs = torch.tensor([[1, 2]])
    offsets = torch.tensor([[[5, 30], [32, 0]]])
    img = compose(digits, pairs, offsets)[0, 0]
    assert img.shape == (SIZE, SIZE)
    expect = torch.zeros(SIZE, SIZE)
    expect[5:33, 30:58] += digits[1, 0]
    expect[32:60, 0:28] += digits[2, 0]
    torch.testing.assert_close(img, expect.clamp(max=1.0), rtol=0, atol=0)


def test_overlapping_digits_add_and_clip_at_one():
    digits = torch.cat([_digit(0.25), _digit(0.5), _digit(0.75)])
    same_place = torch.tensor([[[7, 7], [7, 7]]])
    low = compose(digits, torch.tensor([[0, 1]]), same_place)
    high = compose(digits, torch.tensor([[1, 2]]), same_place)
    assert low.max().item() == pytest.approx(0.75)  # 0.25 + 0.5
    assert high.max().item() == 1.0  # 0.5 + 0.75, clipped
    assert low.min().item() == 0.0


def test_offsets_cover_the_whole_canvas_and_stay_inside():
    pairs, offsets = two_digit.layout(20_000, 100, seed=1)
    assert offsets.min().item() == 0 and offsets.max().item() == SIZE - DIGIT
    assert pairs[:, 0].tolist() == [i % 100 for i in range(20_000)]
    assert pairs.max().item() < 100


@pytest.fixture(scope="module")
def data():
    return two_digit.load()


@needs_mnist
def test_splits_are_fixed_and_built_from_their_own_digits(data):
    again = two_digit.load()
    assert torch.equal(data.test_x[:64], again.test_x[:64])
    assert torch.equal(data.train_x[torch.tensor([5, 50_000 - 1])], again.train_x[torch.tensor([5, 49_999])])
    assert len(data.train_x) == 50_000 and len(data.valid_x) == len(data.test_x) == 10_000
    # Test images are made of test digits: image 0 holds test digit 0 at its offset.
    from genlearn.data import mnist

    base = mnist.load()
    (r, c) = data.test_x.offsets[0, 0].tolist()
    alone = compose(base.test_x, data.test_x.pairs[:1, :1], data.test_x.offsets[:1, :1])
    assert torch.equal(alone[0, 0, r : r + DIGIT, c : c + DIGIT], base.test_x[0, 0])
    assert data.test_y[0, 0] == base.test_y[0]
    # each split composes its own digits: the images are those digits at their offsets, and the
    # labels are theirs
    for split, split_y, digits, labels in (
        (data.train_x, data.train_y, base.train_x, base.train_y),
        (data.valid_x, data.valid_y, base.valid_x, base.valid_y),
        (data.test_x, data.test_y, base.test_x, base.test_y),
    ):
        assert torch.equal(split.digits, digits)
        assert torch.equal(split[:4], compose(digits, split.pairs[:4], split.offsets[:4]))
        assert torch.equal(split_y[:100], labels[split.pairs[:100]])


@needs_mnist
def test_held_out_split_is_binary_and_fixed(data):
    a = data.split("test", binary=True)["x"]
    b = two_digit.load().split("test", binary=True)["x"]
    assert a.shape == (10_000, 1, SIZE, SIZE)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a, b)


@needs_mnist
def test_draw_2digit_trains_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    sets = ["epochs=1", "train_limit=200", "T=4", "eval_every=0"]
    proc = run_cli("train", "draw-2digit", "--out", out, "--quiet", "--set", *sets)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "draw-2digit" and results["steps"] == 2
    assert results["metrics"]["nll_bound"] > 0
    assert (out / "canvas.gif").is_file()


@needs_mnist
def test_a_28x28_draw_on_two_digit_data_is_refused(tmp_path):
    proc = run_cli("train", "draw", "--out", tmp_path / "r", "--set", "dataset=mnist-2digit", "epochs=1")
    assert_user_error(proc, contains="60x60")
