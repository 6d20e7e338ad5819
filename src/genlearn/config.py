"""Configuration: dataclasses with defaults, read from and written to TOML, overridden by --set.

Every model's `Config` is a dataclass that extends `Common` (the fields every model has, under the
same names everywhere). A field may carry `choices` or `min` in its metadata; `validate` checks
them, and unknown keys are refused with the list of known ones.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from genlearn import files
from genlearn.errors import UserError

RESERVED_KEYS = ("model", "genlearn_version")
INT_LIMIT = 2**63  # an int field beyond 64 bits cannot be a size, a count or a seed
MAX_CONFIG_BYTES = 16 * 2**20
LR_SCHEDULES = ("constant", "cosine", "exponential")
# The data sets a config may name (`genlearn.data` loads them; models list the ones they fit).
IMAGE_DATASETS = ("mnist", "mnist-2digit")
TOY_DATASETS = ("ring8", "grid25")  # VEEGAN's 2-D mixtures of Gaussians
CAPTION_DATASETS = ("mnist-captions",)  # alignDRAW's: 60 x 60 canvases with 12-word captions


def choice(default: Any, choices: tuple, help: str = "") -> Any:
    """A field restricted to `choices`."""
    return field(default=default, metadata={"choices": choices, "help": help})


def bounded(
    default: Any, min: float | None = None, max: float | None = None, help: str = "", infinite: bool = False
) -> Any:
    """A numeric field with inclusive bounds; `infinite` admits -inf / inf (e.g. "no floor")."""
    return field(default=default, metadata={"min": min, "max": max, "help": help, "infinite": infinite})


@dataclass
class Common:
    """Fields every model's configuration has."""

    epochs: int = bounded(10, min=0, help="passes over the training set")
    batch_size: int = bounded(100, min=1, help="global minibatch size (split across ranks)")
    lr: float = bounded(1e-3, min=0.0, help="learning rate")
    lr_schedule: str = choice("constant", LR_SCHEDULES, "learning-rate schedule")
    lr_final: float = bounded(
        0.1, min=0.0, help="final lr (cosine) or the decayed lr's floor (exponential), a fraction of lr"
    )
    lr_decay: float = bounded(1.0, min=1.0, help="lr divided by this every step (exponential)")
    # at most 2^44: the seeds derived from it (seed * 1,000,003 + epoch) stay within 64 bits
    seed: int = bounded(0, min=0, max=2**44, help="seeds weights, data order, binarization and noise")
    device: str = choice("cpu", ("cpu", "cuda", "auto"), "where to train")
    train_limit: int = bounded(0, min=0, help="use only the first N training images; 0 = all")
    checkpoint_every: float = bounded(120.0, min=0.0, help="seconds between checkpoints")
    eval_every: int = bounded(1, min=0, help="epochs between validations; 0 = never")
    log_every: int = bounded(50, min=1, help="steps between metrics.jsonl lines")
    time_limit: float = bounded(
        0.0, min=0.0, help="stop after this many seconds of training (resumable); 0 = no limit"
    )
    data_dir: str = field(default="", metadata={"help": "directory of MNIST IDX files"})
    dataset: str = choice("mnist", ("mnist",), "training data")
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard events to tensorboard/"})

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The values of a run's config file, as read, in this version's keys and meanings. A
        family whose keys changed since runs were written overrides this (a renamed field, a new
        field whose default is not what older runs trained with), so that every run directory
        keeps loading; it is called wherever a config is built from a saved file. The default
        changes nothing."""
        return values


MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes


def check_seed(seed: int, flag: str = "--seed") -> int:
    """A seed for sampling or evaluating: an integer torch's generators take (0 to 2^63 - 1)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} must be an integer from 0 to 2^63 - 1, got {seed!r}")
    return seed


def fields_of(config_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


class OutOfRange(ValueError):
    """A number written in a config that its type cannot hold."""


def _float_of(text: str) -> float:
    """A float from its decimal text, refusing one written as a non-zero finite number that a
    float cannot hold: `1e-400` would be 0.0 (and train at lr 0), `1e400` infinity, `1e-310` a
    subnormal that has lost its precision. "inf" and "nan" pass on to `validate`."""
    value = float(text)
    try:
        exact = decimal.Decimal(text.strip().replace("_", ""))
    except decimal.InvalidOperation:
        return value
    if not exact.is_finite() or exact == 0:
        return value
    if math.isinf(value):
        raise OutOfRange(f"{_cut(text.strip())} is too large for a float (it would be infinite)")
    if abs(value) < sys.float_info.min:
        raise OutOfRange(
            f"{_cut(text.strip())} is too small for a float (it would be {value!r}; the smallest is "
            f"{sys.float_info.min:.3g})"
        )
    return value


def _parse_value(key: str, raw: Any, typ: Any) -> Any:
    """Coerce a TOML value or a --set string to the field's type."""
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw) if not isinstance(raw, str) else int(raw.strip())
            if abs(value) >= INT_LIMIT:
                raise UserError(
                    f"bad value for {key!r}: {_short(raw)} is too large (at most {INT_LIMIT - 1})"
                )
            return value
        if typ is float:
            if isinstance(raw, bool):
                raise ValueError
            return _float_of(raw) if isinstance(raw, str) else float(raw)
        if typ is str:
            if not isinstance(raw, str):
                raise ValueError
            return raw
    except OutOfRange as exc:
        raise UserError(f"bad value for {key!r}: {exc}") from None
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        return raw
    raise UserError(f"bad value for {key!r}: {_short(raw)} is not {TYPE_WORDS.get(typ, typ.__name__)}")


