"""What every benchmark needs: the machine, its measured matmul FLOP/s, a results line."""

from __future__ import annotations

import datetime
import os
import platform
import time

import torch


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def matmul_flops(n: int = 1024, seconds: float = 2.0, device: torch.device | str = "cpu") -> float:
    """Sustained float32 FLOP/s of a large square matmul: the machine's practical ceiling.

    On a GPU the matrices are 8192^2 (1024^2 leaves it mostly idle) and TF32 stays off, as in
    genlearn's own float32 code."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    n = 8192 if cuda else n
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def header(title: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {title}\n# {now}; {machine()}")
