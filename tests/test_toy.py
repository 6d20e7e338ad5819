"""2-D Gaussian mixtures (VEEGAN's ring and grid) and their mode-collapse scores."""

from __future__ import annotations

import math

import pytest
import torch

from genlearn.data.toy import (
    N_EVAL_SAMPLES,
    STD,
    Toy2D,
    grid,
    load_toy,
    mode_stats,
    ring,
    sample_mixture,
)
from genlearn.errors import UserError

# In 2-D, |x - mode|^2 / std^2 is chi-square with 2 degrees of freedom: P(within 3 std) = 1 - e^-4.5.
TRUE_HIGH_QUALITY = 1 - math.exp(-4.5)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def min_pairwise_distance(points: torch.Tensor) -> float:
    dist = torch.cdist(points.double(), points.double(), compute_mode="donot_use_mm_for_euclid_dist")
    return dist.masked_fill(torch.eye(len(points), dtype=torch.bool), math.inf).min().item()


def test_protocol_constants():
    assert STD == 0.02 and N_EVAL_SAMPLES == 2500


def test_ring_has_8_distinct_modes_evenly_spaced_at_radius_2():
    modes = ring()
    assert modes.shape == (8, 2) and modes.dtype == torch.float32
    torch.testing.assert_close(modes.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(modes[:, 1].double(), modes[:, 0].double()).remainder(2 * math.pi)
    torch.testing.assert_close(
        angles, 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8, atol=1e-6, rtol=0
    )
    # Neighbours are a chord 2 r sin(pi / 8) apart; a repeated endpoint would make this 0.
    assert min_pairwise_distance(modes) == pytest.approx(4 * math.sin(math.pi / 8), rel=1e-6)


def test_grid_has_25_distinct_modes_on_the_even_points_of_minus_4_to_4():
    modes = grid()
    assert modes.shape == (25, 2) and modes.dtype == torch.float32
    points = {(round(x), round(y)) for x, y in modes.tolist()}
    assert points == {(x, y) for x in range(-4, 5, 2) for y in range(-4, 5, 2)}
    torch.testing.assert_close(modes, modes.round())  # exactly on the integers
    assert min_pairwise_distance(modes) == pytest.approx(2.0)


def test_sample_mixture_is_deterministic_equal_weight_and_has_the_given_spread():
    modes = grid()
    x = sample_mixture(modes, 50_000, generator=gen(1))
    assert x.shape == (50_000, 2) and x.dtype == torch.float32
    assert torch.equal(x, sample_mixture(modes, 50_000, generator=gen(1)))
    offsets = x - modes[torch.cdist(x, modes).argmin(1)]
    assert offsets.std().item() == pytest.approx(STD, rel=0.02)
    counts = torch.cdist(x, modes).argmin(1).bincount(minlength=25).double()
    expected = 50_000 / 25
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()


# --- mode_stats on hand-built sample sets ---------------------------------------------------------


def test_samples_exactly_on_three_modes_capture_three_at_full_quality():
    modes = ring()
    samples = modes[[0, 3, 5, 0, 3, 3]]
    assert mode_stats(samples, modes) == {"modes_captured": 3, "modes": 8, "high_quality": 1.0}


@pytest.mark.parametrize("make_modes, far", [(ring, (0.0, 0.0)), (grid, (1.0, 1.0)), (grid, (30.0, -7.0))])
def test_samples_far_from_every_mode_capture_nothing(make_modes, far):
    modes = make_modes()
    samples = torch.tensor([far] * 10)
    assert mode_stats(samples, modes) == {"modes_captured": 0, "modes": len(modes), "high_quality": 0.0}


def test_the_threshold_is_three_standard_deviations_from_the_nearest_mode():
    modes = grid()
    direction = torch.tensor([0.6, 0.8])  # a unit vector
    inside = modes[7] + 2.9 * STD * direction
    outside = modes[12] + 3.1 * STD * direction
    assert mode_stats(inside[None], modes) == {"modes_captured": 1, "modes": 25, "high_quality": 1.0}
    assert mode_stats(outside[None], modes) == {"modes_captured": 0, "modes": 25, "high_quality": 0.0}
    both = mode_stats(torch.stack([inside, outside]), modes)
    assert both == {"modes_captured": 1, "modes": 25, "high_quality": 0.5}
    # The threshold scales with the std it is given.
    assert mode_stats(outside[None], modes, std=2 * STD)["high_quality"] == 1.0


def test_a_high_quality_sample_captures_only_its_nearest_mode():
    # With a wide threshold (2.0) this point is within reach of modes 0, 1 and 7 of the ring; it
    # is the nearest mode, 0, that it captures, the one an exact copy of mode 0 captures too.
    modes = ring()
    near_several = torch.tensor([1.9, 0.1])
    assert (modes - near_several).norm(dim=1).lt(2.0).sum() == 3
    samples = torch.stack([near_several, modes[0]])
    assert mode_stats(samples, modes, threshold=100.0)["modes_captured"] == 1
    assert mode_stats(torch.stack([near_several, modes[1]]), modes, threshold=100.0)["modes_captured"] == 2


def test_nan_and_inf_samples_count_as_low_quality():
    modes = ring()
    samples = torch.stack([modes[2], torch.tensor([math.nan, 0.0]), torch.tensor([math.inf, 1.0]), modes[4]])
    assert mode_stats(samples, modes) == {"modes_captured": 2, "modes": 8, "high_quality": 0.5}


@pytest.mark.parametrize("make_modes", [ring, grid])
def test_the_true_mixture_captures_every_mode_at_the_chi_square_rate(make_modes):
    modes = make_modes()
    stats = mode_stats(sample_mixture(modes, N_EVAL_SAMPLES, generator=gen(2)), modes)
    assert stats["modes_captured"] == stats["modes"] == len(modes)
    stderr = math.sqrt(TRUE_HIGH_QUALITY * (1 - TRUE_HIGH_QUALITY) / N_EVAL_SAMPLES)
    assert abs(stats["high_quality"] - TRUE_HIGH_QUALITY) < 4 * stderr


def test_a_too_wide_generator_loses_quality_not_modes():
    # Twice the std: the fraction within 3 data stds is 1 - exp(-9/8) = 67.5%.
    modes = ring()
    stats = mode_stats(sample_mixture(modes, 20_000, std=2 * STD, generator=gen(3)), modes)
    assert stats["modes_captured"] == 8
    assert stats["high_quality"] == pytest.approx(1 - math.exp(-9 / 8), abs=0.015)


@pytest.mark.parametrize(
    "samples",
    [torch.zeros(0, 2), torch.zeros(5, 3), torch.zeros(5), "points"],
    ids=["empty", "3-d", "1-d", "not a tensor"],
)
def test_mode_stats_refuses_malformed_samples(samples):
    with pytest.raises(UserError):
        mode_stats(samples, ring())


# --- the data set ---------------------------------------------------------------------------------


def test_load_toy_shapes_labels_and_defaults():
    data = load_toy("ring8")
    assert isinstance(data, Toy2D) and data.std == STD and torch.equal(data.modes, ring())
    assert data.train_x.shape == (100_000, 2) and data.train_y.shape == (100_000,)
    for split in ("valid", "test"):
        assert getattr(data, f"{split}_x").shape == (10_000, 2)
    # Each label is the mode its point was drawn from: that mode is also the nearest one.
    nearest = torch.cdist(data.train_x, data.modes).argmin(1)
    assert torch.equal(nearest, data.train_y)
    assert data.train_y.dtype == torch.long and set(data.train_y.unique().tolist()) == set(range(8))


def test_same_seed_same_data_set_other_seed_other_data_set():
    a, b, c = (
        load_toy("grid25", 3000, 500, seed=4),
        load_toy("grid25", 3000, 500, seed=4),
        load_toy("grid25", 3000, 500, seed=5),
    )
    for field in ("train_x", "train_y", "valid_x", "valid_y", "test_x", "test_y", "modes"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.train_x[:500], a.valid_x) and not torch.equal(a.valid_x, a.test_x)


def test_split_returns_the_tensors_and_refuses_binarization():
    data = load_toy("grid25", 1000, 200)
    batch = data.split("test", binary=False)
    assert batch.keys() == {"x", "y"}
    assert batch["x"] is data.test_x and batch["y"] is data.test_y
    with pytest.raises(UserError, match="binarized"):
        data.split("test", binary=True)
    with pytest.raises(UserError, match="unknown split"):
        data.split("holdout", binary=False)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UserError) as info:
        load_toy("ring7")
    assert "ring8" in str(info.value) and "grid25" in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ring(0),
        lambda: ring(8, -1.0),
        lambda: grid(0),
        lambda: grid(5, 0.0),
        lambda: sample_mixture(ring(), -1),
    ],
    ids=["no ring modes", "negative radius", "empty grid", "zero spacing", "negative n"],
)
def test_bad_mixture_parameters_raise_user_errors(call):
    with pytest.raises(UserError):
        call()
