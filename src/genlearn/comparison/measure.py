"""Building the comparison: reading the runs, laying out a row per declared figure, and measuring
what compare measures itself (the sampling speed, on this machine).

Rows of figures come from the metrics' declarations (`genlearn.eval.metrics.FIGURES`): a row per
figure, and one per k for the importance-weighted estimates and per test part for DRAW-like
bounds. Likelihoods are not one quantity: an importance-weighted estimate with k samples, a
variational bound, an AIS estimate with its interval, an AIS-based bound and a Parzen estimate
each get their own labelled row, so no two kinds are ever merged. A figure no declaration
accounts for (a model's own monitors, a metric newer than compare) gets a row under "other".

Cost figures come from the run's records (parameters, training time, training images/s, device),
except the sampling speed, which compare measures on this machine: small runs on their own, so
that the speeds of the runs in one table are measured alike.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genlearn import registry, runs
from genlearn.comparison.table import (
    COST,
    EVALUATED,
    GROUPS,
    LIKELIHOOD,
    NA_CELL,
    NOT_APPLICABLE,
    NOT_RUN,
    NOT_RUN_CELL,
    OTHER,
    REPRESENTATION,
    UNKNOWN,
    UNKNOWN_CELL,
    Cell,
    Row,
    Run,
    Table,
    cell_of,
    number,
)
from genlearn.errors import UserError
from genlearn.eval import metrics
from genlearn.eval.metrics import Figure

SEED = 0
SAMPLING_BUDGET_S = 1.0  # seconds of timed sampling per run: compare stays quick even for DRAW
SAMPLING_SIZES = (1000, 500, 200, 100, 50, 16)  # the timed batch: the largest that fits the budget
PROBE_SIZE = 16  # the warm-up and the probe that sizes the timed batch
PICTURE_SAMPLES = 16  # `genlearn sample RUN --n 16 --seed 0`: each run's panel in compare.png
# A model's own held-out monitors (results.json has them from training): shown under "other", but
# they do not count as an evaluation of the run.
MONITOR = re.compile(r"^(recon|kl|d_real|d_fake|free_energy|layer|phase|loss)(_\d+)?(_stderr)?(_\w+)?$")


# ---- reading the runs -----------------------------------------------------------------------------
def _columns(paths: list[Path]) -> list[str]:
    """The shortest trailing part of each path that tells the runs apart (the column heads)."""
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def read_runs(paths: list[str | Path]) -> list[Run]:
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


# ---- rows of declared figures -----------------------------------------------------------------------
def metric_specs(all_metrics: list[dict[str, Any]]) -> list[Figure]:
    """Every declared figure, a family (`nll_k{}`) expanded into the parts the runs report (a row
    per k), or into its generic row while none does."""
    keys = {k for m in all_metrics for k in m}
    specs = []
    for figure in metrics.FIGURES:
        parts = figure.parts(keys) if figure.each else [""]
        if figure.each and not parts and figure.generic:
            parts = [""]
        specs += [figure.instance(part) for part in parts]
    return specs


def metric_row(spec: Figure, runs_: list[Run]) -> Row | None:
    """The figure's row; None when it applies to none of the runs and none reports it."""
    cells = []
    for run in runs_:
        if spec.key in run.metrics:
            cells.append(cell_of(spec, run.metrics))
        else:
            cells.append(NOT_RUN_CELL if spec.applies(run.model) else NA_CELL)
    if all(c.status == "n/a" for c in cells):
        return None
    return Row(spec.group, spec.key, spec.text, cells, spec.metric, spec.short, spec.unit, spec.better)


def _eval_hint(run: Run) -> str:
    """The `genlearn eval` that would give a bare run its first figure, and the other metrics
    that apply to it."""
    options = list(dict.fromkeys(s.metric for s in metric_specs([]) if s.metric and s.applies(run.model)))
    if not options:
        return f"no metric applies to {run.path}"
    also = f" (also {', '.join(options[1:])})" if len(options) > 1 else ""
    return f"`genlearn eval {run.path} --metric {options[0]}`{also}"


def check_evaluated(runs_: list[Run], rows: list[Row], other_keys: list[set[str]]) -> None:
    """Refuse runs whose results hold no figure to compare (at most the model's own monitors, a
    GAN's mean D(x)), naming the `genlearn eval` commands that would give them some."""
    figures = [r for r in rows if r.group in EVALUATED]
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
def likelihood_kind(model: Any) -> str:
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


def inference(model: Any) -> str:
    if model.can("encode"):
        return "yes"
    return "no; hidden units" if model.can("features") else "no"


def fact_rows(runs_: list[Run]) -> list[Row]:
    """The lecture's qualitative points, read from what each model declares."""

    def words(answer: Callable[[Any], str]) -> list[Cell]:
        return [Cell("value", answer(r.model), answer(r.model)) for r in runs_]

    return [
        Row(LIKELIHOOD, "likelihood_kind", "gives a likelihood (which kind)", words(likelihood_kind)),
        Row(LIKELIHOOD, "binary_data", "models discrete (binary) data",
            words(lambda m: "yes" if m.data_kind == "binary" else "no")),
        Row(REPRESENTATION, "inference_network", "has an inference network", words(inference)),
    ]  # fmt: skip


def other_rows(runs_: list[Run], specs: list[Figure]) -> tuple[list[Row], list[set[str]]]:
    """A row per figure no declaration accounts for (a model's own monitors, a metric newer than
    this table), in the order the runs report them; and each run's such keys."""
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
                cells.append(Cell("value", number(value, 4), value))
        rows.append(Row(OTHER, key, key, cells))
    return rows, keys_of


def parameters(model: Any) -> int:
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
    batch to about SAMPLING_BUDGET_S seconds, then the timed batch, all seeded. The picture's
    samples are drawn apart, as `genlearn sample RUN --n 16 --seed S` draws them (2-D points: the
    timed batch, for a scatter worth reading)."""
    from genlearn.viz import samples as drawing

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
    if model.image_shape is None:
        run.samples = samples
    else:
        run.samples = drawing.draw(model, drawing.Plan(PICTURE_SAMPLES), seed)


def cost_rows(runs_: list[Run]) -> list[Row]:
    def count(value: float | int | None) -> Cell:
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
        text = "unknown" if epochs is None else f"{float(epochs):.2f}".rstrip("0").rstrip(".")
        text += " (time limit)" if stopped == "time_limit" else ""
        return Cell("value", text, epochs, {"steps": run.results.get("steps"), "stopped_by": stopped})

    return [
        Row(COST, "parameters", "parameters", [count(parameters(r.model)) for r in runs_]),
        Row(COST, "trained", "epochs trained", [trained(r) for r in runs_]),
        Row(COST, "train_time_s", "training time (s)", [count(r.results.get("train_time_s")) for r in runs_]),
        Row(COST, "train_images_per_s", "training images/s", [count(training_rate(r)) for r in runs_]),
        Row(COST, "device", "trained on", [device(r) for r in runs_]),
        Row(COST, "sample_images_per_s", "sampling images/s (measured¹)",
            [count(r.sampling["images_per_s"]) for r in runs_], unit="img/s"),
    ]  # fmt: skip


# ---- the table --------------------------------------------------------------------------------------
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


def build(paths: list[str | Path], seed: int = SEED) -> Table:
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
