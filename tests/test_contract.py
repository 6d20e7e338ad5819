"""Every registered model against the model contract (`genlearn.models.base`).

Each model is built small, trained for a few steps on a small slice of its data by the real loop
(which writes its run directory, results and pictures), and then held to the contract: its
samples' shape and range, finite held-out figures, every declared capability working, and every
metric or picture that needs an undeclared one refused through the CLI with one `error:` line. A
new registered model that forgets part of the contract fails here by name.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import TINY, TINY_TRAINING, assert_user_error, needs_mnist, one_thread, run_main
from genlearn import registry, runs
from genlearn.eval import ais, metrics
from genlearn.models.base import CAPABILITIES, DATA_KINDS, GenerativeModel
from genlearn.train import loop

# Small settings per model (the tiny runs' sizes), so that the whole contract runs in seconds; a
# model not listed here trains with its defaults on the same small slice.
SMALL = TINY | {
    "gan-points": {"dataset": "ring8", "g_hidden": 16, "d_units": 8, "z_dim": 4},
    "rbm": TINY["rbm"] | {"method": "pcd"},
}
CASES = [(name, name) for name in registry.names()] + [("gan-points", "gan")]

# What each metric needs (an ability or condition, any of); `None`: a model that makes images, of
# the shapes READS names where the metric reads them through a network.
METRIC_NEEDS: dict[str, tuple[str, ...] | None] = {
    "elbo": ("log_likelihood",),
    "nll": ("log_likelihood", "nll_bound"),
    "probe": ("features",),
    "parzen": None,
    "fid": None,
    "coverage": None,
    "label_agreement": ("labels",),
    "conformity": ("captions",),
    "ais": ("ais_bound", "free_energy"),
    "nearest": None,
}
# the image shapes the networks behind a metric read (the MNIST classifier, the canvas checker)
READS = {"fid": ((1, 28, 28), (1, 60, 60)), "coverage": ((1, 28, 28),)}


def test_every_metric_says_what_it_needs():
    assert set(METRIC_NEEDS) == set(metrics.METRICS) == set(metrics.NEEDS)


def _train(case: str, name: str, root: Path) -> tuple[GenerativeModel, Path]:
    model = registry.create(name, **(TINY_TRAINING | SMALL.get(case, {})))
    run_dir = root / case
    with one_thread():
        loop.fit(model, model.config, run_dir, name, progress=False)
    return model.eval(), run_dir


def _has(model: GenerativeModel, need: str) -> bool:
    return need in model.conditions if need in ("labels", "captions") else model.can(need)


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("case,name", CASES, ids=[c for c, _ in CASES])
def test_model_keeps_the_contract(case, name, tmp_path):
    model, run_dir = _train(case, name, tmp_path)

    # required attributes
    assert isinstance(model, GenerativeModel), f"{name} does not inherit GenerativeModel"
    assert model.name == name and model.config is not None and model.optimizers
    assert model.data_kind in DATA_KINDS
    assert set(model.capabilities) <= set(CAPABILITIES), model.capabilities
    results = runs.results(run_dir)
    assert results["metrics"] and all(math.isfinite(v) for v in results["metrics"].values()), results
    assert "samples.png" in results["figures"]

    # sample: shape and range, seeded
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = model.sample(6, generator=g)
        again = model.sample(6, generator=torch.Generator().manual_seed(0))
    expected = (6, 2) if model.image_shape is None else (6, *model.image_shape)
    assert tuple(x.shape) == expected
    assert torch.equal(x, again), "sample is not a function of the generator"
    if model.image_shape is not None:
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0

    # reloaded from its run directory, the model samples the same
    reloaded = registry.load_model(run_dir)
    assert torch.equal(reloaded.sample(6, generator=torch.Generator().manual_seed(0)), x)

    _check_capabilities(model)
    _check_conditions(model)
    _check_refusals(model, run_dir)


def _held_out(model: GenerativeModel, n: int = 20) -> tuple[torch.Tensor, dict]:
    """n test images and the conditions they come with, as the model takes them."""
    from genlearn import data as datasets
    from genlearn.data import captions

    data = datasets.load(model.config, train=False)
    split = data.split("test", binary=model.data_kind == "binary")
    condition = {}
    if "captions" in model.conditions:
        condition["captions"] = [captions.decode(t) for t in split["caption"][:n]]
    return split["x"][:n], condition


def _check_capabilities(model: GenerativeModel) -> None:
    x, condition = _held_out(model)
    flat = x.flatten(1)
    with torch.no_grad():
        if model.can("encode"):
            assert model.encode(flat) is not None
        if model.can("features"):
            f = model.features(x)
            assert f.shape[0] == len(x) and bool(torch.isfinite(f).all())
        if model.can("reconstruct"):
            r = model.reconstruct(x)
            assert r.shape == x.shape and float(r.min()) >= 0 and float(r.max()) <= 1
        if model.can("log_likelihood"):
            out = metrics.compute("elbo", model, {"x": x}, None, metrics.Options())
            assert math.isfinite(out["elbo"])
        if model.can("nll_bound"):
            b = model.nll_bound(flat, **condition)
            assert b.shape == (len(x),) and bool(torch.isfinite(b).all())
        if model.can("free_energy"):
            e = model.free_energy(flat)
            assert e.shape == (len(x),) and bool(torch.isfinite(e).all())
        if model.can("ais_bound"):
            betas = torch.linspace(0, 1, 11)
            out = ais.log_likelihood_bound(
                model, flat, n_runs=4, betas=betas, base_bias=model.ais_base_bias(flat)
            )
            assert math.isfinite(out["bound"])
        if model.can("latent_2d"):
            m = model.decode_mean(torch.zeros(3, 2))
            assert m.shape == (3, *model.image_shape)
        if model.can("sample_canvases"):
            frames, _ = model.sample_canvases(2, generator=torch.Generator().manual_seed(0))
            assert frames.shape[1:] == (2, *model.image_shape)
        if model.can("sample_pyramid"):
            images, residuals = model.sample_pyramid(2, generator=torch.Generator().manual_seed(0))
            assert images[-1].shape == (2, *model.image_shape) and len(residuals) == len(images) - 1
            assert torch.equal(images[-1], model.sample(2, generator=torch.Generator().manual_seed(0)))
        if model.can("temperature"):  # tau = 1 is the model's own sampler, draw for draw
            given = model.default_conditions(2, torch.Generator().manual_seed(0))
            own = model.sample(2, torch.Generator().manual_seed(0), **given)
            assert torch.equal(
                model.sample(2, torch.Generator().manual_seed(0), temperature=1.0, **given), own
            )
            cold = model.sample(2, torch.Generator().manual_seed(0), temperature=0.0, **given)
            assert cold.shape == own.shape and float(cold.min()) >= 0 and float(cold.max()) <= 1
        if model.can("sample_alignments"):
            frames, windows, alphas, shown = model.sample_alignments(2, torch.Generator().manual_seed(0))
            assert frames.shape[1:] == (2, *model.image_shape) and windows.shape[:2] == frames.shape[:2]
            assert len(shown) == 2 and torch.allclose(alphas.sum(-1), torch.ones(len(frames), 2))


def _check_conditions(model: GenerativeModel) -> None:
    g = torch.Generator().manual_seed(1)
    defaults = model.default_conditions(5, g)
    assert set(defaults) == set(model.conditions)
    if "labels" in model.conditions:
        labels = torch.tensor([0, 1, 2, 3, 9])
        assert model.sample(5, labels=labels).shape[0] == 5
        assert tuple(defaults["labels"].shape) == (5,)
    if "captions" in model.conditions:
        assert len(defaults["captions"]) == 5
        assert (
            model.sample(2, captions=["the digit 3 is on the left of the digit 8 .", "the digit 1"]).shape[0]
            == 2
        )
        with pytest.raises(Exception, match="takes no"):
            model.sample(2, labels=torch.tensor([1, 2]))
    else:
        with pytest.raises(Exception, match="takes no"):
            model.sample(2, captions=["the digit 3"])


def _check_refusals(model: GenerativeModel, run_dir: Path) -> None:
    """Every metric whose need the model lacks, and a .gif or --labels it cannot give: one
    `error:` line and status 2 through the CLI."""
    for metric, needs in METRIC_NEEDS.items():
        applies = model.image_shape is not None if needs is None else any(_has(model, n) for n in needs)
        if applies and metric in READS:
            applies = tuple(model.image_shape) in READS[metric]
        assert metrics.applies(metric, model) == applies, metric  # the declaration genlearn plans by
        if not applies:
            proc = run_main("eval", run_dir, "--metric", metric)
            assert_user_error(proc, contains="does not apply")
    if not (model.can("sample_canvases") or model.can("sample_pyramid")):
        assert_user_error(run_main("sample", run_dir, "--out", run_dir / "x.gif"), contains=".gif")
    if not model.can("temperature"):
        proc = run_main("sample", run_dir, "--out", run_dir / "x.png", "--temperature", "0.5")
        assert_user_error(proc, contains="temperature")
    if "labels" not in model.conditions:
        assert_user_error(
            run_main("sample", run_dir, "--out", run_dir / "x.png", "--labels", "3"), contains="labels"
        )
    if "captions" not in model.conditions:
        proc = run_main("sample", run_dir, "--out", run_dir / "x.png", "--caption", "the digit 3")
        assert_user_error(proc, contains="captions")


SRC = Path(__file__).resolve().parents[1] / "src" / "genlearn"


def _genlearn_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genlearn"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("genlearn"))
    return found


@pytest.mark.parametrize("path", sorted((SRC / "models").glob("*.py")), ids=lambda p: p.name)
def test_models_sit_below_train_eval_and_data(path):
    """docs/ARCHITECTURE.md's layers: a model file imports config, errors, nn/ and models/ only."""
    below = ("genlearn.train", "genlearn.eval", "genlearn.data", "genlearn.runs", "genlearn.viz")
    wrong = sorted(m for m in _genlearn_imports(path) if m.startswith(below))
    assert not wrong, f"{path.name} imports {wrong}"


