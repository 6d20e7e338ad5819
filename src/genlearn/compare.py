"""`genlearn compare RUN ...`: every metric of every run in one table, measured the same way.

Rows are figures, grouped as likelihood, sample quality, diversity, representation, other and
cost; columns are runs (a table of many figures and a few runs reads down, and stays within a
terminal's width). Three kinds of empty cell keep apart what a reader must not confuse:
`—` the figure does not apply to the family (decided by `metrics.NEEDS` from the model's declared
capabilities, conditions, data kind and image shape, never by probing it), `not run` it applies
but `genlearn eval` has not computed it, and `·` for a figure compare does not know (its
applicability is unknown).

Likelihoods are not one quantity: an importance-weighted estimate with k samples, a variational
bound, an AIS estimate with its interval, an AIS-based bound and a Parzen estimate each get their
own labelled row (and an IW estimate with another k its own row), so no two kinds are ever merged.

Cost figures come from the run's records (parameters, training time, training images/s, device),
except the sampling speed, which compare measures itself on this machine: small runs on their
own, so that the speeds of the runs in one table are measured alike.
"""

from __future__ import annotations

import io
import platform
import re
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from genlearn import config as cfg
from genlearn import registry, runs
from genlearn.errors import UserError
from genlearn.eval import metrics
from genlearn.models.base import GenerativeModel

NOT_APPLICABLE = "—"
NOT_RUN = "not run"
UNKNOWN = "·"
SEED = 0
SAMPLING_BUDGET_S = 1.0  # seconds of timed sampling per run: compare stays quick even for DRAW
SAMPLING_SIZES = (1000, 500, 200, 100, 50, 16)  # the timed batch: the largest that fits the budget
PROBE_SIZE = 16  # the warm-up and the probe that sizes the timed batch
PICTURE_SAMPLES = 16
NOTE_WIDTH = 110  # the notes under the table, wrapped for a terminal

LIKELIHOOD = "likelihood"
QUALITY = "sample quality"
DIVERSITY = "diversity"
REPRESENTATION = "representation"
OTHER = "other"
COST = "cost"
GROUPS = {
    LIKELIHOOD: "likelihood (nats per test image; ↑ higher is better, ↓ lower is better)",
    QUALITY: "sample quality",
    DIVERSITY: "diversity",
    REPRESENTATION: "representation",
    OTHER: "other (each model's own monitors, or metrics compare does not know)",
    COST: "cost",
}


# ---- cells and rows --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One run's entry in one row: `status` is "value", "not run", "n/a" or "unknown"; `value` the
    figure itself (a number or a word), `extra` what the text folds in (stderr, interval...)."""

    status: str
    text: str
    value: float | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "text": self.text, "value": self.value, **self.extra}


NA_CELL = Cell("n/a", NOT_APPLICABLE)
NOT_RUN_CELL = Cell("not run", NOT_RUN)
UNKNOWN_CELL = Cell("unknown", UNKNOWN)


@dataclass
class Row:
    group: str
    id: str
    label: str
    cells: list[Cell]
    metric: str | None = None  # the `genlearn eval --metric` that writes it
    short: str = ""  # the figure's name in compare.png's captions


def _num(value: Any, digits: int) -> str:
    """A figure as text; a non-finite one (stored as null in results.json) says so."""
    if value is None:
        return "non-finite"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


# ---- metric rows ----------------------------------------------------------------------------------
Shower = Callable[[dict[str, Any], str], Cell]


def plain(digits: int = 2) -> Shower:
    return lambda m, k: Cell("value", _num(m[k], digits), m[k])


def with_stderr(digits: int = 2, stderr_key: str | None = None) -> Shower:
    """The figure ± its standard error over test images (`KEY_stderr` unless named)."""

    def show(m: dict[str, Any], key: str) -> Cell:
        stderr = m.get(stderr_key or f"{key}_stderr")
        text = _num(m[key], digits) + (f" ±{_num(stderr, digits)}" if stderr is not None else "")
        return Cell("value", text, m[key], {"stderr": stderr})

    return show


def with_interval(digits: int = 2) -> Shower:
    """The AIS figure with the interval that AIS's ±3 std interval of log Z carries over to it."""

    def show(m: dict[str, Any], key: str) -> Cell:
        low, high = m.get(f"{key}_low"), m.get(f"{key}_high")
        ends = f"{'-inf' if low is None else _num(low, digits)}, {_num(high, digits)}"
        extra = {"low": low, "high": high, "stderr": m.get(f"{key}_stderr")}
        return Cell("value", f"{_num(m[key], digits)} [{ends}]", m[key], extra)

    return show