# a field's type as a message names it ("'two' is not an integer")
TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _cut(text: str) -> str:
    """Thousands of characters cut to their first and last few, as a message shows them."""
    return text if len(text) <= 60 else f"{text[:25]}...{text[-25:]} ({len(text)} characters)"


def _short(raw: Any) -> str:
    """A value as a message shows it (`_cut`)."""
    try:
        return _cut(repr(raw))
    except ValueError:  # an int too long for repr
        return "an integer of more than 4300 digits"


def build(config_cls: type, values: dict[str, Any], model: str = "") -> Any:
    """Make a validated config from a dict of (possibly string) values."""
    known = fields_of(config_cls)
    hints = get_type_hints(config_cls)
    kwargs = {}
    for key, raw in values.items():
        if key not in known:
            where = f" for model {model!r}" if model else ""
            raise UserError(f"unknown config key {key!r}{where}; known keys: {', '.join(known)}")
        kwargs[key] = _parse_value(key, raw, hints[key])
    config = config_cls(**kwargs)
    validate(config)
    return config


def validate(config: Any) -> None:
    """Check choices and bounds declared in field metadata."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            allowed = ", ".join(map(str, choices))
            raise UserError(f"bad value for {f.name!r}: {value!r}; allowed values: {allowed}")
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if isinstance(value, float) and (
            math.isnan(value) or (math.isinf(value) and not f.metadata.get("infinite"))
        ):
            raise UserError(f"bad value for {f.name!r}: {value!r} is not a finite number")
        if lo is not None and value < lo:
            raise UserError(f"bad value for {f.name!r}: {value!r}; it must be at least {lo}")
        if hi is not None and value > hi:
            raise UserError(f"bad value for {f.name!r}: {value!r}; it must be at most {hi}")
    check = getattr(config, "check", None)
    if check is not None:
        check()


def parse_sets(items: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` -> {"a": "1", "b": "x"}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def read_toml(path: str | Path, follow_links: bool = True) -> dict[str, Any]:
    """Read a config file; a [config] table and top-level keys are both accepted. Every way the
    file can be unreadable or malformed (no such file, a directory, no permission, not UTF-8,
    nested too deeply, an integer of thousands of digits, a float out of range) is one line. A
    run's own config.toml is read with `follow_links=False`."""
    label = f"config file {files.shown(path)!r}"
    if not files.lexists(path):
        raise UserError(f"{label} does not exist")
    raw = files.read_bytes(path, "config file", follow_links=follow_links, limit=MAX_CONFIG_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{label} is not valid TOML: it is not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text, parse_float=_float_of)  # the same range checks as --set
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{label} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{label} is not valid: its arrays or tables are nested too deeply") from None
    except ValueError as exc:  # an integer of too many digits, a float out of range
        first = (str(exc).splitlines() or ["a value out of range"])[0].split("; use")[0]
        raise UserError(f"{label} is not valid: {first}") from None
    table = data.pop("config", {})
    if not isinstance(table, dict):
        raise UserError(f"{label}: 'config' must be a table of settings, not {_short(table)}")
    values = dict(table)
    values.update(data)
    return values


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # a TOML basic string: JSON's escapes (quotes, \\, newlines, controls)
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(config: Any, model: str, version: str) -> str:
    """The resolved configuration: every field, plus the model name and genlearn's version."""
    lines = [f"model = {_toml_value(model)}", f"genlearn_version = {_toml_value(version)}", ""]
    for f in dataclasses.fields(config):
        help_text = f.metadata.get("help")
        comment = f"  # {help_text}" if help_text else ""
        lines.append(f"{f.name} = {_toml_value(getattr(config, f.name))}{comment}")
    return "\n".join(lines) + "\n"


def resolve_device(name: str) -> Any:
    """The torch device a `device` field names: `auto` is cuda when a GPU is there, else cpu."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but no CUDA GPU is available; use the cpu")
    return torch.device(name)
