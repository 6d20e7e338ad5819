r"""Binary restricted Boltzmann machine, trained by contrastive divergence (Hinton, "Training
products of experts by minimizing contrastive divergence", Neural Computation 2002) or persistent
contrastive divergence (Tieleman, "Training restricted Boltzmann machines using approximations to
the likelihood gradient", ICML 2008); the simplest member of the lecture's Boltzmann family.

Visible units v in {0,1}^V (the pixels), hidden units h in {0,1}^H, weights W (V x H), visible
biases b, hidden biases c. The energy and the distribution it defines:

    E(v, h) = -v^T W h - b^T v - c^T h,      p(v, h) = exp(-E(v, h)) / Z,   Z = sum_{v,h} exp(-E(v, h))

There are no connections within a layer, so each layer is conditionally independent given the
other, and Gibbs sampling alternates whole layers:

    p(h_j = 1 | v) = sigmoid(c_j + v^T W_j),      p(v_i = 1 | h) = sigmoid(b_i + W_i h)

Summing the hidden units out gives the free energy, p(v) = exp(-F(v)) / Z:

    F(v) = -b^T v - sum_j softplus(c_j + v^T W_j)

The gradient of the log-likelihood is a difference of two expectations of the sufficient
statistics, under the data (with h drawn from p(h|v)) and under the model:

    d log p(v) / dW = E_data[v h^T] - E_model[v h^T]    (and likewise v for b, h for c)

The first is exact (p(h|v) factorises); the second needs samples from the model. CD-k starts a
Gibbs chain at each training image and runs it k full steps (v_0 -> h_0 -> v_1 -> ... -> v_k):
a biased estimate, good enough to learn with even at k = 1. PCD instead keeps one chain per
batch row across updates (the buffer `chains`): each update moves the chains k more steps under
the current weights, so with small learning rates they stay near the model's distribution and
the negative statistics approach E_model. Following Hinton's practical guide, the statistics use
the hidden probabilities p(h|v) rather than binary samples (less noise, same expectation) and
binary visible states; the gradient estimate

    dW = (v_k^T p(h|v_k) - v_0^T p(h|v_0)) / n

(the negative log-likelihood gradient, negative minus positive phase, averaged over the batch) is
put in each parameter's `.grad` and an SGD optimiser takes the step, so momentum, weight decay
(on W only) and the training loop's learning-rate schedule apply as to any other model.

Monitors (`train_step`, `evaluate`): the reconstruction cross-entropy of the images under
p(v | h_0), h_0 ~ p(h | v_0), in nats per image, and free energies; neither is the likelihood.
The log-likelihood needs log Z: `log_partition_exact` by enumeration for small models, annealed
importance sampling (`genlearn.eval.ais`) for MNIST-sized ones.

Defaults: Hinton & Salakhutdinov's MNIST recipe (rbm.m, 2006) with the practical guide's initial
weights: W ~ N(0, 0.01^2), visible biases at the log-odds of the training pixel means, hidden
biases 0, batches of 100, momentum 0.5 for 5 epochs and 0.9 after, weight cost 2e-4, and a
learning rate of 0.05 (rbm.m's 0.1 halved: with momentum 0.9 its effective step is 1.0, faster
than PCD's chains can follow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from genlearn.config import Common, bounded, choice
from genlearn.errors import UserError
from genlearn.models.base import GenerativeModel, RBMParameters, chain_steps
from genlearn.nn.distributions import base_rate_bias
from genlearn.nn.onednn import linear as _linear

IMAGE_SHAPE = (1, 28, 28)


def visible_shape(n_visible: int) -> tuple[int, ...]:
    """The shape of one visible vector as an image: (1, 28, 28) for MNIST, else flat (toy models
    in tests). Shared by the RBM, DBN and DBM."""
    return IMAGE_SHAPE if n_visible == 784 else (n_visible,)


MAX_EXACT_UNITS = 25  # log_partition_exact enumerates 2^m states of the smaller layer
EVAL_EXACT_UNITS = 16  # evaluate() adds the exact log-likelihood up to this size (fast enough)


@dataclass
class Config(Common):
    n_visible: int = bounded(784, min=1, help="visible units (784 for MNIST)")
    n_hidden: int = bounded(500, min=1, help="hidden units")
    method: str = choice("cd", ("cd", "pcd"), "negative phase: contrastive divergence or persistent CD")
    k: int = bounded(1, min=1, help="Gibbs steps of the negative phase per update (CD-k / PCD-k)")
    lr: float = bounded(0.05, min=0.0, help="learning rate")
    momentum: float = bounded(0.5, min=0.0, max=1.0, help="SGD momentum at the start")
    momentum_final: float = bounded(0.9, min=0.0, max=1.0, help="SGD momentum after momentum_epochs")
    momentum_epochs: float = bounded(5.0, min=0.0, help="epochs at the initial momentum")
    weight_decay: float = bounded(2e-4, min=0.0, help="L2 weight cost on W (not on the biases)")
    init_std: float = bounded(0.01, min=0.0, help="standard deviation of the initial weights")
    centred: bool = field(
        default=False, metadata={"help": "follow the centred gradient (offsets: data and hidden means)"}
    )
    offset_rate: float = bounded(0.01, min=0.0, max=1.0, help="moving-average rate of the centring offsets")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T + b: oneDNN's product (about twice MKL's speed on AMD CPUs) when no gradient is
    being recorded, torch's otherwise (the oneDNN op has no backward)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return F.linear(x, weight, bias)
    return _linear(x, weight, bias)


def bernoulli(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary states with P(1) = p, from uniforms (torch.bernoulli is several times slower)."""
    u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return torch.lt(u, p, out=u)


