"""Shared helpers for the tests: running the command line, comparing run directories, MNIST.

Tests that need the real MNIST read it from the real cache (read-only); tests that play with
missing or corrupt data point GENLEARN_CACHE at a temporary directory instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

from genlearn.data import mnist

# Under pytest-xdist the workers split the cores between them: two workers with two threads each on
# two cores made a plain PyTorch loop many times slower here.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("genlearn")
    group.addoption(
        "--train-seed",
        type=int,
        default=0,
        help="seed of the tests that assert a training outcome (committed figures: 0); run 0-4 to "
        "check their margins (see tests/README.md)",
    )
    group.addoption(
        "--outcomes",
        default="",
        metavar="FILE",
        help="append every checked training outcome (test, name, value, threshold) to FILE as JSON lines",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that checks a training outcome through `expect` is marked `outcome`, so that
    `pytest -m outcome --train-seed N` runs just those (tests/margins.py runs them under 5 seeds)."""
    for item in items:
        if "expect" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.outcome)


TRAIN_SEED = 0  # --train-seed, for helpers that are not fixtures


def pytest_configure(config: pytest.Config) -> None:
    global TRAIN_SEED
    TRAIN_SEED = config.getoption("--train-seed")


@pytest.fixture(scope="session")
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of a test that asserts a training outcome: 0 unless --train-seed says otherwise."""
    return request.config.getoption("--train-seed")


@pytest.fixture
def expect(request: pytest.FixtureRequest):
    """`expect(name, value, op, threshold)`: assert `value op threshold` (op one of < <= > >=),
    first appending the outcome to the --outcomes file, so that a run under several seeds gives each
    threshold's worst case (including the failures) without editing the tests."""
    log = request.config.getoption("--outcomes")
    ops = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}

    def check(name: str, value: float, op: str, threshold: float) -> None:
        value = float(value)
        if log:
            record = {
                "test": request.node.nodeid,
                "seed": request.config.getoption("--train-seed"),
                "name": name,
                "value": value,
                "op": op,
                "threshold": float(threshold),
            }
            with open(log, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        assert ops[op](value, float(threshold)), f"{name}: {value:.4g} is not {op} {threshold:.4g}"

    return check


REAL_CACHE = mnist.cache_dir()
HAVE_MNIST = (REAL_CACHE / mnist.CACHE_FILE).is_file() or (REAL_CACHE / mnist.WHEEL_NAME).is_file()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST is not in {REAL_CACHE} (run `make setup`)")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "genlearn", *map(str, args)]


def run_cli(*args, cwd=None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`genlearn ARGS...` in a fresh process (one thread), capturing its output."""
    return subprocess.run(
        cli_args(*args), cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout
    )


def run_main(*args, cwd=None, **env: str) -> subprocess.CompletedProcess:
    """`genlearn ARGS...` in this process (no start-up cost), reported like `run_cli`: an exception
    escaping `main` is printed as a traceback with status 1, as the interpreter would."""
    from genlearn import cli

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, one_thread():
        for key, value in env.items():
            mp.setenv(key, value)
        if cwd is not None:
            mp.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except Exception:
                traceback.print_exc()
                code = 1
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_user_error(proc: subprocess.CompletedProcess, status: int = 2, contains: str = "") -> str:
    """Exactly one non-empty stderr line, starting `error:`, no traceback, the given exit status."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    assert lines[0].startswith("error: "), proc.stderr
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert contains.lower() in lines[0].lower(), lines[0]
    return lines[0]


def weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return safetensors.torch.load_file(str(Path(run_dir) / "model.safetensors"))


def assert_same_weights(a: str | Path, b: str | Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"tensors differ: {different}"


def assert_equal_nested(a, b, where: str = "") -> None:
    """Deep equality of (possibly nested) dicts/lists of tensors and plain values, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys(), getattr(b, "keys", None))
        for k in a:
            assert_equal_nested(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_nested(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def trainer_state(run_dir: str | Path) -> dict:
    return torch.load(Path(run_dir) / "trainer.pt", weights_only=True)


def assert_same_trainer_state(a: str | Path, b: str | Path) -> None:
    """Optimiser states, counters and RNG states equal (wall-clock `elapsed` excepted)."""
    sa, sb = trainer_state(a), trainer_state(b)
    sa.pop("elapsed", None)
    sb.pop("elapsed", None)
    assert_equal_nested(sa, sb, "trainer.pt")


def step_of(path: str | Path) -> int | None:
    """The step in a model.safetensors file's metadata (None when unreadable)."""
    import safetensors

    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            return int((fh.metadata() or {})["step"])
    except Exception:
        return None


@contextlib.contextmanager
def one_thread():
    """Run in-process numerics on one thread, like the subprocesses (OMP_NUM_THREADS=1)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---- tiny runs ------------------------------------------------------------------------------------
# Each registered model small enough to train on a slice of MNIST in seconds: the sizes the
# contract's models and the explorer's runs are trained at (each test adds what it needs).
TINY = {
    "autoencoder": {"hidden_units": 32, "code_dim": 8},
    "vae": {"hidden_units": 32, "latent_dim": 2},
    "draw": {"T": 3, "enc_size": 16, "dec_size": 16, "z_size": 4},
    "draw-noattn": {"T": 3, "enc_size": 16, "dec_size": 16, "z_size": 4},
    "draw-2digit": {"T": 3, "enc_size": 16, "dec_size": 16, "z_size": 4},
    "gan": {"g_hidden": 32, "d_units": 16},
    "dcgan": {"g_channels": 8, "d_channels": 8},
    "cgan": {"g_channels": 8, "d_channels": 8},
    "lapgan": {"g_channels": 4, "d_channels": 4, "coarse_channels": 8, "z_dim": 8},
    "lapgan-conditional": {"g_channels": 4, "d_channels": 4, "coarse_channels": 8, "z_dim": 8},
    "aligndraw": {
        "T": 3,
        "enc_size": 16,
        "dec_size": 16,
        "z_size": 4,
        "read_n": 3,
        "write_n": 3,
        "lang_size": 8,
        "align_size": 8,
    },
    "rbm": {"n_hidden": 16},
    "dbn": {"hidden": "16,8", "epochs": 2},
    "dbm": {"n_hidden1": 12, "n_hidden2": 8, "pretrain_epochs": 1, "epochs": 3},
}
# How a tiny run trains: one epoch of 200 images, no evaluation on the way, no TensorBoard.
TINY_TRAINING = {"train_limit": 200, "batch_size": 50, "epochs": 1, "eval_every": 0, "tensorboard": False}


def train_tiny(directory: Path, runs: dict[str, tuple[str, dict]], **training) -> None:
    """Train each run of `runs` (its directory name: (registered model, settings)) into
    `directory` with `genlearn.train`, on one thread: TINY_TRAINING, then `training`, then the
    run's own settings."""
    import genlearn

    with one_thread():
        for name, (model, settings) in runs.items():
            genlearn.train(model, directory / name, progress=False, **(TINY_TRAINING | training | settings))


@pytest.fixture(scope="session")
def mnist_full() -> mnist.MNIST:
    """The real MNIST (read from the real cache, never written)."""
    if not HAVE_MNIST:
        pytest.skip(f"MNIST is not in {REAL_CACHE} (run `make setup`)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLEARN_CACHE", str(REAL_CACHE))
        return mnist.load()


def limited(data: mnist.MNIST, n: int) -> mnist.MNIST:
    """What `mnist.load(train_limit=n)` returns, without reading the file again."""
    return dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n])


def resume_then_compare(tmp_path, model: str, sets: list[str]) -> None:
    """Train 2 epochs in one go, and 1 epoch then a resumed 1 more: the weights are equal."""
    whole = run_cli("train", model, "--out", tmp_path / "whole", "--quiet", "--set", "epochs=2", *sets)
    assert whole.returncode == 0, whole.stderr
    half = run_cli("train", model, "--out", tmp_path / "half", "--quiet", "--set", "epochs=1", *sets)
    assert half.returncode == 0, half.stderr
    rest = run_cli("train", model, "--out", tmp_path / "half", "--resume", "--quiet", "--set", "epochs=2")
    assert rest.returncode == 0, rest.stderr
    assert_same_weights(tmp_path / "whole", tmp_path / "half")


SMALL_CLASSIFIER = {"epochs": 2, "train_limit": 15_000, "batch_size": 32}


@pytest.fixture(scope="session")
def small_classifier(tmp_path_factory, mnist_full, seed):
    """A small in-project MNIST classifier (about 98% accurate), trained once per session into a
    temporary cache: tests never touch the real classifier cache."""
    from genlearn.eval import classifier as clf

    directory = tmp_path_factory.getbasetemp() / f"small-classifier-{seed}"
    with one_thread():
        return clf.load_classifier(
            progress=False, cache_dir=directory, data=mnist_full, seed=seed, **SMALL_CLASSIFIER
        )