def probe_cell(m: dict[str, Any], key: str) -> Cell:
    dim = m.get("probe_dim")
    text = _num(m[key], 4) + (f" (dim {dim})" if dim is not None else "")
    return Cell("value", text, m[key], {"dim": dim})


def histogram_cell(m: dict[str, Any], key: str) -> Cell:
    """The class histogram as its least and most common class's share of the samples."""
    hist = m[key] if isinstance(m[key], list) and m[key] else None
    if hist is None:
        return Cell("value", str(m[key]), None)
    return Cell("value", f"{min(hist):.3f} / {max(hist):.3f}", min(hist), {"histogram": hist})


def modes_cell(m: dict[str, Any], key: str) -> Cell:
    return Cell("value", f"{_num(m[key], 0)} of {_num(m.get('modes'), 0)}", m[key], {"of": m.get("modes")})


@dataclass(frozen=True)
class Spec:
    """A row of figures from results.json: `key` the figure, `companions` the keys folded into its
    cell, `metric` what computes it. Which models the row applies to is the metric's declaration
    (`metrics.NEEDS`) narrowed by `only` where a metric gives different figures to different
    models (nll: an IW estimate or DRAW's bound; ais: an RBM's estimate or a DBN's bound; fid: on
    digits or canvases); a row without a metric applies where `only` says (None: only to runs
    that report it, e.g. an exact log-likelihood small enough to enumerate)."""

    key: str
    group: str
    label: str
    short: str
    only: Callable[[GenerativeModel], bool] | None
    metric: str | None
    show: Shower = plain()
    companions: tuple[str, ...] = ()

    def applies(self, model: GenerativeModel) -> bool | None:
        if self.metric is not None:
            return metrics.applies(self.metric, model) and (self.only is None or self.only(model))
        return self.only(model) if self.only else None


def _can(*capabilities: str) -> Callable[[GenerativeModel], bool]:
    return lambda model: any(model.can(c) for c in capabilities)


def _digits(model: GenerativeModel) -> bool:
    """`fid` of 28 x 28 digits is on the MNIST classifier's features."""
    return tuple(model.image_shape or ()) == metrics.DIGITS


def _canvases(model: GenerativeModel) -> bool:
    """`fid` of 60 x 60 canvases is on the conformity checker's features (another row)."""
    return tuple(model.image_shape or ()) == metrics.CANVAS_SHAPE


def _bound_only(model: GenerativeModel) -> bool:
    """`genlearn eval --metric nll` gives DRAW's bound only where there is no IW estimate."""
    return model.can("nll_bound") and not model.can("log_likelihood")


def _rbm_ais(model: GenerativeModel) -> bool:
    return model.can("free_energy") and not model.can("ais_bound")


def _points(model: GenerativeModel) -> bool:
    return model.data_kind == "points"


def _pm_keys(key: str) -> tuple[str, ...]:
    return (f"{key}_stderr",)


def _ais_keys(key: str) -> tuple[str, ...]:
    return tuple(f"{key}{s}" for s in ("_low", "_high", "_stderr"))


def _nll_spec(k: str) -> Spec:
    label = (
        f"−log p(x), importance-weighted estimate, k={k} ↓" if k else "−log p(x), importance-weighted (k) ↓"
    )
    return Spec(
        f"nll_k{k}", LIKELIHOOD, label, f"NLL k={k}", _can("log_likelihood"), "nll",
        with_stderr(), _pm_keys(f"nll_k{k}"),
    )  # fmt: skip


