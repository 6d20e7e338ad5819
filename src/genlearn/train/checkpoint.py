"""Checkpoints that never execute code, and crash recovery (the run directory's format: `genlearn.runs`).

A checkpoint is two files: `model.safetensors` (weights, with the step in its metadata) and
`trainer.pt` (optimiser states, counters, RNG states; read with `torch.load(weights_only=True)`).
Both are written to `.tmp` files and fsynced first, then renamed trainer-first. A crash between the
two renames leaves a complete `model.safetensors.tmp` whose step matches `trainer.pt`; `recover`
finishes that rename, so the pair on disk is always consistent.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from genlearn.errors import UserError
from genlearn.runs import MODEL_FILE, TRAINER_FILE, step_of, write_synced

TRAINER_KEYS = ("step", "epoch", "batch", "elapsed", "optimizers", "data_rng", "torch_rng", "cuda_rng")


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
    buf = io.BytesIO()
    torch.save(trainer_state, buf)
    try:
        write_synced(model_tmp, _model_bytes(model, step))
        write_synced(trainer_tmp, buf.getvalue())
    except OSError as exc:  # a full disk, a directory gone read-only: the last checkpoint stays
        model_tmp.unlink(missing_ok=True)
        trainer_tmp.unlink(missing_ok=True)
        kept = load_trainer(run_dir)["step"] if (run_dir / TRAINER_FILE).exists() else None
        last = f"the checkpoint of step {kept} is kept" if kept is not None else "no checkpoint was written"
        raise UserError(
            f"cannot write the checkpoint of step {step} to {run_dir}: {exc.strerror or exc}; {last}; "
            "free some space and resume with --resume"
        ) from None
    os.replace(trainer_tmp, run_dir / TRAINER_FILE)
    os.replace(model_tmp, run_dir / MODEL_FILE)


def recover(run_dir: str | Path) -> None:
    """Finish a checkpoint interrupted between its two renames; drop half-written temporaries."""
    run_dir = Path(run_dir)
    model_tmp = run_dir / (MODEL_FILE + ".tmp")
    if model_tmp.exists():
        trainer = run_dir / TRAINER_FILE
        tmp_step = step_of(model_tmp)
        if tmp_step is not None and trainer.exists() and load_trainer(run_dir)["step"] == tmp_step:
            os.replace(model_tmp, run_dir / MODEL_FILE)
        else:
            model_tmp.unlink(missing_ok=True)
    (run_dir / (TRAINER_FILE + ".tmp")).unlink(missing_ok=True)


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