# What a model file may import of models/: the contract, and the model its paper builds on (the
# DBN and the DBM are stacks of RBMs, with their shared stack helpers beside them).
MODEL_IMPORTS = {"dbn": {"rbm", "stack"}, "dbm": {"rbm", "stack"}, "stack": {"rbm"}}


@pytest.mark.parametrize("path", sorted((SRC / "models").glob("*.py")), ids=lambda p: p.name)
def test_a_model_file_imports_no_other_model_file(path):
    """What two models share lives in nn/ (or, for the RBM stacks, in models/stack.py)."""
    imported = {
        m.split(".")[2]
        for m in _genlearn_imports(path)
        if m.startswith("genlearn.models.") and m.count(".") >= 2
    }
    wrong = imported - {"base", path.stem} - MODEL_IMPORTS.get(path.stem, set())
    assert not wrong, f"{path.name} imports models {sorted(wrong)}"


def test_the_run_format_sits_below_the_registry():
    """runs.py owns the run directory; what needs the models by name (loading a run's model, its
    config's class) is in registry.py, above it."""
    assert not {m for m in _genlearn_imports(SRC / "runs.py") if m.startswith("genlearn.registry")}


def _model_methods() -> set[str]:
    """The methods and properties that registered model classes define beyond GenerativeModel
    (and torch.nn.Module): calling one of them from outside models/ goes around the contract."""
    names = set()
    for name in registry.names():
        for cls in registry.entry(name).model_class.__mro__:
            if cls is GenerativeModel:
                break
            names |= {
                k
                for k, v in vars(cls).items()
                if isinstance(v, property) or (callable(v) and not isinstance(v, type))
            }
    return names - set(dir(GenerativeModel))


