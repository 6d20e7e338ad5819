r"""DRAW's selective attention: grids of Gaussian filters (Gregor et al., ICML 2015, section 3.2).

An N x N grid of 2-D Gaussian filters is placed on an A x B image (A columns, B rows) by its
centre (g_X, g_Y), its stride delta, an isotropic variance sigma^2 and an intensity gamma. The
decoder emits the five numbers through a linear layer, and `attention_params` maps them to
pixels exactly as the paper's equations (21)-(24) do:

    (g~_X, g~_Y, log sigma^2, log delta~, log gamma) = W(h^dec)
    g_X   = (A + 1) / 2 (g~_X + 1)
    g_Y   = (B + 1) / 2 (g~_Y + 1)
    delta = (max(A, B) - 1) / (N - 1) delta~

so that g~ = 0, delta~ = 1 is a grid spanning the whole image. The i-th row and j-th column of
the grid sit at (equations 19-20, i, j = 1..N)

    mu_X^i = g_X + (i - N/2 - 0.5) delta
    mu_Y^j = g_Y + (j - N/2 - 0.5) delta

and the horizontal and vertical filterbank matrices are (equations 25-26)

    F_X[i, a] = exp(-(a - mu_X^i)^2 / (2 sigma^2)) / Z_X,    F_Y[j, b] = ... / Z_Y

with Z_X, Z_Y making every row sum to 1. Then (equations 27-29)

    read(x, x^, h^dec_{t-1}) = gamma [F_Y x F_X^T, F_Y x^ F_X^T]       two N x N glimpses
    write(h^dec_t)           = 1/gamma^ F^_Y^T w_t F^_X,  w_t = W(h^dec_t)  an N x N patch

Pixel coordinates. The paper counts pixels a = 1..A (its g~ = 0 puts g_X at (A + 1) / 2, the
middle of 1..A). Here a pixel's coordinate is its tensor index a = 0..A-1, and `attention_params`
subtracts 1 from the paper's g_X, g_Y, so the grid lands on exactly the same pixels as the
paper's; `filterbank` takes centres in these 0-based pixel coordinates (a filter centred at 3.0
is centred on column index 3). An image tensor is (batch, B, A): rows are y, columns are x.

Normalisation. Z is computed as a softmax over pixels (the exponent's maximum is subtracted
before exp), which is the paper's 1/Z exactly but cannot underflow: with a tiny variance, or a
centre far outside the image, every exp(.) would be 0 in float32 and the plain quotient 0/0;
here the row becomes its mathematical limit (all weight on the nearest pixel) and still sums
to 1, with finite gradients. The variance is floored at `MIN_SIGMA2` for the same reason.

`filterbank`, `attention_params`, `read` and `write` are the plain, autograd-differentiated
definitions (alignDRAW uses them too). `write_then_read` is what DRAW runs at each step: the
write of step t and the read of step t+1 (both parameterised by h^dec_t) in one autograd
function, the two grids' filterbanks built in one batched pass and the backward pass written out;
`write_then_read_reference` composes the plain functions into the same thing, and the tests hold
the two equal, gradients included.
"""

from __future__ import annotations

import math

import torch

MIN_SIGMA2 = 1e-12
N_PARAMS = 5  # one grid's parameters from h^dec: g~_X, g~_Y, log sigma^2, log delta~, log gamma


