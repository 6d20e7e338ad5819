"""The zoo and `genlearn export`: an exported entry holds what a user needs and nothing of the
trainer's, its figures were measured from the file it ships, and every command reads it as a run;
every entry shipped in zoo/ loads, samples the documented shape, reproduces its cheap figures from
its weights within their standard error, and its model card says what its results.json says.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from pathlib import Path

import pytest
import safetensors.torch
import torch

import genlearn
from conftest import needs_mnist, one_thread, run_main
from genlearn import registry, zoo

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "zoo"
PLAN = tomllib.loads((ROOT / "configs" / "zoo.toml").read_text())
SHIPPED = sorted(p.name for p in ZOO.iterdir() if (p / "results.json").is_file()) if ZOO.is_dir() else []
TINY = {"train_limit": 300, "epochs": 1, "eval_every": 0, "tensorboard": False}


# ---- export -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("zoo") / "vae"
    with one_thread():
        genlearn.train("vae", run, progress=False, hidden_units=32, latent_dim=2, **TINY)
    return run


@pytest.fixture(scope="module")
def entry(finished, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "vae-2d"
    with one_thread():
        zoo.export_run(
            finished, out, metrics=["elbo", "probe"], recipe="genlearn train vae --set latent_dim=2"
        )
    return out


@needs_mnist
def test_an_entry_holds_the_run_without_the_trainer(entry, finished):
    names = {p.name for p in entry.iterdir()}
    assert {
        "config.toml",
        "model.safetensors",
        "results.json",
        "README.md",
        "samples.png",
        "manifold.png",
    } <= names
    assert "trainer.pt" not in names and "tensorboard" not in names and ".lock" not in names
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    tensors = safetensors.torch.load_file(str(entry / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in tensors.values() if t.is_floating_point())
    original = safetensors.torch.load_file(str(finished / "model.safetensors"))
    assert all(torch.equal(tensors[k].to(original[k].dtype), original[k]) for k in original)
    assert (entry / "config.toml").read_bytes() == (finished / "config.toml").read_bytes()


@needs_mnist
def test_the_figures_were_measured_from_the_shipped_file(entry):
    results = json.loads((entry / "results.json").read_text())
    data = (entry / "model.safetensors").read_bytes()
    assert results["weights"]["sha256"] == hashlib.sha256(data).hexdigest()
    metrics = results["metrics"]
    assert {"elbo", "elbo_stderr", "probe_accuracy", "probe_dim"} <= set(metrics)
    assert "parzen" not in metrics  # only the metrics asked for
    with one_thread():
        again = genlearn.evaluate(entry, "elbo", record=False)["elbo"]
    assert again["elbo"] == pytest.approx(metrics["elbo"], abs=1e-6)  # the same seed, the same file
    assert results["exported"]["recipe"] == "genlearn train vae --set latent_dim=2"


@needs_mnist
def test_every_command_reads_an_entry_and_eval_says_it_does_not_record(entry, tmp_path):
    before = (entry / "results.json").read_bytes()
    proc = run_main("eval", entry, "--metric", "elbo")
    assert proc.returncode == 0, proc.stderr
    assert "elbo:" in proc.stdout
    notice = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(notice) == 1 and "not recorded" in notice[0] and "exported entry" in notice[0], proc.stderr
    assert (entry / "results.json").read_bytes() == before
    assert run_main("sample", entry, "--n", "9", "--out", tmp_path / "x.png").returncode == 0
    assert run_main("info", entry).returncode == 0
    assert run_main("compare", entry).returncode == 0
    assert genlearn.sample(entry, 5).shape == (5, 1, 28, 28)


@needs_mnist
def test_an_unfinished_run_and_a_used_destination_are_refused(finished, entry, tmp_path):
    proc = run_main("export", finished, entry)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.toml", "model.safetensors"):
        (unfinished / name).write_bytes((finished / name).read_bytes())
    proc = run_main("export", unfinished, tmp_path / "out")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "has not finished" in lines[0], proc.stderr
    assert "--resume" in lines[0] and not (tmp_path / "out").exists()


# ---- the model card ---------------------------------------------------------------------------------
def card_metrics(card: str) -> dict[str, float]:
    """The metrics of a card's YAML front matter (`- type: KEY` then `value: V`)."""
    front = card.split("---")[1]
    return {
        key: float(value) for key, value in re.findall(r"- type: (\S+)\n\s+name: .*\n\s+value: (\S+)", front)
    }


def check_card(directory: Path) -> None:
    card = (directory / "README.md").read_text()
    assert card.startswith("---\n") and "\nlibrary_name: genlearn\n" in card
    _, config = registry.run_config(directory)
    dataset = "mnist" if config.dataset.startswith("mnist") else config.dataset  # the toys are their own
    assert f"\ndatasets:\n- {dataset}\n" in card
    listed = card_metrics(card)
    metrics = json.loads((directory / "results.json").read_text())["metrics"]
    assert listed, "the card lists no metric"
    for key, value in listed.items():
        assert value == pytest.approx(metrics[key], rel=1e-12), key


