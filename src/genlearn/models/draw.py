r"""DRAW: a recurrent neural network for image generation (Gregor, Danihelka, Graves, Rezende &
Wierstra, ICML 2015).

An encoder RNN reads the image, a decoder RNN writes it onto a canvas over T steps, and a
sequence of latent codes z_1..z_T passes between them. For t = 1..T (equations 3-8):

    x^_t      = x - sigmoid(c_{t-1})                          error image
    r_t       = read(x, x^_t, h^dec_{t-1})
    h^enc_t   = LSTM^enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])
    z_t       ~ Q(Z_t | h^enc_t) = N(mu_t, diag(sigma_t^2)),  mu_t, log sigma_t^2 = W(h^enc_t)
    h^dec_t   = LSTM^dec(h^dec_{t-1}, z_t)
    c_t       = c_{t-1} + write(h^dec_t)

c_0, h^enc_0, h^dec_0 (and here the LSTM cell states) are learned biases. z_t is drawn by
reparameterization, z_t = mu_t + sigma_t eps_t. The loss is the negative variational bound,
in nats per image (equations 9-12), with D(x | c_T) Bernoulli with means sigmoid(c_T):

    L   = L^x + L^z
    L^x = -log D(x | c_T) = -sum_a [x_a log sigmoid(c_T,a) + (1 - x_a) log(1 - sigmoid(c_T,a))]
    L^z = sum_t KL(Q(Z_t | h^enc_t) || N(0, I))
        = 1/2 sum_t (|mu_t|^2 + sum sigma_t^2 - sum log sigma_t^2) - T Z / 2

Generation (section 2.3) runs the decoder alone from z_t ~ N(0, I):
h^dec_t = LSTM^dec(h^dec_{t-1}, z_t), c_t = c_{t-1} + write(h^dec_t), x ~ D(X | c_T); as for
the VAE the picture shown is the mean sigmoid(c_T).

Without attention (section 3.1): read(x, x^_t, h^dec_{t-1}) = [x, x^_t] and
write(h^dec_t) = W(h^dec_t). With attention (section 3.2, `genlearn.nn.attention`): the read
and the write each take (g~_X, g~_Y, log sigma^2, log delta~, log gamma) from a linear map of
h^dec (the read's from h^dec_{t-1}, the write's from h^dec_t), build the N x N Gaussian filterbank
F_X, F_Y, and

    read(x, x^_t, h^dec_{t-1}) = gamma [F_Y x F_X^T, F_Y x^_t F_X^T]      (2 x read_n^2 values)
    write(h^dec_t)             = 1/gamma^ F^_Y^T w_t F^_X,  w_t = W(h^dec_t)  (write_n^2 patch)

The defaults are the paper's MNIST model (table 3): T = 64 glimpses, LSTMs of 256 units, z of
100, a 2 x 2 read and a 5 x 5 write; Adam, lr 1e-3, batches of 100, the gradient's norm clipped
at 10. Attention grids start centred, spanning the image, with overlapping filters (see
`DRAW._init_attention`: the paper leaves this to the random initialisation).

How a training step is computed. The T steps are sequential and small (batch x 256), so a CPU
spends its time in per-operation overhead and in many mid-sized matrix products; the code is
shaped by that (`benchmarks/bench_draw.py` measures it against a plain implementation):

- Parameters are `Affine` maps y = x W + b with W stored (in, out). Everything h^dec_t feeds is
  one of them, `dec_out`: the decoder's own recurrence, the encoder's h^dec input for step t+1,
  the write (patch w_t or the full image), and the write's and the next read's five attention
  parameters. The encoder's other inputs [r_t, h^enc_{t-1}] are `enc_in`, z_t is `dec_in`, and
  Q's mean and log-variance are `q`: four products a step, each gate pre-activation the sum of two.
- The products and the LSTM cells are the fast-step pieces of `genlearn.nn.lstm` (oneDNN
  products with operands laid out once per sequence, an LSTM cell with a written-out backward,
  denormals flushed). `matmul_dtype = "bfloat16"` runs the training step's products on bfloat16
  operands with float32 accumulation (float32 weights, optimiser, LSTM states, canvas and loss):
  about twice the product throughput where the CPU has bfloat16 dot products. Evaluation,
  sampling and reconstruction always run in float32.
- The attention of a step (write_t and read_{t+1} together, `genlearn.nn.attention.write_then_read`,
  filterbanks of the whole batch at once) is an autograd function with a written-out backward.
- Without attention, W [x, x^_t] = W_x x + W_x^ x^_t, and W_x x is computed once per image.
- eps_1..eps_T are drawn in one call; the KL terms are summed after the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genlearn.config import IMAGE_DATASETS, Common, bounded, choice
from genlearn.models.base import GenerativeModel
from genlearn.nn import attention
from genlearn.nn.distributions import kl_std_normal, reparameterize
from genlearn.nn.draw_core import bound_summary, descend_bound, init_lstm_gates
from genlearn.nn.lstm import (
    Affine,
    StepLinear,
    flush_denormals,
    lstm_pointwise,
    resolve_matmul_dtype,
    step_dtype,
)
from genlearn.nn.optim import make_optimizer


@dataclass
class Config(Common):
    T: int = bounded(64, min=1, max=1024, help="number of glimpses (time steps)")
    enc_size: int = bounded(256, min=1, help="encoder LSTM units")
    dec_size: int = bounded(256, min=1, help="decoder LSTM units")
    z_size: int = bounded(100, min=1, help="dimension of each z_t")
    attention: bool = field(default=True, metadata={"help": "Gaussian read/write attention"})
    read_n: int = bounded(2, min=1, help="read glimpse is read_n x read_n (attention)")
    write_n: int = bounded(5, min=1, help="write patch is write_n x write_n (attention)")
    dataset: str = choice(
        "mnist", IMAGE_DATASETS, "training data: mnist, or mnist-2digit (60 x 60, two digits)"
    )
    height: int = bounded(28, min=1, max=1024, help="image rows (B in the paper)")
    width: int = bounded(28, min=1, max=1024, help="image columns (A in the paper)")
    grad_clip: float = bounded(10.0, min=0.0, help="clip the gradient's global norm; 0 = off")
    matmul_dtype: str = choice(
        "auto",
        ("auto", "float32", "bfloat16"),
        "operands of the training step's matrix products; auto = bfloat16 on CPUs with native "
        "bfloat16 dot products (avx512_bf16, amx_bf16), else float32",
    )
    optimizer: str = choice("adam", ("adam", "adagrad", "sgd"), "optimiser")
    weight_decay: float = bounded(0.0, min=0.0, help="L2 penalty")


class DRAW(GenerativeModel):
    """Deep Recurrent Attentive Writer: encoder and decoder LSTMs, a canvas, read and write."""

    Config = Config
    capabilities = frozenset({"reconstruct", "nll_bound", "sample_canvases"})

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        c = config
        self.T = c.T
        self.A, self.B = c.width, c.height  # the paper's A x B image: A columns, B rows
        self.image_shape = (1, c.height, c.width)
        pixels = c.height * c.width
        E, D, Z = c.enc_size, c.dec_size, c.z_size
        self.attention = c.attention
        if c.attention:
            read_size = 2 * c.read_n**2
            # patch w_t, the write's 5 parameters, the (next) read's 5 parameters
            attend_size = c.write_n**2 + 2 * attention.N_PARAMS
        else:
            read_size = pixels  # [x, x^]: the x half is `enc_x`, applied once per image
            attend_size = pixels  # write(h^dec) = W h^dec, the whole image
            self.enc_x = Affine(pixels, 4 * E, bias=False)
        # encoder LSTM: gates = W [r_t, h^enc_{t-1}] + (W' h^dec_{t-1} + b, inside dec_out)
        self.enc_in = Affine(read_size + E, 4 * E, bias=False)
        # Q(Z_t | h^enc_t): mean and log-variance
        self.q = Affine(E, 2 * Z)
        # decoder LSTM: gates = W z_t + (W' h^dec_{t-1} + b, inside dec_out)
        self.dec_in = Affine(Z, 4 * D, bias=False)
        # everything h^dec feeds, as [decoder gates | write (and read parameters) | encoder gates]:
        # generation needs the first two blocks only: the first columns of the weight.
        self.sizes = (4 * D, attend_size, 4 * E)
        self.dec_out = Affine(D, sum(self.sizes))
        # learned initial states c_0, h^enc_0, h^dec_0 and the LSTMs' cell states
        self.c0 = nn.Parameter(torch.zeros(pixels))
        self.h_enc0 = nn.Parameter(torch.zeros(E))
        self.cell_enc0 = nn.Parameter(torch.zeros(E))
        self.h_dec0 = nn.Parameter(torch.zeros(D))
        self.cell_dec0 = nn.Parameter(torch.zeros(D))
        self._init_gates(E, D)
        if c.attention:
            self._init_attention()
        self.optimizers = {"model": make_optimizer(c.optimizer, self.parameters(), c.lr, c.weight_decay)}

    def _init_attention(self) -> None:
        """Start every grid centred and spanning the image (g~ = 0, delta~ = 1, as the paper's
        parametrisation intends) with neighbouring filters overlapping: sigma = delta / 2.

        The paper leaves the initial sigma to the network's random initialisation (about 1
        pixel). A 2 x 2 read would then see only the four corner pixels, blank on MNIST: the
        encoder starts blind and the latents collapse to the prior. The write's intensity is set
        so that its blurred patch still moves the canvas at unit gain (1/gamma^ = 2 pi sigma^2),
        and the patch's bias starts at 0 so that the T writes do not drift the canvas. (The
        comparison of these starts: docs/notes/2026-12-06-draw-attention-start.md.)
        """
        c = self.config
        end = self.sizes[0] + self.sizes[1]
        with torch.no_grad():
            self.dec_out.bias[self.sizes[0] : end] = attention.initial_bias(
                c.write_n, c.read_n, self.A, self.B
            )

    def _init_gates(self, E: int, D: int) -> None:
        """PyTorch's LSTM initialisation, U(-1/sqrt(H), 1/sqrt(H)), for every gate weight."""
        enc = [self.enc_in.weight, self.dec_out.weight[:, -4 * E :]]
        if not self.attention:
            enc.append(self.enc_x.weight)
        init_lstm_gates(enc, E, [self.dec_in.weight, self.dec_out.weight[:, : 4 * D]], D)

    @property
    def data_kind(self) -> str:
        return "binary"

    def matmul_dtype(self, device: torch.device | None = None) -> str:
        """The training products' operand type `matmul_dtype` resolves to on `device`."""
        return resolve_matmul_dtype(self.config.matmul_dtype, device or self.c0.device)

    def _initial(self, n: int) -> tuple[torch.Tensor, ...]:
        states = (self.c0, self.h_enc0, self.cell_enc0, self.h_dec0, self.cell_dec0)
        return tuple(p.expand(n, -1) for p in states)

    def _attend(self, out: torch.Tensor, canvas: torch.Tensor, x: torch.Tensor, first: bool, last: bool):
        """c_t = c_{t-1} + write(h^dec_t) and r_{t+1} = read(x, x - sigmoid(c_t), h^dec_t) (attention)."""
        c = self.config
        return attention.write_then_read(
            out, canvas, x, self.A, self.B, c.write_n, c.read_n, do_write=not first, do_read=not last
        )

    # ----------------------------------------------------------------------------------------
    # inference: the encoder reads x, the decoder writes the canvas
    def _infer(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        """Run the encoder and decoder over T steps on images x (n, B * A).

        Returns (c_T, mu (T, n, Z), logvar (T, n, Z)).
        """
        n = x.shape[0]
        if eps is None:
            eps = torch.randn(self.T, n, self.config.z_size, dtype=x.dtype, device=x.device)
        dtype = step_dtype(self.config.matmul_dtype, x)  # bfloat16 products only in training
        layers = (self.enc_in, self.q, self.dec_in, self.dec_out)
        uses = (self.T, self.T, self.T, self.T + 1)  # dec_out also maps h^dec_0
        enc_in, q, dec_in = (StepLinear(m, u, dtype=dtype) for m, u in zip(layers[:3], uses[:3]))
        # [decoder gates | write and read | encoder gates] as three outputs (see `_Linear`)
        dec_out = StepLinear(self.dec_out, uses[3], dtype=dtype, widths=self.sizes)
        canvas, h_enc, cell_enc, h_dec, cell_dec = self._initial(n)
        dec_gates, attend, enc_gates = dec_out(h_dec)
        if self.attention:
            canvas, r = self._attend(attend, canvas, x, first=True, last=False)
        else:
            enc_static = StepLinear(self.enc_x)(x)  # W_x x: the constant half of W [x, x^], once
        qs = []
        for t in range(self.T):
            if self.attention:
                gates, more = enc_in(torch.cat([r, h_enc], dim=1)), enc_gates
            else:  # read = [x, x^_t]
                x_hat = x - torch.sigmoid(canvas)
                gates, more = enc_in(torch.cat([x_hat, h_enc], dim=1)), enc_static + enc_gates
            h_enc, cell_enc = lstm_pointwise(gates, cell_enc, more)
            q_t = q(h_enc)  # [mu_t, log sigma_t^2]
            z = reparameterize(*q_t.chunk(2, dim=1), eps=eps[t])
            h_dec, cell_dec = lstm_pointwise(dec_in(z), cell_dec, dec_gates)
            dec_gates, attend, enc_gates = dec_out(h_dec)
            if self.attention:
                canvas, r = self._attend(attend, canvas, x, first=False, last=t == self.T - 1)
            else:
                canvas = canvas + attend
            qs.append(q_t)
        mu, logvar = torch.stack(qs).chunk(2, dim=2)
        return canvas, mu, logvar

    def loss_terms(
        self, x: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L^x, L^z) per image, in nats, for binary images x of any shape (n, ...).

        `eps` (T, n, z_size): the standard normal draws behind z_1..z_T (drawn when None).
        """
        x = self._flat(x)
        with flush_denormals():
            canvas, mu, logvar = self._infer(x, eps=eps)
            recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").sum(1)
            kl = kl_std_normal(mu, logvar).sum(0)
        return recon, kl

    def nll_bound(self, x: torch.Tensor) -> torch.Tensor:
        """L = L^x + L^z per image: an upper bound on -log p(x) (one sample of z_1..z_T)."""
        recon, kl = self.loss_terms(x)
        return recon + kl

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.A * self.B:
            raise ValueError(
                f"DRAW was built for {self.B} x {self.A} images (height x width) but got "
                f"{x.shape[1]} pixels per image; set height and width to match the data"
            )
        return x

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.config
        return descend_bound(
            self.optimizers["model"], self.parameters(), c.grad_clip, lambda: self.loss_terms(batch["x"])
        )

    # ----------------------------------------------------------------------------------------
    # generation: the decoder alone, from the prior
    @torch.no_grad()
    def _generate(self, n: int, generator: torch.Generator | None, keep: bool):
        """z_t ~ N(0, I) -> (c_T, [c_1..c_T], [write windows]) (the lists empty unless `keep`)."""
        c = self.config
        device = self.c0.device
        eps = torch.randn(self.T, n, c.z_size, generator=generator, device=device)
        canvas, _, _, h_dec, cell_dec = self._initial(n)
        k = self.sizes[0] + self.sizes[1]  # decoder gates and write: the rows generation needs
        dec_in, dec_out = (
            StepLinear(self.dec_in, self.T),
            StepLinear(self.dec_out, self.T + 1, cols=slice(0, k)),
        )
        dec_gates, _ = dec_out(h_dec).split(self.sizes[:2], dim=1)
        canvases, windows = [], []
        for t in range(self.T):
            h_dec, cell_dec = lstm_pointwise(dec_in(eps[t]), cell_dec, dec_gates)
            dec_gates, attend = dec_out(h_dec).split(self.sizes[:2], dim=1)
            if self.attention:
                canvas, _ = self._attend(attend, canvas, None, first=False, last=True)
            else:
                canvas = canvas + attend
            if keep:
                canvases.append(canvas)
                if self.attention:
                    N = c.write_n
                    windows.append(attention.window(attend[:, N * N : N * N + 5], self.A, self.B, N))
        return canvas, canvases, windows

    def _images(self, canvas: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(canvas).reshape(-1, *self.image_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **condition) -> torch.Tensor:
        """sigmoid(c_T) of the decoder run from the prior: (n, 1, H, W) in [0, 1]."""
        self.conditions_for(n, generator, **condition)  # it takes none: refuse any
        with flush_denormals():
            return self._images(self._generate(n, generator, keep=False)[0])

    @torch.no_grad()
    def sample_canvases(
        self, n: int, generator: torch.Generator | None = None, **condition
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The canvas at every step, sigmoid(c_t) for t = 1..T: (T, n, 1, H, W); and the write windows.

        Windows (attention only, else None): (T, n, 4) rectangles (x0, y0, x1, y1) in 0-based pixel
        coordinates, the write grid's centre -+ write_n / 2 * delta. With the same generator state
        the last frame equals `sample(n, generator)`.
        """
        self.conditions_for(n, generator, **condition)  # it takes none: refuse any
        with flush_denormals():
            _, canvases, windows = self._generate(n, generator, keep=True)
        frames = torch.stack([self._images(c) for c in canvases])
        return frames, (torch.stack(windows) if windows else None)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(c_T) with z_1..z_T drawn from Q (a posterior sample): (n, 1, H, W)."""
        with flush_denormals():
            return self._images(self._infer(self._flat(x))[0])

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor], chunk: int = 1000) -> dict[str, float]:
        """Mean L^x + L^z over data["x"] (nats per image, one posterior sample of z_1..z_T),
        its standard error over images, and the two terms."""
        return bound_summary(self.loss_terms(part) for part in self._flat(data["x"]).split(chunk))
