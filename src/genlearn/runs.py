"""The run directory: its file names, atomic writes, standard JSON, and reading a run back.

A run directory (`genlearn train MODEL --out DIR`) holds config.toml (the resolved configuration,
with the model's name and genlearn's version), model.safetensors (weights), trainer.pt (optimiser
and RNG states, `genlearn.train.checkpoint`), metrics.jsonl (one JSON object per logged step and
evaluation), results.json (held-out metrics) and pictures. Writing and reading it goes through
here; sampling and evaluating a run read it without importing `genlearn.train`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from genlearn import config as cfg
from genlearn import registry
from genlearn.errors import UserError

CONFIG_FILE = "config.toml"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_synced(tmp, data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def strict(obj: Any) -> Any:
    """`obj` with every non-finite float (an unbounded AIS interval, a diverged loss) as None, so
    that it encodes as standard JSON (null) rather than Python's Infinity / NaN extensions."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """Standard JSON: non-finite floats written as null (`strict`)."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is corrupt: {exc}") from None


def step_of(path: Path) -> int | None:
    """The training step a weights file was saved at (its metadata), None if unreadable."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            return int((fh.metadata() or {}).get("step", -1))
    except (OSError, SafetensorError, ValueError):
        return None


def load_weights(run_dir: str | Path, model: torch.nn.Module) -> int:
    """Load `model.safetensors` into `model`; returns the step it was saved at."""
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist; is {run_dir} a finished or checkpointed run?")
    try:
        tensors = safetensors.torch.load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is corrupt: {exc}") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path} does not match the model in config.toml: {first}") from None
    step = step_of(path)
    return -1 if step is None else step


def run_config(run_dir: str | Path) -> tuple[str, Any]:
    """(model name, validated config) from a run's config.toml."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a genlearn run (no {CONFIG_FILE})")
    values = cfg.read_toml(path)
    name = values.pop("model", None)
    values.pop("genlearn_version", None)
    if not name:
        raise UserError(f"{path} does not name its model")
    return name, registry.make_config(name, _upgrade(name, values))


def _upgrade(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Config files of older versions: a GAN's `min_lr` (an absolute floor of the SGD decay) is now
    the loop's exponential schedule with the floor `lr_final` as a fraction of lr."""
    if "min_lr" in values:
        min_lr = values.pop("min_lr")
        lr = values.get("lr", registry.make_config(name).lr)
        values.setdefault("lr_final", min_lr / lr if lr else 0.0)
    return values


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> Any:
    """The run's model with its saved weights, in eval mode, on `device`."""
    name, config = run_config(run_dir)
    # No checkpoint recovery here: model.safetensors is always complete, and a training process
    # may be writing its temporaries right now.
    model = registry.instantiate(name, config)
    load_weights(run_dir, model)
    return model.to(device).eval()


def results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE
    return read_json(path) if path.exists() else {}


def record_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """Add evaluated metrics to results.json so `genlearn compare` sees them."""
    current = results(run_dir)
    current.setdefault("metrics", {}).update(metrics)
    write_json(Path(run_dir) / RESULTS_FILE, current)
