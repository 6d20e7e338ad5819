"""The run directory: its file names, atomic writes, standard JSON, and reading a run back.

A run directory (`genlearn train MODEL --out DIR`) holds config.toml (the resolved configuration,
with the model's name and genlearn's version), model.safetensors (weights), trainer.pt (optimiser
and RNG states, `genlearn.train.checkpoint`), metrics.jsonl (one JSON object per logged step and
evaluation), results.json (held-out metrics) and pictures. Writing and reading it goes through
here; sampling and evaluating a run read it without importing `genlearn.train`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from genlearn import config as cfg
from genlearn.errors import UserError

CONFIG_FILE = "config.toml"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
LOCK_FILE = ".lock"
# What a run directory holds: any of these in --out means a run is (or was) there.
RUN_FILES = (CONFIG_FILE, MODEL_FILE, TRAINER_FILE, METRICS_FILE, RESULTS_FILE)
# Settings a resumed run may change: how long it trains, how often it logs and checkpoints, where
# it runs and reads its data, and the learning rate. Every other field defines the run (its data,
# its data order, its model, its optimiser) and must stay as the run was started.
RESUMABLE_FIELDS = (
    "epochs", "time_limit", "checkpoint_every", "eval_every", "log_every", "device", "tensorboard",
    "data_dir", "lr", "lr_schedule", "lr_final", "lr_decay",
)  # fmt: skip


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_synced(tmp, data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a read-only directory: the old file stays as it was
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; it is left as it was") from None


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


def read_config(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """(model name, the settings as written) from a run's config.toml. The model's Config turns
    them into a config (`genlearn.registry.run_config`: upgraded from an older version's keys,
    then validated)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a genlearn run (no {CONFIG_FILE})")
    values = cfg.read_toml(path)
    name = values.pop("model", None)
    values.pop("genlearn_version", None)
    if not name or not isinstance(name, str):
        raise UserError(f'{path} does not name its model (a string such as model = "vae")')
    return name, values


def results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE
    out = read_json(path) if path.exists() else {}
    if not isinstance(out, dict) or not isinstance(out.get("metrics", {}), dict):
        raise UserError(f"{path} is not a genlearn results file (not an object with a 'metrics' object)")
    return out


def record_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """Add evaluated metrics to results.json so `genlearn compare` sees them, holding the run
    directory meanwhile. Refused (the caller prints the metric anyway) for a run still training,
    a run that has not finished, and a resumed run whose weights are no longer those its
    results.json describes: metrics of other weights are never filed with its results."""
    with locked(run_dir):
        current = results(run_dir)
        step = step_of(Path(run_dir) / MODEL_FILE)
        if not current:
            raise UserError(f"{run_dir} has not finished (no {RESULTS_FILE}); finish it with --resume first")
        if current.get("steps") != step:
            raise UserError(
                f"results.json describes step {current.get('steps')} but the weights are of step {step} "
                "(a resumed run that has not finished); finish it with --resume first"
            )
        current.setdefault("metrics", {}).update(metrics)
        write_json(Path(run_dir) / RESULTS_FILE, current)


@contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory for this process: an advisory lock (flock) on its `.lock` file,
    which the OS drops when the holder exits or is killed, so a dead run never locks anyone out.
    A second process is refused with one line naming the holder."""
    run_dir = Path(run_dir)
    make_directory(run_dir)
    try:
        fh = open(run_dir / LOCK_FILE, "a+")
    except OSError as exc:
        raise UserError(f"cannot write to {run_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise UserError(
            f"{run_dir} is in use by {holder}; wait for it to end, or use another --out"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    fh.flush()
    try:
        yield
    finally:
        fh.close()  # releases the lock


def make_directory(path: Path) -> None:
    """mkdir -p, with one user-facing line for what can go wrong (a file in the way, no rights)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"cannot use {path} as a run directory: a file of that name is in the way") from None
    except NotADirectoryError:
        raise UserError(f"cannot create {path}: one of its parents is a file") from None
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror or exc}") from None


def check_resumable(run_dir: str | Path, config: Any) -> None:
    """Refuse to resume with a setting that defines the run changed (only RESUMABLE_FIELDS may).
    The run's settings are its config file's, upgraded by `config`'s class; a setting the file
    does not name (one added since the run was written) is taken as unchanged."""
    _, values = read_config(run_dir)
    saved = cfg.build(type(config), {**dataclasses.asdict(config), **type(config).upgrade(values)})
    changed = [
        f"{k} (the run has {getattr(saved, k)!r}, not {getattr(config, k)!r})"
        for k in cfg.fields_of(type(saved))
        if k not in RESUMABLE_FIELDS and getattr(saved, k) != getattr(config, k)
    ]
    if changed:
        allowed = ", ".join(RESUMABLE_FIELDS)
        raise UserError(
            f"--resume cannot change {changed[0]}; a resumed run may change only {allowed}; "
            "start a new run with another --out instead"
        )


def check_empty(run_dir: str | Path) -> None:
    """Refuse to start a fresh run where a run's files already are."""
    found = [f for f in RUN_FILES if (Path(run_dir) / f).exists()]
    if found:
        raise UserError(
            f"{run_dir} already holds a run ({found[0]}); add --resume to continue it, "
            "or choose another --out"
        )


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, skipping lines a crash cut short (or any line that is
    not a JSON object): one damaged line must not make a run unreadable."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