def binary_states(start: int, stop: int, m: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Rows start..stop-1 of the table of all 2^m binary vectors (row i holds i's bits)."""
    ints = torch.arange(start, stop, device=device)
    return ((ints[:, None] >> torch.arange(m, device=device)) & 1).to(dtype)


def log_sum_over_states(weights: torch.Tensor, own_bias: torch.Tensor, other_bias: torch.Tensor) -> float:
    """log sum_s exp(own_bias^T s + sum_j softplus(other_bias_j + (s W)_j)) over all binary s of
    length m = weights.shape[0], the other layer summed out analytically; batched over states."""
    m = weights.shape[0]
    rows = max(1, min(1 << m, (1 << 22) // max(1, weights.shape[1])))  # ~32 MB of float64
    parts = []
    for start in range(0, 1 << m, rows):
        s = binary_states(start, min(start + rows, 1 << m), m, weights.dtype, weights.device)
        parts.append(torch.logsumexp(s @ own_bias + F.softplus(s @ weights + other_bias).sum(1), 0))
    return float(torch.logsumexp(torch.stack(parts), 0))


class RBM(GenerativeModel):
    """Binary RBM: W (n_visible x n_hidden), visible_bias, hidden_bias; CD-k or PCD-k updates."""

    Config = Config
    capabilities = frozenset({"features", "reconstruct", "free_energy", "gibbs_chain"})
    # PCD's chains are each rank's own under torchrun (unused, and so harmless, under CD)
    local_buffers = ("chains",)

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        self.n_visible, self.n_hidden = c.n_visible, c.n_hidden
        self.W = nn.Parameter(torch.randn(c.n_visible, c.n_hidden) * c.init_std)
        self.visible_bias = nn.Parameter(torch.zeros(c.n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(c.n_hidden))
        # PCD's fantasy particles, one per batch row, binary (uint8). Under torchrun each rank
        # keeps its own (`local_buffers`): the ranks' chains start alike but are moved by per-rank
        # noise. They start at the initial model's own distribution (here uniform; `prepare`
        # redraws them).
        self.register_buffer("chains", (torch.rand(c.batch_size, c.n_visible) < 0.5).to(torch.uint8))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))  # for the momentum ramp
        if c.centred:  # the offsets mu (visible) and lambda (hidden); `prepare` sets mu
            self.register_buffer("visible_offset", torch.full((c.n_visible,), 0.5))
            self.register_buffer("hidden_offset", torch.full((c.n_hidden,), 0.5))
        self.steps_per_epoch = max(1, 50_000 // c.batch_size)  # MNIST's; `prepare` sets the data's
        self.optimizers = {
            "model": torch.optim.SGD(
                [
                    {"params": [self.W], "weight_decay": c.weight_decay},
                    {"params": [self.visible_bias, self.hidden_bias], "weight_decay": 0.0},
                ],
                lr=c.lr,
                momentum=c.momentum,
            )
        }

    @property
    def data_kind(self) -> str:
        return "binary"

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(1, 28, 28) for MNIST; a flat vector for other sizes (toy models in tests)."""
        return visible_shape(self.n_visible)

    def prepare(self, data, batch_size: int) -> None:
        """Before the first step (a resumed run then loads its checkpoint over this): visible
        biases at log(p / (1 - p)) of the training pixel means (the practical guide: the model
        starts with the data's marginals), the persistent chains redrawn from those marginals
        (near the initial model's equilibrium), and the epoch length for the momentum ramp."""
        self.steps_per_epoch = max(1, len(data.train_x) // batch_size)
        with torch.no_grad():
            self.visible_bias.copy_(base_rate_bias(data.train_x).to(self.visible_bias.device))
            if self.config.centred:
                self.visible_offset.copy_(torch.sigmoid(self.visible_bias))
            p = torch.sigmoid(self.visible_bias).expand_as(self.chains)
            self.chains.copy_(bernoulli(p).to(torch.uint8))

    # ---------------------------------------------------------------------------------------
    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        """c + v^T W for each row of v: the logits of p(h | v)."""
        return linear(v, self.W.t(), self.hidden_bias)

    def visible_input(self, h: torch.Tensor) -> torch.Tensor:
        """b + W h for each row of h: the logits of p(v | h)."""
        return linear(h, self.W, self.visible_bias)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -b^T v - sum_j softplus(c_j + v^T W_j), one value per row (images are flattened);
        computed in float64 when v is float64 (exact evaluation), else in the weights' dtype."""
        v = v.flatten(1)
        dtype = torch.promote_types(v.dtype, self.W.dtype) if v.is_floating_point() else self.W.dtype
        W, b, c = (t.to(dtype) for t in (self.W, self.visible_bias, self.hidden_bias))
        v = v.to(dtype)
        return -(v @ b) - F.softplus(v @ W + c).sum(1)

    def partition_rbm(self) -> RBMParameters:
        """(W, b, c), detached: the RBM is its own, for AIS (`genlearn.eval.ais`)."""
        return RBMParameters(self.W.detach(), self.visible_bias.detach(), self.hidden_bias.detach())

    def _free_energy_from(self, v: torch.Tensor, hidden_input: torch.Tensor) -> torch.Tensor:
        """F(v) reusing c + v^T W already computed for the sweep."""
        return -(v @ self.visible_bias) - F.softplus(hidden_input).sum(1)

    def log_partition_exact(self, layer: str | None = None) -> float:
        """log Z by enumerating every state of the smaller layer (or of `layer`: "visible" or
        "hidden"), the other layer summed out analytically, in float64. Refused above
        MAX_EXACT_UNITS units in the enumerated layer (2^25 states is already minutes)."""
        if layer is None:
            layer = "hidden" if self.n_hidden <= self.n_visible else "visible"
        if layer not in ("visible", "hidden"):
            raise UserError(f"layer must be 'visible' or 'hidden', not {layer!r}")
        m = self.n_hidden if layer == "hidden" else self.n_visible
        if m > MAX_EXACT_UNITS:
            raise UserError(
                f"exact log Z would enumerate 2^{m} states of the {layer} layer ({m} units); it is "
                f"refused above {MAX_EXACT_UNITS} units: use AIS (genlearn.eval.ais.rbm_log_partition)"
            )
        with torch.no_grad():
            W, b, c = (t.detach().double() for t in (self.W, self.visible_bias, self.hidden_bias))
            if layer == "hidden":
                return log_sum_over_states(W.t(), c, b)
            return log_sum_over_states(W, b, c)

    # ---------------------------------------------------------------------------------------
    def gibbs_from_visible_input(self, logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw v ~ sigmoid(logits), then k - 1 more full Gibbs steps v -> h -> v; returns the last
        v and c + v^T W (the logits of p(h | v), for the statistics and the free energy)."""
        v = bernoulli(torch.sigmoid(logits))
        hidden_input = self.hidden_input(v)
        for _ in range(k - 1):
            h = bernoulli(torch.sigmoid(hidden_input))
            v = bernoulli(torch.sigmoid(self.visible_input(h)))
            hidden_input = self.hidden_input(v)
        return v, hidden_input

    @torch.no_grad()
    def gradients(self, v0: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """One CD-k or PCD-k estimate of the negative log-likelihood gradient on the batch v0
        (n, V), and the monitors; PCD moves its chains to the new states."""
        n, k = v0.shape[0], self.config.k
        pos_input = self.hidden_input(v0)
        ph0 = torch.sigmoid(pos_input)
        recon_logits = self.visible_input(bernoulli(ph0))  # logits of p(v | h_0), h_0 ~ p(h | v_0)
        if self.config.method == "cd":
            v_neg, neg_input = self.gibbs_from_visible_input(recon_logits, k)
        else:
            chains = self._chains(n)
            h = bernoulli(torch.sigmoid(self.hidden_input(chains)))
            v_neg, neg_input = self.gibbs_from_visible_input(self.visible_input(h), k)
            self.chains[:n] = v_neg.to(torch.uint8)
        ph_neg = torch.sigmoid(neg_input)
        grads = self._centred_gradients(v0, ph0, v_neg, ph_neg) if self.config.centred else {}
        if not grads:
            # negative minus positive statistics, both products in one: [v_k; v_0]^T [p_k; -p_0]
            grad_w = linear(torch.cat([v_neg, v0]).t(), torch.cat([ph_neg, ph0.neg()]).t()).div_(n)
            grads = {"W": grad_w, "visible_bias": (v_neg - v0).mean(0), "hidden_bias": (ph_neg - ph0).mean(0)}
        return {
            **grads,
            "recon": float(F.binary_cross_entropy_with_logits(recon_logits, v0, reduction="sum")) / n,
            "free_energy_gap": float(
                self._free_energy_from(v0, pos_input).mean() - self._free_energy_from(v_neg, neg_input).mean()
            ),
        }

    def _centred_gradients(self, v0, ph0, v_neg, ph_neg) -> dict[str, torch.Tensor]:
        """The centred gradient (Montavon & Mueller 2012; Melchior, Fischer & Wiskott, JMLR 2016),
        expressed in this RBM's own parameters.

        With offsets mu (visible) and lambda (hidden), the centred energy is
        -(v - mu)^T W' (h - lambda) - b'^T (v - mu) - c'^T (h - lambda): the same family of models
        (W = W', b = b' - W' lambda, c = c' - W'^T mu, up to a constant), whose gradient in the
        centred parameters is

            dW' = <(v - mu)(h - lambda)^T>_model - <...>_data,  db' = <v>_m - <v>_d,  dc' = <h>_m - <h>_d

        and is far better conditioned when mu and lambda are the units' means. A step along it,
        mapped through the linear map above, is the step below on (W, b, c); the offsets follow
        the data's and the hidden units' means by a moving average (rate `offset_rate`), which
        moves no parameter: the model is stored in the plain parameters throughout."""
        n, mu, lam = v0.shape[0], self.visible_offset, self.hidden_offset
        dw = linear(torch.cat([v_neg, v0]).sub_(mu).t(), torch.cat([ph_neg - lam, lam - ph0]).t()).div_(n)
        grads = {
            "W": dw,
            "visible_bias": (v_neg - v0).mean(0) - dw @ lam,
            "hidden_bias": (ph_neg - ph0).mean(0) - dw.t() @ mu,
        }
        rate = self.config.offset_rate  # the offsets move after the step's gradient is formed
        mu.lerp_(v0.mean(0), rate)
        lam.lerp_(ph0.mean(0), rate)
        return grads

    def _chains(self, n: int) -> torch.Tensor:
        if n > len(self.chains):
            raise UserError(f"PCD keeps {len(self.chains)} chains (batch_size) but got a batch of {n} rows")
        return self.chains[:n].to(self.W.dtype)

    def _set_momentum(self) -> None:
        """Momentum `momentum` for `momentum_epochs` epochs, `momentum_final` after."""
        c = self.config
        epoch = int(self.updates) / self.steps_per_epoch
        momentum = c.momentum if epoch < c.momentum_epochs else c.momentum_final
        for group in self.optimizers["model"].param_groups:
            group["momentum"] = momentum

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        v0 = batch["x"].flatten(1).to(self.W.dtype)
        grads = self.gradients(v0)
        for name, param in (
            ("W", self.W),
            ("visible_bias", self.visible_bias),
            ("hidden_bias", self.hidden_bias),
        ):
            param.grad = grads[name]
        self._set_momentum()
        self.optimizers["model"].step()
        self.updates += 1
        lr = self.optimizers["model"].param_groups[0]["lr"]
        return {"recon": grads["recon"], "free_energy_gap": grads["free_energy_gap"], "lr": lr}

    # ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, steps: int = 1000, **condition
    ) -> torch.Tensor:
        """Run n Gibbs chains `steps` full steps from the base rate (v ~ sigmoid(b)) and return the
        last p(v | h): probabilities, the usual way RBM samples are shown, as images."""
        self.conditions_for(n, generator, **condition)  # it takes none: refuse any
        p = torch.sigmoid(self.visible_bias).expand(n, -1)
        v = bernoulli(p, generator)
        for _ in range(steps):
            p, v = self.gibbs_step(v, generator)
        return p.reshape(n, *self.image_shape)

    def gibbs_step(
        self, v: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One full step of alternating Gibbs sampling v -> h -> v: h ~ p(h | v), then p(v | h)
        and the v drawn from it."""
        h = bernoulli(torch.sigmoid(self.hidden_input(v)), generator)
        p = torch.sigmoid(self.visible_input(h))
        return p, bernoulli(p, generator)

    @torch.no_grad()
    def chain(
        self, v: torch.Tensor, steps: int, every: int = 1, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alternating Gibbs sampling v -> h -> v from the visible states v (n, V), `steps` full
        steps; at each step of `chain_steps(steps, every)`, p(v | h) and the v drawn from it,
        stacked: ((K, n, V), (K, n, V)), step 0 being v itself in both."""
        kept = set(chain_steps(steps, every))
        v = v.to(self.W.dtype)
        probs, states = [v], [v]
        for step in range(1, steps + 1):
            p, v = self.gibbs_step(v, generator)
            if step in kept:
                probs.append(p)
                states.append(v)
        return torch.stack(probs), torch.stack(states)

    @torch.no_grad()
    def gibbs_frames(
        self, v: torch.Tensor, steps: int, every: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n chains of alternating Gibbs sampling, the sampler `sample` runs from the base rate,
        here from v: v, then p(v | h) every `every` steps."""
        return self.chain(v, steps, every, generator)[0]

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | v): the learned representation a linear probe reads."""
        return torch.sigmoid(self.hidden_input(x.flatten(1).to(self.W.dtype)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field reconstruction sigmoid(b + W p(h | v)), as images (for pictures)."""
        return torch.sigmoid(self.visible_input(self.features(x))).reshape(-1, *self.image_shape)

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Cheap held-out monitors: reconstruction cross-entropy (nats/image, one sampled h per
        image, as in training) and mean free energy; for models whose smaller layer has at most
        EVAL_EXACT_UNITS units also the exact mean log-likelihood. AIS: `genlearn eval --metric ais`."""
        x = data["x"].flatten(1).to(self.W.dtype)
        if x.shape[1] != self.n_visible:
            raise UserError(
                f"the data have {x.shape[1]} pixels but the RBM has {self.n_visible} visible units"
            )
        recon = free_energy = 0.0
        for xb in x.split(1000):
            hidden_input = self.hidden_input(xb)
            logits = self.visible_input(bernoulli(torch.sigmoid(hidden_input)))
            recon += float(F.binary_cross_entropy_with_logits(logits, xb, reduction="sum"))
            free_energy += float(self._free_energy_from(xb, hidden_input).sum())
        out = {"recon": recon / len(x), "free_energy": free_energy / len(x)}
        if min(self.n_visible, self.n_hidden) <= EVAL_EXACT_UNITS:
            mean_neg_f = float(-self.free_energy(x.double()).mean())
            out["log_likelihood"] = mean_neg_f - self.log_partition_exact()
        return out
