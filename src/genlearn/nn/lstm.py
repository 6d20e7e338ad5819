"""Building blocks of a fast recurrent step, shared by DRAW and alignDRAW.

A recurrent model on a CPU spends its time in per-operation overhead and in many mid-sized matrix
products, T of them per weight and sequence. The pieces here remove what can be removed:

- `Affine` stores W as (in, out), so every product of a step (y = x W, dx = dy W^T, dW = x^T dy)
  reads its operands in a layout oneDNN takes as is; `StepLinear` lays the operands out once per
  sequence rather than once per step.
- Products go through oneDNN (`torch.ops.mkldnn._linear_pointwise`) where it works: on CPUs where
  MKL's sgemm takes a slow path (AMD) it is about twice as fast. Elsewhere, or on a GPU, torch's.
- With bfloat16 operands (float32 accumulation) the per-step weight gradients are not formed:
  each step keeps x_t and dy_t (`_Rows`), and `_WeightGrad` makes one product over all T x n rows
  after the last step's backward.
- `lstm_pointwise`: the LSTM cell after its products, gates in the order i, f, o, g:

      i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
      c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)

  as one autograd node with a written-out backward (tanh x = 2 sigmoid(2x) - 1).
- `flush_denormals`: sharp attention filters produce denormal floats, which x86 CPUs handle tens
  of times more slowly.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from genlearn.nn.onednn import linear


class Affine(nn.Module):
    """y = x W + b with W stored as (in, out), initialised like nn.Linear (U(-k, k), k = in^-1/2).

    Stored this way round, every product of a step (y = x W, dx = dy W^T, dW = x^T dy) reads
    its operands in a layout oneDNN takes as is, and the T per-step weight gradients add up in
    the parameter's own layout.
    """

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return StepLinear(self)(x)


class _Rows:
    """The inputs x_t (with a column of ones for the bias) and output gradients dy_t of one
    weight's uses in a sequence, in the compute dtype, one block of rows per use; their product
    X^T DY is [dL/dW; dL/db]."""

    def __init__(self, uses: int, n_in: int, n_out: int, dtype: torch.dtype, bias: bool):
        self.uses, self.n_in, self.n_out, self.dtype, self.bias = uses, n_in, n_out, dtype, bias
        self.x = self.dy = None
        self.used = 0
        self.filled: set[int] = set()

    def add_input(self, x: torch.Tensor) -> tuple[int, torch.Tensor]:
        """Keep x (n, in) for the weight gradient; returns its slot and x in the compute dtype."""
        n = x.shape[0]
        if self.x is None:
            self.n = n
            self.x = torch.empty(self.uses * n, self.n_in + self.bias, dtype=self.dtype, device=x.device)
            if self.bias:
                self.x[:, -1] = 1
        if self.used == self.uses or n != self.n:
            raise RuntimeError("StepLinear: more uses, or another batch size, than it was laid out for")
        slot = self.used
        block = self.x[slot * n : (slot + 1) * n, : self.n_in]
        block.copy_(x)
        self.used += 1
        return slot, block

    def add_grad(
        self, slot: int, dys: tuple[torch.Tensor | None, ...], widths: tuple[int, ...]
    ) -> torch.Tensor:
        """Keep dy (n, out) for the weight gradient, given as column blocks of `widths` (None: a
        block that got no gradient, zero); returns it in the compute dtype. Each block is
        converted straight into the buffer, so a full-width float32 dy is never formed."""
        if self.dy is None:
            like = next(d for d in dys if d is not None)
            self.dy = torch.empty(self.uses * self.n, self.n_out, dtype=self.dtype, device=like.device)
        block = self.dy[slot * self.n : (slot + 1) * self.n]
        start = 0
        for dy, width in zip(dys, widths, strict=True):
            part = block[:, start : start + width]
            part.zero_() if dy is None else part.copy_(dy)
            start += width
        self.filled.add(slot)
        return block

    def weight_grad(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(sum_t x_t^T dy_t (in, out), sum_t 1^T dy_t (out,)) as one product over all rows,
        accumulated in float32."""
        rows = self.used * self.n
        for slot in set(range(self.used)) - self.filled:  # a use whose output got no gradient
            self.dy[slot * self.n : (slot + 1) * self.n].zero_()
        grad = torch.mm(self.x[:rows].t(), self.dy[:rows]).float()
        self.x = self.dy = None  # free the buffers
        return (grad[:-1], grad[-1]) if self.bias else (grad, None)


