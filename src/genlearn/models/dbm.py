r"""Deep Boltzmann machine with two hidden layers (Salakhutdinov & Hinton, "Deep Boltzmann
machines", AISTATS 2009): layer-wise pretraining with doubled inputs, then joint training with
mean-field inference for the data term and persistent Gibbs chains for the model term; AIS and
the mean-field lower bound for evaluation. Default 784-500-1000, the paper's MNIST model.

Model. Visible v in {0,1}^V, hidden h1 in {0,1}^H1 and h2 in {0,1}^H2, undirected connections
only between neighbouring layers:

    E(v, h1, h2) = -v^T W1 h1 - h1^T W2 h2 - b^T v - c1^T h1 - c2^T h2,    p = exp(-E) / Z

The graph is bipartite, {h1} against {v, h2}: a two-layer DBM *is* an RBM whose "visible"
layer is (v, h2) and whose hidden layer is h1, with weights [W1; W2^T] ((V + H2) x H1) and
biases [b; c2] and c1, in which the h2 part of the "visible" layer is never observed. This
module stores it so (`joint`, a `genlearn.models.rbm.RBM`; `W1`, `W2`, ... are views of it), and
everything an RBM can do follows: the conditionals

    p(h1_j = 1 | v, h2) = sigmoid(c1_j + (v^T W1)_j + (W2 h2)_j)
    p(v_i = 1 | h1) = sigmoid(b_i + (W1 h1)_i),       p(h2_m = 1 | h1) = sigmoid(c2_m + (h1^T W2)_m)

(Gibbs sampling alternates h1 and (v, h2)), log Z by enumerating h1 or (v, h2), and AIS over h1
with v and h2 summed out (`genlearn.eval.ais.dbm_log_partition`).

Pretraining (the paper's section 3.1). Two RBMs are trained greedily, each modified so that the
hidden layer they share, h1, which in the DBM gets input from both sides, is not modelled as
getting it from one side only: the bottom RBM (v, h1) counts its visible input twice, the top
RBM (h1, h2) counts its hidden input twice, biases not doubled:

    bottom:  p(h1 = 1 | v) = sigmoid(c + 2 v^T W1),     p(v = 1 | h1) = sigmoid(b + W1 h1)
    top:     p(h2 = 1 | h1) = sigmoid(c2 + h1^T W2),    p(h1 = 1 | h2) = sigmoid(b' + 2 W2 h2)

(equivalently: the bottom RBM sees two tied copies of v, the top one has two tied copies of h2).
Each is trained with CD or PCD exactly as `RBM.train_step` does, with these conditionals in both
phases; the top RBM is trained on what the bottom one's p(h1 | v), doubled, makes of the images
(binary samples by default, `propagate`, for the reason given in `genlearn.models.dbn`).
Composed into the DBM, the weights are kept as they are: h1's input v^T W1 + W2 h2 has one copy
of each side's input where each RBM had two of its own. The visible biases come from the bottom
RBM, c2 from the top one, and c1 is the mean of the bottom RBM's hidden and the top RBM's visible
biases (each RBM's estimate of h1's bias). The composition is redone after every pretraining
step, so that the model is a DBM at every step (sampling, evaluation and checkpoints see it).

Joint training (the paper's Algorithm 1). For a batch of images, mean-field q(h1, h2 | v) =
prod mu1^h1 (1 - mu1)^(1 - h1) prod mu2^h2 (1 - mu2)^(1 - h2), started from the bottom-up pass
with doubled weights (mu1 = sigmoid(c1 + 2 v^T W1), where h1 has no top-down input yet, then
mu2 = sigmoid(c2 + mu1^T W2)), then `mf_steps` rounds of the fixed-point updates

    mu1 <- sigmoid(c1 + v^T W1 + W2 mu2),    mu2 <- sigmoid(c2 + mu1^T W2)

each of which maximises the bound below over one layer given the other, so the bound never
decreases. The gradient of the bound on log p(v) is E_q[sufficient statistics] - E_model[...];
the data term is exact under q, the model term comes from persistent Gibbs chains (one per batch
row, `gibbs_steps` full steps per update). In the RBM view above this is PCD on `joint` with the
batch ([v, mu2]) as "visible" data: the positive statistics [v; mu2] sigmoid(c1 + v^T W1 + W2 mu2)
are those of q (one more mean-field half-step), and PCD's negative phase is exactly Gibbs
sampling of the DBM, so `RBM.train_step` does it all (SGD with momentum, weight decay on W1 and
W2). The chains start, when joint training begins, at the batch's images with h1, h2 from the
doubled bottom-up pass.

Centring (`centred`, Montavon & Mueller, "Deep Boltzmann machines and the centering trick",
2012). The energy rewritten around offsets, -(v - a)^T W1 (h1 - b1) - (h1 - b1)^T W2 (h2 - a2)
- ..., is the same family of models, but its gradient is far better conditioned when the offsets
are the layers' means: a bias step no longer drags every weight along with it. In the RBM view
this is exactly the centred RBM with "visible" offsets [a; a2] and hidden offset b1, so `joint`
follows `RBM`'s centred gradient; the offsets start, when joint training begins, at the mean
image and q's mean activations on the first training images, and then follow the batches'
means. The pretraining RBMs are not centred.

Variational bound (evaluation): for the mean-field q,

    log p(v) >= E_q[-E(v, h1, h2)] + H(q) - log Z
             = b^T v + mu1^T (c1 + W1^T v) + mu2^T (c2 + W2^T mu1) + H(mu1) + H(mu2) - log Z

with H the Bernoulli entropies, and log Z from AIS (`genlearn.eval.ais.log_likelihood_bound`) or
enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from genlearn.config import Common, bounded, choice
from genlearn.errors import UserError
from genlearn.models import rbm
from genlearn.models.base import GenerativeModel, RBMParameters
from genlearn.models.rbm import RBM, bernoulli, binary_states, linear, visible_shape
from genlearn.models.stack import (
    BASE_RATE_IMAGES,
    CHUNK,
    MAX_EXACT_UNITS,
    in_chunks,
    prepare_stack,
    rbm_config,
    stage_at,
    stage_progress,
    start_upper_rbm,
)
from genlearn.nn.distributions import base_rate_bias

EVAL_MF_STEPS = 30  # mean-field rounds for the reported bound (training uses mf_steps)
PHASES = ("bottom", "top", "joint")


@dataclass
class Config(Common):
    epochs: int = bounded(20, min=0, help="passes over the training set: pretraining, then joint training")
    lr: float = bounded(0.005, min=0.0, help="learning rate of joint training")
    n_visible: int = bounded(784, min=1, help="visible units (784 for MNIST)")
    n_hidden1: int = bounded(500, min=1, help="units in the first hidden layer")
    n_hidden2: int = bounded(1000, min=1, help="units in the second hidden layer")
    pretrain_epochs: float = bounded(5.0, min=0.0, help="epochs of each of the two pretraining RBMs")
    pretrain_lr: float = bounded(0.05, min=0.0, help="learning rate of the pretraining RBMs")
    pretrain_method: str = choice("cd", ("cd", "pcd"), "negative phase of the pretraining RBMs")
    pretrain_k: int = bounded(1, min=1, help="Gibbs steps per update of the pretraining RBMs")
    propagate: str = choice(
        "sample", ("sample", "mean"), "what the bottom RBM passes up to the top one: samples or probabilities"
    )
    gibbs_steps: int = bounded(5, min=1, help="Gibbs steps of the persistent chains per joint update")
    mf_steps: int = bounded(10, min=0, help="mean-field rounds per joint update (after the bottom-up pass)")
    momentum: float = bounded(0.5, min=0.0, max=1.0, help="SGD momentum at the start of each phase")
    momentum_final: float = bounded(0.9, min=0.0, max=1.0, help="SGD momentum after momentum_epochs")
    momentum_epochs: float = bounded(5.0, min=0.0, help="epochs of each phase at the initial momentum")
    weight_decay: float = bounded(2e-4, min=0.0, help="L2 weight cost on the weights (not the biases)")
    init_std: float = bounded(0.01, min=0.0, help="standard deviation of the initial weights")
    centred: bool = field(
        default=False, metadata={"help": "joint training follows the centred gradient (offsets: layer means)"}
    )
    offset_rate: float = bounded(0.01, min=0.0, max=1.0, help="moving-average rate of the centring offsets")


class DoubledRBM(RBM):
    """A pretraining RBM whose input from one side counts twice: p(h | v) = sigmoid(c + up v^T W)
    and p(v | h) = sigmoid(b + down W h); CD/PCD, monitors and updates are `RBM`'s."""

    def __init__(self, config: rbm.Config, up: float = 1.0, down: float = 1.0):
        super().__init__(config)
        self.up, self.down = up, down

    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        return super().hidden_input(v * self.up if self.up != 1 else v)

    def visible_input(self, h: torch.Tensor) -> torch.Tensor:
        return super().visible_input(h * self.down if self.down != 1 else h)