@needs_mnist
def test_the_card_is_what_results_json_says(entry):
    check_card(entry)
    card = (entry / "README.md").read_text()
    assert "genlearn train vae --set latent_dim=2" in card and "Kingma & Welling" in card


# ---- the shipped entries ----------------------------------------------------------------------------
def within(a: float, b: float, stderr: float) -> bool:
    return abs(a - b) <= 3 * stderr + 1e-6


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_entry_loads_samples_and_reproduces_its_figures(name):
    entry = ZOO / name
    assert name in PLAN, f"zoo/{name} is not in configs/zoo.toml"
    check_card(entry)
    results = json.loads((entry / "results.json").read_text())
    assert (
        results["weights"]["sha256"] == hashlib.sha256((entry / "model.safetensors").read_bytes()).hexdigest()
    )
    assert not (entry / "trainer.pt").exists()
    model = registry.load_model(entry)
    family, config = registry.run_config(entry)
    assert family == PLAN[name]["model"]
    with one_thread():
        drawn = genlearn.sample(entry, 4, seed=0)
    shape = (4, 2) if model.image_shape is None else (4, *model.image_shape)
    assert tuple(drawn.shape) == shape and torch.isfinite(drawn).all()
    metrics = results["metrics"]
    with one_thread(), torch.no_grad():
        reproduce(name, model, config, metrics)


def reproduce(name: str, model, config, metrics: dict) -> None:
    """The entry's cheapest figure computed again from its weights: the same protocol and seed on
    fewer images where the full one is slow, agreeing within three standard errors."""
    from genlearn import data as datasets

    if model.image_shape is None:  # the 2-D toy GAN: its samples on the ring's modes
        from genlearn.data import toy

        stats = toy.mode_stats(model.sample(2500, generator=torch.Generator().manual_seed(0)), toy.ring())
        assert stats["modes_captured"] >= min(metrics["modes_captured"], 8) - 2
        return
    data = datasets.load(config, train=False)
    test = data.split("test", binary=model.data_kind == "binary")
    if model.can("log_likelihood"):  # the VAE: its ELBO on every test image
        out = genlearn.evaluate(ZOO / name, "elbo", record=False)["elbo"]
        assert within(out["elbo"], metrics["elbo"], metrics["elbo_stderr"])
    elif model.can("nll_bound"):  # DRAW and alignDRAW: the bound on the first 1,000 test images
        torch.manual_seed(0)
        few = model.evaluate({k: v[:1000] for k, v in test.items()})
        spread = math.hypot(few["nll_bound_stderr"], metrics["nll_bound_stderr"])
        assert within(few["nll_bound"], metrics["nll_bound"], spread)
    elif model.can("ais_bound"):  # DBN and DBM: the bound's data term on 1,000 test images
        x = test["x"][:1000].flatten(1)
        terms = model.bound_terms(x, generator=torch.Generator().manual_seed(0)).double()
        spread = math.hypot(float(terms.std()) / math.sqrt(len(x)), metrics.get("ais_bound_stderr", 0.0))
        assert within(float(terms.mean()) - metrics["ais_log_z"], metrics["ais_bound"], spread)
    elif model.can("free_energy"):  # the RBM: AIS's data term, log p(x) = -F(x) - log Z
        neg_f = float((-model.free_energy(test["x"].flatten(1))).mean())
        assert neg_f - metrics["ais_log_z"] == pytest.approx(metrics["ais_log_likelihood"], abs=1e-3)
    elif "recon" in metrics:  # the autoencoder: its reconstruction loss on every test image
        out = model.evaluate(test)
        assert within(out["recon"], metrics["recon"], metrics["recon_stderr"])
    elif "parzen" in metrics:  # GANs: the Parzen protocol again, 10,000 seeded samples
        from genlearn.eval import metrics as m

        out = m.compute("parzen", model, test, data, m.Options(seed=0))
        assert within(out["parzen"], metrics["parzen"], metrics["parzen_stderr"])


def test_every_figure_an_entry_records_has_its_own_row_in_compare():
    """Beyond the models' own training monitors, nothing the zoo's results.json hold falls to
    compare's unlabelled "other" rows: each key is a declared figure or one's companion."""
    from genlearn.comparison import measure

    entries = measure.read_runs([ZOO / name for name in SHIPPED])
    _, keys_of = measure.other_rows(entries, measure.metric_specs([e.metrics for e in entries]))
    stray = {
        (name, key) for name, keys in zip(SHIPPED, keys_of) for key in keys if not measure.MONITOR.match(key)
    }
    assert stray == set()
