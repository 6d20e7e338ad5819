"""DRAW's Gaussian attention (genlearn.nn.attention): filterbanks, read, write and the fused step."""

from __future__ import annotations

import math

import pytest
import torch

from genlearn.nn import attention as att


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def column(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# --------------------------------------------------------------------------------------------
# filterbanks


def test_filterbank_shapes_and_rows_sum_to_one():
    n, N, A, B = 16, 5, 28, 20
    g_x, g_y = rand(n, seed=1) * 40 - 6, rand(n, 1, seed=2) * 30 - 5  # (batch,) and (batch, 1)
    sigma2, delta = rand(n, seed=3) * 10 + 0.1, rand(n, seed=4) * 6 + 0.1
    F_X, F_Y = att.filterbank(g_x, g_y, sigma2, delta, N, A, B)
    assert F_X.shape == (n, N, A) and F_Y.shape == (n, N, B)
    assert (F_X >= 0).all() and (F_Y >= 0).all()
    torch.testing.assert_close(F_X.sum(-1), torch.ones(n, N))
    torch.testing.assert_close(F_Y.sum(-1), torch.ones(n, N))


@pytest.mark.parametrize(
    "g, sigma2",
    [
        (13.5, 1e-30),  # variance far below a pixel (and below the floor)
        (13.5, 0.0),  # exactly zero
        (-1e4, 1.0),  # centre far outside the image
        (1e6, 1e-6),  # both
        (13.5, 1e12),  # enormous variance: a flat filter
    ],
)
def test_filterbank_extreme_parameters_stay_normalised(g, sigma2):
    F_X, F_Y = att.filterbank(column([g]), column([g]), column([sigma2]), column([1.0]), 3, 28, 28)
    for F in (F_X, F_Y):
        assert torch.isfinite(F).all()
        torch.testing.assert_close(F.sum(-1), torch.ones(1, 3))
    if g < 0:  # all the weight ends on the nearest pixel, the limit of the normalised Gaussian
        assert (F_X[0, :, 0] == 1).all()
    if sigma2 > 1e6:
        torch.testing.assert_close(F_X, torch.full_like(F_X, 1 / 28), rtol=1e-3, atol=1e-6)


def test_filterbank_gradients_finite_at_extremes():
    params = torch.tensor([[-1e3, 3e3, -80.0, 5.0, 0.0], [0.0, 0.0, 30.0, -30.0, 0.0]], requires_grad=True)
    F_X, F_Y, gamma = att.filters_from_params(params, 28, 28, 4)
    (F_X.square().sum() + F_Y.square().sum() + gamma.sum()).backward()
    assert torch.isfinite(params.grad).all()


def test_filter_centred_on_a_pixel_picks_it():
    """0-based pixel coordinates, x along columns and y along rows: a tiny-variance filter at
    (g_x, g_y) = (19, 7) reads exactly pixel [row 7, column 19]."""
    x = torch.zeros(1, 28, 28)
    x[0, 7, 19] = 1.0
    F_X, F_Y = att.filterbank(column([19.0]), column([7.0]), column([1e-4]), column([1.0]), 1, 28, 28)
    r = att.read(x, torch.zeros_like(x), F_X, F_Y, 1.0)
    torch.testing.assert_close(r, torch.tensor([[1.0, 0.0]]))
    # a 3 x 3 grid of stride 1 around the same pixel reads the 3 x 3 neighbourhood
    img = rand(1, 28, 28, seed=5)
    F_X, F_Y = att.filterbank(column([19.0]), column([7.0]), column([1e-4]), column([1.0]), 3, 28, 28)
    glimpse = att.read(img, img, F_X, F_Y, 1.0).view(2, 3, 3)
    torch.testing.assert_close(glimpse[0], img[0, 6:9, 18:21])


def test_attention_params_follow_the_paper():
    """g~ = 0 centres the grid, delta~ = 1 spans the image: mu_1 = 0 and mu_N = A - 1 (0-based;
    the paper's g_X = (A + 1) / 2 (g~ + 1) counts pixels from 1); sigma^2, delta~, gamma are exps."""
    A, B, N = 28, 20, 5
    params = torch.tensor(
        [[0.0, 0.0, math.log(2.0), 0.0, math.log(3.0)], [1.0, -1.0, 0.0, math.log(0.5), 0.0]]
    )
    g_x, g_y, sigma2, delta, gamma = att.attention_params(params, A, B, N)
    torch.testing.assert_close(g_x[:, 0], torch.tensor([13.5, 28.0]))  # (A - 1) / 2; A + 1 - 1
    torch.testing.assert_close(g_y[:, 0], torch.tensor([9.5, -1.0]))  # (B - 1) / 2; 0 - 1
    torch.testing.assert_close(sigma2[:, 0], torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(delta[:, 0], torch.tensor([27 / 4, 27 / 8]))
    torch.testing.assert_close(gamma[:, 0], torch.tensor([3.0, 1.0]))
    mu = att.grid_centres(g_x, delta, N)
    torch.testing.assert_close(mu[0], torch.linspace(0, 27, 5))
    window = att.window(params, A, B, N)  # centre -+ N/2 delta
    torch.testing.assert_close(
        window[0], torch.tensor([13.5 - 2.5 * 6.75, 9.5 - 2.5 * 6.75, 13.5 + 2.5 * 6.75, 9.5 + 2.5 * 6.75])
    )


# --------------------------------------------------------------------------------------------
# read and write


def test_identity_filters_read_then_write_give_the_image_back():
    """N = A = B, g~ = 0, delta~ = 1, tiny variance: F_X = F_Y = I, read is the image itself
    and write(read(x)) == x."""
    n, A = 3, 8
    params = torch.tensor([[0.0, 0.0, -20.0, 0.0, 0.0]]).repeat(n, 1)
    F_X, F_Y, gamma = att.filters_from_params(params, A, A, A)
    torch.testing.assert_close(F_X, torch.eye(A).expand(n, A, A))
    torch.testing.assert_close(F_Y, torch.eye(A).expand(n, A, A))
    x = rand(n, A, A, seed=6)
    r = att.read(x, 1 - x, F_X, F_Y, gamma)
    torch.testing.assert_close(r[:, : A * A].view(n, A, A), x)
    torch.testing.assert_close(r[:, A * A :].view(n, A, A), 1 - x)
    torch.testing.assert_close(att.write(r[:, : A * A], F_X, F_Y, gamma), x)


def test_write_is_the_adjoint_of_read():
    """<F_Y x F_X^T, w> = <x, F_Y^T w F_X> for any filters: write undoes read's geometry."""
    n, N, A, B = 4, 3, 11, 7
    params = torch.randn(n, 5, generator=torch.Generator().manual_seed(7), dtype=torch.double)
    F_X, F_Y, _ = att.filters_from_params(params, A, B, N)
    x = rand(n, B, A, seed=8, dtype=torch.double)
    w = rand(n, N, N, seed=9, dtype=torch.double)
    lhs = (att.read_one(x, F_X, F_Y, 1.0) * w).sum((1, 2))
    rhs = (x * att.write(w, F_X, F_Y, 1.0)).sum((1, 2))
    torch.testing.assert_close(lhs, rhs)
    # gamma scales the read up and the write down
    gamma = torch.tensor([2.0, 3.0, 4.0, 5.0], dtype=torch.double).view(n, 1)
    torch.testing.assert_close(
        att.read_one(x, F_X, F_Y, gamma), att.read_one(x, F_X, F_Y, 1.0) * gamma.view(n, 1, 1)
    )
    torch.testing.assert_close(
        att.write(w, F_X, F_Y, gamma) * gamma.view(n, 1, 1), att.write(w, F_X, F_Y, 1.0)
    )


def test_gradients_reach_all_five_attention_parameters():
    n, A, B, N = 5, 12, 10, 3
    params = (torch.randn(n, 5, generator=torch.Generator().manual_seed(10)) * 0.3).requires_grad_()
    x = rand(n, B, A, seed=11)
    F_X, F_Y, gamma = att.filters_from_params(params, A, B, N)
    r = att.read(x, x * 0.5, F_X, F_Y, gamma)
    F_X, F_Y, gamma = att.filters_from_params(params, A, B, N)
    img = att.write(rand(n, N, N, seed=12), F_X, F_Y, gamma)
    (r.square().sum() + (img * x).sum()).backward()
    assert torch.isfinite(params.grad).all()
    for j, name in enumerate(["g~_X", "g~_Y", "log sigma^2", "log delta~", "log gamma"]):
        assert params.grad[:, j].abs().min() > 0, f"no gradient for {name}"


# --------------------------------------------------------------------------------------------
# the fused write-then-read step DRAW runs


@pytest.mark.parametrize("A, B, N_w, N_r", [(6, 6, 3, 2), (7, 5, 3, 2), (6, 6, 1, 1), (5, 5, 6, 5)])
@pytest.mark.parametrize("do_write, do_read", [(True, True), (False, True), (True, False)])
def test_fused_step_equals_composition_and_passes_gradcheck(A, B, N_w, N_r, do_write, do_read):
    n = 3
    g = torch.Generator().manual_seed(13)
    params = (torch.randn(n, N_w * N_w + 10, generator=g, dtype=torch.double) * 0.5).requires_grad_()
    canvas = torch.randn(n, A * B, generator=g, dtype=torch.double, requires_grad=True)
    x = (torch.rand(n, A * B, generator=g, dtype=torch.double) < 0.5).double()

    def fused(p, c):
        return att.write_then_read(p, c, x, A, B, N_w, N_r, do_write, do_read)

    def composed(p, c):
        return att.write_then_read_reference(p, c, x, A, B, N_w, N_r, do_write, do_read)

    for a, b in zip(fused(params, canvas), composed(params, canvas)):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(fused, (params, canvas))


def test_fused_step_frees_its_graph_without_the_garbage_collector():
    """Nothing the step keeps for backward may point back at its outputs (a reference cycle
    would hold every step's memory until Python's collector runs)."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        params = torch.randn(4, 35, requires_grad=True)
        canvas = torch.randn(4, 784, requires_grad=True)
        new_canvas, r = att.write_then_read(params, canvas, torch.zeros(4, 784), 28, 28, 5, 2)
        ref = weakref.ref(r)
        del new_canvas, r
        assert ref() is None
    finally:
        gc.enable()