class DBM(GenerativeModel):
    """Two-hidden-layer DBM; `joint` holds it as an RBM between (v, h2) and h1."""

    Config = Config
    capabilities = frozenset({"features", "reconstruct", "ais_bound", "gibbs_chain"})
    # the persistent chains of the two pretraining RBMs (PCD) and of joint training
    local_buffers = ("bottom.chains", "top.chains", "joint.chains")

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        V, H1, H2 = self.n_visible, self.n_hidden1, self.n_hidden2 = c.n_visible, c.n_hidden1, c.n_hidden2
        pre = dict(method=c.pretrain_method, k=c.pretrain_k, lr=c.pretrain_lr)
        self.bottom = DoubledRBM(rbm_config(c, V, H1, **pre), up=2.0)
        self.top = DoubledRBM(rbm_config(c, H1, H2, **pre), down=2.0)
        self.joint = RBM(
            rbm_config(
                c,
                V + H2,
                H1,
                method="pcd",
                k=c.gibbs_steps,
                lr=c.lr,
                centred=c.centred,
                offset_rate=c.offset_rate,
            )
        )
        self.register_buffer("phase", torch.zeros((), dtype=torch.int64))  # index into PHASES
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.steps_per_epoch = self.bottom.steps_per_epoch  # `prepare` sets it
        self._base_x: torch.Tensor | None = None
        self.optimizers = {name: getattr(self, name).optimizers["model"] for name in PHASES}
        self.compose()

    @property
    def data_kind(self) -> str:
        return "binary"

    @property
    def image_shape(self) -> tuple[int, ...]:
        return visible_shape(self.n_visible)

    @property
    def dtype(self) -> torch.dtype:
        return self.joint.W.dtype

    # views of the DBM's parameters in `joint` --------------------------------------------
    @property
    def W1(self) -> torch.Tensor:
        """v-h1 weights (V x H1)."""
        return self.joint.W[: self.n_visible]

    @property
    def W2(self) -> torch.Tensor:
        """h1-h2 weights (H1 x H2)."""
        return self.joint.W[self.n_visible :].t()

    @property
    def visible_bias(self) -> torch.Tensor:
        return self.joint.visible_bias[: self.n_visible]

    @property
    def hidden_bias1(self) -> torch.Tensor:
        return self.joint.hidden_bias

    @property
    def hidden_bias2(self) -> torch.Tensor:
        return self.joint.visible_bias[self.n_visible :]

    @torch.no_grad()
    def compose(self) -> None:
        """The DBM from the two pretraining RBMs: W1, b from the bottom one, W2, c2 from the top
        one, c1 the mean of the bottom's hidden and the top's visible biases."""
        V, j = self.n_visible, self.joint
        j.W[:V].copy_(self.bottom.W)
        j.W[V:].copy_(self.top.W.t())
        j.visible_bias[:V].copy_(self.bottom.visible_bias)
        j.visible_bias[V:].copy_(self.top.hidden_bias)
        j.hidden_bias.copy_((self.bottom.hidden_bias + self.top.visible_bias) / 2)

    def prepare(self, data, batch_size: int) -> None:
        """Before the first step: the bottom RBM's `prepare` (visible biases at the pixels' base
        rate), the epoch length for the phase schedule, a reference to the first training images
        (the top RBM's base rate is set from them when its turn comes), and the composition."""
        rbms = [getattr(self, name) for name in PHASES]  # bottom first
        self.steps_per_epoch, self._base_x = prepare_stack(rbms, data, batch_size)
        self.compose()

    # ---------------------------------------------------------------------------------------
    def _pretrain_steps(self) -> int:
        return round(self.config.pretrain_epochs * self.steps_per_epoch)

    def phase_at(self, step: int) -> int:
        """0 (bottom RBM) for pretrain_epochs epochs, 1 (top RBM) for as many, then 2 (joint)."""
        return stage_at(step, self._pretrain_steps(), len(PHASES))

    def schedule_progress(self, step: int, total_steps: int) -> float:
        """The training loop's lr schedule runs once per phase: each pretraining RBM anneals over
        its own epochs, as if trained alone, and joint training over the rest."""
        return stage_progress(step, total_steps, self._pretrain_steps(), len(PHASES))

    @torch.no_grad()
    def bottom_up(
        self, v: torch.Tensor, sample: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The bottom pretraining RBM's p(h1 | v) = sigmoid(c + 2 v^T W1): samples or probabilities."""
        p = torch.sigmoid(self.bottom.hidden_input(v.flatten(1).to(self.dtype)))
        return bernoulli(p, generator) if sample else p

    @torch.no_grad()
    def doubled_up(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """h2 for the images v (binary): h1 drawn from the doubled bottom-up pass
        sigmoid(c1 + 2 v^T W1) (h1 has no top-down input yet), then h2 drawn from p(h2 | h1)."""
        h1 = bernoulli(
            torch.sigmoid(linear(v, self.W1.t(), self.hidden_bias1).mul_(2).sub_(self.hidden_bias1)),
            generator,
        )
        return bernoulli(torch.sigmoid(linear(h1, self.W2.t(), self.hidden_bias2)), generator)

    @torch.no_grad()
    def _start_phase(self, phase: int, x: torch.Tensor) -> None:
        if phase == 1:  # top RBM: visible biases at the base rate of h1, PCD chains from it
            source = x if self._base_x is None else self._base_x
            h1 = in_chunks(lambda part: self.bottom_up(part, sample=False), source, self.joint.W.device)
            start_upper_rbm(self.top, h1, self.config.batch_size, self.steps_per_epoch)
        elif phase == 2:  # chains at the batch's images, h1 and h2 from the doubled up pass
            v = x[torch.arange(len(self.joint.chains), device=x.device) % len(x)]
            self.joint.chains.copy_(torch.cat([v, self.doubled_up(v)], 1).to(torch.uint8))
            if self.config.centred:  # offsets at the layers' means: the images', and q's on them
                images = (x if self._base_x is None else self._base_x).flatten(1).to(x.device, self.dtype)
                mu1, mu2 = (torch.cat(m) for m in zip(*(self.mean_field(s)[:2] for s in images.split(CHUNK))))
                self.joint.visible_offset.copy_(torch.cat([images.mean(0), mu2.mean(0)]))
                self.joint.hidden_offset.copy_(mu1.mean(0))

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        x = batch["x"].flatten(1).to(self.dtype)
        target = self.phase_at(int(self.updates))
        while int(self.phase) < target:
            self.phase += 1
            self._start_phase(int(self.phase), x)
        phase = int(self.phase)
        if phase == 0:
            stats = self.bottom.train_step({"x": x})
            self.compose()
        elif phase == 1:
            stats = self.top.train_step({"x": self.bottom_up(x, sample=self.config.propagate == "sample")})
            self.compose()
        else:
            mu2 = self.mean_field(x, self.config.mf_steps)[1]
            stats = self.joint.train_step({"x": torch.cat([x, mu2], 1)})
        self.updates += 1
        return {"phase": float(phase), **stats}

    # ---------------------------------------------------------------------------------------
    def _weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(W1, W2^T, b, c1, c2), detached, in `dtype` (views when it is the weights' own)."""
        V = self.n_visible
        W, vb, c1 = (
            t.detach().to(dtype) for t in (self.joint.W, self.joint.visible_bias, self.joint.hidden_bias)
        )
        return W[:V], W[V:], vb[:V], c1, vb[V:]

    @torch.no_grad()
    def mean_field(
        self, v: torch.Tensor, steps: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean-field q(h1, h2 | v): (mu1, mu2, logits1, logits2) after the doubled bottom-up
        pass and `steps` rounds of updates (mu1 given mu2, then mu2 given mu1); config.mf_steps
        when None. In the weights' dtype, or float64 for float64 v."""
        steps = self.config.mf_steps if steps is None else steps
        dtype = torch.float64 if v.dtype == torch.float64 else self.dtype
        W1, W2t, _, c1, c2 = self._weights(dtype)
        v = v.flatten(1).to(dtype)
        bottom = linear(v, W1.t(), c1)  # c1 + v^T W1, the input h1 gets from below
        a1 = 2 * bottom - c1
        mu1 = torch.sigmoid(a1)
        a2 = linear(mu1, W2t, c2)
        mu2 = torch.sigmoid(a2)
        for _ in range(steps):
            a1 = bottom + linear(mu2, W2t.t())
            mu1 = torch.sigmoid(a1)
            a2 = linear(mu1, W2t, c2)
            mu2 = torch.sigmoid(a2)
        return mu1, mu2, a1, a2

    @torch.no_grad()
    def variational_bound(self, v: torch.Tensor, steps: int = EVAL_MF_STEPS) -> torch.Tensor:
        """E_q[-E(v, h1, h2)] + H(q) per image (float64) for mean-field q after `steps` rounds:
        the lower bound on log p(v) plus log Z."""
        out = []
        for vb in v.flatten(1).split(CHUNK * 2):
            mu1, mu2, a1, a2 = self.mean_field(vb, steps)
            W1, W2t, b, c1, c2 = self._weights(mu1.dtype)
            vb = vb.to(mu1.dtype)
            neg_energy = vb @ b + (mu1 * linear(vb, W1.t(), c1)).sum(1) + (mu2 * linear(mu1, W2t, c2)).sum(1)
            entropy = (F.softplus(a1) - mu1 * a1).sum(1) + (F.softplus(a2) - mu2 * a2).sum(1)
            out.append((neg_energy + entropy).double())
        return torch.cat(out)

    def log_partition_exact(self, layer: str | None = None) -> float:
        """log Z by enumerating h1 ("h1") or (v, h2) ("v+h2"), the other side summed out; the
        smaller when None. Refused above rbm.MAX_EXACT_UNITS enumerated units."""
        names = {"h1": "hidden", "v+h2": "visible", None: None}
        if layer not in names:
            raise UserError(f"layer must be 'h1' or 'v+h2', not {layer!r}")
        return self.joint.log_partition_exact(names[layer])

    @torch.no_grad()
    def log_unnormalised_exact(self, v: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """log sum_{h1, h2} exp(-E(v, h1, h2)) per image, float64, by enumerating h1 or h2 (the
        smaller when None, at most MAX_EXACT_UNITS units), the other hidden layer summed out."""
        layer = layer or ("h1" if self.n_hidden1 <= self.n_hidden2 else "h2")
        if layer not in ("h1", "h2"):
            raise UserError(f"layer must be 'h1' or 'h2', not {layer!r}")
        m = self.n_hidden1 if layer == "h1" else self.n_hidden2
        if m > MAX_EXACT_UNITS:
            raise UserError(
                f"exact log p*(v) would enumerate 2^{m} states of {layer}; the limit is {MAX_EXACT_UNITS} units"
            )
        W1, W2t, b, c1, c2 = self._weights(torch.float64)
        states = binary_states(0, 1 << m, m, torch.float64, W1.device)
        rows = CHUNK if layer == "h1" else max(1, (1 << 24) // (len(states) * self.n_hidden1))
        out = []
        for vb in v.flatten(1).double().split(rows):
            if layer == "h1":  # b^T v + (c1 + v^T W1)^T h1 + sum_m softplus(c2 + h1^T W2)
                score = (vb @ W1 + c1) @ states.t() + F.softplus(states @ W2t.t() + c2).sum(1)
            else:  # b^T v + c2^T h2 + sum_j softplus(c1 + v^T W1 + W2 h2)
                inputs = (vb @ W1 + c1)[:, None, :] + (states @ W2t)[None]
                score = states @ c2 + F.softplus(inputs).sum(2)
            out.append(vb @ b + torch.logsumexp(score, 1))
        return torch.cat(out)

    def log_likelihood_exact(self, v: torch.Tensor) -> torch.Tensor:
        """log p(v) per image, float64, by enumeration (tiny models only)."""
        return self.log_unnormalised_exact(v) - self.log_partition_exact()

    # ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, steps: int = 1000, **condition
    ) -> torch.Tensor:
        """`steps` Gibbs steps (h1, then (v, h2)) from the base rate; the last p(v | h1) as images."""
        self.conditions_for(n, generator, **condition)  # it takes none: refuse any
        p = self.joint.sample(n, generator, steps).flatten(1)
        return p[:, : self.n_visible].reshape(n, *self.image_shape)

    @torch.no_grad()
    def gibbs_frames(
        self, v: torch.Tensor, steps: int, every: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The DBM's Gibbs sampler over all its layers, step by step: (v, h2) at the start image v
        and the h2 of its doubled bottom-up pass (`doubled_up`, as joint training starts its
        chains), then h1 given (v, h2) and (v, h2) given h1 alternately; frame 0 the start image,
        then p(v | h1) every `every` steps."""
        v = v.to(self.dtype)
        probs, _ = self.joint.chain(torch.cat([v, self.doubled_up(v, generator)], 1), steps, every, generator)
        return probs[:, :, : self.n_visible]

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field posterior means [mu1, mu2]: the learned representation a linear probe reads."""
        mu1, mu2, _, _ = self.mean_field(x.flatten(1).to(self.dtype), EVAL_MF_STEPS)
        return torch.cat([mu1, mu2], 1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """p(v | mu1) under mean field, as images (for pictures)."""
        mu1 = self.mean_field(x.flatten(1).to(self.dtype))[0]
        return torch.sigmoid(linear(mu1, self.W1, self.visible_bias)).reshape(-1, *self.image_shape)

    def partition_rbm(self) -> RBMParameters:
        """The DBM as the RBM it is between h1 ("visible") and (v, h2) ("hidden"): W = [W1^T, W2]
        (H1 x (V + H2)), visible biases c1, hidden biases [b, c2], detached, float32.

        The layers of a DBM alternate, so given h1 the units of v and of h2 are all conditionally
        independent, just as an RBM's hidden units are given its visible ones: the unnormalised
        marginal p*(h1) = sum_{v,h2} exp(-E) is this RBM's exp(-F(h1)), and Z is the same number.
        AIS over h1 with v and h2 summed out (Salakhutdinov & Hinton 2009) is RBM AIS on it."""
        W1, W2, b, c1, c2 = (
            t.detach().float()
            for t in (self.W1, self.W2, self.visible_bias, self.hidden_bias1, self.hidden_bias2)
        )
        return RBMParameters(W=torch.cat([W1.t(), W2], 1), visible_bias=c1, hidden_bias=torch.cat([b, c2]))

    def ais_base_bias(self, train_x: torch.Tensor | None = None) -> torch.Tensor:
        """Base-rate biases over h1 for AIS: log-odds of the mean of mu1 (mean field) over (up to
        10,000) training images; without `train_x`, zeros (every h1 state equally likely)."""
        if train_x is None:
            return torch.zeros(self.n_hidden1, device=self.joint.W.device)
        images = train_x[:BASE_RATE_IMAGES].flatten(1)
        mu1 = in_chunks(
            lambda part: self.mean_field(part.to(self.dtype), EVAL_MF_STEPS)[0], images, self.joint.W.device
        )
        return base_rate_bias(mu1)

    def bound_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None, steps: int = EVAL_MF_STEPS
    ) -> torch.Tensor:
        """Per image, E_q[-E] + H(q) with mean-field q after `steps` rounds: the variational bound
        plus log Z (deterministic; `generator` is unused)."""
        return self.variational_bound(x, steps)

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Cheap held-out monitors: the phase (0 bottom RBM, 1 top RBM, 2 joint), the mean-field
        reconstruction cross-entropy -log p(v | mu1) in nats per image, and for models small
        enough to enumerate (EVAL_EXACT_UNITS) the bound and the exact log-likelihood."""
        x = data["x"].flatten(1).to(self.dtype)
        if x.shape[1] != self.n_visible:
            raise UserError(
                f"the data have {x.shape[1]} pixels but the DBM has {self.n_visible} visible units"
            )
        recon = 0.0
        for xb in x.split(1000):
            mu1 = self.mean_field(xb)[0]
            logits = linear(mu1, self.W1.detach(), self.visible_bias.detach())
            recon += float(F.binary_cross_entropy_with_logits(logits, xb, reduction="sum"))
        out = {"phase": float(int(self.phase)), "recon": recon / len(x)}
        if min(self.n_hidden1, self.n_visible + self.n_hidden2) <= rbm.EVAL_EXACT_UNITS:
            log_z = self.log_partition_exact()
            out["bound"] = float(self.variational_bound(x).mean()) - log_z
            if min(self.n_hidden1, self.n_hidden2) <= rbm.EVAL_EXACT_UNITS:
                out["log_likelihood"] = float(self.log_unnormalised_exact(x).mean()) - log_z
        return out
