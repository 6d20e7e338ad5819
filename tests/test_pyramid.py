"""Burt & Adelson's Laplacian pyramid (genlearn.nn.pyramid): exact inversion, d and u against a
plainly written convolution, sizes (odd ones included), borders, dtype/device, bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlearn.nn import pyramid as pyr


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------------
# a reference written out pixel by pixel, independent of the module's index tricks

W5 = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0  # W = w w^T, w = [1, 4, 6, 4, 1] / 16


def reflect(i: int, n: int) -> int:
    """Mirror about the edge pixels without repeating them (reflect-101), as often as needed."""
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def convolve_at(image: np.ndarray, kernel: np.ndarray, y: int, x: int) -> float:
    """sum_{a,b} kernel[a, b] image[y + a - 2, x + b - 2], borders by reflection."""
    height, width = image.shape
    total = 0.0
    for a in range(5):
        for b in range(5):
            total += kernel[a, b] * image[reflect(y + a - 2, height), reflect(x + b - 2, width)]
    return total


def reference_down(image: np.ndarray) -> np.ndarray:
    """d: blur with W, keep pixels 0, 2, 4, ... of each axis."""
    height, width = image.shape
    out = np.zeros(((height + 1) // 2, (width + 1) // 2))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = convolve_at(image, W5, 2 * i, 2 * j)
    return out


def reference_up(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """u: zeros with image[i, j] at (2i, 2j), blurred with 4 W."""
    inserted = np.zeros((height, width))
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            inserted[2 * i, 2 * j] = image[i, j]
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            out[y, x] = convolve_at(inserted, 4 * W5, y, x)
    return out


@pytest.mark.parametrize("shape", [(7, 7), (6, 6), (6, 5), (5, 8), (2, 3), (3, 2)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_downsample_matches_direct_convolution(shape, dtype, tol):
    images = rand(2, 3, *shape, seed=1, dtype=dtype)
    got = pyr.downsample(images)
    for n in range(2):
        for c in range(3):
            want = reference_down(images[n, c].double().numpy())
            np.testing.assert_allclose(got[n, c].double().numpy(), want, rtol=0, atol=tol)


@pytest.mark.parametrize(
    "small,target", [((4, 4), (7, 7)), ((3, 3), (6, 6)), ((3, 3), (6, 5)), ((1, 2), (2, 3))]
)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_upsample_matches_direct_convolution(small, target, dtype, tol):
    images = rand(2, 3, *small, seed=2, dtype=dtype)
    got = pyr.upsample(images, target)
    assert got.shape == (2, 3, *target)
    for n in range(2):
        for c in range(3):
            want = reference_up(images[n, c].double().numpy(), *target)
            np.testing.assert_allclose(got[n, c].double().numpy(), want, rtol=0, atol=tol)


def test_reference_reflection_is_reflect_101():
    # the rule the module documents: ... x2 x1 | x0 x1 x2 ... | x_{n-2} ..., folded for short axes
    assert [reflect(i, 5) for i in range(-2, 7)] == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert [reflect(i, 2) for i in range(-2, 4)] == [0, 1, 0, 1, 0, 1]


# --------------------------------------------------------------------------------------------
# exact inversion and sizes


@pytest.mark.parametrize(
    "size,levels",
    [((28, 28), 1), ((28, 28), 2), ((28, 28), 3), ((28, 28), 5), ((60, 60), 3), ((60, 60), 6),
     ((15, 15), 3), ((15, 15), 4), ((7, 7), 2), ((7, 7), 4), ((13, 9), 3), ((13, 9), 5)],
)  # fmt: skip
@pytest.mark.parametrize("channels", [1, 3])
def test_collapse_inverts_the_pyramid(size, levels, channels):
    images = rand(4, channels, *size, seed=levels + 10 * channels)
    pyramid = pyr.laplacian_pyramid(images, levels)
    assert len(pyramid) == levels
    back = pyr.collapse(pyramid)
    assert back.shape == images.shape and back.dtype == images.dtype
    # float32 rounding: each level adds a few ulps of the [0, 1] pixels
    torch.testing.assert_close(back, images, rtol=0, atol=levels * 4 * torch.finfo(torch.float32).eps)


def test_collapse_inverts_in_float64_to_double_rounding():
    images = rand(4, 3, 60, 60, seed=3, dtype=torch.float64) * 2 - 1
    back = pyr.collapse(pyr.laplacian_pyramid(images, 6))
    assert back.dtype == torch.float64
    torch.testing.assert_close(back, images, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "size,levels,sides",
    [(28, 3, [28, 14, 7]), (60, 3, [60, 30, 15]), (7, 2, [7, 4]), (15, 2, [15, 8]),
     (7, 4, [7, 4, 2, 1]), (60, 6, [60, 30, 15, 8, 4, 2]), (28, 1, [28])],
)  # fmt: skip
def test_level_sizes(size, levels, sides):
    pyramid = pyr.laplacian_pyramid(rand(2, 1, size, size), levels)
    assert [tuple(t.shape) for t in pyramid] == [(2, 1, s, s) for s in sides]
    assert pyr.pyramid_sizes(size, size, levels) == [(s, s) for s in sides]


def test_non_square_sizes_halve_each_axis():
    pyramid = pyr.laplacian_pyramid(rand(4, 3, 13, 9), 4)
    assert [t.shape[-2:] for t in pyramid] == [(13, 9), (7, 5), (4, 3), (2, 2)]


@pytest.mark.parametrize("side", [2, 3, 4, 5, 6, 7, 14, 15, 28, 30, 60])
def test_u_of_d_has_the_input_shape(side):
    images = rand(1, 2, side, side + 1)
    coarse = pyr.downsample(images)
    assert coarse.shape[-2:] == (math.ceil(side / 2), math.ceil((side + 1) / 2))
    assert pyr.upsample(coarse, images.shape[-2:]).shape == images.shape


def test_bands_are_what_u_misses():
    images = rand(3, 3, 15, 15, seed=4)
    h0, h1, coarsest = pyr.laplacian_pyramid(images, 3)
    level1 = pyr.downsample(images)
    torch.testing.assert_close(coarsest, pyr.downsample(level1), rtol=0, atol=0)
    torch.testing.assert_close(h1, level1 - pyr.upsample(coarsest, 8), rtol=0, atol=0)
    torch.testing.assert_close(h0, images - pyr.upsample(level1, 15), rtol=0, atol=0)


def test_single_level_is_the_image_itself():
    images = rand(2, 3, 9, 9)
    (only,) = pyr.laplacian_pyramid(images, 1)
    assert torch.equal(only, images)
    assert torch.equal(pyr.collapse([images]), images)


# --------------------------------------------------------------------------------------------
# borders: constants, means


@pytest.mark.parametrize(
    "size,levels", [((28, 28), 3), ((15, 15), 4), ((13, 9), 5), ((7, 7), 4), ((2, 2), 2)]
)
def test_constant_image_has_zero_bands_and_its_constant_low_pass(size, levels):
    # exact in real arithmetic with reflect-101 borders, for any size >= 2; float rounding only
    value = 0.3
    images = torch.full((2, 3, *size), value)
    pyramid = pyr.laplacian_pyramid(images, levels)
    for band in pyramid[:-1]:
        assert band.abs().max() <= 4 * torch.finfo(torch.float32).eps
    torch.testing.assert_close(pyramid[-1], torch.full_like(pyramid[-1], value), rtol=0, atol=1e-7)


def test_dyadic_constants_pass_through_bit_exactly():
    # the kernel's weights are dyadic, so 0.5 * w_i and their sums are exact in binary
    images = torch.full((1, 1, 15, 15), 0.5)
    pyramid = pyr.laplacian_pyramid(images, 4)
    assert all(bool((band == 0).all()) for band in pyramid[:-1])
    assert bool((pyramid[-1] == 0.5).all())


def test_upsample_keeps_an_interior_impulse_mass():
    # exact: 4 W sums to 4 and u makes 4 pixels of each one, so away from the border u keeps the mean
    coarse = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    coarse[0, 0, 3, 4] = 1.0
    fine = pyr.upsample(coarse, 16)
    assert fine.sum().item() == pytest.approx(4.0, abs=1e-12)
    assert fine.mean().item() == pytest.approx(coarse.mean().item(), abs=1e-12)


def smooth_image(height: int, width: int, seed: int) -> torch.Tensor:
    """A blurred image: white noise averaged over 9 x 9 boxes, twice (a ~5-pixel-wide blur),
    contrast x4 around 0.5. The noise is 16 pixels larger and the pooling unpadded, so the blur
    is the same right to the image's edge."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 1, height + 16, width + 16, generator=generator, dtype=torch.float64)
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.avg_pool2d(noise, 9, 1), 9, 1)
    return 0.5 + 4 * (blurred - 0.5)