# Method names that other objects have too (`bytes.decode`, `Tensor.align_to`...): a call of one
# of these counts only on a receiver named as a model is (`model`, `run.model`, `rbm`, ...).
SHARED_NAMES = set().union(
    *(
        dir(t)
        for t in (str, bytes, dict, list, set, Path, torch.Tensor, torch.Generator, torch.optim.Optimizer)
    )
)
MODEL_NAMES = re.compile(r"(^|_)(model|rbm|dbn|dbm)$")


def _calls_around_the_contract(source: str, methods: set[str]) -> list[str]:
    """`x.name(...)` in `source` where `name` is one of `methods` and `x` is not a name bound by an
    import (a module's function of the same name, such as `captions.compose`, is no model method);
    a name that other objects' methods share counts only where `x` is named as a model is."""
    tree = ast.parse(source)
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, receiver = node.func.attr, node.func.value
        if name not in methods or (isinstance(receiver, ast.Name) and receiver.id in imported):
            continue
        receiver_name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", "")
        if name not in SHARED_NAMES or MODEL_NAMES.search(receiver_name):
            found.append(f"{node.lineno}: {ast.unparse(node.func)}")
    return sorted(found)


def test_code_outside_models_calls_only_what_the_contract_documents():
    """Every model method that the loop, the metrics, the figures, the run format or the CLI
    calls is one that models/base.py declares and documents (in CAPABILITIES, the class
    docstring or its own docstring): read from the sources, so that a new call around the
    contract fails here by name."""
    methods = _model_methods()
    assert {"refine", "tokenize", "mean_field"} <= methods  # what the rule looks for is what models define
    # the rule catches a call around the contract, and passes documented calls and modules' functions
    probe = (
        "from genlearn.data import captions\ndef f(model, x):\n    captions.compose(x)\n    model.sample(2)\n"
    )
    assert _calls_around_the_contract(probe, methods) == []
    assert _calls_around_the_contract(probe + "    return model.refine(x)\n", methods) == ["5: model.refine"]
    outside = [p for p in sorted(SRC.rglob("*.py")) if "models" not in p.relative_to(SRC).parts]
    around = {
        str(p.relative_to(SRC)): calls
        for p in outside
        if (calls := _calls_around_the_contract(p.read_text(), methods))
    }
    assert not around, f"calls of model methods that models/base.py does not declare: {around}"
    documented = (GenerativeModel.__doc__ or "") + " ".join(CAPABILITIES.values())
    undocumented = [
        k
        for k, v in vars(GenerativeModel).items()
        if callable(v) and not k.startswith("_") and not (v.__doc__ or k in documented)
    ]
    assert not undocumented, f"models/base.py declares {undocumented} without saying what they do"


