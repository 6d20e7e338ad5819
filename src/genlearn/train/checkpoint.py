"""Checkpoints that never execute code, committed as a pair (the run directory's format: `genlearn.runs`).

A checkpoint is two files: `model.safetensors` (weights, with the step in its metadata) and
`trainer.pt` (optimiser states, counters, RNG states, and the sha256 of the weights file it goes
with; read with `torch.load(weights_only=True)`). They are a pair when trainer.pt names the weights'
sha256 (or, for checkpoints of older versions, their step).

`save` writes both to `.tmp` files (created afresh, never through a link) and fsyncs them, keeps a
second name for the previous trainer.pt (`trainer.pt.old.tmp`), then renames trainer.pt and the
weights into place. If the second rename fails, the previous trainer.pt is put back: the pair on
disk is the new one or the previous one, never a mix, and no temporaries are left. A process
killed between the two renames leaves the new trainer.pt, the new weights' temporary and the old
trainer.pt's second name; `recover` (run on resume) rolls that forward to the new pair, or back to
the previous one, or refuses with one line when neither is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from genlearn import files
from genlearn.errors import UserError
from genlearn.files import write_synced
from genlearn.runs import MODEL_FILE, TRAINER_FILE, WeightsId, identify

TRAINER_KEYS = ("step", "epoch", "batch", "elapsed", "optimizers", "data_rng", "torch_rng", "cuda_rng")
MODEL_TMP = MODEL_FILE + ".tmp"
TRAINER_TMP = TRAINER_FILE + ".tmp"
TRAINER_OLD = TRAINER_FILE + ".old.tmp"  # the previous trainer.pt while a checkpoint commits
TEMPORARIES = (MODEL_TMP, TRAINER_TMP, TRAINER_OLD)


def _model_bytes(model: torch.nn.Module | dict[str, torch.Tensor], step: int) -> bytes:
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return safetensors.torch.save(tensors, metadata={"step": str(step)})


def save(
    run_dir: str | Path, model: torch.nn.Module | dict[str, torch.Tensor], trainer_state: dict[str, Any]
) -> WeightsId:
    """Write a (weights, trainer state) pair, committed together or not at all; `model` may be a
    state dict. Returns the identity of the weights written. A failure (a full disk, a file made
    immutable, a rename refused) leaves the previous pair, no temporaries, and one line."""
    run_dir = Path(run_dir)
    step = int(trainer_state["step"])
    weights = _model_bytes(model, step)
    ident = WeightsId(step, hashlib.sha256(weights).hexdigest())
    buf = io.BytesIO()
    torch.save({**trainer_state, "model_sha256": ident.sha256}, buf)
    for name in (MODEL_FILE, TRAINER_FILE):
        files.refuse_link(run_dir / name)
    try:
        write_synced(run_dir / MODEL_TMP, weights)
        write_synced(run_dir / TRAINER_TMP, buf.getvalue())
        _commit(run_dir)
    except OSError as exc:
        raise _failed(run_dir, step, exc) from None
    except BaseException:  # a second Ctrl-C mid-write: leave a consistent pair all the same
        try:
            recover(run_dir)
        except (UserError, OSError):
            pass
        raise
    return ident


def _commit(run_dir: Path) -> None:
    """Rename both temporaries into place, trainer.pt first; if the weights' rename fails, put
    the previous trainer.pt back (or remove the new one where there was none)."""
    trainer, old = run_dir / TRAINER_FILE, run_dir / TRAINER_OLD
    had_one = files.lexists(trainer)
    if had_one:
        _second_name(trainer, old)
    os.replace(run_dir / TRAINER_TMP, trainer)
    try:
        os.replace(run_dir / MODEL_TMP, run_dir / MODEL_FILE)
    except OSError:
        if had_one:
            os.replace(old, trainer)
        else:
            trainer.unlink()
        raise
    files.fsync_directory(run_dir)
    old.unlink(missing_ok=True)


def _second_name(path: Path, other: Path) -> None:
    """`other` becomes a second name of `path` (a hard link; a copy where links are refused)."""
    other.unlink(missing_ok=True)
    try:
        os.link(path, other, follow_symlinks=False)
    except OSError:
        shutil.copyfile(path, other, follow_symlinks=False)


def _failed(run_dir: Path, step: int, exc: OSError) -> UserError:
    """Put the directory back to a consistent pair; the one line saying which step is kept."""
    try:
        recover(run_dir)
        kept_step = load_trainer(run_dir)["step"] if files.lexists(run_dir / TRAINER_FILE) else None
    except UserError as damaged:
        return damaged
    kept = (
        f"the checkpoint of step {kept_step} is kept"
        if kept_step is not None
        else "no checkpoint was written"
    )
    remedy = "free some space" if exc.errno in files.SPACE_ERRNOS else "fix that"
    return UserError(
        f"cannot write the checkpoint of step {step} to {run_dir}: {files.reason(exc)}; {kept}; "
        f"{remedy} and resume with --resume"
    )


def paired(trainer_state: dict[str, Any], weights: WeightsId) -> bool:
    """Whether a trainer state goes with these weights: by the sha256 it records, or (checkpoints
    of older versions) by the step."""
    sha = trainer_state.get("model_sha256")
    if isinstance(sha, str):
        return sha == weights.sha256
    return trainer_state.get("step") == weights.step


def _identity(path: Path) -> WeightsId | None:
    """The identity of a complete weights file (its tensors' bytes all there); None when it is
    missing, cut short or damaged."""
    try:
        data = files.read_bytes(path)
        ident = identify(data, path)
    except UserError:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + length])
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    complete = len(data) == 8 + length + max(ends, default=0)
    return ident if complete and ident.step >= 0 else None


def _trainer_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return _read_trainer(path)
    except UserError:
        return None


def recover(run_dir: str | Path) -> None:
    """Leave a consistent pair and no temporaries: finish a checkpoint a crash interrupted between
    its two renames (roll forward to the new pair), or where that cannot be done put the previous
    trainer.pt back (roll back). Refused with one line when no complete pair is left; a damaged
    trainer.pt with nothing to restore is left for `load_trainer` to name."""
    run_dir = Path(run_dir)
    trainer_path, model_path = run_dir / TRAINER_FILE, run_dir / MODEL_FILE
    if files.lexists(trainer_path):
        trainer = _trainer_or_none(trainer_path)
        weights = _identity(model_path) if files.lexists(model_path) else None
        if trainer is not None and (weights is None or not paired(trainer, weights)):
            _restore_pair(run_dir, trainer, weights)
        elif trainer is None and any(files.lexists(run_dir / name) for name in (MODEL_TMP, TRAINER_OLD)):
            _restore_pair(run_dir, None, weights)
    for name in TEMPORARIES:
        (run_dir / name).unlink(missing_ok=True)


def _restore_pair(run_dir: Path, trainer: dict[str, Any] | None, weights: WeightsId | None) -> None:
    """trainer.pt and model.safetensors do not go together: the new weights' temporary that
    goes with trainer.pt is renamed into place, or the previous trainer.pt that goes with the
    weights is put back; else one line."""
    forward = _identity(run_dir / MODEL_TMP) if files.lexists(run_dir / MODEL_TMP) else None
    if trainer is not None and forward is not None and paired(trainer, forward):
        try:
            os.replace(run_dir / MODEL_TMP, run_dir / MODEL_FILE)
            return
        except OSError:
            pass
    old = _trainer_or_none(run_dir / TRAINER_OLD) if files.lexists(run_dir / TRAINER_OLD) else None
    if old is not None and weights is not None and paired(old, weights):
        try:
            os.replace(run_dir / TRAINER_OLD, run_dir / TRAINER_FILE)
            return
        except OSError as exc:
            raise UserError(
                f"cannot put back the previous {run_dir / TRAINER_FILE}: {files.reason(exc)}"
            ) from None
    t_step = trainer.get("step") if trainer is not None else "unreadable"
    w_step = weights.step if weights is not None else "missing or unreadable"
    raise UserError(
        f"{run_dir / TRAINER_FILE} (step {t_step}) and {run_dir / MODEL_FILE} (step {w_step}) are not "
        "a pair (the trainer state was saved with other weights), and no complete checkpoint is left "
        "to restore; the weights can still be sampled and evaluated, but the run cannot be resumed"
    )


def _read_trainer(path: Path) -> dict[str, Any]:
    data = files.read_bytes(path)
    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path} is corrupt or not a genlearn trainer state: {first}") from None
    missing = [k for k in TRAINER_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path} is not a genlearn trainer state (no {missing[0]!r})")
    return state


def load_trainer(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / TRAINER_FILE
    if not files.lexists(path):
        raise UserError(f"{path} does not exist; nothing to resume")
    return _read_trainer(path)
