"""The run directory: its file names, atomic writes, standard JSON, and reading a run back.

A run directory (`genlearn train MODEL --out DIR`) holds config.toml (the resolved configuration,
with the model's name and genlearn's version), model.safetensors (weights), trainer.pt (optimiser
and RNG states, `genlearn.train.checkpoint`), metrics.jsonl (one JSON object per logged step and
evaluation), results.json (held-out metrics, and the identity of the weights they were measured
on) and pictures. Writing and reading it goes through here and `genlearn.files`: every write is
atomic and never through a link, every read turns a malformed file into one line; sampling and
evaluating a run read it without importing `genlearn.train`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from genlearn import config as cfg
from genlearn import files
from genlearn.errors import UserError
from genlearn.files import atomic_write, write_synced  # noqa: F401  (the writers of run files)

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


def read_json(path: str | Path, top: type | tuple[type, ...] = dict) -> Any:
    """A JSON file of a run (not through a link), of top-level type `top`; anything malformed is
    one `UserError` line (`files.read_json`)."""
    return files.read_json(path, top=top)


# ------------------------------------------------------------------------------------------------
# Weights and their identity


@dataclass(frozen=True)
class WeightsId:
    """Which weights: the training step in the file's metadata (-1 when it has none) and the
    sha256 of the file's bytes, read together with the weights so that a figure computed from
    them is filed only with results that describe exactly these weights."""

    step: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"step": self.step, "sha256": self.sha256}

    @staticmethod
    def from_json(value: Any) -> WeightsId | None:
        """The identity results.json records under "weights"; None when absent or malformed."""
        if not isinstance(value, dict):
            return None
        step, sha = value.get("step"), value.get("sha256")
        if type(step) is not int or not isinstance(sha, str):
            return None
        return WeightsId(step, sha)

    def describe(self) -> str:
        return f"step {self.step} (sha256 {self.sha256[:12]})"


def _header(data: bytes, path: Path) -> dict[str, Any]:
    """The JSON header of safetensors bytes (8-byte little-endian length, then the header)."""
    if len(data) < 8:
        raise UserError(f"{files.shown(path)} is corrupt: it is {len(data)} bytes, too short for safetensors")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise UserError(f"{files.shown(path)} is corrupt: its header runs past the end of the file")
    try:
        header = files.parse_json(data[8 : 8 + length].decode("utf-8"), f"the header of {files.shown(path)}")
    except UnicodeDecodeError:
        raise UserError(f"{files.shown(path)} is corrupt: its header is not UTF-8") from None
    if not isinstance(header, dict):
        raise UserError(f"{files.shown(path)} is corrupt: its header is not an object")
    return header


def _step_in(header: dict[str, Any]) -> int:
    meta = header.get("__metadata__")
    raw = meta.get("step", "-1") if isinstance(meta, dict) else "-1"
    try:
        return int(raw) if isinstance(raw, str) and len(raw) < 20 else -1
    except ValueError:
        return -1


def step_of(path: Path) -> int | None:
    """The training step a weights file was saved at (its metadata), None if unreadable, a link
    or without a step."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if length > 100 * 2**20:
                return None
            data = head + fh.read(length)
        step = _step_in(_header(data, path))
    except (OSError, UserError):
        return None
    return None if step < 0 else step


def identify(data: bytes, path: Path) -> WeightsId:
    """The identity of safetensors bytes: their step and sha256."""
    return WeightsId(_step_in(_header(data, path)), hashlib.sha256(data).hexdigest())


def _check_finite(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Weights with NaN or infinite values would sample and score without a word: refused."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            what = " and ".join(f"{k} {v}" for k, v in (("NaN", nan), ("infinite", inf)) if v)
            raise UserError(
                f"{files.shown(path)} is damaged: tensor {name!r} holds non-finite values ({what} of "
                f"{t.numel()}); these weights cannot be used"
            )


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], WeightsId]:
    """The tensors of a weights file and their identity, from one read of its bytes (not through
    a link); damaged, non-safetensors or non-finite weights are one `UserError` line."""
    path = Path(path)
    data = files.read_bytes(path)
    ident = identify(data, path)
    try:
        tensors = safetensors.torch.load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{files.shown(path)} is corrupt: {first}") from None
    _check_finite(tensors, path)
    return tensors, ident


def weights_id(run_dir: str | Path) -> WeightsId:
    """The identity of the run's model.safetensors as it is now."""
    path = Path(run_dir) / MODEL_FILE
    data = files.read_bytes(path)
    return identify(data, path)


def _check_dtypes(tensors: dict[str, torch.Tensor], model: torch.nn.Module, path: Path) -> None:
    """A float tensor of the model must come as floats (and stay finite as the model's dtype), a
    counter or index as integers: load_state_dict would cast either silently."""
    own = model.state_dict()
    for name, t in tensors.items():
        mine = own.get(name)
        if mine is None:
            continue
        if t.is_floating_point() != mine.is_floating_point() or t.is_complex():
            raise UserError(
                f"{files.shown(path)}: tensor {name!r} is {str(t.dtype).removeprefix('torch.')}, but the "
                f"model's is {str(mine.dtype).removeprefix('torch.')}; these are not this model's weights"
            )
        if (
            t.is_floating_point()
            and t.dtype != mine.dtype
            and not bool(torch.isfinite(t.to(mine.dtype)).all())
        ):
            raise UserError(
                f"{files.shown(path)}: tensor {name!r} overflows as {str(mine.dtype).removeprefix('torch.')}"
            )