def test_sample_and_eval_read_runs_without_the_training_code():
    import subprocess
    import sys

    code = (
        "import sys, genlearn.runs, genlearn.viz.figures\n"
        "import genlearn.eval.metrics, genlearn.eval.classifier, genlearn.eval.sample_metrics\n"
        "import genlearn.eval.probe, genlearn.eval.ais, genlearn.eval.likelihood, genlearn.eval.parzen\n"
        "bad = [m for m in sys.modules if m.startswith('genlearn.train')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nothing_outside_the_base_class_probes_a_model():
    """`hasattr` on a model is how a contract goes unwritten: only models/base.py may use it."""
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        if p.name != "base.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "hasattr(" in line
    ]
    assert not offenders, offenders


# ---- runs written by older versions keep loading ------------------------------------------------
OLD_RUNS = Path(__file__).resolve().parent / "data" / "old_runs"


@pytest.mark.parametrize(
    "run,upgraded",
    [
        ("gan-min-lr", {"lr_final": 1e-6 / 0.1, "lr_decay": 1.000004, "conditional": False}),
        (
            "lapgan-coarse-g-hidden",
            {"coarse_arch": "mlp", "d_padding": "none", "level_steps": "1,1", "coarse_g_hidden": 8},
        ),
    ],
)
def test_runs_of_older_versions_load_and_sample_as_they_did(run, upgraded):
    """A GAN whose config has the absolute lr floor `min_lr`, and a LAPGAN saved before
    `coarse_arch` and `d_padding` existed (tests/data/old_runs/README.md): their configs are
    upgraded on load, the weights load by their saved names, and the samples are those the code
    that wrote the run drew from the same seed."""
    import safetensors.torch

    _, config = registry.run_config(OLD_RUNS / run)
    for key, value in upgraded.items():
        assert getattr(config, key) == pytest.approx(value), key
    model = registry.load_model(OLD_RUNS / run)
    expected = safetensors.torch.load_file(str(OLD_RUNS / run / "expected_samples.safetensors"))["samples"]
    with one_thread():
        samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, expected, rtol=1e-5, atol=1e-6)
