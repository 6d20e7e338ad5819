"""`genlearn compare RUN ...`: every figure of several runs in one table, measured the same way.

Rows are figures, grouped as likelihood, sample quality, diversity, representation, other and
cost; columns are runs (a table of many figures and a few runs reads down, and stays within a
terminal's width). The package is split by what it does:

- `table`: the table as data (runs, rows, cells, notes) and how a figure's cell reads;
- `measure`: reading the runs, a row per figure the metrics declare
  (`genlearn.eval.metrics.FIGURES`), and timing the samplers (`build`);
- `render`: text, Markdown, JSON and the picture of the runs' samples.

`genlearn.compare(runs, out=...)` (the public API) builds a table and writes compare.md and
compare.png.
"""

from __future__ import annotations

from genlearn.comparison.measure import SEED, build, metric_specs, read_runs
from genlearn.comparison.render import (
    as_json,
    render_json,
    render_markdown,
    render_picture,
    render_text,
    write_report,
)
from genlearn.comparison.table import NOT_APPLICABLE, NOT_RUN, OTHER, UNKNOWN, Cell, Row, Run, Table

__all__ = [
    "NOT_APPLICABLE", "NOT_RUN", "OTHER", "SEED", "UNKNOWN", "Cell", "Row", "Run", "Table", "as_json", "build",
    "metric_specs", "read_runs", "render_json", "render_markdown", "render_picture", "render_text",
    "write_report",
]  # fmt: skip
