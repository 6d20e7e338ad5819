r"""alignDRAW: generating images from captions with attention (Mansimov, Parisotto, Ba &
Salakhutdinov, ICLR 2016).

DRAW (`genlearn.models.draw`) whose decoder, at every step, also attends to the words of a caption
y = (y_1..y_m). The language model is a bidirectional LSTM over the caption's word embeddings; the
representation of word j is both directions' states side by side (section 3.1):

    h^lang_j = [h->_j, h<-_j]                           (forward and backward over the words)

For t = 1..T (section 3.2), from the previous decoder state h^dec_{t-1}:

    e_j      = v^T tanh(U h^lang_j + W h^dec_{t-1} + b)      the alignment (section 3.2.1)
    alpha_j  = exp(e_j) / sum_k exp(e_k)                     over the caption's words only
    s_t      = sum_j alpha_j h^lang_j                        the sentence as the step sees it
    P(z_t | z_<t) = N(mu_t, sigma_t^2),  mu_t = tanh(W_mu h^dec_{t-1}),
                    log sigma_t = tanh(W_sigma h^dec_{t-1})  (a learned prior; N(0, I) at t = 1)

and then DRAW's step, with the decoder fed [z_t, s_t]:

    x^_t     = x - sigmoid(c_{t-1})
    r_t      = read(x, x^_t, h^dec_{t-1})                    DRAW's Gaussian attention
    h^enc_t  = LSTM^enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])
    z_t      ~ Q(Z_t | h^enc_t) = N(mu^q_t, diag(sigma^q_t^2))
    h^dec_t  = LSTM^dec(h^dec_{t-1}, [z_t, s_t])
    c_t      = c_{t-1} + write(h^dec_t)                      DRAW's attentive write

The loss is the negative variational bound in nats per image (equations 11-12):

    L = -log D(x | c_T) + sum_t KL(Q(Z_t | h^enc_t) || P(Z_t | h^dec_{t-1}))

with D(x | c_T) Bernoulli with means sigmoid(c_T), the KL in closed form between diagonal
Gaussians. Generation runs the decoder alone with z_t drawn from the prior; the picture shown is
the mean sigmoid(c_T).

The defaults are the paper's MNIST-with-captions model: T = 32, read and write 8 x 8 on the
60 x 60 canvas, encoder and decoder LSTMs of 300, z of 150, the alignment's hidden layer 512,
the language LSTM 128 units each way; RMSProp (lr 1e-3, decay 0.9), batches of 100, the gradient
clipped (at a global norm of 10 here). The filterbank is DRAW's paper's (`genlearn.nn.attention`).

Captions are read with the model's own vocabulary (`Config.vocabulary`, saved with the run):
lower-cased, "." split off, at most `max_words` words; a caption may be shorter than the training
captions (e.g. without its final "."): padding is masked out of the language LSTM (packed
sequences, so the backward direction starts at each caption's own last word) and out of the
alignment.

How a training step is computed: as DRAW's (`genlearn.models.draw`, its fast-step notes), with
everything h^dec_{t-1} feeds in one product per step (`dec_out`: the decoder's recurrence, the
write and next read, the alignment's W h^dec, the prior, the encoder's input), U h^lang + b made
once per caption batch, and the attention's write and read fused with a written-out backward.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from genlearn.config import CAPTION_DATASETS, Common, bounded, choice
from genlearn.errors import UserError
from genlearn.models.base import GenerativeModel
from genlearn.nn import attention
from genlearn.nn.distributions import reparameterize
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

# The words of MNIST with captions (`genlearn.data.captions.VOCAB`, in its order).
MNIST_CAPTION_WORDS = "the digit is on at left right top bottom of image . 0 1 2 3 4 5 6 7 8 9"
BANK = 1000  # validation captions kept for `default_conditions`
PAD = -1  # token id of padding in a caption bank


@dataclass
class Config(Common):
    T: int = bounded(32, min=1, max=1024, help="number of steps (glimpses)")
    enc_size: int = bounded(300, min=1, help="encoder LSTM units")
    dec_size: int = bounded(300, min=1, help="decoder LSTM units")
    z_size: int = bounded(150, min=1, help="dimension of each z_t")
    read_n: int = bounded(8, min=1, help="read glimpse is read_n x read_n")
    write_n: int = bounded(8, min=1, help="write patch is write_n x write_n")
    lang_size: int = bounded(128, min=1, help="language LSTM units in each direction (and word embedding)")
    align_size: int = bounded(512, min=1, help="hidden units of the alignment e_j = v^T tanh(...)")
    vocabulary: str = choice(MNIST_CAPTION_WORDS, (MNIST_CAPTION_WORDS,), "the caption words, in token order")
    max_words: int = bounded(12, min=1, help="longest caption the model takes")
    dataset: str = choice("mnist-captions", CAPTION_DATASETS, "training data: MNIST with captions (60 x 60)")
    height: int = bounded(60, min=1, max=1024, help="image rows")
    width: int = bounded(60, min=1, max=1024, help="image columns")
    grad_clip: float = bounded(10.0, min=0.0, help="clip the gradient's global norm; 0 = off")
    matmul_dtype: str = choice(
        "auto",
        ("auto", "float32", "bfloat16"),
        "operands of the training step's matrix products; auto = bfloat16 on CPUs with native "
        "bfloat16 dot products (avx512_bf16, amx_bf16), else float32",
    )
    optimizer: str = choice("rmsprop", ("rmsprop", "adam"), "optimiser (the paper's code: RMSProp)")
    weight_decay: float = bounded(0.0, min=0.0, help="L2 penalty")


def kl_gaussians(q: torch.Tensor, mu_p: torch.Tensor, log_sigma_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, diag(exp(logvar_q))) || N(mu_p, diag(exp(2 log_sigma_p)))) summed over the last
    axis, for q = [mu_q, logvar_q]: log sigma_p - logvar_q / 2 + (var_q + (mu_q - mu_p)^2) /
    (2 sigma_p^2) - 1/2."""
    mu_q, logvar_q = q.chunk(2, dim=-1)
    var_ratio = torch.exp(logvar_q - 2 * log_sigma_p)
    mean_term = (mu_q - mu_p).square() * torch.exp(-2 * log_sigma_p)
    return 0.5 * (var_ratio + mean_term - 1 - logvar_q + 2 * log_sigma_p).sum(-1)