class _WeightGrad(torch.autograd.Function):
    """Hands out a token that every step's `_Linear` takes as an input. The autograd engine runs a
    node's backward only after every node fed by it has run, so this backward comes after all
    the steps' backwards, when `rows` holds every x_t and dy_t: the weight (and bias) gradient is
    then one product over T x n rows instead of T products over n rows added up one by one."""

    @staticmethod
    def forward(ctx, weight, bias, rows):
        ctx.rows = rows
        return weight.new_zeros(())

    @staticmethod
    def backward(ctx, _):
        dw, db = ctx.rows.weight_grad()
        return dw, db, None


class _Linear(torch.autograd.Function):
    """y = x W + b for one time step, W (in, out). `weight_t` (W^T, contiguous) and `weight_c` (W)
    are the operands in the compute dtype, laid out once per sequence: float32, or bfloat16 (with
    float32 accumulation inside the products; a bias-free product is returned in bfloat16).

    With `widths`, y is returned as its column blocks (one output each, as `split` would give):
    their gradients then arrive one by one, and in bfloat16 go straight into `rows` instead of
    being gathered into a float32 dy by autograd and converted again.

    dL/dW, dL/db: in float32 each step's x^T dy and 1^T dy go to autograd, which sums them; in
    bfloat16 the step keeps x and dy in `rows`, and `_WeightGrad` makes one product of them all
    at the end (one float32 accumulation instead of T bfloat16 results converted and added)."""

    @staticmethod
    def forward(ctx, x, weight, token, bias, weight_t, weight_c, rows, widths):
        ctx.has_bias, ctx.rows, ctx.widths = bias is not None, rows, widths
        if widths is not None:
            ctx.set_materialize_grads(False)
        if rows is None:
            ctx.save_for_backward(x, weight_c)
            y = linear(x, weight_t, bias)
        else:
            ctx.slot, x_c = rows.add_input(x)
            ctx.save_for_backward(weight_c)
            y = linear(x_c, weight_t)
            # without a bias the product stays in the compute dtype: it is only ever added to a
            # float32 gate pre-activation, and that addition converts it for free
            y = y if bias is None else y.to(x.dtype).add_(bias)
        return y if widths is None else y.split(widths, dim=1)

    @staticmethod
    def backward(ctx, *dys):
        rows, widths = ctx.rows, ctx.widths
        if rows is None:
            x, weight_c = ctx.saved_tensors
            if widths is None:
                dy = dys[0]
            else:
                dy = torch.cat(
                    [d if d is not None else x.new_zeros(len(x), w) for d, w in zip(dys, widths)], 1
                )
            dx = linear(dy, weight_c) if ctx.needs_input_grad[0] else None  # dy W^T
            dw = linear(x.t(), dy.t()) if ctx.needs_input_grad[1] else None  # x^T dy
            db = dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
            return dx, dw, None, db, None, None, None, None
        (weight_c,) = ctx.saved_tensors
        dy_c = rows.add_grad(ctx.slot, dys, widths or (rows.n_out,))
        dx = linear(dy_c, weight_c) if ctx.needs_input_grad[0] else None  # autograd converts it
        return dx, None, dy_c.new_zeros((), dtype=torch.float32), None, None, None, None, None


