r"""Burt & Adelson's Laplacian pyramid (IEEE Trans. Communications, 1983), as LAPGAN uses it.

LAPGAN (Denton et al., NIPS 2015) generates an image coarse to fine through the
pyramid below. With w the 5-tap binomial kernel and W its 5 x 5 outer product,

    w = [1, 4, 6, 4, 1] / 16,        W = w w^T                 (each sums to 1)

the two operators are

    d(I)       = (W * I)[0::2, 0::2]       blur, then keep every other row and column
    u(J, size) = (4 W) * J0                J0: zeros of the target size, J0[2i, 2j] = J[i, j]

(`*` is 2-D convolution, `downsample` and `upsample` here). The factor 4 makes u keep
brightness: three quarters of J0's pixels are zeros, and in every position the taps of 4 W that
land on J's pixels sum to exactly 1 (per axis 4 W is 2w x 2w, and 2w's taps on every other
pixel are 1/8 + 6/8 + 1/8 or 4/8 + 4/8). The pyramid of I_0 = I with K + 1 levels is

    I_{k+1} = d(I_k),     h_k = I_k - u(I_{k+1}, size of I_k),     k = 0..K-1

and `laplacian_pyramid` returns [h_0, ..., h_{K-1}, I_K]: the finest band first, the coarsest
low-pass image last. `collapse` runs it backwards,

    I_k = u(I_{k+1}, size of h_k) + h_k,

and gives I_0 back. The inverse is exact whatever d and u are (each band stores exactly what
u(I_{k+1}) misses), so the only error is floating-point rounding; d and u decide what the bands
look like, not whether they invert.

Sizes. `levels` counts the returned tensors: levels - 1 bands and one low-pass image, so
`laplacian_pyramid(x, 3)` on 28 x 28 gives bands of 28 x 28 and 14 x 14 and a 7 x 7 image, and
`levels=1` returns [x]. Odd sizes: d keeps pixels 0, 2, 4, ..., i.e. ceil(n / 2) of n (15 -> 8,
7 -> 4, both ends kept), and u takes the target size, placing J's pixels at 0, 2, 4, ... of it,
so that u(d(I), size of I) has I's shape for even and odd sizes alike. A target side n of u
must halve to J's side m (n = 2m - 1 or 2m); anything else is refused. Rows and columns are
handled independently, so H and W may differ and be of different parity (13 x 9 -> 7 x 5).
An image is halved only while it is at least 2 pixels in each direction: 1 pixel has nothing to
halve (ceil(1 / 2) = 1) and the border rule below breaks down on it.

Borders. The blur pads each axis by mirror reflection about the edge pixel, without repeating
it ("reflect-101": ... x2 x1 | x0 x1 x2 ... x_{n-1} | x_{n-2} ..., OpenCV's pyrDown/pyrUp
default), folding again for images smaller than the kernel (a 2-pixel axis pads to
x0 x1 | x0 x1 | x0 x1). Why this rule:
  - constants stay constant, for d and for u, at every size >= 2: the padded values are
    image values and the weights sum to 1; so a flat image has zero bands, and a border
    never shows up as a spurious edge in h_0 that a generator would have to learn;
  - reflection about a pixel maps even positions to even ones, so in u the inserted zeros stay
    zeros in the padding and the "taps that land on J sum to 1" argument holds at the
    border too (plain zero padding would darken every border pixel, and replicate padding
    would put J's pixels on odd positions);
  - it is linear and fixed, so u is differentiable and cheap in the generator's graph.
Not exact: sums. Because border weights are folded back (and an odd side keeps both of its end
pixels), d and u do not preserve an image's mean exactly; for smooth (blurred) images the drift
is a small fraction of the image's contrast, largest on small images.

Implementation: the padding is an index gather (`index_select`) and the blur two 1-D
`conv2d` passes (5 x 1, then 1 x 5) with groups = channels, d's with stride 2 so that only
the kept pixels are computed. Inputs are (n, C, H, W) floating-point tensors; outputs keep
their dtype and device, and gradients flow through d, u, the pyramid and collapse.

LAPGAN's released code (eyescream, `cifar/datasets/coarse_to_fine_cifar10.lua`) builds its
coarse images with Torch's `image.scale` (bilinear resampling) down and up, not with this
pyramid. We keep Burt & Adelson's, which is what the paper's text defines: d
low-passes with a proper anti-aliasing filter before it decimates (bilinear resampling by 2
weighs at most 2 x 2 neighbours, a much weaker low-pass, and leaves aliasing in the coarse
image and so in its band); d and u are defined for odd sizes without choosing an interpolation
grid convention (28 -> 14 -> 7 and 60 -> 30 -> 15 both need it: which of 7's pixels does
bilinear 14 -> 7 -> 14 align?). The exact inverse holds for either choice, so the choice
changes what the generators see (the residuals h_k they learn), not correctness.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch.nn import functional as F

# Burt & Adelson's 5-tap binomial kernel, a = 0.375 in their generating-kernel family.
BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
_RADIUS = len(BINOMIAL) // 2


def _check_images(images: torch.Tensor, what: str = "images") -> None:
    """Refuse anything but a batched floating-point image tensor, naming what was given."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor of shape (n, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{what} must be 4-D (n, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] < 1:
        raise ValueError(f"{what} must have at least one channel, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {images.dtype}")