def load_weights(run_dir: str | Path, model: torch.nn.Module) -> WeightsId:
    """Load `model.safetensors` into `model`; returns the identity of the weights loaded (their
    step and sha256), to be passed to `record_metrics` with any figure computed from them."""
    path = Path(run_dir) / MODEL_FILE
    if not files.lexists(path):
        raise UserError(f"{path} does not exist; is {run_dir} a finished or checkpointed run?")
    tensors, ident = read_weights(path)
    _check_dtypes(tensors, model, path)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path} does not match the model in config.toml: {first}") from None
    return ident


def read_config(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """(model name, the settings as written) from a run's config.toml. The model's Config turns
    them into a config (`genlearn.registry.run_config`: upgraded from an older version's keys,
    then validated)."""
    run_dir = files.check_path(run_dir, "run directory")
    if not files.is_directory(run_dir):
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / CONFIG_FILE
    if not files.lexists(path):
        raise UserError(f"{run_dir} is not a genlearn run (no {CONFIG_FILE})")
    values = cfg.read_toml(path, follow_links=False)  # a run's own file: never through a link
    name = values.pop("model", None)
    values.pop("genlearn_version", None)
    if not name or not isinstance(name, str):
        raise UserError(f'{path} does not name its model (a string such as model = "vae")')
    return name, values


def results(run_dir: str | Path) -> dict[str, Any]:
    """results.json's content ({} while the run has not finished); never through a link."""
    path = Path(run_dir) / RESULTS_FILE
    out = files.read_json(path, top=object) if files.lexists(path) else {}
    if not isinstance(out, dict) or not isinstance(out.get("metrics", {}), dict):
        raise UserError(f"{path} is not a genlearn results file (not an object with a 'metrics' object)")
    return out


def check_same_weights(described: dict[str, Any], loaded: WeightsId, run_dir: str | Path) -> None:
    """Refuse unless results.json (`described`) describes exactly the weights `loaded`: by their
    sha256 where results.json records it, else (results of older versions) by the step."""
    recorded = WeightsId.from_json(described.get("weights"))
    if recorded is None and described.get("steps") == loaded.step:
        return
    if recorded is not None and recorded == loaded:
        return
    steps = recorded.step if recorded is not None else described.get("steps")
    if steps != loaded.step:
        raise UserError(
            f"results.json describes step {steps} but the weights are of step {loaded.step} "
            "(a resumed run that has not finished); finish it with --resume first"
        )
    raise UserError(
        f"results.json of {run_dir} describes other weights of step {steps} (sha256 {recorded.sha256[:12]}, "
        f"these are {loaded.sha256[:12]}): model.safetensors was replaced since the run finished"
    )


def record_metrics(run_dir: str | Path, metrics: dict[str, Any], weights: WeightsId | None = None) -> None:
    """Add evaluated metrics to results.json so `genlearn compare` sees them, holding the run
    directory meanwhile. `weights` is the identity `load_weights` returned for the weights the
    metrics were computed from (without it, the weights file as it is now stands in: a race with
    a resume). Refused (the caller prints the metric anyway) for a run still training, a run
    that has not finished, and whenever results.json describes other weights than those: metrics
    of other weights are never filed with a run's results."""
    with locked(run_dir):
        current = results(run_dir)
        if not current:
            raise UserError(f"{run_dir} has not finished (no {RESULTS_FILE}); finish it with --resume first")
        check_same_weights(current, weights or weights_id(run_dir), run_dir)
        current.setdefault("metrics", {}).update(metrics)
        write_json(Path(run_dir) / RESULTS_FILE, current)


@contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory for this process: an advisory lock (flock) on its `.lock` file,
    which the OS drops when the holder exits or is killed, so a dead run never locks anyone out.
    A second process is refused with one line naming the holder. The lock file is opened without
    following links and must be a plain file with one name: it is written in place (the holder's
    line), which must never change another file."""
    run_dir = Path(run_dir)
    make_directory(run_dir)
    fd = files.open_in_place(run_dir / LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"{run_dir} is in use by {holder}; wait for it to end, or use another --out"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise UserError(f"cannot lock {run_dir / LOCK_FILE}: {files.reason(exc)}") from None
    try:
        line = f"process {os.getpid()} on {socket.gethostname()}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
    except OSError:
        pass  # the lock holds without its line (a full disk): only the message loses the holder
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def make_directory(path: Path) -> None:
    """mkdir -p, with one user-facing line for what can go wrong (a file in the way, no rights,
    a name too long)."""
    path = files.check_path(path, "directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"cannot use {path} as a run directory: a file of that name is in the way") from None
    except NotADirectoryError:
        raise UserError(f"cannot create {path}: one of its parents is a file") from None
    except OSError as exc:
        raise UserError(f"cannot create {files.shown(path)}: {files.reason(exc)}") from None


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
    """Refuse to start a fresh run where a run's files (or links of their names) already are."""
    found = [f for f in RUN_FILES if files.lexists(Path(run_dir) / f)]
    if found:
        raise UserError(
            f"{run_dir} already holds a run ({found[0]}); add --resume to continue it, "
            "or choose another --out"
        )


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, skipping lines a crash cut short (or any line that is
    not a JSON object, nested too deeply or holding an unconvertible number): one damaged line
    must not make a run unreadable. The file itself is read as every run file is (no links)."""
    records = []
    for line in files.read_text(path, errors="replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
