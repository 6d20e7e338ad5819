"""The model contract: what the training loop, the metrics, the figures and the CLI may rely on.

Every registered model is a `GenerativeModel`. The required part (a config, `optimizers`,
`train_step`, `sample`, `evaluate`, `data_kind`, `image_shape`) every model has. The optional
abilities are declared by name in `capabilities`; each is a method documented here, and the parts
that use one ask `model.can(name)` (or `model.require(name, what)`, which refuses with a
`UserError` naming the model and what it lacks). Nothing outside this file probes a model with
`hasattr`: a model that forgets part of the contract fails `tests/test_contract.py` by name.

Conditions (labels, captions) are keyword arguments of `sample`: a model lists the ones it takes
in `conditions`, and `default_conditions(n, generator)` draws them from the held-out data
distribution, so that `sample(n)` works for every model and metrics treat every family alike.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from genlearn.errors import UserError

# The optional abilities, each the name of a method (or group of methods) documented below.
CAPABILITIES: dict[str, str] = {
    "encode": "an inference network: encode(x), features(x) and reconstruct(x)",
    "features": "features(x) for the linear probe (an inference network or a hidden layer)",
    "reconstruct": "reconstruct(x): the model's reconstruction of held-out images",
    "log_likelihood": "a Gaussian encoder and log p(x|z): encode(x) -> (mean, logvar), log_likelihood(x, z)",
    "nll_bound": "nll_bound(x, **condition): a variational bound on -log p(x) per image (DRAW's L^x + L^z)",
    "free_energy": "free_energy(v) and partition_rbm(): an RBM, whose log Z AIS estimates",
    "ais_bound": "a variational bound on log p(x) whose normaliser is an RBM's (a DBN, a DBM): "
    "bound_terms(x, generator), partition_rbm() and ais_base_bias(train_x), for AIS",
    "latent_2d": "a 2-D latent space: decode_mean(z) gives the mean image of each z (the manifold)",
    "sample_canvases": "sample_canvases(n, generator): the canvas over time, DRAW-like",
    "sample_alignments": "sample_alignments(n, generator): the canvas over time with the caption's word alignments",
    "temperature": "sample(n, generator, temperature=tau, **condition) (and its other samplers) draw every "
    "z_t as mu_t + tau sigma_t eps_t: tau = 1 is the model itself, 0 the prior's mean path",
    "sample_pyramid": "sample_pyramid(n, generator, **condition): each level of a Laplacian pyramid, as "
    "(images, residuals), coarse to fine: images [I_K, ..., I_0], each (n, C, H_k, W_k) in [0, 1]; "
    "residuals [h_{K-1}, ..., h_0], images[j + 1] = u(images[j]) + residuals[j]; images[-1] is the sample",
    "gibbs_chain": "gibbs_chain(n, steps, start, generator, every): the model's Gibbs sampler step by step, "
    "(frames, n, C, H, W) in [0, 1] at the steps chain_steps(steps, every) (an RBM, a DBN, a DBM); the model "
    "gives gibbs_frames(v, steps, every, generator), the sampler from the chains' first visible states",
    "decode": "decode_mean(z) for z in the space of features(x) (an inference network's posterior means "
    "or codes): the mean image each code decodes to",
}
# How a Gibbs chain may start (`gibbs_chain`), besides images of the data.
CHAIN_STARTS = ("noise", "zeros")
DATA_KINDS = ("binary", "continuous", "points")
# Condition names a model may take, and the batch key that carries each one.
CONDITION_KEYS = {"labels": "y", "captions": "caption"}


class RBMParameters(NamedTuple):
    """A binary RBM's parameters, E(v, h) = -v^T W h - b^T v - c^T h: W (V, H), the visible
    biases b (V,) and the hidden biases c (H,), detached from the model's graph."""

    W: torch.Tensor
    visible_bias: torch.Tensor
    hidden_bias: torch.Tensor


