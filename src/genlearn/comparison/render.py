"""Rendering the comparison: text for a terminal, Markdown (compare.md), JSON for scripts, and a
picture of the runs' samples side by side (compare.png). Nothing here measures or reads a run's
figures; it lays out a built `Table`."""

from __future__ import annotations

import io
import platform
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

from genlearn import config as cfg
from genlearn import files, registry, runs
from genlearn.comparison.table import DIVERSITY, GROUPS, LIKELIHOOD, QUALITY, Row, Run, Table
from genlearn.errors import UserError

NOTE_WIDTH = 110  # the notes under the table, wrapped for a terminal


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


def config_changes(run: Run) -> dict[str, Any]:
    """The run's config values that differ from the registry's defaults for its model."""
    default = registry.make_config(run.name)
    return {
        k: getattr(run.config, k)
        for k in cfg.fields_of(type(run.config))
        if getattr(run.config, k) != getattr(default, k)
    }


def finished(run: Run) -> str:
    stamp = (run.path / runs.RESULTS_FILE).stat().st_mtime
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"{platform.node()} ({platform.system()} {cpu}, torch {torch.__version__}, {threads} thread{'s' * (threads > 1)})"


def as_json(table: Table) -> dict[str, Any]:
    return {
        "runs": [
            {
                "path": str(r.path),
                "column": r.column,
                "model": r.name,
                "finished": finished(r),
                "train_time_s": r.results.get("train_time_s"),
                "device": r.results.get("device"),
                "config_changes": config_changes(r),
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
        changes = config_changes(run)
        shown = ", ".join(f"`{k} = {v!r}`" for k, v in changes.items()) or "none"
        out.append(
            f"- `{run.path}`: {run.name}, finished {finished(run)}, trained {run.results.get('train_time_s')} s "
            f"on {run.results.get('device', 'unknown')}; config changed from the defaults: {shown}"
        )
    out += ["", f"Sampling measured on {machine()}, {datetime.now():%Y-%m-%d %H:%M}.", ""]
    return "\n".join(out)


# ---- the picture ------------------------------------------------------------------------------------
def _caption(row: Row, index: int) -> str:
    """A figure as a caption shows it: its short name, value (without AIS's interval), unit and
    which way is better."""
    value = row.cells[index].text.split(" [")[0]
    return " ".join(part for part in (row.short, value, row.unit, row.better) if part)


def key_figures(table: Table, index: int, most: int = 3) -> list[str]:
    """A run's first figures of the likelihood, sample-quality and diversity groups, its sampling
    speed and its training budget: the caption of its samples in compare.png."""
    picked = []
    for group in (LIKELIHOOD, QUALITY, DIVERSITY):
        rows = [r for r in table.rows if r.group == group and r.short and r.cells[index].status == "value"]
        picked += [_caption(r, index) for r in rows[:1]]
    speed = table.row("sample_images_per_s").cells[index].text
    return [*picked[: most - 1], f"{speed} img/s sampled", budget(table.runs[index])]


def budget(run: Run) -> str:
    """The training the run had: epochs, seconds and where."""
    epochs, seconds = run.results.get("epochs"), run.results.get("train_time_s")
    count = "?" if epochs is None else f"{float(epochs):.2f}".rstrip("0").rstrip(".")
    took = "" if seconds is None else f", {seconds:,.0f} s"
    return (
        f"trained {count} epoch{'' if count == '1' else 's'}{took} on {run.results.get('device', 'unknown')}"
    )


def title(run: Run) -> str:
    """A panel's title: the run's column, and its model where the column does not say it."""
    return run.column if run.column.split("/")[-1] == run.name else f"{run.column} ({run.name})"


def render_picture(table: Table) -> bytes:
    """compare.png: each run's samples side by side (16, as `genlearn sample RUN --n 16` draws
    them; 2-D points as a scatter), titled with the run and captioned with its key figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlearn.viz.samples import grid_image

    n = len(table.runs)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 4.4), squeeze=False)
    for i, (run, ax) in enumerate(zip(table.runs, axes[0])):
        if run.model.image_shape is None:
            pts = run.samples.detach().cpu()
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
            ax.set_aspect("equal")
        else:
            ax.imshow(grid_image(run.samples, nrow=4, scale=1), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(title(run), fontsize=9)
        ax.set_xlabel("\n".join(key_figures(table, i)), fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_report(table: Table, out_dir: str | Path) -> list[Path]:
    """compare.md and compare.png in `out_dir` (created), each written atomically."""
    out = files.check_path(out_dir, "--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write the comparison to {out}: a file is in the way") from None
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror or exc}") from None
    paths = [out / "compare.md", out / "compare.png"]
    files.atomic_write(paths[0], render_markdown(table))
    files.atomic_write(paths[1], render_picture(table))
    return paths