def _check_halvable(images: torch.Tensor) -> None:
    """d needs at least 2 pixels per axis: 1 pixel cannot be halved, and its blur would not be
    brightness-preserving under the reflection rule (every tap folds onto the same pixel)."""
    height, width = images.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError(f"cannot downsample a {height} x {width} image: need at least 2 x 2")


def _binomial(gain: float, like: torch.Tensor) -> torch.Tensor:
    """The 1-D kernel gain * [1, 4, 6, 4, 1] / 16 in like's dtype and device (exact in binary)."""
    return torch.tensor(BINOMIAL, dtype=like.dtype, device=like.device) * (gain / 16.0)


def _reflect_index(size: int, device: torch.device) -> torch.Tensor:
    """Source index of each padded position -R..size-1+R under reflect-101 (size >= 2), folded
    as often as needed, so that axes shorter than the kernel (2 pixels) are padded correctly
    too. The fold has an even period and mirrors about pixels, so it keeps each index's parity."""
    positions = torch.arange(-_RADIUS, size + _RADIUS, device=device)
    period = 2 * (size - 1)
    positions = positions.remainder(period)
    return torch.where(positions >= size, period - positions, positions)


def _blur_axis(images: torch.Tensor, kernel: torch.Tensor, dim: int, stride: int) -> torch.Tensor:
    """Pad one axis (dim -2: rows, -1: columns) by reflection and convolve it with the 1-D
    kernel, keeping every stride-th output (stride 2 computes d's kept pixels only)."""
    channels = images.shape[1]
    padded = images.index_select(dim, _reflect_index(images.shape[dim], images.device))
    shape = (channels, 1, len(kernel), 1) if dim == -2 else (channels, 1, 1, len(kernel))
    strides = (stride, 1) if dim == -2 else (1, stride)
    # The kernel is symmetric, so conv2d's cross-correlation is the convolution.
    return F.conv2d(padded, kernel.reshape(1, 1, *shape[2:]).expand(shape), stride=strides, groups=channels)


def _blur(images: torch.Tensor, gain: float = 1.0, stride: int = 1) -> torch.Tensor:
    """Separable blur with (gain w)(gain w)^T = gain^2 W, reflect-101 borders (gain 1: d's W,
    gain 2: u's 4 W); with stride 2 only pixels 0, 2, 4, ... of each axis are computed."""
    kernel = _binomial(gain, images)
    return _blur_axis(_blur_axis(images, kernel, -2, stride), kernel, -1, stride)