@pytest.mark.parametrize("size,tol", [((60, 60), 0.01), ((28, 28), 0.01), ((15, 15), 0.03), ((13, 9), 0.03)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_pass_of_a_blurred_image_keeps_its_mean_roughly(size, tol, seed):
    # Not exact: d and u keep constants exactly but not sums (reflection folds border weights
    # back, and an odd side keeps both end pixels), so the mean drifts by a fraction of the
    # image's spread (about 0.08 here), more on small images where the border is more of it.
    images = smooth_image(*size, seed=seed)
    mean = images.mean().item()
    assert pyr.downsample(images).mean().item() == pytest.approx(mean, abs=0.005)
    assert pyr.laplacian_pyramid(images, 3)[-1].mean().item() == pytest.approx(mean, abs=tol)


# --------------------------------------------------------------------------------------------
# dtype, device, gradients


def test_float64_in_float64_out():
    images = rand(2, 3, 15, 15, dtype=torch.float64)
    pyramid = pyr.laplacian_pyramid(images, 3)
    assert all(t.dtype == torch.float64 for t in pyramid)
    assert pyr.downsample(images).dtype == torch.float64
    assert pyr.upsample(pyramid[-1], 8).dtype == torch.float64
    assert pyr.collapse(pyramid).dtype == torch.float64


def test_device_is_kept():
    images = torch.empty(2, 3, 28, 28, device="meta")  # a device other than the CPU, without one
    pyramid = pyr.laplacian_pyramid(images, 3)
    assert all(t.device.type == "meta" for t in pyramid)
    assert [t.shape[-1] for t in pyramid] == [28, 14, 7]
    assert pyr.collapse(pyramid).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    images = rand(4, 3, 60, 60, seed=5)
    pyramid = pyr.laplacian_pyramid(images.cuda(), 3)
    assert all(t.is_cuda for t in pyramid)
    for got, want in zip(pyramid, pyr.laplacian_pyramid(images, 3)):
        torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-6)
    torch.testing.assert_close(pyr.collapse(pyramid).cpu(), images, rtol=0, atol=1e-6)


def test_gradients_flow_through_d_and_u():
    # LAPGAN back-propagates through u(.) of generated coarse images
    coarse = rand(2, 2, 4, 3, seed=6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: pyr.upsample(t, (7, 6)), (coarse,))
    fine = rand(2, 2, 7, 6, seed=7, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(pyr.downsample, (fine,))


# --------------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize("levels", [0, -1, 1.5, True, "3"])
def test_bad_levels_are_refused(levels):
    with pytest.raises(ValueError, match="levels"):
        pyr.laplacian_pyramid(rand(1, 1, 28, 28), levels)


@pytest.mark.parametrize(
    "images,match",
    [(rand(28, 28), "4-D"), (rand(1, 28, 28), "4-D"), (rand(1, 1, 1, 28, 28), "4-D"),
     (torch.zeros(1, 1, 28, 28, dtype=torch.long), "floating"), (np.zeros((1, 1, 28, 28)), "torch.Tensor"),
     (torch.zeros(1, 0, 28, 28), "channel")],
)  # fmt: skip
def test_bad_images_are_refused(images, match):
    with pytest.raises(ValueError, match=match):
        pyr.laplacian_pyramid(images, 2)
    with pytest.raises(ValueError, match=match):
        pyr.downsample(images)


def test_images_too_small_for_the_levels_are_refused():
    pyr.laplacian_pyramid(rand(1, 1, 7, 7), 4)  # 7 -> 4 -> 2 -> 1: fine
    with pytest.raises(ValueError, match="too small for 5 levels"):
        pyr.laplacian_pyramid(rand(1, 1, 7, 7), 5)
    with pytest.raises(ValueError, match="too small"):
        pyr.laplacian_pyramid(rand(1, 1, 28, 1), 2)  # one column cannot be halved
    with pytest.raises(ValueError, match="at least 2 x 2"):
        pyr.downsample(rand(1, 1, 1, 5))


@pytest.mark.parametrize("size", [(8, 9), (6, 7), 9, (1, 1), (7,), (7, 7, 7), "7", (7.0, 7.0), (True, 7)])
def test_upsample_to_a_size_that_does_not_halve_to_the_image_is_refused(size):
    with pytest.raises(ValueError, match="upsample|size"):
        pyr.upsample(rand(1, 1, 4, 4), size)


def test_upsample_accepts_both_sizes_that_halve_to_the_image():
    images = rand(1, 1, 4, 4)
    assert pyr.upsample(images, 7).shape[-2:] == (7, 7)
    assert pyr.upsample(images, (8, 7)).shape[-2:] == (8, 7)
    assert pyr.upsample(images, torch.Size([7, 8])).shape[-2:] == (7, 8)


def test_bad_pyramids_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        pyr.collapse([])
    with pytest.raises(ValueError, match="non-empty"):
        pyr.collapse(rand(1, 1, 4, 4))  # a tensor, not a list of levels
    pyramid = pyr.laplacian_pyramid(rand(2, 3, 15, 15), 3)
    with pytest.raises(ValueError, match="upsample"):
        pyr.collapse([pyramid[0], pyramid[2]])  # a level missing: 8 -> 15 does not halve
    with pytest.raises(ValueError, match=r"\(n, C\)"):
        pyr.collapse([pyramid[0], pyramid[1][:1], pyramid[2][:1]])
    with pytest.raises(ValueError, match=r"pyramid\[1\]"):
        pyr.collapse([pyramid[0], pyramid[1][0], pyramid[2]])
