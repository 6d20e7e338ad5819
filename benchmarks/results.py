"""`make results`: the cross-family table of docs/RESULTS.md and its per-entry tables, from the zoo;
or, with `--budget`, every registered family trained from its preset at one CPU budget.

    python benchmarks/results.py [--zoo DIR] [--results FILE]
    python benchmarks/results.py --budget SECONDS [--jobs N] [--plan DIR] [--results FILE] [--quick]

By default (the zoo) nothing is trained or evaluated again: every entry of zoo/ carries in its
results.json the figures measured from its shipped weights when it was exported (`make zoo`,
`genlearn export`). The table is `genlearn compare zoo/*` (with its sampling speeds measured here,
on one thread), written between the page's `results` markers with docs/results/compare.png, and
each entry's figures beside its paper's, its recipe, training time, CPU and date go between that
entry's own markers (`<!-- zoo:NAME:begin -->` / `<!-- zoo:NAME:end -->`).

With `--budget` (the equal-budget plan):

The plan is one run directory per family under `--plan` (default runs/results), trained and
evaluated through the command line as a user would (`genlearn train NAME --config PRESET --out DIR
--set time_limit=BUDGET ... --quiet`, then `genlearn eval DIR --metric M --json` for each metric,
the metrics of unconditioned samples in one call so that they share one draw),
each job on one thread, N families side by side. Which metrics apply is decided as `genlearn
compare` decides it: from the model's declared capabilities, conditions and image shape. The table
and the samples figure are `genlearn compare`'s, written between the markers of a generated section
of the results file (the rest of the file is left as it is) and, as a PNG, beside it.

Interrupted (Ctrl-C, a crash, a reboot), the same command resumes: a finished training (its
results.json) and a metric already recorded in results.json are skipped, and a training stopped
mid-way continues from its checkpoint with `genlearn train ... --resume`. Each family's commands
and their output go to `<plan>/<family>.log`; a progress bar counts every training and evaluation
of the plan.

`--quick` is the same plan at toy scale (tiny models, a couple of seconds of training each, the
cheapest evaluation settings), in runs/results-quick with its own RESULTS.md there unless told
otherwise: it checks the pipeline end to end (tests/test_results.py), and its figures say nothing
about the families.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from genlearn import comparison as compare
from genlearn import config as cfg
from genlearn import registry, runs, zoo
from genlearn.errors import UserError
from genlearn.eval.metrics import SHARED_DRAW

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
# Families whose preset has a name of its own (the recipe it is); every other family's preset is
# configs/<family>.toml.
PRESET_FILES = {"rbm": "rbm-pcd.toml", "dbm": "dbm-centred.toml"}
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
PLAN_FILE = "plan.json"
UNBOUNDED_EPOCHS = 100_000  # far more than any budget trains: the budget is what stops training
# A cosine schedule anneals over the run's epochs: such a preset keeps its own epochs, so that its
# learning rate follows the recipe, and the budget caps it (it stops annealing early if it binds).
EPOCH_SCHEDULES = ("cosine",)


# ---- the two modes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mode:
    """How a plan trains and evaluates: the default budget (seconds of training steps per family),
    the importance samples of `nll` (the VAE's IW estimate) and the AIS runs of `ais` (the two
    settings `genlearn eval` exposes for its expensive metrics; the sample sizes of the others are
    its protocol's, stated in the generated section), and `--set` values for every family and for
    some."""

    name: str
    budget: float
    k: int
    ais_runs: int
    sets: dict[str, str] = field(default_factory=dict)
    family_sets: dict[str, dict[str, str]] = field(default_factory=dict)

    def settings(self, budget: float) -> dict[str, Any]:
        """What a plan directory is bound to: another mode, budget or evaluation is another plan."""
        return {"mode": self.name, "budget": budget, "k": self.k, "ais_runs": self.ais_runs}


# The full plan: each preset as it is; the protocol's 100 AIS runs (17-46 s an estimate on one
# thread, docs/RESULTS.md); the IW estimate with k=5000 as the published figures use (5.6 min for
# the VAE's 10,000 test images on one thread); the other metrics at their protocol sizes.
FULL = Mode("full", budget=900.0, k=5000, ais_runs=100)

# Toy sizes where a family's defaults are large, so that sampling 10,000 images and scoring them
# takes seconds: DRAW-like models with 4 glimpses and 16-unit LSTMs, narrow GANs, small RBMs.
TINY_DRAW = {"T": "4", "enc_size": "16", "dec_size": "16", "z_size": "4"}
TINY_GAN = {"g_channels": "8", "d_channels": "8"}
TINY_LAPGAN = {**TINY_GAN, "coarse_channels": "8", "z_dim": "16"}
QUICK = Mode(
    "quick",
    budget=2.0,
    k=5,
    ais_runs=5,
    sets={"train_limit": "500", "eval_every": "0", "tensorboard": "false", "log_every": "5"},
    family_sets={
        "autoencoder": {"hidden_units": "32", "code_dim": "8"},
        "vae": {"hidden_units": "32", "latent_dim": "4"},
        "draw": TINY_DRAW,
        "draw-noattn": TINY_DRAW,
        "draw-2digit": TINY_DRAW,
        "aligndraw": {
            **TINY_DRAW, "read_n": "4", "write_n": "4", "lang_size": "8", "align_size": "16",
        },
        "gan": {"g_hidden": "32", "d_units": "16", "z_dim": "16"},
        "dcgan": {**TINY_GAN, "z_dim": "16"},
        "cgan": {**TINY_GAN, "z_dim": "16"},
        "lapgan": TINY_LAPGAN,
        "lapgan-conditional": TINY_LAPGAN,
        "rbm": {"n_hidden": "16"},
        "dbn": {"hidden": "16,32", "epochs_per_layer": "1"},
        "dbm": {"n_hidden1": "16", "n_hidden2": "32", "pretrain_epochs": "1"},
    },
)  # fmt: skip


# ---- one family's part of the plan ------------------------------------------------------------------
@dataclass
class Family:
    """A family's run: its preset, its run directory and log, the `--set` values of its training,
    and the metrics that apply to it with the results.json keys that show each was recorded."""

    name: str
    preset: Path
    run: Path
    log: Path
    sets: dict[str, str]
    resume_sets: dict[str, str]
    metrics: dict[str, list[str]]
    target: str = ""  # the preset's leading comment: the paper figure and the published number

    def trained(self) -> bool:
        return (self.run / runs.RESULTS_FILE).is_file()

    def started(self) -> bool:
        return (self.run / runs.CONFIG_FILE).is_file()

    def recorded(self, metric: str) -> bool:
        if not self.trained():
            return False
        held = runs.results(self.run).get("metrics", {})
        return all(key in held for key in self.metrics[metric])

    def steps(self) -> list[str]:
        """Training, then the evaluations: one for the metrics that share a draw of samples
        (`parzen,fid,coverage,nearest`: one `genlearn eval --metric a,b` draws them once, which
        for a Gibbs sampler is most of the evaluation), one for each other metric."""
        shared = [m for m in self.metrics if m in SHARED_DRAW]
        alone = [m for m in self.metrics if m not in SHARED_DRAW]
        return ["train", *alone, *([",".join(shared)] if shared else [])]

    def pending(self, step: str) -> list[str]:
        """The metrics of an evaluation step not recorded yet."""
        return [m for m in step.split(",") if not self.recorded(m)]

    def done(self, step: str) -> bool:
        return self.trained() if step == "train" else not self.pending(step)


def preset_path(name: str) -> Path:
    """The family's one preset; a family without one stops the plan before anything runs."""
    path = CONFIGS / PRESET_FILES.get(name, f"{name}.toml")
    if not path.is_file():
        raise UserError(
            f"family {name!r} has no preset: expected {path.relative_to(ROOT)} (every registered "
            "family needs one, naming in a comment the paper figure it reproduces)"
        )
    return path


def preset_target(path: Path) -> str:
    """The preset's first comment paragraph (up to a bare `#`): the figure it targets."""
    lines = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text.startswith("#") or text == "#":
            break
        lines.append(text.lstrip("#").strip())
    return " ".join(lines).removeprefix("Target: ")


def training_sets(name: str, preset: dict[str, Any], mode: Mode, budget: float) -> dict[str, str]:
    """The `--set` values a family is trained with on top of its preset: the budget as its time
    limit, epochs enough for the budget to bind (or the preset's own, for an epoch-based schedule),
    and the mode's values."""
    defaults = registry.make_config(name, preset)
    epochs = defaults.epochs if defaults.lr_schedule in EPOCH_SCHEDULES else UNBOUNDED_EPOCHS
    return {
        "time_limit": f"{budget:g}",
        "epochs": str(epochs),
        **mode.sets,
        **mode.family_sets.get(name, {}),
    }


def applicable_metrics(model: Any, k: int) -> dict[str, list[str]]:
    """Every `genlearn eval` metric that applies to the model, as `genlearn compare` decides it
    (its rows' `applies`), each with the results.json keys that show it was recorded."""
    keys: dict[str, list[str]] = {}
    for spec in compare.metric_specs([]):
        if spec.metric and spec.applies(model):
            keys.setdefault(spec.metric, []).append(f"nll_k{k}" if spec.key == "nll_k" else spec.key)
    return keys


def plan_family(name: str, plan_dir: Path, mode: Mode, budget: float) -> Family:
    """The family's preset read and checked, its training settings, and its metrics (decided on the
    model the preset builds, before anything is trained)."""
    path = preset_path(name)
    preset = cfg.read_toml(path)
    named = preset.pop("model", name)
    preset.pop("genlearn_version", None)
    if named != name:
        raise UserError(f"{path.relative_to(ROOT)} is a preset for {named!r}, not the {name!r} family")
    sets = training_sets(name, preset, mode, budget)
    config = registry.make_config(name, {**preset, **sets})
    model = registry.instantiate(name, config)
    resume = {k: sets[k] for k in ("time_limit", "epochs")}
    return Family(
        name=name,
        preset=path,
        run=plan_dir / name,
        log=plan_dir / f"{name}.log",
        sets=sets,
        resume_sets=resume,
        metrics=applicable_metrics(model, mode.k),
        target=preset_target(path),
    )


# ---- the plan directory -------------------------------------------------------------------------------
def open_plan(plan_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The plan's record (its settings and the time each step took), created on a first run; a
    directory planned with other settings, or one that holds something else, is refused."""
    path = plan_dir / PLAN_FILE
    if path.is_file():
        record = runs.read_json(path)
        was = {k: record.get(k) for k in settings}
        if was != settings:
            shown = ", ".join(f"{k} {v}" for k, v in was.items())
            raise UserError(
                f"{plan_dir} holds a plan made with other settings ({shown}); rerun with those, "
                "or give another --plan"
            )
        return record
    others = [p.name for p in plan_dir.iterdir() if p.name != runs.LOCK_FILE]
    if others:
        raise UserError(
            f"{plan_dir} is not a results plan (no {PLAN_FILE}) and not empty ({others[0]}); "
            "give a new or empty --plan"
        )
    record = {**settings, "timings": {}}
    runs.write_json(path, record)
    return record


@contextlib.contextmanager
def held(plan_dir: Path):
    """The plan directory for this process alone (genlearn.runs' lock, dropped when it exits)."""
    try:
        with runs.locked(plan_dir):
            yield
    except UserError as exc:
        raise UserError(str(exc).replace("another --out", "another --plan")) from None


# ---- running genlearn ------------------------------------------------------------------------------
class StepFailed(Exception):
    """A genlearn command of a family's plan exited with an error (status 130: interrupted)."""

    def __init__(self, family: str, command: str, status: int, line: str, log: Path):
        self.family, self.command, self.status, self.line, self.log = family, command, status, line, log
        super().__init__(f"{family}: `{command}` exited with status {status}: {line}; log: {log}")


def last_error(log: Path, start: int) -> str:
    """The last `error:` line (genlearn's one line) a step wrote to its log from byte `start`,
    else its last line (a traceback's)."""
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1].removeprefix("error: ")


class Runner:
    """Runs `genlearn ARGS` on one thread: as a child process (the default; several side by side),
    or in this process through `genlearn.cli.main` (one at a time; tests use it to stand small
    classifiers in for the real ones). Output goes to the family's log. `stop()` interrupts the
    children (SIGINT: a training saves its checkpoint) and keeps new commands from starting."""

    def __init__(self, in_process: bool = False):
        self.in_process = in_process
        self.stopping = threading.Event()
        self.children: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def __call__(self, args: list[str], log: Path) -> int:
        if self.stopping.is_set():
            return 130
        with open(log, "a") as fh:
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            fh.write(f"\n[{stamp}] $ genlearn {shlex.join(args)}\n")
            fh.flush()
            return self.here(args, fh) if self.in_process else self.child(args, fh)

    def here(self, args: list[str], fh) -> int:
        from genlearn import cli

        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                return cli.main(args)
            except SystemExit as exc:
                return exc.code if isinstance(exc.code, int) else 1

    def child(self, args: list[str], fh) -> int:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        # its own session: a Ctrl-C reaches the plan, which passes one SIGINT on (`stop`); a
        # second one straight from the terminal would cut a training's checkpoint short
        proc = subprocess.Popen(
            [sys.executable, "-m", "genlearn", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        with self.lock:
            self.children.add(proc)
        try:
            return proc.wait()
        finally:
            with self.lock:
                self.children.discard(proc)

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            for proc in self.children:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)


def near(path: Path) -> str:
    """A path as a command line shows it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def step_args(family: Family, step: str, mode: Mode) -> list[str]:
    """The genlearn command of a step: a fresh training, a resumed one, or one evaluation."""
    if step == "train" and family.started():
        sets = [f"{k}={v}" for k, v in family.resume_sets.items()]
        return ["train", family.name, "--out", str(family.run), "--resume", "--quiet", "--set", *sets]
    if step == "train":
        sets = [f"{k}={v}" for k, v in family.sets.items()]
        return [
            "train", family.name, "--config", near(family.preset), "--out", str(family.run), "--quiet",
            "--set", *sets,
        ]  # fmt: skip
    extra = {"nll": ["--k", str(mode.k)], "ais": ["--ais-runs", str(mode.ais_runs)]}.get(step, [])
    return ["eval", str(family.run), "--metric", ",".join(family.pending(step)), "--json", *extra]


@dataclass
class Progress:
    """The bar over the whole plan, the steps' timings (kept in plan.json) and the counts of what
    ran; shared by the families' threads."""

    bar: tqdm
    plan_dir: Path
    record: dict[str, Any]
    done: int  # steps of the plan done, those of earlier invocations included
    total: int
    ran: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finished(self, family: Family, step: str, seconds: float | None) -> None:
        """A step done (`seconds` None: a training recorded it on the way); without a terminal
        for the bar (a log file, a pipe), a line per step instead."""
        with self.lock:
            self.done += 1
            if seconds is not None:
                self.ran["train" if step == "train" else "eval"] += 1
                self.record["timings"].setdefault(family.name, {})[step] = round(seconds, 1)
                runs.write_json(self.plan_dir / PLAN_FILE, self.record)
                if self.bar.disable:
                    print(f"[{self.done}/{self.total}] {family.name}: {step} ({seconds:.0f} s)", flush=True)
            self.bar.set_description(f"{family.name}: {step}")
            self.bar.update(1)


def run_family(family: Family, mode: Mode, runner: Runner, progress: Progress) -> None:
    """The family's pending steps in order: train (or resume), then each metric not recorded yet
    (a training may record one itself: DRAW's bound, the VAE's ELBO). An evaluation that succeeds
    without recording its figures is a failure too: the table would show a hole."""
    for step in [s for s in family.steps() if not family.done(s)]:
        if family.done(step):
            progress.finished(family, step, None)
            continue
        args = step_args(family, step, mode)
        command = f"genlearn {shlex.join(args)}"
        logged = family.log.stat().st_size if family.log.exists() else 0
        start = time.perf_counter()
        status = runner(args, family.log)
        if status != 0:
            raise StepFailed(family.name, command, status, last_error(family.log, logged), family.log)
        if not family.done(step):
            missing = ", ".join(family.pending(step)) if step != "train" else "its training"
            raise StepFailed(
                family.name, command, 0, f"it did not record {missing} in results.json", family.log
            )
        progress.finished(family, step, time.perf_counter() - start)


def run_plan(
    families: list[Family], mode: Mode, jobs: int, runner: Runner, progress: Progress
) -> list[StepFailed]:
    """The families' steps, `jobs` families at a time; the failures, each family's first. A step
    interrupted (status 130, Ctrl-C) stops the plan."""
    failures: list[StepFailed] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_family, f, mode, runner, progress) for f in families]
        try:
            for future in futures:
                try:
                    future.result()
                except StepFailed as failed:
                    if failed.status == 130:
                        raise KeyboardInterrupt from None
                    failures.append(failed)
        except KeyboardInterrupt:
            runner.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return failures


# ---- the generated section ------------------------------------------------------------------------------
PICTURE_COLUMNS = 5  # runs per row of the figure: compare.png of 14 runs in one row is unreadable


def cpu_line() -> str:
    """The machine as the section states it: the CPU as the zoo's cards name it (with the family,
    model and vector units that decide the speed of the same code), cores, torch and Python."""
    cores = len(os.sched_getaffinity(0))
    return f"{zoo.cpu_name()}, {cores} cores, torch {torch.__version__}, Python {platform.python_version()}"


def picture(table: compare.Table) -> bytes:
    """`genlearn compare`'s picture, PICTURE_COLUMNS runs a row, the rows stacked into one PNG."""
    from PIL import Image

    parts = []
    for lo in range(0, len(table.runs), PICTURE_COLUMNS):
        part = slice(lo, lo + PICTURE_COLUMNS)
        rows = [dataclasses.replace(r, cells=r.cells[part]) for r in table.rows]
        png = compare.render_picture(compare.Table(table.runs[part], rows, table.notes))
        parts.append(Image.open(io.BytesIO(png)).convert("RGB"))
    canvas = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
    top = 0
    for part in parts:
        canvas.paste(part, (0, top))
        top += part.height
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=True)
    return out.getvalue()


