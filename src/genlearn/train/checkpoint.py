"""Run directories on disk: atomic writes, checkpoints that never execute code, crash recovery.

A checkpoint is two files: `model.safetensors` (weights, with the step in its metadata) and
`trainer.pt` (optimiser states, counters, RNG states; read with `torch.load(weights_only=True)`).
Both are written to `.tmp` files and fsynced first, then renamed trainer-first. A crash between the
two renames leaves a complete `model.safetensors.tmp` whose step matches `trainer.pt`; `recover`
finishes that rename, so the pair on disk is always consistent.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from genlearn.errors import UserError

CONFIG_FILE = "config.toml"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
TRAINER_KEYS = ("step", "epoch", "batch", "elapsed", "optimizers", "data_rng", "torch_rng", "cuda_rng")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_synced(tmp, data.encode() if isinstance(data, str) else data)
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


def _model_bytes(model: torch.nn.Module | dict[str, torch.Tensor], step: int) -> bytes:
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return safetensors.torch.save(tensors, metadata={"step": str(step)})


def save(
    run_dir: str | Path, model: torch.nn.Module | dict[str, torch.Tensor], trainer_state: dict[str, Any]
) -> None:
    """Write a consistent (weights, trainer state) pair atomically; `model` may be a state dict."""
    run_dir = Path(run_dir)
    step = int(trainer_state["step"])
    model_tmp = run_dir / (MODEL_FILE + ".tmp")
    trainer_tmp = run_dir / (TRAINER_FILE + ".tmp")
    _write_synced(model_tmp, _model_bytes(model, step))
    buf = io.BytesIO()
    torch.save(trainer_state, buf)
    _write_synced(trainer_tmp, buf.getvalue())
    os.replace(trainer_tmp, run_dir / TRAINER_FILE)
    os.replace(model_tmp, run_dir / MODEL_FILE)


def _step_of(path: Path) -> int | None:
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            return int((fh.metadata() or {}).get("step", -1))
    except (OSError, SafetensorError, ValueError):
        return None


def recover(run_dir: str | Path) -> None:
    """Finish a checkpoint interrupted between its two renames; drop half-written temporaries."""
    run_dir = Path(run_dir)
    model_tmp = run_dir / (MODEL_FILE + ".tmp")
    if model_tmp.exists():
        trainer = run_dir / TRAINER_FILE
        tmp_step = _step_of(model_tmp)
        if tmp_step is not None and trainer.exists() and load_trainer(run_dir)["step"] == tmp_step:
            os.replace(model_tmp, run_dir / MODEL_FILE)
        else:
            model_tmp.unlink()
    (run_dir / (TRAINER_FILE + ".tmp")).unlink(missing_ok=True)


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
    step = _step_of(path)
    return -1 if step is None else step


def load_trainer(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / TRAINER_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist; nothing to resume")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path} is corrupt or not a genlearn trainer state: {first}") from None
    missing = [k for k in TRAINER_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path} is not a genlearn trainer state (no {missing[0]!r})")
    return state