def _column(t: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
    """(batch,) or (batch, 1) -> (batch, 1); Python numbers become a 1 x 1 tensor."""
    if not isinstance(t, torch.Tensor):
        t = torch.tensor(float(t), dtype=like.dtype if like is not None else None)
        if like is not None:
            t = t.to(like.device)
    return t.reshape(-1, 1)


def grid_offsets(N: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(i - N/2 - 0.5) for i = 1..N: the grid's positions in units of delta, centred on 0."""
    return torch.arange(N, dtype=dtype, device=device) - (N - 1) / 2


def grid_centres(g: torch.Tensor, delta: torch.Tensor, N: int) -> torch.Tensor:
    """mu^i = g + (i - N/2 - 0.5) delta, i = 1..N, for g and delta of shape (batch, 1): (batch, N)."""
    return g + grid_offsets(N, g.dtype, g.device) * delta


def _bank(mu: torch.Tensor, sigma2: torch.Tensor, size: int) -> torch.Tensor:
    """Rows softmax_a(-(a - mu_i)^2 / (2 sigma^2)), a = 0..size-1: mu (..., N) -> (..., N, size)."""
    a = torch.arange(size, dtype=mu.dtype, device=mu.device)
    scale = -0.5 / sigma2.clamp_min(MIN_SIGMA2)
    while scale.dim() < mu.dim() + 1:
        scale = scale.unsqueeze(-1)
    return torch.softmax((a - mu.unsqueeze(-1)).square() * scale, dim=-1)


def filterbank(
    g_x: torch.Tensor,
    g_y: torch.Tensor,
    sigma2: torch.Tensor,
    delta: torch.Tensor,
    N: int,
    A: int,
    B: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The filterbank matrices F_X (batch, N, A) and F_Y (batch, N, B), each row summing to 1.

    Centre (g_x, g_y), stride `delta` and variance `sigma2` are in pixels (0-based coordinates,
    see the module docstring), each of shape (batch,) or (batch, 1). All filters of the batch
    are built at once; for a square image F_X and F_Y come from one computation.
    """
    g_x, g_y = _column(g_x), _column(g_y, g_x)
    sigma2, delta = _column(sigma2, g_x), _column(delta, g_x)
    if A == B:
        mu = grid_centres(torch.cat([g_x, g_y], dim=1).unsqueeze(-1), delta.unsqueeze(-1), N)
        F = _bank(mu, sigma2, A)  # (batch, 2, N, A)
        return F[:, 0], F[:, 1]
    F_X = _bank(grid_centres(g_x, delta, N), sigma2, A)
    F_Y = _bank(grid_centres(g_y, delta, N), sigma2, B)
    return F_X, F_Y


def attention_params(
    params: torch.Tensor, A: int, B: int, N: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(g~_X, g~_Y, log sigma^2, log delta~, log gamma) (batch, 5) -> (g_x, g_y, sigma2, delta, gamma).

    Each result has shape (batch, 1); centres and stride are in 0-based pixel coordinates.
    """
    gx_, gy_, log_sigma2, log_delta_, log_gamma = params.unsqueeze(-1).unbind(-2)
    g_x = (A + 1) / 2 * (gx_ + 1) - 1
    g_y = (B + 1) / 2 * (gy_ + 1) - 1
    delta = (max(A, B) - 1) / max(N - 1, 1) * torch.exp(log_delta_)
    return g_x, g_y, torch.exp(log_sigma2), delta, torch.exp(log_gamma)


def filters_from_params(
    params: torch.Tensor, A: int, B: int, N: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The linear layer's five outputs (batch, 5) -> (F_X, F_Y, gamma (batch, 1))."""
    g_x, g_y, sigma2, delta, gamma = attention_params(params, A, B, N)
    F_X, F_Y = filterbank(g_x, g_y, sigma2, delta, N, A, B)
    return F_X, F_Y, gamma


def window(params: torch.Tensor, A: int, B: int, N: int) -> torch.Tensor:
    """The grid's extent in pixels, (x0, y0, x1, y1) = centre -+ N/2 delta: (batch, 4)."""
    g_x, g_y, _, delta, _ = attention_params(params, A, B, N)
    half = N / 2 * delta
    return torch.cat([g_x - half, g_y - half, g_x + half, g_y + half], dim=1)


def initial_bias(N_w: int, N_r: int, A: int, B: int) -> torch.Tensor:
    """Biases (N_w^2 + 10,) of the linear layer that emits [write patch | write's 5 | read's 5]:
    both grids centred and spanning the image (g~ = 0, delta~ = 1) with neighbouring filters
    overlapping (sigma = delta / 2), the patch at 0 (the T writes do not drift the canvas) and
    the write's 1/gamma^ = 2 pi sigma^2, so that a unit patch value raises the canvas by about 1
    under its filter (a patch value spreads over about 2 pi sigma^2 pixels). Why this start and
    not the random one: `genlearn.models.draw.DRAW._init_attention`."""
    L = max(A, B)
    bias = torch.zeros(N_w * N_w + 2 * 5)
    for start, N, is_write in ((N_w * N_w, N_w, True), (N_w * N_w + 5, N_r, False)):
        sigma2 = ((L - 1) / max(N - 1, 1) / 2) ** 2
        log_gamma = -math.log(2 * math.pi * sigma2) if is_write else 0.0
        bias[start : start + 5] = torch.tensor([0.0, 0.0, math.log(sigma2), 0.0, log_gamma])
    return bias


def _gamma(gamma: torch.Tensor | float) -> torch.Tensor | float:
    """gamma of shape (batch,) or (batch, 1) -> (batch, 1, 1), to scale (batch, N, N) glimpses."""
    return gamma.reshape(-1, 1, 1) if isinstance(gamma, torch.Tensor) else gamma


def read(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    F_X: torch.Tensor,
    F_Y: torch.Tensor,
    gamma: torch.Tensor | float,
) -> torch.Tensor:
    """gamma [F_Y x F_X^T, F_Y x^ F_X^T]: two N x N glimpses flattened into (batch, 2 N^2).

    `x` and `x_hat` are images of any shape holding batch x B x A values ((batch, B, A),
    (batch, 1, B, A) or (batch, B * A)).
    """
    n, N, A = F_X.shape
    B = F_Y.shape[-1]
    both = torch.cat([x.reshape(n, B, A), x_hat.reshape(n, B, A)], dim=1)  # (n, 2B, A)
    cols = torch.bmm(both, F_X.transpose(1, 2))  # (n, 2B, N): x F_X^T and x^ F_X^T
    glimpse = torch.matmul(F_Y.unsqueeze(1), cols.view(n, 2, B, N))  # (n, 2, N, N)
    return (glimpse.view(n, 2 * N, N) * _gamma(gamma)).view(n, 2 * N * N)


def read_one(
    x: torch.Tensor, F_X: torch.Tensor, F_Y: torch.Tensor, gamma: torch.Tensor | float
) -> torch.Tensor:
    """gamma F_Y x F_X^T for one image batch: (batch, N, N)."""
    n, N, A = F_X.shape
    B = F_Y.shape[-1]
    return torch.bmm(F_Y, torch.bmm(x.reshape(n, B, A), F_X.transpose(1, 2))) * _gamma(gamma)


def write(w: torch.Tensor, F_X: torch.Tensor, F_Y: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """1/gamma F_Y^T w F_X: an N x N patch (batch, N, N) or (batch, N^2) onto the image, (batch, B, A)."""
    n, N, _ = F_X.shape
    patch = torch.bmm(F_Y.transpose(1, 2), w.reshape(n, N, N))  # (n, B, N)
    return torch.bmm(patch, F_X) / _gamma(gamma)


# --------------------------------------------------------------------------------------------
# One DRAW step's write and the next step's read, fused, with a written-out backward.


def _outer_sum(F: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """F^T D for F (n, N, B) and D (n, N, A) with N small: N rank-one updates (n, B, A); a
    batched product with inner dimension N = 2 is several times slower on the CPU."""
    if F.shape[1] > 4:
        return torch.bmm(F.transpose(1, 2), D)
    out = F[:, 0, :, None] * D[:, 0, None, :]
    for i in range(1, F.shape[1]):
        out.addcmul_(F[:, i, :, None], D[:, i, None, :])
    return out


_GRIDS: dict = {}


def _grids(A: int, B: int, sets: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> dict:
    """Constants of a stack of grids of N_s x N_s filters (cached): per row its grid's index and
    offset (i - N/2 - 0.5), the row -> grid indicator, each grid's stride scale, the pixels."""
    key = (A, B, sets, dtype, device)
    if key not in _GRIDS:
        L = max(A, B)
        idx = torch.cat([torch.full((N,), i, dtype=torch.long) for i, N in enumerate(sets)])
        mask = None
        if A != B:  # pixels beyond an axis's length do not exist
            mask = torch.zeros(2, 1, L, dtype=dtype)
            mask[0, :, A:] = float("-inf")
            mask[1, :, B:] = float("-inf")
        _GRIDS[key] = {
            "idx": idx.to(device),
            "off": torch.cat([grid_offsets(N, dtype) for N in sets]).to(device),
            "member": torch.nn.functional.one_hot(idx, len(sets)).to(dtype=dtype, device=device),
            "scale": torch.tensor([(L - 1) / max(N - 1, 1) for N in sets], dtype=dtype, device=device),
            "centre": torch.tensor([(A + 1) / 2, (B + 1) / 2], dtype=dtype, device=device),
            "pixels": torch.arange(L, dtype=dtype, device=device),
            "mask": None if mask is None else mask.to(device),
        }
    return _GRIDS[key]


class _Step(torch.autograd.Function):
    """(params, canvas, x) -> (canvas', r): canvas' = canvas + write(...), r = read(x, x - sigmoid(canvas'), ...).

    params (n, N_w^2 + 10) = [write patch w | 5 write parameters | 5 read parameters], the linear
    outputs of h^dec. The filterbanks of the write and of the read are built in one batched pass
    (rows of both grids stacked), and the backward pass is written out: a few dozen batched
    operations per step instead of the hundred-odd nodes autograd would record. Only
    intermediates are kept on `ctx` (an output kept there would make a reference cycle that
    holds the whole graph's memory until Python's garbage collector runs).
    """

    @staticmethod
    def forward(ctx, params, canvas, x, A, B, N_w, N_r, do_write, do_read):
        n = params.shape[0]
        sets = ((N_w,) if do_write else ()) + ((N_r,) if do_read else ())
        S, NN = len(sets), N_w * N_w
        first = NN if do_write else NN + 5  # the parameter columns of the grids in use
        c = _grids(A, B, sets, params.dtype, params.device)
        raw = params[:, first : first + 5 * S].unflatten(1, (S, 5))  # (n, S, 5)
        # g = (A + 1) / 2 (g~ + 1) - 1 in 0-based pixels, for x and y: (n, 2, S)
        g = torch.addcmul(c["centre"] - 1, raw[..., :2], c["centre"]).transpose(1, 2)
        ex = torch.exp(raw[..., 2:])  # sigma^2, delta~, gamma: (n, S, 3)
        sigma2, gamma = ex[..., 0], ex[..., 2]
        delta = ex[..., 1] * c["scale"]
        unclamped = sigma2 > MIN_SIGMA2
        k = 0.5 / sigma2.clamp_min(MIN_SIGMA2)  # 1 / (2 sigma^2)
        idx = c["idx"]
        mu = g[:, :, idx] + (c["off"] * delta[:, idx]).unsqueeze(1)  # (n, 2, R)
        dist = c["pixels"] - mu.unsqueeze(-1)  # a - mu: (n, 2, R, L)
        k_rows = k[:, idx]
        e = dist.square().mul_((-k_rows).unsqueeze(1).unsqueeze(-1))
        if c["mask"] is not None:
            e = e + c["mask"]
        F = torch.softmax(e, dim=-1)
        saved = {}
        if do_write:
            F_X, F_Y = F[:, 0, :N_w, :A], F[:, 1, :N_w, :B]
            # 1/gamma folded into the N_w x N_w patch (a copy: keeping a view of `params` would
            # keep the decoder's whole output alive until the backward pass)
            pg = params[:, :NN].reshape(n, N_w, N_w) / gamma[:, :1].unsqueeze(-1)
            V = torch.bmm(pg, F_X)  # (n, N_w, A)
            canvas = torch.baddbmm(canvas.view(n, B, A), F_Y.transpose(1, 2), V).view(n, -1)
            saved.update(pg=pg, V=V)
        else:
            canvas = canvas.clone()
        if do_read:
            F_X, F_Y = F[:, 0, -N_r:, :A], F[:, 1, -N_r:, :B]
            s = torch.sigmoid(canvas)
            X = x.reshape(n, B, A)
            UX = torch.bmm(F_Y, X)  # F_Y x: (n, N_r, A)
            U2 = torch.cat([UX, UX - torch.bmm(F_Y, s.view(n, B, A))], dim=1)  # rows [F_Y x; F_Y x^]
            G = torch.bmm(U2, F_X.transpose(1, 2))  # rows [F_Y x F_X^T; F_Y x^ F_X^T]: (n, 2 N_r, N_r)
            r = G.view(n, -1) * gamma[:, -1:]
            saved.update(s=s, X=X, U2=U2, G=G)  # only s is per-step image-sized (x^ = x - s)
        else:
            r = canvas.new_empty(n, 0)
        # d(raw parameters) = factor * d(g_X, g_Y, k, delta, gamma): (n, 5, S)
        factor = torch.stack(
            [c["centre"][0].expand_as(k), c["centre"][1].expand_as(k), -k * unclamped, delta, gamma], dim=1
        )
        ctx.geometry = (A, B, N_w, N_r, do_write, do_read, sets, first, params.shape[1])
        ctx.saved = saved
        ctx.save_for_backward(F, mu, k_rows, gamma, factor)  # a - mu is recomputed: (n, 2, R, L)
        return canvas, r

    @staticmethod
    def backward(ctx, d_canvas, d_r):
        A, B, N_w, N_r, do_write, do_read, sets, first, K = ctx.geometry
        F, mu, k_rows, gamma, factor = ctx.saved_tensors
        sv, S = ctx.saved, len(sets)
        c = _grids(A, B, sets, F.dtype, F.device)
        n = F.shape[0]
        d_params = F.new_zeros(n, K)
        d_gamma = F.new_empty(n, 1, S)  # dL/dgamma
        dF = torch.zeros_like(F)
        if do_read:
            F_X, F_Y = F[:, 0, -N_r:, :A], F[:, 1, -N_r:, :B]
            d_gamma[:, 0, -1] = (d_r * sv["G"].view(n, -1)).sum(1)
            dG = (d_r * gamma[:, -1:]).view(n, 2 * N_r, N_r)
            dU2 = torch.bmm(dG, F_X)  # (n, 2 N_r, A): d(F_Y x), d(F_Y x^)
            dF[:, 0, -N_r:, :A] = torch.bmm(dG.transpose(1, 2), sv["U2"])
            dUH = dU2[:, N_r:]  # F_Y x^ = F_Y x - F_Y s
            s = sv["s"]
            # dL/dF_Y = d(F_Y x) x^T - d(F_Y x^) s^T, with d(F_Y x) = dU_x + dU_x^
            dF[:, 1, -N_r:, :B] = torch.baddbmm(
                torch.bmm(dU2[:, :N_r] + dUH, sv["X"].transpose(1, 2)),
                dUH,
                s.view(n, B, A).transpose(1, 2),
                alpha=-1,
            )
            # dL/dcanvas -= (F_Y^T dU_x^) sigmoid'(canvas), sigmoid' = s - s^2
            dS = _outer_sum(F_Y, dUH).view(n, -1).mul_(s)
            d_canvas = torch.sub(d_canvas, dS.addcmul_(dS, s, value=-1))
        if do_write:
            F_X, F_Y = F[:, 0, :N_w, :A], F[:, 1, :N_w, :B]
            d_img = d_canvas.view(n, B, A)
            dV = torch.bmm(F_Y, d_img)  # (n, N_w, A)
            dF[:, 1, :N_w, :B] = torch.bmm(sv["V"], d_img.transpose(1, 2))
            d_pg = torch.bmm(dV, F_X.transpose(1, 2))  # dL/d(patch / gamma)
            dF[:, 0, :N_w, :A] = torch.bmm(sv["pg"].transpose(1, 2), dV)
            d_params[:, : N_w * N_w] = (d_pg / gamma[:, :1].unsqueeze(-1)).view(n, -1)
            # patch / gamma: dL/dgamma = -sum(patch / gamma * dL/d(patch / gamma)) / gamma
            d_gamma[:, 0, 0] = (sv["pg"] * d_pg).sum((1, 2)) / -gamma[:, 0]
        dist = c["pixels"] - mu.unsqueeze(-1)  # a - mu: (n, 2, R, L)
        # through the softmax, then e = -k (a - mu)^2 with mu = g + offset * delta
        de = torch._softmax_backward_data(dF, F, -1, F.dtype)
        t = de * dist
        per_row = torch.cat(
            [
                t.sum(-1).mul_(2 * k_rows.unsqueeze(1)),  # dL/dmu_X, dL/dmu_Y: de/dmu = 2k (a - mu)
                -(t * dist).sum((1, 3)).unsqueeze(1),  # dL/dk: de/dk = -(a - mu)^2
            ],
            dim=1,
        )  # (n, 3, R)
        per_row = torch.cat([per_row, (per_row[:, :2].sum(1, keepdim=True) * c["off"])], dim=1)  # dL/ddelta
        per_grid = per_row @ c["member"]  # sums over each grid's rows: (n, 4, S) = g_X, g_Y, k, delta
        grads = torch.cat([per_grid, d_gamma], dim=1).mul_(factor)  # (n, 5, S) in the raw parameters
        d_params[:, first : first + 5 * S] = grads.transpose(1, 2).reshape(n, 5 * S)
        return d_params, d_canvas, None, None, None, None, None, None, None


def write_then_read(
    params: torch.Tensor,
    canvas: torch.Tensor,
    x: torch.Tensor,
    A: int,
    B: int,
    N_w: int,
    N_r: int,
    do_write: bool = True,
    do_read: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DRAW step's attention, fused: c' = c + write(w, write params), then
    r = read(x, x - sigmoid(c'), read params); returns (c' (n, B*A), r (n, 2 N_r^2)).

    params: (n, N_w^2 + 10) = [patch w_t | write's 5 | read's 5] (raw linear outputs, mapped as in
    `attention_params`); canvas and x: (n, B*A). `do_write=False` (the first step) leaves the
    canvas as it is; `do_read=False` (the last step) returns an empty r. Equal to composing
    `filters_from_params`, `write` and `read`, with a hand-written backward.
    """
    return _Step.apply(params, canvas, x, A, B, N_w, N_r, do_write, do_read)


def write_then_read_reference(
    params: torch.Tensor,
    canvas: torch.Tensor,
    x: torch.Tensor,
    A: int,
    B: int,
    N_w: int,
    N_r: int,
    do_write: bool = True,
    do_read: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`write_then_read` composed from the plain functions (autograd): the specification it meets."""
    n = params.shape[0]
    if do_write:
        F_X, F_Y, gamma = filters_from_params(params[:, N_w * N_w : N_w * N_w + 5], A, B, N_w)
        canvas = canvas + write(params[:, : N_w * N_w], F_X, F_Y, gamma).reshape(n, -1)
    if not do_read:
        return canvas, canvas.new_empty(n, 0)
    F_X, F_Y, gamma = filters_from_params(params[:, N_w * N_w + 5 : N_w * N_w + 10], A, B, N_r)
    return canvas, read(x, x - torch.sigmoid(canvas), F_X, F_Y, gamma)
