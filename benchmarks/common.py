"""What every benchmark needs: the machine, its measured matmul FLOP/s, a results line, and
whole processes timed as a user meets them (`run_timed`)."""

from __future__ import annotations

import datetime
import fcntl
import os
import platform
import pty
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

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


def run_timed(
    cmd: list[str], env: dict[str, str], output: str
) -> tuple[float, list[tuple[float, bytes]], int]:
    """Wall seconds from just before the child starts to its exit, with its output as
    (seconds since start, bytes) chunks, and its exit status."""
    if output == "pty":
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
        os.close(slave)
        fd = master
    else:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        fd = proc.stdout.fileno()
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:  # EIO: every holder of the pty's other end has exited
            break
        if not chunk:
            break
        chunks.append((time.perf_counter() - t0, chunk))
    rc = proc.wait()
    wall = time.perf_counter() - t0
    if output == "pty":
        os.close(master)
    else:
        proc.stdout.close()
    return wall, chunks, rc


def genlearn_command() -> str:
    beside = Path(sys.executable).parent / "genlearn"
    return str(beside) if beside.exists() else (shutil.which("genlearn") or "genlearn")
