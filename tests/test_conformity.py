"""The conformity metric of alignDRAW: what each caption says sits where, the checker
that reads it off a canvas, its weights cache, and the metric judged with stand-in models.

A small checker (250 steps of 64, about 20 s on one thread, 89% exact match) is trained once per
session into a temporary cache; the whole file points GENLEARN_CACHE at a temporary directory, so
the real checker in ~/.cache/genlearn is never read or written. The metric is run on the first 1,000
captions of each test split (a sliced data set) to keep it quick.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import conftest
from conftest import needs_mnist, one_thread
from genlearn.data import captions as cap
from genlearn.errors import UserError
from genlearn.eval import conformity as cf
from genlearn.eval import metrics
from genlearn.models.base import GenerativeModel

SMALL = {"steps": 250, "batch_size": 64}
N_METRIC = 1000  # captions per test split the metric is run on here


@pytest.fixture(autouse=True)
def _no_real_cache(tmp_path, monkeypatch):
    """Nothing here touches the real checker cache, nor a checker loaded by an earlier test."""
    monkeypatch.setenv("GENLEARN_CACHE", str(tmp_path / "genlearn-cache"))
    monkeypatch.setattr(cf, "_LOADED", {})


def place_of(row: int, col: int) -> str:
    """Where a digit whose 28 x 28 box has its corner at (row, col) sits, from geometry alone."""
    if 16 <= row <= 18 and (col <= 4 or col >= 28):
        return "left" if col <= 4 else "right"
    if 16 <= col <= 18:
        return "top" if row <= 2 else "bottom"
    return f"{'top' if row <= 2 else 'bottom'} {'left' if col <= 4 else 'right'}"


@pytest.mark.parametrize("held_out", [False, True])
def test_reading_of_every_caption_type_agrees_with_where_layout_placed_the_digits(held_out):
    plan = cap.layout(3000, torch.Generator().manual_seed(5), held_out=held_out)
    reading = cap.reading_of(cap.captions_of(plan))
    assert reading.shape == (3000, len(cap.POSITIONS)) and reading.dtype == torch.long
    seen = set()
    for i, (kind, labels, pos) in enumerate(zip(plan["kind"], plan["labels"], plan["pos"])):
        kind = int(kind)
        seen.add(kind)
        slots = 2 if kind < cap.TWO_DIGITS else 1
        expected = [cap.EMPTY] * len(cap.POSITIONS)
        for slot in range(slots):
            expected[cap.POSITIONS.index(place_of(*pos[slot].tolist()))] = int(labels[slot])
        assert reading[i].tolist() == expected, (cap.decode(cap.captions_of(plan)[i : i + 1][0]), pos)
    assert seen == set(range(len(cap.TYPES)))


def test_reading_of_named_sentences():
    def read(text: str) -> dict[str, int]:
        row = cap.reading_of(cap.encode(text)[None])[0].tolist()
        return {p: d for p, d in zip(cap.POSITIONS, row) if d != cap.EMPTY}

    assert read("the digit 3 is on the left of the digit 8 .") == {"left": 3, "right": 8}
    assert read("the digit 3 is on the right of the digit 8 .") == {"left": 8, "right": 3}
    assert read("the digit 0 is at the top of the digit 0 .") == {"top": 0, "bottom": 0}
    assert read("the digit 1 is at the bottom of the digit 7 .") == {"top": 7, "bottom": 1}
    assert read("the digit 9 is at the bottom right of the image .") == {"bottom right": 9}
    assert cap.caption_types(cap.encode("the digit 9 is at the top left of the image .")[None]).tolist() == [
        4
    ]


@pytest.mark.parametrize(
    "text",
    [
        "the digit 3 is at the left top of the image .",  # the words of no sentence
        "the digit 3 is on the left of the digit image .",  # a pair with no second digit
        "the digit 3 is at the top left of the digit 8",  # a corner with a second digit
        "the digit left is on the left of the digit 8 .",  # a word where a digit goes
    ],
)
def test_reading_of_refuses_what_is_not_a_caption(text):
    with pytest.raises(UserError, match="not a caption"):
        cap.reading_of(cap.encode(text)[None])
    with pytest.raises(UserError, match="shape"):
        cap.reading_of(torch.zeros(2, 11, dtype=torch.long))


# A pixel inside every box a digit at each place can have, wherever in its range it was placed;
# no box of the other place of the same pair reaches it.
CENTRES = {
    "left": (30, 16), "right": (30, 44), "top": (15, 30), "bottom": (45, 30),
    "top left": (15, 15), "top right": (15, 45), "bottom left": (45, 15), "bottom right": (45, 45),
}  # fmt: skip


def test_training_batches_follow_the_recipe():
    """Held-out layouts are mixed in, a dropped digit reads EMPTY and leaves its place blank,
    about half of the images are binary."""
    spec = cf.TrainSpec(batch_size=400, drop_share=0.5)
    digits = [torch.full((3, 1, 28, 28), 0.5) for _ in range(10)]  # every digit a grey square
    x, target = cf.draw_batch(digits, 400, spec, torch.Generator().manual_seed(0))
    assert x.shape == (400, 1, 60, 60) and target.shape == (400, 8)
    binary = ((x == 0) | (x == 1)).flatten(1).all(1)
    assert 0.35 < binary.float().mean() < 0.65
    dropped = 0
    for img, reading in zip(x[~binary, 0], target[~binary]):
        for p, name in enumerate(cap.POSITIONS):
            if reading[p] != cap.EMPTY:
                assert img[CENTRES[name]] == 0.5, (name, reading)
        pair = [p for p in range(4) if reading[p] != cap.EMPTY]
        if len(pair) == 1:  # a pair that lost a digit: its other place is blank
            other = cap.POSITIONS[pair[0] ^ 1]
            assert img[CENTRES[other]] == 0, (other, reading)
            dropped += 1
    assert dropped > 10
    held = {(cap.POSITIONS.index(t), d) for t, s, d in cap.HELD_OUT if t in cap.POSITIONS[4:]}
    seen = {(p, int(target[i, p])) for i in range(400) for p in range(4, 8)}
    assert held <= seen, "a held-out corner digit is missing from the training batch"


@pytest.fixture(scope="session")
def captioned(mnist_full) -> cap.CaptionedMNIST:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cap.mnist, "load", lambda *a, **k: mnist_full)
        return cap.load()


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory, captioned) -> Path:
    directory = tmp_path_factory.getbasetemp() / f"small-checker-{conftest.TRAIN_SEED}"
    with one_thread():
        cf.load_checker(
            progress=False, cache_dir=directory, data=captioned, seed=conftest.TRAIN_SEED, **SMALL
        )
    return directory


def load_small(directory: Path, captioned, **kw) -> cf.ConformityChecker:
    with one_thread():
        return cf.load_checker(
            progress=False, cache_dir=directory, data=captioned, seed=conftest.TRAIN_SEED, **{**SMALL, **kw}
        )


@needs_mnist
@pytest.mark.slow
def test_small_checker_reads_real_composites_far_above_chance(small_dir, captioned, sliced, expect):
    checker = load_small(small_dir, captioned)
    info = json.loads((small_dir / cf.INFO_FILE).read_text())
    assert not checker.training and not any(p.requires_grad for p in checker.parameters())
    assert checker.accuracies == {
        "test": info["test_accuracy"],
        "test_heldout": info["test_heldout_accuracy"],
    }
    split = sliced.split("test", binary=False)
    x, tokens = split["x"], split["caption"]
    with one_thread():
        got = cf.read_positions(checker, x)
        exact = cf.exact_match(checker, x, tokens).double().mean().item()
    per_place = (got == cap.reading_of(tokens)).double().mean().item()
    # chance: 1/11 per place; an exact match of all eight places by chance is nil
    expect("exact match of all eight places", exact, ">", 0.6)
    expect("reading per place", per_place, ">", 0.95)
    expect("recorded test accuracy", info["test_accuracy"], ">", 0.6)
    expect("recorded held-out test accuracy", info["test_heldout_accuracy"], ">", 0.6)
    assert info["training"]["steps"] == SMALL["steps"] and info["arch_version"] == cf.ARCH_VERSION
    assert info["sha256"] == hashlib.sha256((small_dir / cf.WEIGHTS_FILE).read_bytes()).hexdigest()
    with pytest.raises(UserError, match="shape"):
        cf.read_positions(checker, torch.rand(2, 1, 28, 28))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        cf.read_positions(checker, torch.rand(2, 1, 60, 60) * 255)


def _forbid_training(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the checker was retrained although a valid cache exists")

    monkeypatch.setattr(cf, "train_checker", fail)


@needs_mnist
@pytest.mark.slow
def test_second_load_uses_the_cache_and_memory(small_dir, captioned, monkeypatch):
    _forbid_training(monkeypatch)
    first = load_small(small_dir, captioned)
    assert first.accuracies["test"] > 0.3
    assert load_small(small_dir, captioned) is first


@needs_mnist
@pytest.mark.slow
def test_corrupt_cache_is_retrained_with_a_warning(small_dir, captioned, tmp_path, monkeypatch, capsys):
    directory = tmp_path / "checker"
    shutil.copytree(small_dir, directory)
    weights = directory / cf.WEIGHTS_FILE
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF  # a flipped bit in the last weight: still a loadable file
    weights.write_bytes(bytes(blob))
    calls: list = []

    def fake_train(spec, device="cpu", progress=True, data=None):
        calls.append(spec)
        return cf.ConformityChecker().eval(), {
            "arch_version": cf.ARCH_VERSION,
            "training": dataclasses.asdict(spec),
        }

    monkeypatch.setattr(cf, "train_checker", fake_train)
    load_small(directory, captioned)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert calls == [cf.TrainSpec(**SMALL)]
    assert len(lines) == 1 and lines[0].startswith("warning:") and "sha256" in lines[0], lines
    info = json.loads((directory / cf.INFO_FILE).read_text())
    assert info["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    monkeypatch.setattr(cf, "_LOADED", {})
    _forbid_training(monkeypatch)
    load_small(directory, captioned)  # the rewritten cache is valid


def test_other_settings_are_not_served_from_the_cache(tmp_path, monkeypatch):
    calls: list = []

    def fake_train(spec, device="cpu", progress=True, data=None):
        calls.append(spec)
        return cf.ConformityChecker().eval(), {
            "arch_version": cf.ARCH_VERSION,
            "training": dataclasses.asdict(spec),
        }

    monkeypatch.setattr(cf, "train_checker", fake_train)
    cf.load_checker(progress=False, cache_dir=tmp_path, steps=3)
    monkeypatch.setattr(cf, "_LOADED", {})
    cf.load_checker(progress=False, cache_dir=tmp_path, steps=3)  # from the disk
    cf.load_checker(progress=False, cache_dir=tmp_path, steps=4)  # other settings: retrained
    assert [c.steps for c in calls] == [3, 4]
    assert cf.default_cache_dir() == tmp_path / "genlearn-cache" / "conformity"
    with pytest.raises(UserError):
        cf.load_checker(steps=0, cache_dir=tmp_path)


# ---- the metric, with stand-in models ----------------------------------------------------------


class Sliced:
    """The captioned data set cut to its first N_METRIC composites per split (a quick metric)."""

    def __init__(self, data: cap.CaptionedMNIST):
        self.digits = data.digits
        self._splits = {
            name: {k: v[:N_METRIC] for k, v in data.split(name, binary=False).items()}
            for name in ("test", "test_heldout")
        }

    def split(self, name: str, binary: bool) -> dict[str, torch.Tensor]:
        assert not binary
        return self._splits[name]


def compose_for(texts: list[str], digits: list[torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Real composites for the given captions, composed afresh: the digits and kind each caption
    names, placed where `layout` places a digit of that kind."""
    tokens = torch.stack([cap.encode(t) for t in texts])
    kind = cap.caption_types(tokens)
    labels = torch.stack([tokens[:, 2], tokens[:, 10]], 1) - cap.VOCAB.index("0")
    labels[kind >= cap.TWO_DIGITS, 1] = 0
    pool = cap.layout(20 * len(texts), g)
    pos = torch.empty(len(texts), 2, 2, dtype=torch.long)
    for k in range(len(cap.TYPES)):
        mine = kind == k
        pos[mine] = pool["pos"][(pool["kind"] == k).nonzero().squeeze(1)[: int(mine.sum())]]
    return cap.compose(digits, {"kind": kind, "labels": labels, "pos": pos}, g)