def downsample(images: torch.Tensor) -> torch.Tensor:
    """d(I): blur with W and keep pixels 0, 2, 4, ... of each axis; (n, C, H, W) ->
    (n, C, ceil(H / 2), ceil(W / 2)). H and W must be at least 2."""
    _check_images(images)
    _check_halvable(images)
    return _blur(images, stride=2)


def _target_size(size: int | Sequence[int]) -> tuple[int, int]:
    """Accept an int (square) or (H, W), e.g. a finer image's shape[-2:]."""
    try:
        if isinstance(size, bool):
            raise TypeError
        if not isinstance(size, Sequence):
            side = operator.index(size)
            return side, side
        if len(size) != 2 or any(isinstance(v, bool) for v in size):
            raise TypeError
        return operator.index(size[0]), operator.index(size[1])
    except TypeError:
        raise ValueError(f"size must be an int or a pair (H, W) of ints, got {size!r}") from None


def upsample(images: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """u(J, size): put J's pixels at 0, 2, 4, ... of a zero image of the target size and blur
    with 4 W. The size is passed, not implied, because an odd size and the even one above it
    halve to the same J (7 and 8 both give 4): u(d(I), I.shape[-2:]) has I's shape."""
    _check_images(images)
    height, width = _target_size(size)
    small_h, small_w = images.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError(f"cannot upsample to {height} x {width}: need at least 2 x 2")
    if (height + 1) // 2 != small_h or (width + 1) // 2 != small_w:
        raise ValueError(
            f"cannot upsample a {small_h} x {small_w} image to {height} x {width}: the target must "
            f"halve to the image (each side 2m - 1 or 2m for an image side m)"
        )
    return _blur(_insert_zeros(images, height, width), gain=2.0)


def _insert_zeros(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """J0 of size height x width with J0[2i, 2j] = J[i, j] and zeros elsewhere, built out of
    place (slice_scatter) so that gradients reach J."""
    n, channels, small_h, _ = images.shape
    rows = images.new_zeros(n, channels, small_h, width).slice_scatter(images, dim=-1, step=2)
    return images.new_zeros(n, channels, height, width).slice_scatter(rows, dim=-2, step=2)


def _check_levels(levels: int) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int):
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1 (levels - 1 bands and one low-pass image), got {levels}")


def pyramid_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """The (H, W) of each level, finest first: each halves to ceil(n / 2) of the one before.
    Raises ValueError when an image that would be halved is under 2 pixels on a side."""
    _check_levels(levels)
    sizes = [(height, width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        if h < 2 or w < 2:
            raise ValueError(
                f"a {height} x {width} image is too small for {levels} levels: level "
                f"{len(sizes) - 1} is {h} x {w} and cannot be halved (at most "
                f"{len(sizes)} levels)"
            )
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[h_0, ..., h_{levels-2}, I_{levels-1}]: levels - 1 band-pass images, finest first, then
    the coarsest low-pass image; h_k = I_k - u(I_{k+1}) and I_{k+1} = d(I_k), I_0 = images."""
    _check_images(images)
    pyramid_sizes(images.shape[-2], images.shape[-1], levels)  # validates before any work
    bands: list[torch.Tensor] = []
    current = images
    for _ in range(levels - 1):
        coarser = downsample(current)
        bands.append(current - upsample(coarser, current.shape[-2:]))
        current = coarser
    return [*bands, current]


def collapse(pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
    """Invert `laplacian_pyramid`: I_k = u(I_{k+1}, size of h_k) + h_k from the coarsest image
    up; returns I_0. A single-element pyramid is its own image."""
    if isinstance(pyramid, torch.Tensor) or len(pyramid) == 0:
        raise ValueError("pyramid must be a non-empty list [h_0, ..., h_{K-1}, I_K] of 4-D tensors")
    for k, level in enumerate(pyramid):
        _check_images(level, f"pyramid[{k}]")
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        if band.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"pyramid levels disagree on (n, C): {tuple(band.shape[:2])} and {tuple(image.shape[:2])}"
            )
        image = upsample(image, band.shape[-2:]) + band
    return image