def _bound_part_spec(part: str) -> Spec:
    key = f"nll_bound_{part}"
    return Spec(
        key, LIKELIHOOD, f"−log p(x) ≤ bound L^x+L^z, {part} test part ↓", f"bound ({part})",
        lambda m: _bound_only(m) and "captions" in m.conditions, "nll",
        with_stderr(2, f"{key}_stderr"), (f"{key}_stderr", f"nll_bound_stderr_{part}"),
    )  # fmt: skip


def _likelihood_specs(nll_ks: list[str], bound_parts: list[str]) -> list[Spec]:
    ais_rbm, ais_bound = "ais_log_likelihood", "ais_bound"  # an RBM's estimate; a DBN's or DBM's bound
    return [
        Spec("elbo", LIKELIHOOD, "ELBO, variational lower bound on log p(x) ↑", "ELBO",
             None, "elbo", with_stderr(), _pm_keys("elbo")),
        *[_nll_spec(k) for k in nll_ks or [""]],
        Spec("nll_bound", LIKELIHOOD, "−log p(x) ≤ variational bound L^x+L^z ↓", "bound",
             _bound_only, "nll", with_stderr(), _pm_keys("nll_bound")),
        *[_bound_part_spec(p) for p in bound_parts],
        Spec(ais_rbm, LIKELIHOOD, "log p(x), AIS estimate [±3σ of log Z] ↑", "AIS log p",
             _rbm_ais, "ais", with_interval(), _ais_keys(ais_rbm)),
        Spec(ais_bound, LIKELIHOOD, "log p(x) ≥ AIS-based variational bound [±3σ] ↑", "AIS bound",
             _can("ais_bound"), "ais", with_interval(), _ais_keys(ais_bound)),
        Spec("ais_log_z", LIKELIHOOD, "  log Z by AIS [±3σ]", "log Z", None, "ais", with_interval(),
             _ais_keys("ais_log_z")),
        Spec("log_likelihood", LIKELIHOOD, "log p(x), exact (log Z enumerated) ↑", "log p", None, None),
        Spec("bound", LIKELIHOOD, "log p(x) ≥ variational bound, exact log Z ↑", "bound", None, None),
        Spec("parzen", LIKELIHOOD, "log p(x), Parzen estimate on 10,000 samples ↑", "Parzen",
             None, "parzen", with_stderr(), ("parzen_stderr", "parzen_sigma")),
        Spec("parzen_real_train", LIKELIHOOD, "  the same on 10,000 training images (ceiling)", "", None,
             "parzen", with_stderr(), ("parzen_real_train_stderr", "parzen_real_train_sigma")),
    ]  # fmt: skip