def chain_steps(steps: int, every: int = 1) -> list[int]:
    """The steps at which `gibbs_chain` keeps a frame: 0 (the start), every `every`-th step, and
    the last one; `steps` below 0 or `every` below 1 are refused with one line."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UserError(f"the chain's steps must be 0 or more, got {steps!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UserError(f"a chain keeps a frame every 1 or more steps, got {every!r}")
    kept = list(range(0, steps + 1, every))
    return kept if kept[-1] == steps else [*kept, steps]


def chain_start(
    n: int, start: Any, shape: tuple[int, ...], generator: torch.Generator | None, device: Any
) -> torch.Tensor:
    """The first visible states of `n` Gibbs chains, binary, (n, prod(shape)): "noise" (each unit
    on with probability 1/2), "zeros", or images (n, *shape) in [0, 1] binarized with `generator`
    (a chain started at the data)."""
    size = math.prod(shape)
    if isinstance(start, str):
        if start not in CHAIN_STARTS:
            raise UserError(f"a chain starts from {', '.join(CHAIN_STARTS)} or images, not {start!r}")
        if start == "zeros":
            return torch.zeros(n, size, device=device)
        return (torch.rand(n, size, generator=generator, device=device) < 0.5).float()
    images = start.reshape(len(start), -1).to(device, torch.float32)
    if images.shape != (n, size):
        raise UserError(f"a chain of {n} starts from {n} images of {size} pixels, got {tuple(start.shape)}")
    return (torch.rand(images.shape, generator=generator, device=device) < images).float()


def checked_temperature(temperature: float) -> float:
    """A sampling temperature, refused with one line unless it is 0 or more (NaN included)."""
    if not temperature >= 0:
        raise UserError(f"the temperature must be 0 or more, got {temperature:g}")
    return float(temperature)


class GenerativeModel(nn.Module):
    """A generative model, trained by the one loop, judged by the shared metrics.

    Required, on every model:
    - `Config`: the dataclass of its settings (every field defaulted; `genlearn.config.Common`).
    - `config`: the instance it was built from; `name`: its registry name (set by the registry).
    - `data_kind`: "binary" (trained on dynamically binarized images, scored on the fixed
      binarization), "continuous" (intensities in [0, 1]) or "points" (2-D toy data).
    - `image_shape`: (C, H, W) of one image, or None for points.
    - `optimizers`: name -> optimiser; the loop sets their lr and saves their state.
    - `train_step(batch)`: one update from a batch dict (`x`, and conditions such as `y`),
      returning finite floats to log.
    - `sample(n, generator=None, **condition)`: (n, C, H, W) in [0, 1], or (n, 2) points.
    - `evaluate(data)`: the model's own held-out figures on a split's batch dict.

    Hooks with defaults: `prepare(data, batch_size)` (data-dependent initialisation before the
    first step), `schedule_progress(step, total_steps)` (how far the lr schedule has run; a model
    that trains in phases restarts it per phase), `local_buffers` (buffers each rank keeps its own
    under torchrun, e.g. persistent Gibbs chains).
    """

    Config: ClassVar[type]
    capabilities: frozenset[str] = frozenset()
    conditions: tuple[str, ...] = ()
    local_buffers: tuple[str, ...] = ()
    name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("capabilities", frozenset())
        unknown = set(declared) - set(CAPABILITIES) if isinstance(declared, frozenset) else set()
        if unknown:
            raise TypeError(f"{cls.__name__} declares unknown capabilities {sorted(unknown)}")

    # ---- required -----------------------------------------------------------------------------
    @property
    def data_kind(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must say its data_kind")

    image_shape: tuple[int, ...] | None = None

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, **condition: Any) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def sample_in_chunks(
        self,
        n: int,
        generator: torch.Generator | None = None,
        chunk: int = 1000,
        temperature: float = 1.0,
        **condition: Any,
    ) -> torch.Tensor:
        """`sample(n, generator, **condition)` drawn `chunk` at a time (the conditions split
        alike) and gathered on the CPU as float32: a large n never asks the model for one huge
        allocation. With n <= chunk it is one call of `sample`. A `temperature` other than 1
        needs the "temperature" ability (refused with one line otherwise)."""
        options = self.sampling_options(temperature)
        parts = []
        for start in range(0, n, chunk):
            part = {k: v[start : start + chunk] for k, v in condition.items()}
            parts.append(
                self.sample(min(chunk, n - start), generator=generator, **part, **options).float().cpu()
            )
        return torch.cat(parts)

    def sampling_options(self, temperature: float = 1.0) -> dict[str, Any]:
        """The keyword arguments of `sample` beyond the conditions: {} for the model itself, or
        {"temperature": tau} for a model that can sample at another temperature."""
        if temperature == 1.0:
            return {}
        self.require("temperature", "a sampling temperature other than 1")
        return {"temperature": checked_temperature(temperature)}

    # ---- hooks ----------------------------------------------------------------------------------
    def prepare(self, data: Any, batch_size: int) -> None:
        """Data-dependent initialisation, called before the first step (a resume loads over it)."""

    def schedule_progress(self, step: int, total_steps: int) -> float:
        """How far the lr schedule has run at `step`, in [0, 1]."""
        return step / max(total_steps, 1)

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live (its first parameter's, else its first buffer's)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    # ---- capabilities -------------------------------------------------------------------------
    def can(self, capability: str) -> bool:
        """Whether this model has the optional ability `capability` (a key of CAPABILITIES)."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")
        return capability in self.capabilities

    def require(self, capability: str, what: str) -> None:
        """Refuse `what` (a metric, a picture) with one user-facing line unless the model can."""
        if not self.can(capability):
            raise UserError(
                f"{what} does not apply to model {self.name or type(self).__name__!r} "
                f"(it has no {CAPABILITIES[capability].split(':')[0]})"
            )

    # The optional methods; a model that declares a capability overrides its methods.
    def encode(self, x: torch.Tensor) -> Any:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def nll_bound(self, x: torch.Tensor, **condition: Any) -> torch.Tensor:
        raise NotImplementedError

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) per row of v (images flattened), with p(v) = exp(-F(v)) / Z ("free_energy")."""
        raise NotImplementedError

    def partition_rbm(self) -> RBMParameters:
        """The binary RBM whose partition function Z is the model's, which AIS
        (`genlearn.eval.ais`) anneals to: an RBM's own parameters ("free_energy"), a DBN's top RBM,
        a DBM as the RBM between h1 and (v, h2) ("ais_bound")."""
        raise NotImplementedError

    def bound_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None, **options: Any
    ) -> torch.Tensor:
        """Per image of x, float64: a variational lower bound on log p(x) plus log Z of
        `partition_rbm()`, so that mean(bound_terms(x)) - log Z is the bound ("ais_bound"): a
        DBN's over sampled recognition chains (`n_samples`, drawn from `generator`), a DBM's
        under mean field (`steps` rounds)."""
        raise NotImplementedError

    def ais_base_bias(self, train_x: torch.Tensor | None = None) -> torch.Tensor:
        """The visible biases of AIS's base model for `partition_rbm()` ("ais_bound"): the
        log-odds of the mean activity of the RBM's visible layer on (up to 10,000 of) the
        training images `train_x`, or, without them, a base model that needs no data."""
        raise NotImplementedError

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_canvases(self, n: int, generator: torch.Generator | None = None, **condition: Any) -> Any:
        raise NotImplementedError

    def sample_alignments(self, n: int, generator: torch.Generator | None = None, **condition: Any) -> Any:
        raise NotImplementedError

    def sample_pyramid(self, n: int, generator: torch.Generator | None = None, **condition: Any) -> Any:
        raise NotImplementedError

    @torch.no_grad()
    def gibbs_chain(
        self,
        n: int,
        steps: int,
        start: str | torch.Tensor = "noise",
        generator: torch.Generator | None = None,
        every: int = 1,
    ) -> torch.Tensor:
        """The paper's Gibbs sampler run `steps` full steps from `start` ("noise", "zeros" or n
        images in [0, 1], see `chain_start`), kept at `chain_steps(steps, every)`: (frames, n, C,
        H, W) in [0, 1], frame 0 the start, each later frame p(v | h) at that step, as `sample`
        shows its last ("gibbs_chain"). Every draw comes from `generator`: the start's first,
        then the model's `gibbs_frames`."""
        v = chain_start(n, start, self.image_shape, generator, self.device)
        frames = self.gibbs_frames(v, steps, every, generator)
        return frames.reshape(len(frames), n, *self.image_shape)

    def gibbs_frames(
        self, v: torch.Tensor, steps: int, every: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The model's Gibbs sampler from the binary visible states v (n, V), float32, that
        `gibbs_chain` starts from: the visible layer's frames (frames, n, V) at the steps
        `chain_steps(steps, every)`, frame 0 being v ("gibbs_chain")."""
        raise NotImplementedError

    # ---- conditions ---------------------------------------------------------------------------
    def default_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Conditions for `n` samples drawn from the held-out data distribution ({} if none)."""
        return {}

    def conditions_for(
        self, n: int, generator: torch.Generator | None = None, **condition: Any
    ) -> dict[str, Any]:
        """The conditions `sample` uses: the given ones, checked, or the defaults."""
        unknown = [k for k in condition if k not in self.conditions]
        if unknown:
            takes = ", ".join(self.conditions) if self.conditions else "no condition"
            raise UserError(
                f"model {self.name or type(self).__name__!r} takes no {unknown[0]}; it takes {takes}"
            )
        return condition if condition else self.default_conditions(n, generator)