class Captioned(GenerativeModel):
    """A stand-in for alignDRAW: draws real test digits where the caption says (or, `blank`,
    nothing at all)."""

    conditions = ("captions",)
    image_shape = (1, 60, 60)
    name = "fake-captioned"

    def __init__(self, digits: list[torch.Tensor], blank: bool = False):
        super().__init__()
        self.digits, self.blank, self.calls = digits, blank, []

    def sample(self, n, generator=None, captions=None):
        assert captions is not None and len(captions) == n and isinstance(captions[0], str)
        self.calls.append(n)
        if self.blank:
            return torch.zeros(n, 1, 60, 60)
        return compose_for(list(captions), self.digits, generator)


class Unconditional(GenerativeModel):
    image_shape = (1, 28, 28)
    name = "fake-plain"


@pytest.fixture(scope="session")
def sliced(captioned) -> Sliced:
    return Sliced(captioned)


@pytest.fixture
def metric_env(small_dir, captioned, sliced, monkeypatch):
    """The metric with the small checker standing in for the real one."""
    checker = load_small(small_dir, captioned)
    monkeypatch.setattr(cf, "load_checker", lambda **kw: checker)
    return sliced, checker


@needs_mnist
@pytest.mark.slow
def test_real_composites_conform_about_as_well_as_the_checker_reads_them(metric_env, expect):
    data, _ = metric_env
    model = Captioned(data.digits["test"])
    with one_thread():
        out = metrics.compute("conformity", model, {}, data, metrics.Options(seed=3))
    assert sum(model.calls) == 2 * N_METRIC and max(model.calls) <= 1000
    for part in ("seen", "heldout"):
        expect(f"checker's conformity of real {part} composites", out[f"conformity_real_{part}"], ">", 0.6)
        assert abs(out[f"conformity_{part}"] - out[f"conformity_real_{part}"]) < 0.06, out
        assert 0 < out[f"conformity_{part}_stderr"] < 0.02
    for part, name in (("seen", "test"), ("heldout", "test_heldout")):
        per_type = out[f"conformity_{part}_per_type"]
        assert len(per_type) == 8 and all(0 <= p <= 1 for p in per_type)
        kinds = cap.caption_types(data.split(name, False)["caption"])
        counts = torch.bincount(kinds, minlength=8).double()
        assert sum(p * c for p, c in zip(per_type, counts.tolist())) / N_METRIC == pytest.approx(
            out[f"conformity_{part}"], abs=1e-3
        )
    # the held-out digit alone is right at least as often as the whole caption
    right = out["heldout_digit_right_per_type"]
    assert all(r >= p for r, p in zip(right, out["conformity_heldout_per_type"]))


