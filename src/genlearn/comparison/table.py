"""The comparison table as data: runs (columns), rows of cells grouped as likelihood, sample
quality, diversity, representation, other and cost, and the notes under it.

Three kinds of empty cell keep apart what a reader must not confuse: `—` the figure does not
apply to the family (decided by the metric's declaration, `metrics.NEEDS`, from the model's
declared capabilities, conditions, data kind and image shape, never by probing it), `not run` it
applies but `genlearn eval` has not computed it, and `·` a figure compare does not know (its
applicability is unknown).

A figure's cell is read from results.json as its declaration (`metrics.Figure`) says: the value
with its standard error, AIS's interval, the probe's dimension, a histogram's extremes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlearn.eval.metrics import DIVERSITY, LIKELIHOOD, QUALITY, REPRESENTATION, Figure

NOT_APPLICABLE = "—"
NOT_RUN = "not run"
UNKNOWN = "·"
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
EVALUATED = (LIKELIHOOD, QUALITY, DIVERSITY, REPRESENTATION)  # groups of figures of an evaluation

__all__ = [
    "COST", "DIVERSITY", "EVALUATED", "GROUPS", "LIKELIHOOD", "NOT_APPLICABLE", "NOT_RUN", "OTHER", "QUALITY",
    "REPRESENTATION", "UNKNOWN", "Cell", "Row", "Run", "Table", "cell_of", "number",
]  # fmt: skip


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
    """A line of the table: `label` as the text shows it, `metric` the `genlearn eval --metric`
    that writes it, `short`, `unit` and `better` (↑ / ↓) for a picture's caption."""

    group: str
    id: str
    label: str
    cells: list[Cell]
    metric: str | None = None
    short: str = ""
    unit: str = ""
    better: str = ""


@dataclass
class Run:
    """A run as compare reads it: its directory, model, config, results and loaded model, and
    what compare measured: its sampling speed and the samples its picture shows."""

    path: Path
    column: str
    name: str
    config: Any
    results: dict[str, Any]
    model: Any = None
    sampling: dict[str, Any] = field(default_factory=dict)
    samples: Any = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.results.get("metrics", {})


@dataclass
class Table:
    """The comparison (`genlearn.compare`): `runs` its columns, `rows` its lines in group order,
    `notes` what the marks mean and how speed was measured; `written` the files `out` received.
    It renders itself as text (`text()`), Markdown (`markdown()`), JSON (`as_json()`, `json()`)
    and a picture of the runs' samples (`picture()`: PNG bytes)."""

    runs: list[Run]
    rows: list[Row]
    notes: list[str]
    written: list[Path] = field(default_factory=list)

    def text(self) -> str:
        from genlearn.comparison.render import render_text

        return render_text(self)

    def markdown(self) -> str:
        from genlearn.comparison.render import render_markdown

        return render_markdown(self)

    def as_json(self) -> dict[str, Any]:
        from genlearn.comparison.render import as_json

        return as_json(self)

    def json(self) -> str:
        from genlearn.comparison.render import render_json

        return render_json(self)

    def picture(self) -> bytes:
        from genlearn.comparison.render import render_picture

        return render_picture(self)

    def row(self, id: str) -> Row:
        """The row `id` (a results.json key, or `parameters`, `sample_images_per_s`...)."""
        return next(r for r in self.rows if r.id == id)


def number(value: Any, digits: int) -> str:
    """A figure as text; a non-finite one (stored as null in results.json) says so."""
    if value is None:
        return "non-finite"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cell_of(figure: Figure, m: dict[str, Any]) -> Cell:
    """The cell of a figure that results' metrics `m` report, with its companions folded in."""
    key, digits, value = figure.key, figure.digits, m[figure.key]
    if figure.cell == "stderr":
        stderr = m.get(figure.stderr or f"{key}_stderr")
        text = number(value, digits) + (f" ±{number(stderr, digits)}" if stderr is not None else "")
        return Cell("value", text, value, {"stderr": stderr})
    if figure.cell == "interval":  # AIS's ±3 std interval of log Z carried over to the figure
        low, high = m.get(f"{key}_low"), m.get(f"{key}_high")
        ends = f"{'-inf' if low is None else number(low, digits)}, {number(high, digits)}"
        extra = {"low": low, "high": high, "stderr": m.get(f"{key}_stderr")}
        return Cell("value", f"{number(value, digits)} [{ends}]", value, extra)
    if figure.cell == "probe":
        dim = m.get("probe_dim")
        return Cell(
            "value", number(value, digits) + (f" (dim {dim})" if dim is not None else ""), value, {"dim": dim}
        )
    if figure.cell == "histogram":  # the least and the most common class's share of the samples
        if not (isinstance(value, list) and value):
            return Cell("value", str(value), None)
        return Cell("value", f"{min(value):.3f} / {max(value):.3f}", min(value), {"histogram": value})
    if figure.cell == "modes":
        of = m.get("modes")
        return Cell("value", f"{number(value, 0)} of {number(of, 0)}", value, {"of": of})
    return Cell("value", number(value, digits), value)