def table_markdown(table: compare.Table, runs_list: bool = True) -> list[str]:
    """compare.md's table, notes and runs, fitted into a section of RESULTS.md (no title of its
    own; its "Runs" heading a paragraph, so the document's outline stays its own); without the
    list of runs where `runs_list` is false."""
    text = compare.render_markdown(table).removeprefix("# genlearn compare").strip("\n")
    if not runs_list:
        text = text.split("## Runs")[0].rstrip("\n")
    return ["**Runs**" if ln == "## Runs" else ln for ln in text.splitlines()]


def evaluation_lines(mode: Mode, used: set[str]) -> list[str]:
    """The evaluation settings of the plan's metrics, with the sizes genlearn eval uses."""
    from genlearn.data import captions
    from genlearn.eval import ais, metrics, parzen

    temperatures = len(ais.default_betas()) - 1
    said = {
        "elbo": "`elbo`: the VAE's variational bound on the test images.",
        "nll": f"`nll`: the importance-weighted estimate with k={mode.k} (`--k {mode.k}`) where the model "
        "has one (the VAE); for DRAW-like models their variational bound L^x+L^z (one posterior sample).",
        "ais": f"`ais`: {mode.ais_runs} AIS runs (`--ais-runs {mode.ais_runs}`) over {temperatures:,} "
        "inverse temperatures from a base-rate model: log Z with its ±3σ interval, and the test "
        "log-likelihood (the RBM's estimate; a variational bound for the DBN and the DBM).",
        "parzen": f"`parzen`: {parzen.N_SAMPLES:,} samples, σ chosen on {parzen.N_VALID:,} validation "
        "images, every test image scored; beside it the same estimator on real training images.",
        "fid": f"`fid`: {metrics.N_SAMPLE_METRIC:,} samples against the test images, on the in-project "
        "MNIST classifier's features (28 x 28) or the conformity checker's (60 x 60 canvases: `fid_canvas`).",
        "coverage": f"`coverage`: the classifier's class histogram of {metrics.N_SAMPLE_METRIC:,} samples.",
        "label_agreement": f"`label_agreement`: {metrics.N_SAMPLE_METRIC:,} samples, as many of each digit.",
        "conformity": f"`conformity`: {captions.N_EVAL:,} samples for the test captions and as many "
        "for the held-out ones, read by the in-project checker.",
        "nearest": f"`nearest`: {metrics.N_NEAREST:,} samples and as many test images, each to its "
        "nearest training image.",
        "probe": "`probe`: a linear classifier on the frozen features of the training images.",
    }
    shared = [m for m in SHARED_DRAW if m in used]
    together = (
        [f"- {', '.join(f'`{m}`' for m in shared)} in one `genlearn eval --metric {','.join(shared)}`: "
         "they score one draw of samples (the first 1,000 for `nearest`), the same samples separate "
         "calls draw with the same seed."]
        if len(shared) > 1 else []
    )  # fmt: skip
    return [f"- {said[m]}" for m in said if m in used] + together