class StepLinear:
    """An `Affine` map applied `uses` times in a sequence (at most), its operands laid out once."""

    def __init__(
        self,
        layer: Affine,
        uses: int = 1,
        cols: slice | None = None,
        dtype: torch.dtype | None = None,
        widths: tuple[int, ...] | None = None,
    ):
        self.widths = tuple(widths) if widths is not None else None  # return y as these column blocks
        self.weight, self.bias = layer.weight, layer.bias
        if cols is not None:
            self.weight = self.weight[:, cols]
            self.bias = None if self.bias is None else self.bias[cols]
        dtype = dtype or self.weight.dtype
        w = self.weight.detach()
        self.weight_t = w.t().contiguous().to(dtype)
        self.grad = torch.is_grad_enabled() and self.weight.requires_grad
        self.rows = self.token = None
        if self.grad:
            self.weight_c = w.to(dtype)
            if dtype != w.dtype:  # lower-precision products: one weight-gradient product at the end
                self.rows = _Rows(uses, w.shape[0], w.shape[1], dtype, self.bias is not None)
                self.token = _WeightGrad.apply(self.weight, self.bias, self.rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if not self.grad:
            bias = None if self.bias is None else self.bias.detach()
            if self.weight_t.dtype == x.dtype:
                y = linear(x, self.weight_t, bias)
            else:
                y = linear(x.to(self.weight_t.dtype), self.weight_t).to(x.dtype)
                y = y if bias is None else y.add_(bias)
            return y if self.widths is None else y.split(self.widths, dim=1)
        return _Linear.apply(
            x, self.weight, self.token, self.bias, self.weight_t, self.weight_c, self.rows, self.widths
        )


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1 (several times faster than torch.tanh on some CPU builds)."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


class _LSTMPointwise(torch.autograd.Function):
    """(gates a + b (n, 4H) in order i, f, o, g; c_prev (n, H)) -> (h, c), written-out backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, c_prev: torch.Tensor):
        H = c_prev.shape[-1]
        pre = torch.add(a, b)
        pre[:, 3 * H :].mul_(2)
        act = torch.sigmoid_(pre)
        act[:, 3 * H :].mul_(2).sub_(1)  # g = tanh(a) = 2 sigma(2a) - 1
        i, f, o, g = act.split(H, dim=1)
        c = torch.addcmul(f * c_prev, i, g)
        tanh_c = _tanh(c)
        h = o * tanh_c
        ctx.save_for_backward(act, c_prev, tanh_c)
        return h, c

    @staticmethod
    def backward(ctx, dh: torch.Tensor | None, dc: torch.Tensor | None):
        act, c_prev, tanh_c = ctx.saved_tensors
        H = c_prev.shape[-1]
        i, f, o, g = act.split(H, dim=1)
        if dh is None:
            dh = torch.zeros_like(tanh_c)
        # dL/dc = dc + dh o (1 - tanh(c)^2)
        dc_total = dh * o
        dc_total = dc_total - dc_total * tanh_c * tanh_c
        if dc is not None:
            dc_total = dc_total + dc
        d_act = torch.empty_like(act)
        di, df, do, dg = d_act.split(H, dim=1)
        torch.mul(dc_total, g, out=di)
        torch.mul(dc_total, c_prev, out=df)
        torch.mul(dh, tanh_c, out=do)
        torch.mul(dc_total, i, out=dg)
        # sigmoid' = s (1 - s) for i, f, o; tanh' = 1 - g^2 for g
        deriv = act - act * act
        deriv[:, 3 * H :] = 1 - g * g
        d_act.mul_(deriv)
        return d_act, (d_act if ctx.needs_input_grad[1] else None), dc_total * f


def lstm_pointwise(
    gates: torch.Tensor, c_prev: torch.Tensor, more_gates: torch.Tensor | float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM cell after its matrix products, gate pre-activations `gates + more_gates` in the
    order i, f, o, g: i, f, o = sigmoid, g = tanh; c = f c_prev + i g; h = o tanh(c)."""
    if not isinstance(more_gates, torch.Tensor):
        more_gates = torch.full((), more_gates, dtype=gates.dtype, device=gates.device)
    return _LSTMPointwise.apply(gates, more_gates, c_prev)


_NATIVE_BF16: bool | None = None


def native_bfloat16_cpu() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (x86 avx512_bf16 or AMX), on which
    oneDNN runs bfloat16 products about twice as fast as float32 ones (Linux /proc/cpuinfo)."""
    global _NATIVE_BF16
    if _NATIVE_BF16 is None:
        try:
            with open("/proc/cpuinfo") as fh:
                flags = set(next((ln for ln in fh if ln.startswith("flags")), "").split())
        except OSError:
            flags = set()
        _NATIVE_BF16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    return _NATIVE_BF16


def resolve_matmul_dtype(choice: str, device: torch.device) -> str:
    """The operand type a `matmul_dtype` setting ("auto", "float32", "bfloat16") means on `device`:
    auto is bfloat16 on CPUs with native bfloat16 dot products, float32 elsewhere."""
    if choice != "auto":
        return choice
    return "bfloat16" if device.type == "cpu" and native_bfloat16_cpu() else "float32"


def step_dtype(choice: str, x: torch.Tensor) -> torch.dtype | None:
    """The operand type of a training step's products on inputs x: bfloat16 where a float32 model
    is being trained (gradients recorded) and `choice` resolves to bfloat16 on x's device, else
    None (the operands' own type: evaluation and sampling stay in float32)."""
    training = torch.is_grad_enabled() and x.dtype == torch.float32
    return torch.bfloat16 if training and resolve_matmul_dtype(choice, x.device) == "bfloat16" else None


_FLUSH_DEPTH = 0


@contextmanager
def flush_denormals():
    """Treat float32 denormals as zero inside (the CPU's flush-to-zero mode, this thread only).

    Sharp attention filters put values below 1e-38 into the filterbanks and their gradients;
    x86 CPUs compute on such denormals tens of times more slowly. Nothing of DRAW's numerics
    depends on them. The mode is restored on leaving (nested uses are counted).
    """
    global _FLUSH_DEPTH
    if _FLUSH_DEPTH == 0:
        torch.set_flush_denormal(True)
    _FLUSH_DEPTH += 1
    try:
        yield
    finally:
        _FLUSH_DEPTH -= 1
        if _FLUSH_DEPTH == 0:
            torch.set_flush_denormal(False)
