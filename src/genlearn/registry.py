"""Model names -> (model class, config class, description, preset overrides).

Several names may share a class with different defaults (e.g. `draw` and `draw-noattn`); the
preset is applied before the user's values, so users can still override every field.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlearn import config as cfg
from genlearn import memory, runs
from genlearn.errors import UserError


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    cls_name: str
    description: str
    preset: dict[str, Any] = field(default_factory=dict)

    @property
    def model_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.cls_name)

    @property
    def config_class(self) -> type:
        return self.model_class.Config


_REGISTRY: dict[str, Entry] = {}


def register(name: str, module: str, cls_name: str, description: str, **preset: Any) -> None:
    _REGISTRY[name] = Entry(name, module, cls_name, description, dict(preset))


def names() -> list[str]:
    return list(_REGISTRY)


def families() -> list[str]:
    """The model classes in the registry's order, which is the lecture's: the autoencoder and VAE,
    DRAW, the GANs, the Boltzmann machines."""
    return list(dict.fromkeys(e.cls_name for e in _REGISTRY.values()))


def entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def make_config(name: str, values: dict[str, Any] | None = None) -> Any:
    """The validated config for `name`: class defaults, then the preset, then `values`."""
    e = entry(name)
    merged = {**e.preset, **(values or {})}
    return cfg.build(e.config_class, merged, model=name)


def instantiate(name: str, config: Any) -> Any:
    """The model `name` built from `config`, its initial weights drawn from `config.seed`; sizes
    too large for this machine are refused before anything is allocated."""
    memory.check_model_size(entry(name).model_class, config, name)
    torch.manual_seed(config.seed)
    model = entry(name).model_class(config)
    model.name = name
    return model


def create(name: str, **fields: Any) -> Any:
    """Build a model by name: `create("vae", latent_dim=2)`; seeded by its `seed` field."""
    return instantiate(name, make_config(name, fields))


def run_config(run_dir: str | Path) -> tuple[str, Any]:
    """(model name, validated config) of a run directory: its config.toml (`runs.read_config`),
    upgraded from an older version's keys by the model's Config (`Common.upgrade`)."""
    name, values = runs.read_config(run_dir)
    return name, make_config(name, entry(name).config_class.upgrade(values))


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> Any:
    """The run's model with its saved weights, in eval mode, on `device`."""
    name, config = run_config(run_dir)
    # No checkpoint recovery here: model.safetensors is always complete, and a training process
    # may be writing its temporaries right now.
    model = instantiate(name, config)
    runs.load_weights(run_dir, model)
    return model.to(device).eval()


register(
    "autoencoder",
    "genlearn.models.autoencoder",
    "Autoencoder",
    "MLP autoencoder trained on reconstruction error; linear probe on its codes",
)
register(
    "vae",
    "genlearn.models.vae",
    "VAE",
    "variational autoencoder (Kingma & Welling 2014); IWAE paper's 784-200-200-50 tanh default",
)
register(
    "draw",
    "genlearn.models.draw",
    "DRAW",
    "DRAW with attention (Gregor et al. 2015): T=64, LSTMs 256, z 100, 2x2 read, 5x5 write",
    T=64, enc_size=256, dec_size=256, z_size=100, attention=True, read_n=2, write_n=5,
)  # fmt: skip
register(
    "draw-noattn",
    "genlearn.models.draw",
    "DRAW",
    "DRAW without attention (Gregor et al. 2015): T=64, LSTMs 256, z 100, read [x, x^], write W h^dec",
    T=64, enc_size=256, dec_size=256, z_size=100, attention=False,
)  # fmt: skip
register(
    "draw-2digit",
    "genlearn.models.draw",
    "DRAW",
    "DRAW generating two MNIST digits on a 60x60 canvas (Gregor et al. 2015, section 4.3)",
    T=64, enc_size=256, dec_size=256, z_size=100, attention=True, read_n=2, write_n=5,
    dataset="mnist-2digit", height=60, width=60,
)  # fmt: skip
register(
    "aligndraw",
    "genlearn.models.aligndraw",
    "AlignDRAW",
    "alignDRAW (Mansimov et al. 2016): DRAW drawing 60x60 MNIST with captions, attending to the words",
)
register(
    "gan",
    "genlearn.models.gan",
    "GAN",
    "generative adversarial net, Algorithm 1 (Goodfellow et al. 2014): the paper's MLP/maxout pair, SGD",
)
register(
    "dcgan",
    "genlearn.models.gan",
    "GAN",
    "small convolutional GAN for MNIST (after Radford et al. 2016), Adam; the modern baseline",
    arch="conv", optimizer="adam", lr=2e-4, noise="gaussian", lr_schedule="constant",
)  # fmt: skip
register(
    "cgan",
    "genlearn.models.gan",
    "GAN",
    "class-conditional GAN (Mirza & Osindero 2014) on dcgan's convolutional pair; `sample --labels`",
    arch="conv", optimizer="adam", lr=2e-4, noise="gaussian", lr_schedule="constant", conditional=True,
)  # fmt: skip
register(
    "lapgan",
    "genlearn.models.lapgan",
    "LAPGAN",
    "Laplacian pyramid of GANs (Denton et al. 2015): 28 -> 14 -> 7 (60 -> 30 -> 15 on mnist-2digit), Adam",
)
register(
    "lapgan-conditional",
    "genlearn.models.lapgan",
    "LAPGAN",
    "class-conditional LAPGAN: the label as planes of every level's G and D; `sample --labels`",
    conditional=True,
)
register(
    "rbm",
    "genlearn.models.rbm",
    "RBM",
    "binary restricted Boltzmann machine, CD-k or persistent CD; AIS log-likelihood (Salakhutdinov & Murray 2008)",
)
register(
    "dbn",
    "genlearn.models.dbn",
    "DBN",
    "deep belief net: greedy stacked RBMs (Hinton et al. 2006), 784-500-2000; AIS variational bound",
)
register(
    "dbm",
    "genlearn.models.dbm",
    "DBM",
    "deep Boltzmann machine (Salakhutdinov & Hinton 2009), 784-500-1000, doubled pretraining; AIS bound",
)