SAMPLE_SPECS = [
    Spec("fid", QUALITY, "FID, MNIST classifier features, 10,000 samples ↓", "FID", _digits, "fid"),
    Spec("fid_real", QUALITY, "  FID of real validation images (floor)", "", _digits, "fid"),
    Spec("fid_canvas", QUALITY, "Frechet distance, 60x60 checker features, 10,000 samples ↓", "FD canvas",
         _canvases, "fid"),
    Spec("fid_canvas_real", QUALITY, "  the same of real validation canvases (floor)", "", _canvases, "fid"),
    Spec("classifier_score", QUALITY, "classifier score exp E KL(p(y|x)‖p(y)) ↑", "score",
         None, "coverage"),
    Spec("label_agreement", QUALITY, "label agreement: the classifier reads the label ↑", "labels",
         None, "label_agreement", with_stderr(4),
         ("label_agreement_stderr", "label_agreement_per_class")),
    Spec("conformity_seen", QUALITY, "caption conformity, seen captions ↑", "conformity",
         None, "conformity", with_stderr(4),
         ("conformity_seen_stderr", "conformity_seen_per_type")),
    Spec("conformity_real_seen", QUALITY, "  real composites (ceiling)", "",
         None, "conformity", plain(4)),
    Spec("conformity_heldout", QUALITY, "caption conformity, held-out captions ↑", "held-out",
         None, "conformity", with_stderr(4),
         ("conformity_heldout_stderr", "conformity_heldout_per_type", "heldout_digit_right_per_type")),
    Spec("conformity_real_heldout", QUALITY, "  real composites (ceiling)", "",
         None, "conformity", plain(4)),
    Spec("high_quality", QUALITY, "points within 3σ of a mode ↑", "high quality", _points, None, plain(4)),
    Spec("coverage_kl", DIVERSITY, "KL(class histogram ‖ uniform), 10,000 samples ↓", "KL",
         None, "coverage", plain(4)),
    Spec("class_histogram", DIVERSITY, "  least / most common class's share", "",
         None, "coverage", histogram_cell),
    Spec("nearest_train_samples", DIVERSITY, "distance to the nearest training image, 1,000 samples",
         "nearest", None, "nearest", with_stderr(), ("nearest_train_samples_stderr",)),
    Spec("nearest_train_test", DIVERSITY, "  the same for 1,000 test images (copies would be far below)", "",
         None, "nearest", with_stderr(), ("nearest_train_test_stderr",)),
    Spec("modes_captured", DIVERSITY, "modes captured ↑", "modes", _points, None, modes_cell, ("modes",)),
    Spec("probe_accuracy", REPRESENTATION, "linear probe accuracy on its features ↑", "probe",
         None, "probe", probe_cell, ("probe_dim",)),
    Spec("probe_accuracy_pixels", REPRESENTATION, "  the same probe on raw pixels (baseline)", "",
         None, "probe", plain(4)),
]  # fmt: skip
# A model's own held-out monitors (results.json has them from training): shown under "other", but
# they do not count as an evaluation of the run.
MONITOR = re.compile(r"^(recon|kl|d_real|d_fake|free_energy|layer|phase|loss)(_\d+)?(_stderr)?(_\w+)?$")


