r"""Deep belief network: a stack of binary RBMs trained greedily, one layer at a time (Hinton,
Osindero & Teh, "A fast learning algorithm for deep belief nets", Neural Computation 2006), with
the variational lower bound on log p(x) of Salakhutdinov & Murray ("On the quantitative analysis
of deep belief networks", ICML 2008). Default 784-500-2000, their MNIST DBN.

Model. With layers h_0 = x, h_1, ..., h_L (L RBMs; RBM l has weights W_l between h_{l-1} and h_l),
the top two layers form an undirected RBM and every layer below is generated top-down by the
sigmoid belief net made of the lower RBMs' downward conditionals:

    p(x, h_1, ..., h_L) = p(x | h_1) p(h_1 | h_2) ... p(h_{L-2} | h_{L-1}) p(h_{L-1}, h_L)
    p(h_{l-1} = 1 | h_l) = sigmoid(b_l + W_l h_l)               (RBM l's visible conditional)
    p(h_{L-1}, h_L) = exp(-E_L(h_{L-1}, h_L)) / Z_L             (the top RBM)

so the top RBM enters only through its marginal over its visible layer,
p(h_{L-1}) = p*(h_{L-1}) / Z_L with log p*(h_{L-1}) = -F_L(h_{L-1}), its negative free energy.

Greedy training. RBM 1 is trained on the images (CD-k or PCD-k, `genlearn.models.rbm`); then it
is frozen, and RBM 2 is trained on what RBM 1's recognition conditional q(h_1 | x) =
prod_j sigmoid(c_1 + x^T W_1)_j makes of the images, and so on up. `train_step` trains one layer:
the loop's `epochs` are split across the layers (`epochs_per_layer`), and each step passes the
batch up through the frozen layers below the one in training.

What is passed up (`propagate`): binary samples h ~ q(h | h_below) by default. The reason is the
bound below: with the lower layers fixed, the only term that depends on the layers above h_1 is
E_{q(h_1|x)}[log p(h_1)], the log-likelihood the upper model gives to samples of q, so training
RBM 2 by (approximate) maximum likelihood on samples of q is training that raises the bound
(Hinton et al.'s argument), and a binary RBM's likelihood is only defined on binary vectors.
`propagate = "mean"` passes the probabilities instead (Hinton & Salakhutdinov's 2006 pretraining
code): less noisy statistics, but a fit to real-valued vectors the model never generates. Each
upper RBM starts, when its turn comes, with visible biases at the log-odds of the mean activity
of the layer below (computed from up to 10,000 training images, probabilities, no sampling) and
its PCD chains drawn from those marginals, as `RBM.prepare` does for the pixels.

Sampling: Gibbs sampling in the top RBM (`RBM.sample`), then one top-down pass through the
directed conditionals; the images returned are the last p(x | h_1), as for the RBM.

Variational bound. For any q(h_1, ..., h_{L-1} | x), here the recognition chain
q(h_1 | x) q(h_2 | h_1) ... q(h_{L-1} | h_{L-2}), Jensen's inequality gives

    log p(x) >= E_q[log p(x | h_1) + sum_{l=1}^{L-2} log p(h_l | h_{l+1}) + log p*(h_{L-1})
                    - log q(h_1, ..., h_{L-1} | x)] - log Z_L

(for L = 2: sum_{h_1} q(h_1|x)[log p*(h_1) + log p(x|h_1)] + H(q(h_1|x)) - log Z_L). The
expectation is estimated by sampling the recognition chain (`bound_terms`, S samples per image);
the entropy is taken per sample as -log q(h|x), which makes the estimate exact, with zero
variance, when q is the true posterior (e.g. a top RBM that is the transpose of the bottom one,
where the DBN is the bottom RBM). log Z_L comes from AIS on the top RBM
(`genlearn.eval.ais.rbm_log_partition`, base-rate model from the propagated training data) or,
for small top RBMs, from enumeration; `genlearn.eval.ais.log_likelihood_bound` puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from genlearn.config import Common, bounded, choice
from genlearn.errors import UserError
from genlearn.models import rbm
from genlearn.models.base import GenerativeModel, RBMParameters
from genlearn.models.rbm import RBM, bernoulli, binary_states, visible_shape
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

BOUND_SAMPLES = 10  # draws of h ~ q(h | x) per image in the reported bound


def parse_sizes(text: str) -> tuple[int, ...]:
    """ "500,2000" -> (500, 2000); refused unless every entry is a positive integer."""
    try:
        sizes = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise UserError(f"bad value for 'hidden': {text!r}; give positive layer sizes, e.g. '500,2000'")
    return sizes


@dataclass
class Config(Common):
    epochs: int = bounded(20, min=0, help="passes over the training set, split across the layers")
    lr: float = bounded(0.05, min=0.0, help="learning rate of every layer's RBM")
    n_visible: int = bounded(784, min=1, help="visible units (784 for MNIST)")
    hidden: str = field(
        default="500,2000", metadata={"help": "hidden layer sizes, bottom to top, comma-separated"}
    )
    epochs_per_layer: float = bounded(
        0.0,
        min=0.0,
        help="epochs of each layer below the top (the top gets the rest); 0 = epochs split evenly",
    )
    propagate: str = choice(
        "sample",
        ("sample", "mean"),
        "what frozen layers pass up: binary samples of q(h|below) or probabilities",
    )
    method: str = choice(
        "cd", ("cd", "pcd"), "negative phase of every RBM: contrastive divergence or persistent CD"
    )
    k: int = bounded(1, min=1, help="Gibbs steps of the negative phase per update")
    momentum: float = bounded(0.5, min=0.0, max=1.0, help="SGD momentum at the start of each layer")
    momentum_final: float = bounded(0.9, min=0.0, max=1.0, help="SGD momentum after momentum_epochs")
    momentum_epochs: float = bounded(5.0, min=0.0, help="epochs of each layer at the initial momentum")
    weight_decay: float = bounded(2e-4, min=0.0, help="L2 weight cost on the weights (not the biases)")
    init_std: float = bounded(0.01, min=0.0, help="standard deviation of the initial weights")

    def check(self) -> None:
        parse_sizes(self.hidden)

    def layer_sizes(self) -> tuple[int, ...]:
        """(n_visible, h_1, ..., h_L)."""
        return (self.n_visible, *parse_sizes(self.hidden))


def log_bernoulli(logits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """log prod_i Bernoulli(states_i | sigmoid(logits_i)) per row."""
    return -F.binary_cross_entropy_with_logits(logits, states, reduction="none").sum(1)


class DBN(GenerativeModel):
    """Stacked RBMs (`layers[l]` between h_l and h_{l+1}, h_0 = x), trained greedily."""

    Config = Config
    capabilities = frozenset({"features", "reconstruct", "ais_bound", "gibbs_chain"})

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        self.sizes = c.layer_sizes()
        self.n_visible = c.n_visible
        self.layers = nn.ModuleList(
            RBM(rbm_config(c, a, b)) for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)
        )
        # which RBM is in training (0 = the bottom one) and the DBN's own step counter
        self.register_buffer("training_layer", torch.zeros((), dtype=torch.int64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.steps_per_epoch = self.layers[0].steps_per_epoch  # `prepare` sets it
        self._base_x: torch.Tensor | None = None  # training images for upper layers' base rates
        self.optimizers = {f"layer{i + 1}": layer.optimizers["model"] for i, layer in enumerate(self.layers)}

    @property
    def data_kind(self) -> str:
        return "binary"

    @property
    def image_shape(self) -> tuple[int, ...]:
        return visible_shape(self.n_visible)

    @property
    def local_buffers(self) -> tuple[str, ...]:
        """Every layer's persistent chains ("layers.0.chains", ...): each rank's own under torchrun."""
        return tuple(f"layers.{i}.{b}" for i, layer in enumerate(self.layers) for b in layer.local_buffers)

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].W.dtype

    def prepare(self, data, batch_size: int) -> None:
        """Before the first step: the bottom RBM's `prepare` (visible biases at the pixels' base
        rate, PCD chains from it), the epoch length for the layer schedule, and a reference to the
        first training images, from which each upper RBM's base rate is set when its turn comes."""
        self.steps_per_epoch, self._base_x = prepare_stack(self.layers, data, batch_size)

    # ---------------------------------------------------------------------------------------
    def _steps_per_layer(self) -> int:
        c = self.config
        per_layer = c.epochs_per_layer if c.epochs_per_layer > 0 else c.epochs / len(self.layers)
        return max(1, round(per_layer * self.steps_per_epoch))

    def layer_at(self, step: int) -> int:
        """The RBM that trains at (0-based) step `step`: each layer below the top for
        `epochs_per_layer` epochs (or epochs / L when that is 0), the top for the rest."""
        return stage_at(step, self._steps_per_layer(), len(self.layers))

    def schedule_progress(self, step: int, total_steps: int) -> float:
        """The training loop's lr schedule runs once per layer: each RBM is trained, and its
        learning rate annealed, as if it were trained alone (progress through its own steps)."""
        return stage_progress(step, total_steps, self._steps_per_layer(), len(self.layers))

    @torch.no_grad()
    def up(
        self, x: torch.Tensor, n_layers: int, sample: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """x passed up through the first `n_layers` RBMs: binary samples of q(h | below) at every
        layer when `sample`, else the probabilities (a mean-field up pass)."""
        h = x.flatten(1).to(self.dtype)
        for layer in self.layers[:n_layers]:
            p = torch.sigmoid(layer.hidden_input(h))
            h = bernoulli(p, generator) if sample else p
        return h

    def _start_layer(self, index: int, x: torch.Tensor) -> None:
        """Layer `index` begins: visible biases at the base rate of the layer below's activity
        (mean-field up pass of the first training images, or of the batch without `prepare`),
        PCD chains drawn from it, and the epoch length for its momentum ramp."""
        source = x if self._base_x is None else self._base_x
        below = in_chunks(lambda part: self.up(part, index, sample=False), source, self.layers[0].W.device)
        start_upper_rbm(self.layers[index], below, self.config.batch_size, self.steps_per_epoch)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        x = batch["x"].flatten(1).to(self.dtype)
        target = self.layer_at(int(self.updates))
        while int(self.training_layer) < target:  # (more than one step only if a layer has 0 steps)
            self.training_layer += 1
            self._start_layer(int(self.training_layer), x)
        index = int(self.training_layer)
        h = self.up(x, index, sample=self.config.propagate == "sample")
        stats = self.layers[index].train_step({"x": h})
        self.updates += 1
        return {"layer": float(index + 1), **stats}

    # ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, steps: int = 1000, **condition
    ) -> torch.Tensor:
        """`steps` Gibbs steps in the top RBM from its base rate, then one top-down pass; returns
        the last p(x | h_1) (probabilities) as images."""
        self.conditions_for(n, generator, **condition)  # it takes none: refuse any
        p = self.layers[-1].sample(n, generator, steps).flatten(1)
        for layer in reversed(self.layers[:-1]):
            p = torch.sigmoid(layer.visible_input(bernoulli(p, generator)))
        return p.reshape(n, *self.image_shape)

    @torch.no_grad()
    def gibbs_frames(
        self, v: torch.Tensor, steps: int, every: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Hinton et al.'s sampler step by step: the start image v passed up the recognition
        chain (binary samples) to the top RBM's visible layer h_{L-1}, alternating Gibbs sampling
        in the top RBM, and each kept state of h_{L-1} passed down the directed layers (their
        probabilities: for two RBMs exactly p(x | h_1)). Frame 0 is the start image; the frames
        do not depend on `every` beyond which steps are kept."""
        v = v.to(self.dtype)
        top = self.layers[-1]
        probs, states = top.chain(self.up(v, len(self.layers) - 1, True, generator), steps, every, generator)
        if len(self.layers) == 1:  # the top RBM is on the pixels
            return probs
        frames = [v]
        for h in states[1:]:
            for layer in reversed(self.layers[:-1]):
                h = torch.sigmoid(layer.visible_input(h))
            frames.append(h)
        return torch.stack(frames)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Every hidden layer's probabilities on a mean-field up pass, concatenated."""
        h, out = x.flatten(1).to(self.dtype), []
        for layer in self.layers:
            h = torch.sigmoid(layer.hidden_input(h))
            out.append(h)
        return torch.cat(out, 1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field up to the top and back down, as images (for pictures)."""
        h = self.up(x, len(self.layers), sample=False)
        for layer in reversed(self.layers):
            h = torch.sigmoid(layer.visible_input(h))
        return h.reshape(-1, *self.image_shape)

    # ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def bound_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None, n_samples: int = BOUND_SAMPLES
    ) -> torch.Tensor:
        """Per image, float64: the mean over `n_samples` draws h ~ q(h_1, ..., h_{L-1} | x) of
        log p(x | h_1) + sum_l log p(h_l | h_{l+1}) + log p*(h_{L-1}) - log q(h | x), i.e. the
        variational bound plus log Z of the top RBM. Computed in the weights' dtype (call
        `.double()` on the model for exact arithmetic)."""
        if n_samples < 1:
            raise UserError(f"n_samples must be at least 1, got {n_samples}")
        x = x.flatten(1).to(self.dtype)
        if x.shape[1] != self.n_visible:
            raise UserError(
                f"the data have {x.shape[1]} pixels but the DBN has {self.n_visible} visible units"
            )
        out = []
        for xb in x.split(CHUNK):
            below = xb.repeat(n_samples, 1)  # sample s of image i in row s * len(xb) + i
            total = torch.zeros(len(below), dtype=self.dtype, device=x.device)
            for layer in self.layers[:-1]:
                logits = layer.hidden_input(below)
                h = bernoulli(torch.sigmoid(logits), generator)
                total += log_bernoulli(layer.visible_input(h), below) - log_bernoulli(logits, h)
                below = h
            total -= self.layers[-1].free_energy(below)
            out.append(total.double().view(n_samples, len(xb)).mean(0))
        return torch.cat(out)

    @torch.no_grad()
    def log_likelihood_exact(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per image, float64, by enumerating every hidden layer below the top (each at
        most MAX_EXACT_UNITS units) and the top RBM's smaller layer: for tests on tiny DBNs."""
        top = self.layers[-1]
        x = x.flatten(1).double()
        if len(self.layers) == 1:
            return -top.free_energy(x) - top.log_partition_exact()
        big = [n for n in self.sizes[1:-1] if n > MAX_EXACT_UNITS]
        if big:
            raise UserError(
                f"exact log p(x) enumerates every hidden layer below the top; {big[0]} units is over "
                f"the limit of {MAX_EXACT_UNITS}: use the variational bound"
            )
        device = top.W.device
        states = binary_states(0, 1 << top.n_visible, top.n_visible, torch.float64, device)
        log_p = -top.free_energy(states) - top.log_partition_exact()  # log p(h_{L-1})
        for layer in reversed(self.layers[1:-1]):  # h_l given h_{l+1}, summed over h_{l+1}
            lower = binary_states(0, 1 << layer.n_visible, layer.n_visible, torch.float64, device)
            log_p = torch.logsumexp(self._log_conditional(layer, lower, states) + log_p, 1)
            states = lower
        bottom = self.layers[0]
        out = [torch.logsumexp(self._log_conditional(bottom, xb, states) + log_p, 1) for xb in x.split(CHUNK)]
        return torch.cat(out)

    @staticmethod
    def _log_conditional(layer: RBM, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """log p(lower_i | upper_j) under the layer's visible conditional, (len(lower), len(upper))."""
        W, b = layer.W.detach().double(), layer.visible_bias.detach().double()
        logits = upper @ W.t() + b
        return lower @ F.logsigmoid(logits).t() + (1 - lower) @ F.logsigmoid(-logits).t()

    def partition_rbm(self) -> RBMParameters:
        """The RBM whose partition function is the DBN's: the top one (AIS estimates its log Z)."""
        return self.layers[-1].partition_rbm()

    def ais_base_bias(self, train_x: torch.Tensor | None = None) -> torch.Tensor:
        """Base-rate visible biases for AIS on the top RBM: log-odds of the mean activity of the
        layer below it on a mean-field up pass of (up to 10,000) training images; without
        `train_x`, the top RBM's own visible biases."""
        top = self.layers[-1]
        if train_x is None:
            return top.visible_bias.detach().float()
        below = in_chunks(
            lambda part: self.up(part, len(self.layers) - 1, sample=False),
            train_x[:BASE_RATE_IMAGES],
            top.W.device,
        )
        return base_rate_bias(below)

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Cheap held-out monitors: which layer is training, its reconstruction cross-entropy on the
        data passed up to it (nats per image), and, when the top RBM has a layer of at most
        EVAL_EXACT_UNITS units, the variational bound with exact log Z (one sample per image).
        The bound with AIS: `genlearn eval RUN --metric ais`."""
        x = data["x"].flatten(1).to(self.dtype)
        index = int(self.training_layer)
        h = self.up(x, index, sample=self.config.propagate == "sample")
        out = {"layer": float(index + 1), "recon": self.layers[index].evaluate({"x": h})["recon"]}
        top = self.layers[-1]
        if min(top.n_visible, top.n_hidden) <= rbm.EVAL_EXACT_UNITS:
            out["bound"] = float(self.bound_terms(x, n_samples=1).mean()) - top.log_partition_exact()
        return out
