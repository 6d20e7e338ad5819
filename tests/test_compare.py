"""`genlearn compare`: one table of every run's figures, with what does not apply told apart from
what was not run, each likelihood on its own labelled row, and measured cost.

Three tiny runs (a VAE, a GAN, an RBM: an inference network with an IW likelihood, a sampler with
no likelihood, an energy model with AIS) are trained once for the module; their figures are a real
`genlearn eval` (the VAE's nll) and figures written straight into results.json (cheap stand-ins
for Parzen and AIS, which would take minutes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_user_error, needs_mnist, one_thread, run_main
from genlearn import comparison, registry, runs
from genlearn.train import loop

pytestmark = needs_mnist

COMMON = {"train_limit": 200, "batch_size": 50, "epochs": 1, "eval_every": 0, "tensorboard": False}
SMALL = {
    "vae": {"hidden_units": 32, "latent_dim": 4},
    "gan": {"g_hidden": 32, "d_units": 16},
    "rbm": {"n_hidden": 16, "method": "pcd"},  # 16 hidden units: evaluate() adds the exact log p(x)
}
PARZEN = {"parzen": 112.5, "parzen_stderr": 2.25, "parzen_sigma": 0.2}
AIS = {
    "ais_log_likelihood": -190.25,
    "ais_log_likelihood_low": -190.75,
    "ais_log_likelihood_high": -189.5,
    "ais_log_likelihood_stderr": 0.5,
    "ais_log_z": 40.0,
    "ais_log_z_low": 39.25,
    "ais_log_z_high": 40.5,
}


def _train(name: str, run_dir: Path) -> Path:
    model = registry.create(name, **COMMON, **SMALL[name])
    with one_thread():
        loop.fit(model, model.config, run_dir, name, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def trio(tmp_path_factory) -> dict[str, Path]:
    """A VAE with its ELBO and two IW estimates (k=3 by `genlearn eval`, k=50 written), a GAN with
    a Parzen figure, an RBM with its exact log p(x) and an AIS estimate; and the bare GAN."""
    root = tmp_path_factory.mktemp("compare")
    found = {name: _train(name, root / name) for name in SMALL}
    proc = run_main("eval", found["vae"], "--metric", "nll", "--k", "3")
    assert proc.returncode == 0, proc.stderr
    runs.record_metrics(found["vae"], {"nll_k50": 95.5, "nll_k50_stderr": 0.25})
    found["bare-gan"] = root / "bare-gan"
    shutil.copytree(found["gan"], found["bare-gan"])
    runs.record_metrics(found["gan"], PARZEN)
    runs.record_metrics(found["rbm"], AIS)
    return found


def _compare_json(*run_dirs: Path) -> dict:
    proc = run_main("compare", *run_dirs, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def table(trio) -> dict:
    return _compare_json(trio["vae"], trio["gan"], trio["rbm"])


def _rows(table: dict) -> dict[str, dict]:
    return {row["id"]: row for row in table["rows"]}


def _statuses(row: dict) -> list[str]:
    return [cell["status"] for cell in row["cells"]]


def test_missing_figures_say_not_run_and_foreign_ones_say_they_do_not_apply(table):
    rows = _rows(table)
    assert [r["model"] for r in table["runs"]] == ["vae", "gan", "rbm"]
    # the probe needs features: the VAE and the RBM have them, the GAN does not
    assert _statuses(rows["probe_accuracy"]) == ["not run", "n/a", "not run"]
    assert [c["text"] for c in rows["probe_accuracy"]["cells"]] == ["not run", "—", "not run"]
    assert _statuses(rows["parzen"]) == ["not run", "value", "not run"]
    assert _statuses(rows["elbo"]) == ["value", "n/a", "n/a"]
    assert _statuses(rows["ais_log_likelihood"]) == ["n/a", "n/a", "value"]
    assert _statuses(rows["fid"]) == ["not run", "not run", "not run"]
    assert "label_agreement" not in rows and "conformity_seen" not in rows  # applies to none of them
    # the lecture's qualitative points
    assert [c["text"] for c in rows["inference_network"]["cells"]] == ["yes", "no", "no; hidden units"]
    assert [c["text"] for c in rows["likelihood_kind"]["cells"]] == [
        "IW estimate",
        "no (Parzen)",
        "AIS estimate",
    ]
    assert [c["text"] for c in rows["binary_data"]["cells"]] == ["yes", "no", "yes"]


def test_each_kind_of_likelihood_has_its_own_labelled_row(table, trio):
    rows = _rows(table)
    likelihood = [r for r in table["rows"] if r["group"] == "likelihood"]
    kinds = {
        "elbo": "ELBO",
        "nll_k3": "importance-weighted estimate, k=3",
        "nll_k50": "importance-weighted estimate, k=50",
        "ais_log_likelihood": "AIS estimate",
        "log_likelihood": "exact",
        "parzen": "Parzen",
    }
    for key, words in kinds.items():
        assert words in rows[key]["label"], (key, rows[key]["label"])
    labels = [r["label"] for r in likelihood]
    assert len(labels) == len(set(labels))
    # every value in a row is that row's quantity of that run, never another kind's
    vae = json.loads((trio["vae"] / "results.json").read_text())["metrics"]
    assert rows["nll_k3"]["cells"][0]["value"] == pytest.approx(vae["nll_k3"])
    assert rows["nll_k50"]["cells"][0]["value"] == 95.5
    assert rows["elbo"]["cells"][0]["value"] == pytest.approx(vae["elbo"])
    assert _statuses(rows["log_likelihood"]) == ["n/a", "n/a", "value"]
    ais = rows["ais_log_likelihood"]["cells"][2]
    assert (ais["value"], ais["low"], ais["high"]) == (-190.25, -190.75, -189.5)
    assert ais["text"] == "-190.25 [-190.75, -189.50]"
    assert rows["parzen"]["cells"][1]["text"] == "112.50 ±2.25"


def test_cost_rows_hold_positive_measured_numbers(table, trio):
    rows = _rows(table)
    for key in ("parameters", "train_time_s", "train_images_per_s", "sample_images_per_s"):
        values = [cell["value"] for cell in rows[key]["cells"]]
        assert all(isinstance(v, (int, float)) and v > 0 for v in values), (key, values)
    with one_thread():
        params = [
            sum(p.numel() for p in registry.load_model(trio[n]).parameters()) for n in ("vae", "gan", "rbm")
        ]
    assert [c["value"] for c in rows["parameters"]["cells"]] == params
    assert [c["text"] for c in rows["device"]["cells"]] == ["cpu"] * 3
    for run in table["runs"]:  # the speed row is what compare timed
        assert run["sampling"]["images"] in (1000, 500, 200, 100, 50, 16)
        rate = run["sampling"]["images"] / run["sampling"]["seconds"]
        assert run["sampling"]["images_per_s"] == pytest.approx(rate)
    shown = [c["value"] for c in rows["sample_images_per_s"]["cells"]]
    assert shown == pytest.approx([run["sampling"]["images_per_s"] for run in table["runs"]])
    assert any("warm-up" in note for note in table["notes"])


def test_the_json_is_the_table_printed(table, trio):
    proc = run_main("compare", trio["vae"], trio["gan"], trio["rbm"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["vae", "gan", "rbm"] and lines[1].split() == ["vae", "gan", "rbm"]
    skip = {"sample_images_per_s"}  # measured afresh by each call
    for row in table["rows"]:
        if row["id"] in skip:
            continue
        line = next(ln for ln in lines if ln.strip().startswith(row["label"].strip()))
        rest = line[line.index(row["label"].strip()) + len(row["label"].strip()) :]
        assert [c.strip() for c in rest.split("  ") if c.strip()] == [c["text"] for c in row["cells"]], line


def test_out_writes_the_markdown_and_the_picture(trio, tmp_path):
    out = tmp_path / "report"
    proc = run_main("compare", trio["vae"], trio["gan"], trio["rbm"], "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out / 'compare.md'}, {out / 'compare.png'}" in proc.stdout
    md = (out / "compare.md").read_text()
    assert "| figure | `vae` (vae) | `gan` (gan) | `rbm` (rbm) |" in md
    assert "| ↳ the same probe on raw pixels (baseline) | not run | — | not run |" in md
    assert "`train_limit = 200`" in md and "`hidden_units = 32`" in md  # config changes
    assert "finished 20" in md and "Sampling measured on" in md
    with Image.open(out / "compare.png") as picture:
        assert picture.format == "PNG" and picture.width > 2 * picture.height  # three panels abreast


def test_a_path_that_is_not_a_run_is_refused(trio, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(run_main("compare", trio["vae"], tmp_path / "empty"), contains="not a genlearn run")
    assert_user_error(run_main("compare", trio["vae"], tmp_path / "missing"), contains="does not exist")


def test_the_same_run_twice_is_refused(trio, tmp_path):
    assert_user_error(run_main("compare", trio["vae"], trio["gan"], trio["vae"]), contains="twice")
    (tmp_path / "link").symlink_to(trio["vae"])  # the same directory under another name
    line = assert_user_error(run_main("compare", trio["vae"], tmp_path / "link"), contains="twice")
    assert str(trio["vae"]) in line and str(tmp_path / "link") in line


def test_a_run_with_nothing_evaluated_is_refused_with_what_to_run(trio):
    line = assert_user_error(run_main("compare", trio["vae"], trio["bare-gan"]), contains="nothing evaluated")
    assert f"genlearn eval {trio['bare-gan']} --metric parzen" in line and "fid" in line


def test_rows_come_from_what_each_metric_declares(trio, monkeypatch):
    """A figure a metric declares gets its own labelled row (not one under "other"), its cell read
    as the declaration says; compare keeps no list of keys of its own."""
    from genlearn.eval import metrics

    declared = metrics.Figure(
        "sharpness", metrics.QUALITY, "sharpness of the samples", "fid", metrics.HIGHER, "sharp",
        cell="stderr", digits=3, companions=("sharpness_stderr",),
    )  # fmt: skip
    runs.record_metrics(trio["gan"], {"sharpness": 0.5, "sharpness_stderr": 0.125})
    monkeypatch.setattr(metrics, "FIGURES", (*metrics.FIGURES, declared))
    table = _rows(_compare_json(trio["vae"], trio["gan"]))
    row = table["sharpness"]
    assert row["label"] == "sharpness of the samples ↑" and row["group"] == "sample quality"
    assert [c["text"] for c in row["cells"]] == ["not run", "0.500 ±0.125"]  # fid applies to both
    assert "sharpness_stderr" not in table  # a companion, folded into the cell
    monkeypatch.undo()
    assert _rows(_compare_json(trio["vae"], trio["gan"]))["sharpness"]["group"] == "other"


def test_every_declared_figure_names_a_metric_that_writes_it():
    from genlearn.eval import metrics

    keys = [f.key for f in metrics.FIGURES]
    assert len(keys) == len(set(keys))
    assert {f.metric for f in metrics.FIGURES} - {None} == set(metrics.METRICS)  # every metric's rows
    assert all(f.better in ("", "↑", "↓") and f.group in comparison.table.GROUPS for f in metrics.FIGURES)
    assert [f.key for f in metrics.figures_of("ais")] == ["ais_log_likelihood", "ais_bound", "ais_log_z"]


def test_the_picture_captions_say_units_direction_and_budget(trio):
    from genlearn.comparison import measure, render

    with one_thread():
        table = measure.build([trio["vae"], trio["rbm"]])
    vae = render.key_figures(table, 0)
    assert vae[0].startswith("ELBO ") and vae[0].endswith(" nats ↑")
    assert (
        vae[-2].endswith("img/s sampled")
        and vae[-1].startswith("trained 1 epoch, ")
        and vae[-1].endswith(" on cpu")
    )
    assert [render.title(r) for r in table.runs] == ["vae", "rbm"]  # the name once