def _dynamic_keys(all_metrics: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The k of every IW estimate the runs report (each its own row), and the further test parts
    of DRAW-like bounds (nll_bound_heldout)."""
    keys = {k for m in all_metrics for k in m}
    ks = sorted({g[1] for k in keys if (g := re.fullmatch(r"nll_k(\d+)", k))}, key=int)
    parts = sorted(
        {
            g[1]
            for k in keys
            if (g := re.fullmatch(r"nll_bound_(?!stderr)(\w+?)", k)) and not k.endswith("_stderr")
        }
    )
    return ks, parts


def metric_specs(all_metrics: list[dict[str, Any]]) -> list[Spec]:
    ks, parts = _dynamic_keys(all_metrics)
    return [*_likelihood_specs(ks, parts), *SAMPLE_SPECS]


# ---- reading the runs -----------------------------------------------------------------------------
@dataclass
class Run:
    """A run as compare reads it: its directory, model, config, results and loaded model."""

    path: Path
    column: str
    name: str
    config: Any
    results: dict[str, Any]
    model: GenerativeModel | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    samples: torch.Tensor | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.results.get("metrics", {})


def _columns(paths: list[Path]) -> list[str]:
    """The shortest trailing part of each path that tells the runs apart (the column heads)."""
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def read_runs(paths: list[str]) -> list[Run]:
    """The runs, refused with one line if a path is not a run, a run has not finished, or a run
    is given twice (the same directory under two spellings too)."""
    found = []
    for path in map(Path, paths):
        name, config = registry.run_config(path)
        results = runs.results(path)
        if not results:
            raise UserError(
                f"{path} has not finished (no {runs.RESULTS_FILE}); finish it with "
                f"`genlearn train {name} --out {path} --resume` first"
            )
        found.append(Run(path, "", name, config, results))
    seen: dict[Path, Path] = {}
    for run in found:
        real = run.path.resolve()
        if real in seen:
            also = f" (also as {seen[real]})" if seen[real] != run.path else ""
            raise UserError(f"run {run.path} is given twice{also}; give each run once")
        seen[real] = run.path
    for run, column in zip(found, _columns([r.path for r in found])):
        run.column = column
    return found


def metric_row(spec: Spec, runs_: list[Run]) -> Row | None:
    """The spec's row; None when it applies to none of the runs and none reports it."""
    cells = []
    for run in runs_:
        applies = spec.applies(run.model)
        if spec.key in run.metrics:
            cells.append(spec.show(run.metrics, spec.key))
        else:
            cells.append(NOT_RUN_CELL if applies else NA_CELL)
    if all(c.status == "n/a" for c in cells):
        return None
    return Row(spec.group, spec.key, spec.label, cells, spec.metric, spec.short)


def _eval_hint(run: Run) -> str:
    """The `genlearn eval` that would give a bare run its first figure, and the other metrics
    that apply to it."""
    specs = metric_specs([])
    options = list(dict.fromkeys(s.metric for s in specs if s.metric and s.applies(run.model)))
    if not options:
        return f"no metric applies to {run.path}"
    also = f" (also {', '.join(options[1:])})" if len(options) > 1 else ""
    return f"`genlearn eval {run.path} --metric {options[0]}`{also}"


def check_evaluated(runs_: list[Run], rows: list[Row], other_keys: list[set[str]]) -> None:
    """Refuse runs whose results hold no figure to compare (at most the model's own monitors, a
    GAN's mean D(x)), naming the `genlearn eval` commands that would give them some."""
    figures = [r for r in rows if r.group in (LIKELIHOOD, QUALITY, DIVERSITY, REPRESENTATION)]
    bare = [
        run
        for i, run in enumerate(runs_)
        if not any(r.cells[i].status == "value" for r in figures)
        and all(MONITOR.match(k) for k in other_keys[i])
    ]
    if bare:
        names = ", ".join(str(r.path) for r in bare)
        raise UserError(f"nothing evaluated in {names} to compare; run {'; '.join(map(_eval_hint, bare))}")


# ---- the qualitative rows, the other figures and cost ----------------------------------------------
def likelihood_kind(model: GenerativeModel) -> str:
    """The lecture's "gives a likelihood?", answered with the kind it gives."""
    if model.can("log_likelihood"):
        return "IW estimate"
    if model.can("nll_bound"):
        return "bound"
    if model.can("free_energy"):
        return "AIS estimate"
    if model.can("ais_bound"):
        return "AIS bound"
    return "no (Parzen)" if model.image_shape is not None else "no"


def inference(model: GenerativeModel) -> str:
    if model.can("encode"):
        return "yes"
    return "no; hidden units" if model.can("features") else "no"


def fact_rows(runs_: list[Run]) -> list[Row]:
    """The lecture's qualitative points, read from what each model declares."""

    def words(answer: Callable[[GenerativeModel], str]) -> list[Cell]:
        return [Cell("value", answer(r.model), answer(r.model)) for r in runs_]

    return [
        Row(LIKELIHOOD, "likelihood_kind", "gives a likelihood (which kind)", words(likelihood_kind)),
        Row(LIKELIHOOD, "binary_data", "models discrete (binary) data",
            words(lambda m: "yes" if m.data_kind == "binary" else "no")),
        Row(REPRESENTATION, "inference_network", "has an inference network", words(inference)),
    ]  # fmt: skip


def other_rows(runs_: list[Run], specs: list[Spec]) -> tuple[list[Row], list[set[str]]]:
    """A row per figure no spec accounts for (a model's own monitors, a metric newer than this
    table), in the order the runs report them; and each run's such keys."""
    known = {k for s in specs for k in (s.key, *s.companions)}
    keys_of = [{k for k in run.metrics if k not in known} for run in runs_]
    ordered = list(dict.fromkeys(k for run in runs_ for k in run.metrics if k not in known))
    rows = []
    for key in ordered:
        cells = []
        for run in runs_:
            value = run.metrics.get(key)
            if key not in run.metrics:
                cells.append(UNKNOWN_CELL)
            elif isinstance(value, (list, dict)):
                cells.append(Cell("value", f"({len(value)} values)", None, {"values": value}))
            else:
                cells.append(Cell("value", _num(value, 4), value))
        rows.append(Row(OTHER, key, key, cells))
    return rows, keys_of


def parameters(model: GenerativeModel) -> int:
    return sum(p.numel() for p in model.parameters())


def training_rate(run: Run) -> float | None:
    """Training images/s: the median of the rates metrics.jsonl logged (evaluations excluded),
    else steps x batch size over the training time."""
    path = run.path / runs.METRICS_FILE
    records = runs.read_records(path) if path.is_file() else []
    rates = [r["samples_per_s"] for r in records if "split" not in r and "samples_per_s" in r]
    if rates:
        return float(statistics.median(rates))
    seconds, steps = run.results.get("train_time_s"), run.results.get("steps")
    return steps * run.config.batch_size / seconds if seconds and steps else None


def measure_sampling(run: Run, seed: int = SEED) -> None:
    """Time `sample_in_chunks` on this machine: one warm-up, one small probe that sizes the timed
    batch to about SAMPLING_BUDGET_S seconds, then the timed batch, all seeded; its first samples
    are the run's picture."""
    model = run.model
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.sample_in_chunks(PROBE_SIZE, generator=generator)
    start = time.perf_counter()
    model.sample_in_chunks(PROBE_SIZE, generator=generator)
    per_image = (time.perf_counter() - start) / PROBE_SIZE
    n = next((s for s in SAMPLING_SIZES if s * per_image <= SAMPLING_BUDGET_S), SAMPLING_SIZES[-1])
    generator.manual_seed(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    samples = model.sample_in_chunks(n, generator=generator)
    seconds = max(time.perf_counter() - start, 1e-9)
    run.sampling = {"images": n, "seconds": seconds, "images_per_s": n / seconds}
    run.samples = samples[:PICTURE_SAMPLES] if model.image_shape is not None else samples


def cost_rows(runs_: list[Run]) -> list[Row]:
    def number(value: float | int | None) -> Cell:
        """Thousands apart, and small figures (a short run's seconds) not rounded to zero."""
        if value is None:
            return Cell("value", "unknown", None)
        digits = 0 if abs(value) >= 100 or isinstance(value, int) else 1 if abs(value) >= 1 else 2
        return Cell("value", f"{value:,.{digits}f}", value)

    def device(run: Run) -> Cell:
        where, ranks = run.results.get("device", "unknown"), run.results.get("ranks", 1)
        text = f"{where} x{ranks}" if ranks and ranks > 1 else str(where)
        return Cell("value", text, where, {"ranks": ranks})

    def trained(run: Run) -> Cell:
        epochs, stopped = run.results.get("epochs"), run.results.get("stopped_by", "")
        count = "unknown" if epochs is None else f"{float(epochs):.2f}".rstrip("0").rstrip(".")
        text = count + (" (time limit)" if stopped == "time_limit" else "")
        return Cell("value", text, epochs, {"steps": run.results.get("steps"), "stopped_by": stopped})

    return [
        Row(COST, "parameters", "parameters", [number(parameters(r.model)) for r in runs_]),
        Row(COST, "trained", "epochs trained", [trained(r) for r in runs_]),
        Row(COST, "train_time_s", "training time (s)", [number(r.results.get("train_time_s")) for r in runs_]),
        Row(COST, "train_images_per_s", "training images/s", [number(training_rate(r)) for r in runs_]),
        Row(COST, "device", "trained on", [device(r) for r in runs_]),
        Row(COST, "sample_images_per_s", "sampling images/s (measured¹)",
            [number(r.sampling["images_per_s"]) for r in runs_], short="sampling img/s"),
    ]  # fmt: skip


# ---- the table --------------------------------------------------------------------------------------
@dataclass
class Table:
    runs: list[Run]
    rows: list[Row]
    notes: list[str]


def _config_changes(run: Run) -> dict[str, Any]:
    """The run's config values that differ from the registry's defaults for its model."""
    default = registry.make_config(run.name)
    return {
        k: getattr(run.config, k)
        for k in cfg.fields_of(type(run.config))
        if getattr(run.config, k) != getattr(default, k)
    }


def _finished(run: Run) -> str:
    stamp = (run.path / runs.RESULTS_FILE).stat().st_mtime
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"{platform.node()} ({platform.system()} {cpu}, torch {torch.__version__}, {threads} thread{'s' * (threads > 1)})"


def _notes(runs_: list[Run], seed: int) -> list[str]:
    sizes = ", ".join(f"{r.column} {r.sampling['images']:,}" for r in runs_)
    return [
        f"{NOT_APPLICABLE} does not apply to the family; {NOT_RUN}: applies, but `genlearn eval RUN --metric "
        f"NAME` has not been run; {UNKNOWN} not reported (compare does not know where it applies).",
        "Likelihood rows are different quantities (estimates, bounds, Parzen) and are never merged; "
        "± is the standard error over test images, [a, b] AIS's ±3σ interval of log Z carried over.",
        f"¹ sampling speed measured by compare on this machine, on the CPU, seed {seed}, after one warm-up: "
        f"{sizes} images.",
    ]


def build(paths: list[str], seed: int = SEED) -> Table:
    """Read the runs, load their models, measure their sampling and lay out every figure."""
    runs_ = read_runs(paths)
    for run in runs_:
        run.model = registry.load_model(run.path)
    specs = metric_specs([r.metrics for r in runs_])
    rows = [row for spec in specs if (row := metric_row(spec, runs_))]
    extra, other_keys = other_rows(runs_, specs)
    check_evaluated(runs_, rows, other_keys)
    for run in runs_:
        measure_sampling(run, seed)
    ordered = [*fact_rows(runs_), *rows, *extra, *cost_rows(runs_)]
    ordered.sort(key=lambda r: list(GROUPS).index(r.group))  # stable: facts first within a group
    return Table(runs_, ordered, _notes(runs_, seed))


# ---- rendering --------------------------------------------------------------------------------------
def _grouped(table: Table) -> list[tuple[str, list[Row]]]:
    return [(g, rows) for g in GROUPS if (rows := [r for r in table.rows if r.group == g])]


def render_text(table: Table) -> str:
    """The table for a terminal: a column per run (head: its directory and model), a line per
    figure, a heading per group, the notes below."""
    heads = [[r.column, r.name] for r in table.runs]
    label_w = max(len(r.label) + 4 for r in table.rows)
    widths = [
        max(len(t) for t in [*h, *(row.cells[i].text for row in table.rows)]) for i, h in enumerate(heads)
    ]
    out = []
    for line in range(2):
        out.append(" " * label_w + "  ".join(h[line].ljust(w) for h, w in zip(heads, widths)).rstrip())
    for group, rows in _grouped(table):
        out.append(GROUPS[group])
        for row in rows:
            cells = "  ".join(c.text.ljust(w) for c, w in zip(row.cells, widths))
            out.append(f"  {row.label}".ljust(label_w) + cells.rstrip())
    out.append("")
    out.extend(line for note in table.notes for line in textwrap.wrap(note, NOTE_WIDTH))
    return "\n".join(out)


def as_json(table: Table) -> dict[str, Any]:
    return {
        "runs": [
            {
                "path": str(r.path),
                "column": r.column,
                "model": r.name,
                "finished": _finished(r),
                "train_time_s": r.results.get("train_time_s"),
                "device": r.results.get("device"),
                "config_changes": _config_changes(r),
                "sampling": r.sampling,
            }
            for r in table.runs
        ],
        "rows": [
            {
                "group": r.group,
                "id": r.id,
                "label": r.label,
                "metric": r.metric,
                "cells": [c.as_json() for c in r.cells],
            }
            for r in table.rows
        ],
        "notes": table.notes,
        "machine": machine(),
    }


def render_json(table: Table) -> str:
    return runs.dumps(as_json(table), indent=2)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: Table) -> str:
    """compare.md: the table, then each run's config changes, date, training time and device."""
    cols = len(table.runs)
    out = [
        "# genlearn compare",
        "",
        f"| figure | {' | '.join(f'`{r.column}` ({r.name})' for r in table.runs)} |",
    ]
    out.append("| --- " * (cols + 1) + "|")
    for group, rows in _grouped(table):
        out.append(f"| **{_md(GROUPS[group])}** |" + " |" * cols)
        for row in rows:
            label = f"↳ {row.label.strip()}" if row.label.startswith("  ") else row.label
            out.append(f"| {_md(label)} | {' | '.join(_md(c.text) for c in row.cells)} |")
    out += ["", *[f"- {_md(n)}" for n in table.notes], "", "## Runs", ""]
    for run in table.runs:
        changes = _config_changes(run)
        shown = ", ".join(f"`{k} = {v!r}`" for k, v in changes.items()) or "none"
        out.append(
            f"- `{run.path}`: {run.name}, finished {_finished(run)}, trained {run.results.get('train_time_s')} s "
            f"on {run.results.get('device', 'unknown')}; config changed from the defaults: {shown}"
        )
    out += ["", f"Sampling measured on {machine()}, {datetime.now():%Y-%m-%d %H:%M}.", ""]
    return "\n".join(out)


def key_figures(table: Table, index: int, most: int = 3) -> list[str]:
    """A run's first figures of the likelihood and sample-quality groups, and its sampling speed:
    the caption of its samples in compare.png."""
    picked = []
    for group in (LIKELIHOOD, QUALITY, DIVERSITY):
        rows = [r for r in table.rows if r.group == group and r.short and r.cells[index].status == "value"]
        picked += [f"{r.short} {r.cells[index].text.split(' [')[0]}" for r in rows[:1]]
    speed = next(r for r in table.rows if r.id == "sample_images_per_s")
    return [*picked[: most - 1], f"{speed.cells[index].text} img/s sampled"]


def render_picture(table: Table) -> bytes:
    """compare.png: each run's samples side by side, captioned with its model and key figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlearn.viz.grids import grid

    n = len(table.runs)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 4.2), squeeze=False)
    for i, (run, ax) in enumerate(zip(table.runs, axes[0])):
        if run.model.image_shape is None:
            pts = run.samples.detach().cpu()
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
            ax.set_aspect("equal")
        else:
            ax.imshow(grid(run.samples.clamp(0, 1), nrow=4), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(f"{run.name}: {run.column}", fontsize=9)
        ax.set_xlabel("\n".join(key_figures(table, i)), fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_report(table: Table, out_dir: str | Path) -> list[Path]:
    """compare.md and compare.png in `out_dir` (created), each written atomically."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write the comparison to {out}: a file is in the way") from None
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror or exc}") from None
    paths = [out / "compare.md", out / "compare.png"]
    runs.atomic_write(paths[0], render_markdown(table))
    runs.atomic_write(paths[1], render_picture(table))
    return paths


def command(paths: list[str], out: str | None = None, as_json: bool = False) -> str:
    """`genlearn compare`: the table as text (or JSON), with compare.md and compare.png written to
    `out` when given; what was written is said on stderr under --json, so stdout stays JSON."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file; give a directory for compare.md and compare.png")
    table = build(paths)
    text = render_json(table) if as_json else render_text(table)
    if out is None:
        return text
    written = ", ".join(str(p) for p in write_report(table, out))
    if as_json:
        print(f"wrote {written}", file=sys.stderr)
        return text
    return f"{text}\n\nwrote {written}"