def duration(seconds: float) -> str:
    """Wall-clock time as a reader wants it: 45 s, 12 min, 3 h 05 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def family_line(family: Family, timings: dict[str, float]) -> str:
    """A family's preset, its metrics, the wall clock its steps took, and what it targets."""
    trained = timings.get("train")
    evaluated = sum(v for k, v in timings.items() if k != "train")
    took = f"trained in {duration(trained)}, " if trained is not None else ""
    return (
        f"- `{family.name}` (`configs/{family.preset.name}`; metrics {', '.join(family.metrics)}; "
        f"{took}evaluated in {duration(evaluated)}): {family.target}"
    )


def section(table: compare.Table, families: list[Family], plan: dict[str, Any], run: dict[str, Any]) -> str:
    """The generated section: what was run, where and how, the figure, compare's table."""
    mode: Mode = run["mode"]
    budget, jobs = plan["budget"], run["jobs"]
    kept = [f.name for f in families if f.sets["epochs"] != str(UNBOUNDED_EPOCHS)]
    quick = (
        ["**Quick mode: toy models and budgets. These figures test the pipeline and say nothing about "
         "the families.**", ""]
        if mode is QUICK else []
    )  # fmt: skip
    lines = [
        BEGIN,
        "## Every family at one CPU budget (generated by `make results`: do not edit by hand)",
        "",
        *quick,
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by {run['command']} on {cpu_line()}; "
        f"every training and evaluation on one thread, {jobs} famil{'ies' if jobs > 1 else 'y'} at a time. "
        f"The plan (`{run['plan_dir']}`, one run and one log per family) took "
        f"{duration(sum(sum(t.values()) for t in plan['timings'].values()))} of wall clock in all "
        "(the steps' times added up; times below are wall clock too).",
        "",
        f"**Budget:** {budget:g} s of training steps per family (the config's `time_limit`; validation, "
        f"checkpoints and pictures are not counted), with `epochs={UNBOUNDED_EPOCHS:,}` so that the budget "
        "is what stops training, except for presets whose learning rate anneals over their epochs "
        f"(cosine: {', '.join(kept) or 'none'}), which keep their epochs so that the schedule is the "
        "recipe's; the budget caps those too, and the table's \"epochs trained\" row says which stopped them.",
        "",
        "**Evaluation** (`genlearn eval RUN --metric M`, test split, seed 0):",
        *evaluation_lines(mode, {m for f in families for m in f.metrics}),
        "",
        "**Presets and the published figure each targets:**",
        *[family_line(f, plan["timings"].get(f.name, {})) for f in families],
        "",
        f"![every family's samples with its key figures]({run['figure']})",
        "",
        *table_markdown(table),
        END,
    ]
    return "\n".join(lines)


