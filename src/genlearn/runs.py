"""Reading a run directory back: its config, its model, its results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlearn import config as cfg
from genlearn import registry
from genlearn.errors import UserError
from genlearn.train import checkpoint


def run_config(run_dir: str | Path) -> tuple[str, Any]:
    """(model name, validated config) from a run's config.toml."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / checkpoint.CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a genlearn run (no {checkpoint.CONFIG_FILE})")
    values = cfg.read_toml(path)
    name = values.pop("model", None)
    values.pop("genlearn_version", None)
    if not name:
        raise UserError(f"{path} does not name its model")
    return name, registry.make_config(name, values)


def load_model(run_dir: str | Path, device: str = "cpu") -> torch.nn.Module:
    name, config = run_config(run_dir)
    # No checkpoint.recover here: model.safetensors is always complete, and a training process may
    # be writing its temporaries right now.
    model = registry.instantiate(name, config)
    checkpoint.load_weights(run_dir, model)
    return model.to(device).eval()


def results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / checkpoint.RESULTS_FILE
    return checkpoint.read_json(path) if path.exists() else {}


def record_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """Add evaluated metrics to results.json so `genlearn compare` sees them."""
    current = results(run_dir)
    current.setdefault("metrics", {}).update(metrics)
    checkpoint.write_json(Path(run_dir) / checkpoint.RESULTS_FILE, current)
