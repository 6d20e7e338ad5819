"""Memory checks made before anything large is allocated, each refusing with one line that says
what it needs and the limit it applies.

- `check_model_size`: a model is built first on PyTorch's `meta` device (shapes, no storage), so an
  absurd size (`hidden_units=100000000`, a batch of persistent chains too large) is refused from
  its parameter count before the allocator sees it, whatever field made it large.
- `check_training_memory`: the weights, their gradients and two optimiser moments must fit.
- `check_sample_memory`: samples (and, for a GIF, every step of every sample and its frames) must
  fit in half the memory free now.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from genlearn.errors import UserError

GIB = 2**30
# weights, gradients and an optimiser's two moments (Adam's; SGD with momentum keeps one)
TRAINING_COPIES = 4


def physical_memory() -> int:
    """Bytes of RAM in this machine."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_memory() -> int:
    """Bytes of RAM free now (MemAvailable where Linux reports it)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_memory(device: Any) -> int:
    """Bytes of memory on `device`: the GPU's for cuda, else the machine's."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).total_memory
    return physical_memory()


def state_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers (meta tensors count by their shapes)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"


def check_model_size(model_class: type, config: Any, name: str, limit: int | None = None) -> None:
    """Refuse a configuration whose model's weights alone would not fit in `limit` bytes (the
    machine's memory by default), before any of it is allocated: the model is built on the
    `meta` device, which records shapes only. A model that cannot even be built there (a size
    beyond what a tensor may have) is refused too, naming the error."""
    limit = physical_memory() if limit is None else limit
    try:
        with torch.device("meta"):
            meta = model_class(config)
    except UserError:
        raise
    except (RuntimeError, ValueError, OverflowError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"model {name!r} cannot be built with these settings: {first}") from None
    need = state_bytes(meta)
    if need > limit:
        tensors = [*meta.named_parameters(), *meta.named_buffers()]
        biggest, t = max(tensors, key=lambda item: item[1].numel())
        shape = " x ".join(map(str, t.shape))
        raise UserError(
            f"model {name!r} with these settings has {_gib(need)} of weights (the largest, {biggest}, "
            f"is {shape}), more than the {_gib(limit)} of memory this machine has; choose smaller sizes"
        )


def check_training_memory(model: torch.nn.Module, name: str, device: Any = "cpu") -> None:
    """Refuse to train a model whose weights, gradients and optimiser moments (4 copies of its
    parameters, plus its buffers) would not fit in the device's memory, before the first step
    allocates the gradients and moments."""
    need = TRAINING_COPIES * parameter_bytes(model) + state_bytes(model) - parameter_bytes(model)
    limit = device_memory(device)
    if need > limit:
        raise UserError(
            f"training model {name!r} needs {_gib(need)} for its weights, gradients and optimiser "
            f"state, more than the {_gib(limit)} of memory of {torch.device(device).type}; choose "
            "smaller sizes"
        )


def sample_bytes(shape: tuple[int, ...], n: int, steps: int = 1, picture_scale: int = 0) -> int:
    """Bytes that n samples of `shape` (C, H, W) take as float32, `steps` of each (a GIF keeps
    every canvas step); with `picture_scale`, also an RGB frame per step upscaled that many
    times (the pictures a GIF is made of)."""
    per_value = 4 + (3 * picture_scale**2 if picture_scale else 0)
    return n * steps * math.prod(shape) * per_value


def check_sample_memory(
    shape: tuple[int, ...] | None, n: int, what: str, steps: int = 1, picture_scale: int = 0
) -> None:
    """Refuse, before anything is drawn, samples that would not fit in half the memory free now.
    `shape` is one sample's (C, H, W), None for 2-D points; `what` names the request in the
    message (e.g. "--n 100000"); `steps` and `picture_scale` as in `sample_bytes`."""
    need = sample_bytes(tuple(shape or (2,)), n, steps, picture_scale)
    free = free_memory()
    limit = free // 2
    if need > limit:
        over = f" over {steps} steps" if steps > 1 else ""
        raise UserError(
            f"{what} needs {_gib(need)} for the samples{over}, more than the {_gib(limit)} limit "
            f"(half the {_gib(free)} of memory free now); ask for fewer (or several files with "
            "different --seed)"
        )