def read_results_file(path: Path, create: bool = False) -> str:
    """The results file, checked before anything is trained: it exists (or is to be created) and
    holds the generated section's markers once each, in order, or not at all."""
    if create and not path.exists():
        return ""
    if not path.is_file():
        raise UserError(f"--results {path} does not exist; give the RESULTS.md to write the section into")
    text = path.read_text()
    begins, ends = text.count(BEGIN), text.count(END)
    if (begins, ends) not in ((0, 0), (1, 1)) or (begins and text.index(BEGIN) > text.index(END)):
        raise UserError(
            f"{path} has its {BEGIN} / {END} markers broken; leave one of each, in order, or none"
        )
    return text


def with_section(text: str, generated: str) -> str:
    """The file with the section between the markers replaced, or appended when there is none."""
    if BEGIN not in text:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + generated + "\n"
    head, rest = text.split(BEGIN, 1)
    return head + generated + rest.split(END, 1)[1]


# ---- the command --------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, as genlearn's own
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="benchmarks/results.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--budget",
        type=float,
        help=f"seconds of training per family (default {FULL.budget:g}; quick {QUICK.budget:g})",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="families trained side by side, one thread each (default 1)"
    )
    p.add_argument("--plan", help="the plan's directory (default runs/results; quick: runs/results-quick)")
    p.add_argument(
        "--results",
        help="the file the section is written into (default docs/RESULTS.md; quick: PLAN/RESULTS.md, "
        "so that toy figures never land in the real one by accident)",
    )
    p.add_argument("--quick", action="store_true", help="toy models and budgets: the pipeline end to end")
    p.add_argument("--zoo", help="the zoo to tabulate when no --budget is given (default zoo/)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace, in_process: bool) -> None:
    cores = len(os.sched_getaffinity(0))
    if args.budget is not None and not 0 < args.budget < math.inf:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    if not 1 <= args.jobs <= cores:
        raise UserError(f"--jobs must be between 1 and the machine's {cores} cores, got {args.jobs}")
    if in_process and args.jobs > 1:
        raise UserError("in-process runs go one at a time; use --jobs 1")


# ---- the zoo's tables --------------------------------------------------------------------------------
ZOO_PLAN = CONFIGS / "zoo.toml"


def zoo_entries(zoo_dir: Path) -> list[Path]:
    """The zoo's entries in configs/zoo.toml's order (any others after them, by name)."""
    if not zoo_dir.is_dir():
        raise UserError(f"{zoo_dir} does not exist; build the zoo with `make zoo` first")
    planned = list(tomllib.loads(ZOO_PLAN.read_text())) if ZOO_PLAN.is_file() else []
    found = {
        p.name: p
        for p in zoo_dir.iterdir()
        if (p / runs.RESULTS_FILE).is_file() and not p.name.startswith(".")
    }
    if not found:
        raise UserError(f"{zoo_dir} holds no entries; build them with `make zoo` first")
    return [found[n] for n in planned if n in found] + [found[n] for n in sorted(found) if n not in planned]


# A family's table on the page: <!-- zoo:vae,vae-2d:begin --> ... <!-- zoo:vae,vae-2d:end -->
FAMILY_BLOCK = re.compile(r"(<!-- zoo:([\w,-]+):begin -->\n).*?(<!-- zoo:\2:end -->)", re.S)


def with_families(text: str, zoo_dir: Path, link: str) -> str:
    """The page with each family's table, for the entries its markers name, between them."""
    return FAMILY_BLOCK.sub(
        lambda m: m[1] + zoo.family_markdown(m[2].split(","), zoo_dir, link) + "\n" + m[3], text
    )


def zoo_section(table: compare.Table, entries: list[Path], command: str, figure: str) -> str:
    """The generated cross-family section: where and how it was made, the picture, the table."""
    lines = [
        BEGIN,
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by {command} on {cpu_line()}, from the "
        f"{len(entries)} entries of the zoo: each figure was measured from the entry's shipped weights "
        "when it was exported (its results.json); the sampling speeds were measured now, on one thread. "
        "Each entry's training budget is its recipe's (configs/zoo.toml and the preset it names; the "
        "table's cost rows give its epochs and training time).",
        "",
        f"![every entry's samples with its key figures]({figure})",
        "",
        *table_markdown(table, runs_list=False),  # each entry has its own section below
        END,
    ]
    return "\n".join(lines)


def run_zoo(args: argparse.Namespace, command: str) -> int:
    zoo_dir = Path(args.zoo or "zoo")
    results_file = Path(args.results or "docs/RESULTS.md")
    read_results_file(results_file)
    entries = zoo_entries(zoo_dir)
    torch.set_num_threads(1)  # compare's sampling speeds, on one thread as every figure of the page
    table = compare.build([str(e) for e in entries])
    # The page shows what the metrics measure; each model's own training monitors stay on its card.
    table = dataclasses.replace(table, rows=[r for r in table.rows if r.group != compare.OTHER])
    figure = results_file.parent / "results" / "compare.png"
    runs.make_directory(figure.parent)
    runs.atomic_write(figure, picture(table))
    text = read_results_file(results_file)
    shown = os.path.relpath(figure, results_file.parent)
    text = with_section(text, zoo_section(table, entries, command, shown))
    text = with_families(text, zoo_dir, os.path.relpath(zoo_dir, results_file.parent))
    runs.atomic_write(results_file, text)
    print(
        f"wrote the table of {len(entries)} zoo entries and their figures into {results_file}, and {figure}"
    )
    return 0


def run(args: argparse.Namespace, command: str, in_process: bool) -> int:
    check_args(args, in_process)
    if args.budget is None and not args.quick:
        return run_zoo(args, command)
    mode = QUICK if args.quick else FULL
    budget = args.budget if args.budget is not None else mode.budget
    plan_dir = Path(args.plan or ("runs/results-quick" if args.quick else "runs/results"))
    own_file = args.quick and args.results is None  # the quick plan's own, created on first use
    results_file = Path(args.results or (plan_dir / "RESULTS.md" if args.quick else "docs/RESULTS.md"))
    read_results_file(results_file, create=own_file)
    torch.set_num_threads(1)  # compare's sampling speeds, measured here, on one thread like the jobs
    families = [plan_family(name, plan_dir, mode, budget) for name in registry.names()]
    with held(plan_dir):
        plan = open_plan(plan_dir, mode.settings(budget))
        steps = [(f, s) for f in families for s in f.steps()]
        done_before = sum(f.done(s) for f, s in steps)
        bar = tqdm(total=len(steps), initial=done_before, unit="step", disable=None)
        progress = Progress(bar, plan_dir, plan, done_before, len(steps))
        try:
            failures = run_plan(families, mode, args.jobs, Runner(in_process), progress)
        finally:
            bar.close()
        for failed in failures:
            print(f"error: {failed}", file=sys.stderr)
        if failures:
            return 1
        table = compare.build([str(f.run) for f in families])
        figure = results_file.parent / "results" / "compare.png"
        runs.make_directory(figure.parent)
        runs.atomic_write(figure, picture(table))
        info = {"mode": mode, "jobs": args.jobs, "command": command, "plan_dir": plan_dir,
                "figure": os.path.relpath(figure, results_file.parent)}  # fmt: skip
        text = read_results_file(results_file, create=own_file)  # again: it may have been edited since
        runs.atomic_write(results_file, with_section(text, section(table, families, plan, info)))
    print(
        f"{progress.ran['train']} trainings and {progress.ran['eval']} evaluations run now, "
        f"{done_before} steps done before; wrote the section of {results_file} and {figure}"
    )
    return 0


def main(argv: list[str] | None = None, in_process: bool = False) -> int:
    """The command line; `in_process` runs genlearn's commands in this process (tests)."""
    argv = sys.argv[1:] if argv is None else argv
    command = f"`{shlex.join(['python', 'benchmarks/results.py', *argv])}`"
    if os.environ.get("MAKELEVEL"):  # set by make for its recipes
        command = f"`make results` ({command})"
    try:
        return run(parse_args(argv), command, in_process)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished steps are kept; run the same command again to resume", file=sys.stderr)
        return 130


def stop_on_sigterm() -> None:
    """`kill PID` stops the plan as Ctrl-C does (its trainings save their checkpoints; the same
    command resumes): a plan left running in the background is stopped that way, and there the
    shell has set Ctrl-C's SIGINT to be ignored."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


if __name__ == "__main__":
    stop_on_sigterm()
    sys.exit(main())