@needs_mnist
@pytest.mark.slow
def test_blank_canvases_conform_to_no_caption(metric_env):
    data, _ = metric_env
    with one_thread():
        out = metrics.compute(
            "conformity", Captioned(data.digits["test"], blank=True), {}, data, metrics.Options()
        )
    assert out["conformity_seen"] == 0 and out["conformity_heldout"] == 0
    assert out["conformity_real_seen"] > 0.6


def test_a_model_without_captions_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(cf, "load_checker", lambda **kw: pytest.fail("loaded the checker"))
    with pytest.raises(UserError) as err:
        metrics.compute("conformity", Unconditional(), {}, None, metrics.Options())
    message = str(err.value)
    assert "\n" not in message and "does not apply" in message and "captions" in message
    assert "conformity" in metrics.METRICS


@needs_mnist
@pytest.mark.slow
def test_frechet_distance_on_the_canvases_uses_the_checkers_features(
    small_dir, captioned, mnist_full, monkeypatch
):
    """`--metric fid` on a 60 x 60 model: the checker's features, named fid_canvas; a model that
    replays the floor set scores the floor exactly, and blank canvases score far worse."""
    from genlearn.data import two_digit

    checker = load_small(small_dir, captioned)
    monkeypatch.setattr(cf, "load_checker", lambda **kw: checker)
    monkeypatch.setattr(two_digit.mnist, "load", lambda *a, **k: mnist_full)
    data = two_digit.load()

    class Replay(GenerativeModel):
        image_shape = (1, 60, 60)
        name = "replay"

        def __init__(self, images):
            super().__init__()
            self.images, self.at = images, 0

        def sample(self, n, generator=None):
            self.at += n
            return self.images[self.at - n : self.at]

    with one_thread():
        floor = metrics.compute("fid", Replay(data.valid_x.all()), {}, data, metrics.Options())
        blank = metrics.compute("fid", Replay(torch.zeros(10_000, 1, 60, 60)), {}, data, metrics.Options())
    assert set(floor) == {"fid_canvas", "fid_canvas_real"}
    assert floor["fid_canvas"] == pytest.approx(floor["fid_canvas_real"], rel=1e-9)
    assert blank["fid_canvas"] > 10 * floor["fid_canvas"] > 0
