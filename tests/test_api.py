"""The public Python API (`genlearn.api`, re-exported by `genlearn`): every docstring example runs,
each function does what its command does, the CLI's files are the API's bytes, and a user mistake
raises `genlearn.UserError` with exactly the line the CLI prints after `error:`.

Tiny runs under the names the examples use (runs/demo-vae, runs/demo-vae-2d, and a conditional
GAN) are trained once for the module in a temporary directory.
"""

from __future__ import annotations

import doctest
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import genlearn
from conftest import needs_mnist, one_thread, run_main
from genlearn import api, runs
from genlearn.viz import samples as drawing

pytestmark = needs_mnist

TINY = {"train_limit": 500, "epochs": 1, "eval_every": 0, "tensorboard": False}
SMALL_VAE = {**TINY, "hidden_units": 32, "latent_dim": 4}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A directory holding runs/demo-vae, runs/demo-vae-2d and runs/cgan, tiny, trained by the API."""
    root = tmp_path_factory.mktemp("api")
    with one_thread(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        genlearn.train("vae", "runs/demo-vae", progress=False, **SMALL_VAE)
        genlearn.train("vae", "runs/demo-vae-2d", progress=False, **{**SMALL_VAE, "latent_dim": 2})
        genlearn.train("cgan", "runs/cgan", progress=False, g_channels=8, d_channels=8, **TINY)
    return root


@pytest.fixture
def inside(demo, monkeypatch):
    """Run the test in the demo directory, on one thread."""
    monkeypatch.chdir(demo)
    with one_thread():
        yield demo


# ---- the examples -----------------------------------------------------------------------------------
def _examples() -> list[doctest.DocTest]:
    tests = doctest.DocTestFinder().find(api, globs={"genlearn": genlearn})
    if importlib.util.find_spec("genlearn.zoo") is None:  # export's example needs the zoo
        tests = [t for t in tests if not t.name.endswith(".export")]
    return [t for t in tests if t.examples]


def test_every_public_function_has_an_example():
    names = {t.name.rsplit(".", 1)[-1] for t in doctest.DocTestFinder().find(api) if t.examples}
    assert {"train", "load", "sample", "render_samples", "evaluate", "compare", "export"} <= names


@pytest.mark.slow
def test_the_examples_in_the_docstrings_run(inside):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in _examples():
        out = []
        result = runner.run(test, out=out.append)
        if result.failed:
            report.append("".join(out))
    assert not report, "\n".join(report)


# ---- train and load ---------------------------------------------------------------------------------
def test_train_takes_a_config_file_a_dict_and_overrides_typed_or_as_strings(inside):
    Path("small.toml").write_text('model = "vae"\nhidden_units = 32\nlatent_dim = 8\n')
    run = genlearn.train(
        "vae", "runs/typed", config=["small.toml", {"latent_dim": 3}], epochs="1", progress=False,
        **{k: v for k, v in TINY.items() if k != "epochs"},
    )  # fmt: skip
    assert isinstance(run, genlearn.Run) and run.model == "vae" and run.path == Path("runs/typed")
    assert (run.config.hidden_units, run.config.latent_dim, run.config.epochs) == (32, 3, 1)
    assert run.results == runs.results("runs/typed") and os.fspath(run) == "runs/typed"
    assert genlearn.Run.read("runs/typed").config == run.config
    model = genlearn.load(run)
    assert not model.training and model.latent_dim == 3


def test_a_resumed_run_continues_and_ends_with_more_epochs(inside):
    genlearn.train("vae", "runs/resumed", progress=False, **SMALL_VAE)
    run = genlearn.train("vae", "runs/resumed", resume=True, epochs=2, progress=False)
    assert run.results["epochs"] == 2.0 and run.config.hidden_units == 32  # the run's own settings


# ---- sample and render ------------------------------------------------------------------------------
def test_sample_is_decided_by_its_seed_and_in_range(inside):
    a = genlearn.sample("runs/demo-vae", 8, seed=1)
    torch.manual_seed(123)  # the global RNG does not enter
    b = genlearn.sample("runs/demo-vae", 8, seed=1)
    c = genlearn.sample("runs/demo-vae", 8, seed=2)
    assert a.shape == (8, 1, 28, 28) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(genlearn.sample(genlearn.load("runs/demo-vae"), 8, seed=1), a)  # a model too
    assert genlearn.sample("runs/demo-vae").shape[0] == 64


def test_labels_are_taken_in_every_form(inside):
    forms = ["3,5", "3-5", [3, 4, 5], range(3, 6), torch.tensor([3, 4, 5])]
    drawn = [genlearn.sample("runs/cgan", 6, labels=form) for form in forms[1:]]
    assert all(torch.equal(drawn[0], d) for d in drawn[1:])
    assert genlearn.sample("runs/cgan", labels=forms[0]).shape[0] == 2  # one per label by default
    with pytest.raises(genlearn.UserError, match="outside the digits 0 to 9"):
        genlearn.sample("runs/cgan", labels="0-100000000000")  # refused before it is expanded


@pytest.mark.parametrize(
    "run,n,options,cli",
    [
        ("runs/demo-vae", 16, {"seed": 3}, ["--n", "16", "--seed", "3"]),
        ("runs/cgan", 20, {"labels": "0-9"}, ["--n", "20", "--labels", "0-9"]),
        ("runs/cgan", None, {"labels": [3, 3, 7], "seed": 5}, ["--labels", "3,3,7", "--seed", "5"]),
    ],
)
def test_the_cli_file_is_the_api_bytes(inside, run, n, options, cli):
    proc = run_main("sample", run, *cli, "--out", "x.png")
    assert proc.returncode == 0, proc.stderr
    torch.manual_seed(99)
    assert api.render_samples(run, n, **options) == Path("x.png").read_bytes()
    out = Path("y.PNG")  # the extension in any case
    genlearn.sample(run, n, out=out, **options)
    assert out.read_bytes() == Path("x.png").read_bytes()


def test_a_grid_has_a_row_per_label(inside):
    from PIL import Image

    with Image.open(io.BytesIO(api.render_samples("runs/cgan", 30, labels="0-9"))) as img:
        width, height = img.size
    tile = (28 + 2) * drawing.GRID_SCALE
    assert (width, height) == (3 * tile + 2 * drawing.GRID_SCALE, 10 * tile + 2 * drawing.GRID_SCALE)


def test_the_run_picture_is_what_sample_writes(inside):
    """samples.png of an unconditional run is `genlearn sample RUN --n 100` at seed 0, pixel for
    pixel, under a title."""
    import numpy as np
    from PIL import Image

    model = genlearn.load("runs/demo-vae")
    with Image.open(io.BytesIO(api.render_samples(model, 100))) as img:
        grid = np.asarray(img.convert("RGB"))
    with Image.open("runs/demo-vae/samples.png") as img:
        picture = np.asarray(img.convert("RGB"))
    assert picture.shape[0] > grid.shape[0] and np.array_equal(
        picture[-grid.shape[0] :, : grid.shape[1]], grid
    )


# ---- evaluate ---------------------------------------------------------------------------------------
def test_evaluate_returns_and_records_the_figures(inside):
    figures = genlearn.evaluate("runs/demo-vae-2d", "elbo", "nll", k=3)
    assert set(figures) == {"elbo", "nll"} and set(figures["nll"]) == {"nll_k3", "nll_k3_stderr"}
    recorded = runs.results("runs/demo-vae-2d")["metrics"]
    assert recorded["nll_k3"] == figures["nll"]["nll_k3"] and recorded["elbo"] == figures["elbo"]["elbo"]
    again = genlearn.evaluate("runs/demo-vae-2d", "nll", k=4, record=False)
    assert "nll_k4" in again["nll"] and "nll_k4" not in runs.results("runs/demo-vae-2d")["metrics"]


def test_a_figure_that_cannot_be_recorded_is_returned_with_a_warning(inside):
    with runs.locked("runs/demo-vae-2d"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = genlearn.evaluate("runs/demo-vae-2d", "nll", k=2)
    assert figures["nll"]["nll_k2"] > 0
    assert [str(w.message) for w in caught if "not recorded" in str(w.message)], caught


# ---- compare and export -----------------------------------------------------------------------------
def test_compare_returns_a_table_that_renders_itself(inside):
    table = genlearn.compare(["runs/demo-vae", "runs/demo-vae-2d"], out="report")
    assert [r.column for r in table.runs] == ["demo-vae", "demo-vae-2d"]
    as_json = table.as_json()
    assert json.loads(table.json())["rows"] == as_json["rows"]
    elbo = table.row("elbo")
    assert elbo.better == "↑" and elbo.unit == "nats" and elbo.cells[0].status == "value"
    assert "ELBO, variational lower bound on log p(x) ↑" in table.text()
    assert table.markdown().startswith("# genlearn compare")
    assert table.written == [Path("report/compare.md"), Path("report/compare.png")]
    assert table.picture()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_hands_the_run_to_the_zoo(inside, monkeypatch):
    called = {}

    def export_run(run, out, **options):
        called.update(run=run, out=out, options=options)
        return Path(out)

    from genlearn import zoo

    monkeypatch.setattr(zoo, "export_run", export_run)
    assert genlearn.export("runs/demo-vae", "zoo/demo", metrics=["elbo"]) == Path("zoo/demo")
    assert called == {"run": Path("runs/demo-vae"), "out": Path("zoo/demo"), "options": {"metrics": ["elbo"]}}
    proc = run_main("export", "runs/demo-vae", "zoo/demo")
    assert proc.returncode == 0 and "wrote a shareable copy of runs/demo-vae to zoo/demo" in proc.stdout


# ---- mistakes: the CLI's line is the exception's message --------------------------------------------
LONG = "a" * 300
MISTAKES = {
    "unknown model": (lambda: genlearn.train("vea"), ["train", "vea"]),
    "a value of the wrong type": (
        lambda: genlearn.train("vae", "runs/new", latent_dim="two"),
        ["train", "vae", "--out", "runs/new", "--set", "latent_dim=two"],
    ),
    "a file of a run": (
        lambda: genlearn.sample("runs/demo-vae/model.safetensors", out="x.png"),
        ["sample", "runs/demo-vae/model.safetensors", "--out", "x.png"],
    ),
    "no extension": (lambda: genlearn.sample("runs/demo-vae", out="noext"), ["sample", "runs/demo-vae", "--out", "noext"]),
    "a temperature the model cannot take": (
        lambda: genlearn.sample("runs/demo-vae", out="t.png", temperature=0),
        ["sample", "runs/demo-vae", "--out", "t.png", "--temperature", "0"],
    ),
    "labels of a model without": (
        lambda: genlearn.sample("runs/demo-vae", out="l.png", labels="3"),
        ["sample", "runs/demo-vae", "--out", "l.png", "--labels", "3"],
    ),
    "an option no metric asked takes": (
        lambda: genlearn.evaluate("runs/demo-vae", "nll", ais_runs=10),
        ["eval", "runs/demo-vae", "--metric", "nll", "--ais-runs", "10"],
    ),
    "unknown metric": (lambda: genlearn.evaluate("runs/demo-vae", "nope"), ["eval", "runs/demo-vae", "--metric", "nope"]),
    "a missing run": (
        lambda: genlearn.compare(["runs/demo-vae", "runs/missing"]),
        ["compare", "runs/demo-vae", "runs/missing"],
    ),
    "a name over 255 bytes": (lambda: genlearn.evaluate(LONG, "elbo"), ["eval", LONG, "--metric", "elbo"]),
}  # fmt: skip


@pytest.mark.parametrize("case", MISTAKES)
def test_a_mistake_raises_the_line_the_cli_prints(inside, case):
    call, cli = MISTAKES[case]
    with pytest.raises(genlearn.UserError) as exc:
        call()
    proc = run_main(*cli)
    assert proc.returncode == 2 and proc.stderr == f"error: {exc.value}\n"


def test_import_genlearn_stays_light():
    code = "import sys, genlearn; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_readme_python_example_calls_what_the_api_has():
    """README's Python section compiles, and every `genlearn.NAME` it calls exists."""
    import re

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("## Python") : text.index("## Models")]
    code = section[section.index("```python") + 9 : section.index("```", section.index("```python") + 9)]
    compile(code, "README.md", "exec")
    called = set(re.findall(r"genlearn\.(\w+(?:\.\w+)?)\(", section))
    assert {"train", "load", "sample", "evaluate", "compare", "export"} <= called
    for name in called:
        obj = genlearn
        for part in name.split("."):
            obj = getattr(obj, part)
        assert callable(obj), name