class AlignDRAW(GenerativeModel):
    """DRAW conditioned on a caption through a bidirectional language LSTM and a soft alignment."""

    Config = Config
    capabilities = frozenset({"nll_bound", "sample_canvases", "sample_alignments", "temperature"})
    conditions = ("captions",)

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        self.T = c.T
        self.A, self.B = c.width, c.height
        self.image_shape = (1, c.height, c.width)
        self.words = tuple(c.vocabulary.split())
        E, D, Z, H, K = c.enc_size, c.dec_size, c.z_size, c.lang_size, c.align_size
        # language: word embeddings and a bidirectional LSTM, h^lang_j = [h->_j, h<-_j] (2H)
        self.embed = nn.Embedding(len(self.words), H)
        self.language = nn.LSTM(H, H, batch_first=True, bidirectional=True)
        # alignment: U h^lang_j + b (once per caption), v; W h^dec_{t-1} is a block of dec_out
        self.align_U = Affine(2 * H, K)
        self.align_v = nn.Parameter(torch.empty(K).uniform_(-1 / math.sqrt(K), 1 / math.sqrt(K)))
        # encoder LSTM: gates = W [r_t, h^enc_{t-1}] + (W' h^dec_{t-1} + b, inside dec_out)
        self.enc_in = Affine(2 * c.read_n**2 + E, 4 * E, bias=False)
        self.q = Affine(E, 2 * Z)  # Q(Z_t | h^enc_t): mean and log-variance
        # decoder LSTM: gates = W [z_t, s_t] + (W' h^dec_{t-1} + b, inside dec_out)
        self.dec_in = Affine(Z + 2 * H, 4 * D, bias=False)
        # everything h^dec feeds: [decoder gates | write patch, write's and next read's attention
        # parameters | alignment W h^dec | prior (mu, log sigma) | encoder gates]; generation
        # needs the first four blocks only: the first columns of the weight
        self.sizes = (4 * D, c.write_n**2 + 2 * attention.N_PARAMS, K, 2 * Z, 4 * E)
        self.dec_out = Affine(D, sum(self.sizes))
        # learned initial canvas and states
        self.c0 = nn.Parameter(torch.zeros(c.height * c.width))
        self.h_enc0 = nn.Parameter(torch.zeros(E))
        self.cell_enc0 = nn.Parameter(torch.zeros(E))
        self.h_dec0 = nn.Parameter(torch.zeros(D))
        self.cell_dec0 = nn.Parameter(torch.zeros(D))
        # validation captions for `default_conditions`, filled by `prepare` (saved with the weights)
        self.register_buffer("caption_bank", torch.full((BANK, c.max_words), PAD, dtype=torch.long))
        self._init_weights(E, D)
        self.optimizers = {"model": make_optimizer(c.optimizer, self.parameters(), c.lr, c.weight_decay)}

    def _init_weights(self, E: int, D: int) -> None:
        """LSTM gate weights U(-1/sqrt(H), 1/sqrt(H)) as PyTorch's; the attention grids start
        centred and spanning the canvas (`attention.initial_bias`, as DRAW's)."""
        c = self.config
        init_lstm_gates(
            [self.enc_in.weight, self.dec_out.weight[:, -4 * E :]],
            E,
            [self.dec_in.weight, self.dec_out.weight[:, : 4 * D]],
            D,
        )
        with torch.no_grad():
            start = self.sizes[0]
            self.dec_out.bias[start : start + self.sizes[1]] = attention.initial_bias(
                c.write_n, c.read_n, self.A, self.B
            )

    @property
    def data_kind(self) -> str:
        return "binary"

    def matmul_dtype(self, device: torch.device | None = None) -> str:
        """The training products' operand type `matmul_dtype` resolves to on `device`."""
        return resolve_matmul_dtype(self.config.matmul_dtype, device or self.c0.device)

    # ----------------------------------------------------------------------------------------
    # captions: words -> token ids with a mask, and h^lang
    def tokenize(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (n, L) and mask (n, L) of captions, L the longest one's length. Unknown words,
        empty and over-long captions are refused with one line."""
        rows = []
        for text in captions:
            words = re.findall(r"[^\s.]+|\.", str(text).lower())
            unknown = [w for w in words if w not in self.words]
            if unknown:
                raise UserError(
                    f"unknown word {unknown[0]!r} in caption {text!r}; the words are: {' '.join(self.words)}"
                )
            if not words:
                raise UserError(f"empty caption {text!r}; a caption has 1 to {self.config.max_words} words")
            if len(words) > self.config.max_words:
                raise UserError(
                    f"a caption has at most {self.config.max_words} words, this one {len(words)}: {text!r}"
                )
            rows.append([self.words.index(w) for w in words])
        L = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), L, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        return tokens.to(self.c0.device), mask.to(self.c0.device)

    def detokenize(self, tokens: torch.Tensor) -> list[str]:
        """The captions of token-id rows (PAD and negative ids skipped)."""
        return [" ".join(self.words[t] for t in row if t >= 0) for row in tokens.tolist()]

    def _caption_batch(self, n: int, captions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, mask) for n samples from `captions`: a string (for all n) or n strings."""
        if isinstance(captions, str):
            captions = [captions] * n
        captions = list(captions)
        if len(captions) != n:
            raise UserError(f"{len(captions)} captions given for {n} samples; give one per sample")
        return self.tokenize(captions)

    def read_caption(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h^lang (n, L, 2H): both directions' states per word, zero on padding. The sequences are
        packed, so the backward LSTM starts at each caption's own last word."""
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.language(packed)[0], batch_first=True, total_length=tokens.shape[1])
        return h

    def align(
        self, u_lang: torch.Tensor, w_dec: torch.Tensor, h_lang: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """s_t = sum_j alpha_j h^lang_j with alpha = softmax_j(v^T tanh(U h^lang_j + b + W h^dec_{t-1}))
        over the caption's words (padding gets no weight): (s_t (n, 2H), alpha (n, L))."""
        e = self.energies(u_lang, w_dec)
        alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=1)
        return torch.bmm(alpha.unsqueeze(1), h_lang).squeeze(1), alpha

    def energies(self, u_lang: torch.Tensor, w_dec: torch.Tensor, rows: int = 100) -> torch.Tensor:
        """e_j = v^T tanh(U h^lang_j + b + W h^dec_{t-1}) for every word j: (n, L)."""
        if torch.is_grad_enabled() or len(u_lang) <= rows:
            return torch.tanh(u_lang + w_dec.unsqueeze(1)) @ self.align_v
        # Evaluation batches (1,000 captions): the (n, L, 512) sum is 24 MB, past the CPU's
        # cache, and would be reallocated and re-read every step. Blocks of `rows` captions
        # through one reused buffer stay in cache and give the same values.
        n = len(u_lang)
        e = u_lang.new_empty(u_lang.shape[:2])
        buffer = u_lang.new_empty(rows, *u_lang.shape[1:])
        for i in range(0, n, rows):
            part, block = slice(i, i + rows), buffer[: min(rows, n - i)]
            torch.add(u_lang[part], w_dec[part].unsqueeze(1), out=block).tanh_()
            torch.matmul(block, self.align_v, out=e[part])
        return e

    def _language(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h^lang and U h^lang + b, made once per caption batch."""
        h_lang = self.read_caption(tokens, mask)
        n, L, _ = h_lang.shape
        return h_lang, self.align_U(h_lang.reshape(n * L, -1)).view(n, L, -1)

    @staticmethod
    def prior(raw: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_t, log sigma_t) = (tanh(W_mu h^dec_{t-1}), tanh(W_sigma h^dec_{t-1})) from the
        prior block of dec_out; N(0, I) at t = 1 (raw None)."""
        if raw is None:
            zeros = torch.zeros_like(like)
            return zeros, zeros
        return torch.tanh(raw).chunk(2, dim=1)

    def _initial(self, n: int) -> tuple[torch.Tensor, ...]:
        states = (self.c0, self.h_enc0, self.cell_enc0, self.h_dec0, self.cell_dec0)
        return tuple(p.expand(n, -1) for p in states)

    def _attend(self, params, canvas, x, first: bool, last: bool):
        """c_t = c_{t-1} + write(h^dec_t) and r_{t+1} = read(x, x - sigmoid(c_t), h^dec_t)."""
        c = self.config
        return attention.write_then_read(
            params, canvas, x, self.A, self.B, c.write_n, c.read_n, do_write=not first, do_read=not last
        )

    # ----------------------------------------------------------------------------------------
    # inference: the encoder reads x, the decoder writes the canvas attending to the caption
    def _infer(
        self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, eps: torch.Tensor | None = None
    ):
        """Run the T steps on images x (n, B * A) with their captions. Returns (c_T, the KL terms
        summed over t (n,))."""
        n, Z = x.shape[0], self.config.z_size
        if eps is None:
            eps = torch.randn(self.T, n, Z, dtype=x.dtype, device=x.device)
        dtype = step_dtype(self.config.matmul_dtype, x)  # bfloat16 products only in training
        enc_in, q, dec_in = (StepLinear(m, self.T, dtype=dtype) for m in (self.enc_in, self.q, self.dec_in))
        dec_out = StepLinear(self.dec_out, self.T + 1, dtype=dtype, widths=self.sizes)
        h_lang, u_lang = self._language(tokens, mask)
        canvas, h_enc, cell_enc, h_dec, cell_dec = self._initial(n)
        dec_gates, params, w_dec, prior_raw, enc_gates = dec_out(h_dec)
        canvas, r = self._attend(params, canvas, x, first=True, last=False)
        qs, priors = [], []
        for t in range(self.T):
            h_enc, cell_enc = lstm_pointwise(enc_in(torch.cat([r, h_enc], dim=1)), cell_enc, enc_gates)
            q_t = q(h_enc)  # [mu^q_t, log sigma^q_t^2]
            z = reparameterize(*q_t.chunk(2, dim=1), eps=eps[t])
            s, _ = self.align(u_lang, w_dec, h_lang, mask)
            priors.append(self.prior(prior_raw if t > 0 else None, z))
            h_dec, cell_dec = lstm_pointwise(dec_in(torch.cat([z, s], dim=1)), cell_dec, dec_gates)
            dec_gates, params, w_dec, prior_raw, enc_gates = dec_out(h_dec)
            canvas, r = self._attend(params, canvas, x, first=False, last=t == self.T - 1)
            qs.append(q_t)
        mu_p = torch.stack([p[0] for p in priors])
        log_sigma_p = torch.stack([p[1] for p in priors])
        kl = kl_gaussians(torch.stack(qs), mu_p, log_sigma_p).sum(0)
        return canvas, kl

    def loss_terms(
        self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L^x, L^z) per image in nats: -log D(x | c_T) and sum_t KL(Q || P(Z_t | h^dec_{t-1}))."""
        x = self._flat(x)
        with flush_denormals():
            canvas, kl = self._infer(x, tokens, mask, eps=eps)
            recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").sum(1)
        return recon, kl

    def nll_bound(self, x: torch.Tensor, captions: Any = None) -> torch.Tensor:
        """L^x + L^z per image given its captions: an upper bound on -log p(x | y)."""
        tokens, mask = self._caption_batch(len(x), captions)
        recon, kl = self.loss_terms(x, tokens, mask)
        return recon + kl

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.A * self.B:
            raise ValueError(
                f"alignDRAW was built for {self.B} x {self.A} images but got {x.shape[1]} pixels"
            )
        return x

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return descend_bound(
            self.optimizers["model"],
            self.parameters(),
            self.config.grad_clip,
            lambda: self.loss_terms(batch["x"], batch["caption"], batch["caption_mask"]),
        )

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor], chunk: int = 1000) -> dict[str, float]:
        """Mean L^x + L^z over the split's images given their captions (nats per image, one
        posterior sample), its standard error over images, and the two terms."""
        parts = (slice(start, start + chunk) for start in range(0, len(data["x"]), chunk))
        return bound_summary(
            self.loss_terms(data["x"][p], data["caption"][p], data["caption_mask"][p]) for p in parts
        )

    # ----------------------------------------------------------------------------------------
    # generation: the decoder alone, z_t from the learned prior, attending to the caption
    @torch.no_grad()
    def _generate(
        self, tokens: torch.Tensor, mask: torch.Tensor, generator, keep: bool, temperature: float = 1.0
    ):
        """-> (c_T, [c_1..c_T], [write windows], [alpha_1..alpha_T]) (lists empty unless `keep`).
        z_t = mu_t + tau sigma_t eps_t at temperature tau (the same draws of eps at every tau)."""
        c = self.config
        n = tokens.shape[0]
        eps = torch.randn(self.T, n, c.z_size, generator=generator, device=self.c0.device)
        if temperature != 1.0:
            eps = eps * temperature
        h_lang, u_lang = self._language(tokens, mask)
        canvas, _, _, h_dec, cell_dec = self._initial(n)
        used = self.sizes[:4]
        dec_in = StepLinear(self.dec_in, self.T)
        dec_out = StepLinear(self.dec_out, self.T + 1, cols=slice(0, sum(used)))
        dec_gates, params, w_dec, prior_raw = dec_out(h_dec).split(used, dim=1)
        canvases, windows, alphas = [], [], []
        for t in range(self.T):
            mu_p, log_sigma_p = self.prior(prior_raw if t > 0 else None, eps[t])
            z = torch.addcmul(mu_p, torch.exp(log_sigma_p), eps[t])
            s, alpha = self.align(u_lang, w_dec, h_lang, mask)
            h_dec, cell_dec = lstm_pointwise(dec_in(torch.cat([z, s], dim=1)), cell_dec, dec_gates)
            dec_gates, params, w_dec, prior_raw = dec_out(h_dec).split(used, dim=1)
            canvas, _ = self._attend(params, canvas, None, first=False, last=True)
            if keep:
                N = c.write_n
                canvases.append(canvas)
                windows.append(attention.window(params[:, N * N : N * N + 5], self.A, self.B, N))
                alphas.append(alpha)
        return canvas, canvases, windows, alphas

    def _images(self, canvas: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(canvas).reshape(-1, *self.image_shape)

    def _conditions(self, n: int, generator, condition: dict) -> list[str]:
        captions = self.conditions_for(n, generator, **condition)["captions"]
        return [captions] * n if isinstance(captions, str) else list(captions)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, **condition: Any
    ) -> torch.Tensor:
        """sigmoid(c_T) drawn for `captions` (n strings, or one for all; by default drawn from
        the data's validation captions, which hold no held-out combination): (n, 1, H, W) in
        [0, 1]. A `temperature` tau < 1 draws z_t nearer the prior's mean, mu_t + tau sigma_t
        eps_t (0: the mean path)."""
        captions = self._conditions(n, generator, condition)
        tokens, mask = self._caption_batch(n, captions)
        with flush_denormals():
            return self._images(self._generate(tokens, mask, generator, False, temperature)[0])

    @torch.no_grad()
    def sample_alignments(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, **condition: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """The drawing over time: canvases sigmoid(c_t) (T, n, 1, H, W), write windows (T, n, 4)
        (x0, y0, x1, y1 in 0-based pixels), alignments alpha (T, n, L) over each caption's words
        (0 on padding), and the captions as read (one space between words). The last canvas equals `sample(n, generator)`'s."""
        captions = self._conditions(n, generator, condition)
        tokens, mask = self._caption_batch(n, captions)
        with flush_denormals():
            _, canvases, windows, alphas = self._generate(tokens, mask, generator, True, temperature)
        frames = torch.stack([self._images(c) for c in canvases])
        words = [
            " ".join(self.words[t] for t, m in zip(row, keep) if m)
            for row, keep in zip(tokens.tolist(), mask.tolist())
        ]
        return frames, torch.stack(windows), torch.stack(alphas), words

    def sample_canvases(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, **condition: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The canvas at every step (T, n, 1, H, W) and the write windows (T, n, 4)."""
        frames, windows, _, _ = self.sample_alignments(n, generator, temperature, **condition)
        return frames, windows

    # ----------------------------------------------------------------------------------------
    # conditions
    def prepare(self, data: Any, batch_size: int) -> None:
        """Check that the data's words are the model's, and keep BANK validation captions for
        `default_conditions` (validation captions: never training ones, never a held-out
        combination)."""
        words = tuple(getattr(data, "vocabulary", ()))
        if words != self.words:
            raise UserError(
                f"the data's caption words ({' '.join(words) or 'none'}) are not the model's vocabulary"
            )
        captions = data.split("valid", binary=False)["caption"][:BANK]
        bank = torch.full_like(self.caption_bank, PAD)
        bank[: len(captions), : captions.shape[1]] = captions
        self.caption_bank.copy_(bank)

    def default_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        """n captions drawn (with replacement) from the validation captions kept by `prepare`."""
        kept = int((self.caption_bank[:, 0] != PAD).sum())
        if kept == 0:
            raise UserError("this alignDRAW has no captions of its data yet; give captions to draw")
        pick = torch.randint(kept, (n,), generator=generator, device=generator.device if generator else "cpu")
        return {"captions": self.detokenize(self.caption_bank[pick.to(self.caption_bank.device)])}
