"""The public Python API: train, load, sample, evaluate, compare and export, as the command line
does them (`genlearn.cli` only parses arguments, calls these and prints).

Every user mistake raises `genlearn.UserError` whose message is the line the command line prints
after `error:`. The examples run in a directory where `make demo` has written runs/demo-vae and
runs/demo-vae-2d (`tests/test_api.py` runs every one of them on tiny runs of those names).

>>> import genlearn
>>> run = genlearn.train("vae", "runs/my-vae", epochs=1, train_limit=500, progress=False)
>>> run.path, run.model, run.results["epochs"]
(PosixPath('runs/my-vae'), 'vae', 1.0)
>>> genlearn.sample(run, 16, seed=3).shape                  # in [0, 1]
torch.Size([16, 1, 28, 28])
>>> genlearn.sample(run, 64, out="grid.png").shape          # and grid.png, as `genlearn sample` writes it
torch.Size([64, 1, 28, 28])

Heavy modules (torch, the models, matplotlib) are imported inside the functions, so that
`import genlearn` stays fast.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlearn.errors import UserError

if TYPE_CHECKING:
    import torch

    from genlearn.comparison.table import Table
    from genlearn.models.base import GenerativeModel

    RunLike = str | os.PathLike[str] | "Run"


@dataclass
class Run:
    """A run directory and what it holds: `path`, the registered `model` name, its resolved
    `config` and `results` (results.json's content; {} while it has not finished). A `Run` is a
    path-like object: it can be passed wherever a run directory is asked for."""

    path: Path
    model: str
    config: Any
    results: dict[str, Any] = field(default_factory=dict)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def load(self, device: str = "cpu") -> GenerativeModel:
        """The run's trained model (`genlearn.load`)."""
        return load(self.path, device)

    @classmethod
    def read(cls, path: RunLike) -> Run:
        """The run in directory `path` as it is on disk."""
        from genlearn import registry, runs

        path = run_directory(path)
        name, config = registry.run_config(path)
        return cls(path, name, config, runs.results(path))


# ---- paths and names ----------------------------------------------------------------------------
def checked_path(path: str | os.PathLike[str], what: str) -> Path:
    """`path` as a Path, or one line when it could not name a file (a name over 255 bytes)."""
    from genlearn import files

    return files.check_path(path, what)


def run_directory(path: RunLike) -> Path:
    """A run directory given by the user, refused with one line when it is a file (a run's
    weights, say: the run is its parent directory). Whether it is a run is for `runs` to say."""
    from genlearn import files, runs

    path = checked_path(path, "run directory")
    if files.lexists(path) and not path.is_dir():
        if (path.parent / runs.CONFIG_FILE).is_file():
            raise UserError(f"{path} is a file of a run; pass the run directory instead: {path.parent}")
        raise UserError(f"{path} is a file, not a run directory")
    return path


def check_model_name(name: str) -> None:
    """A registered model name, or one line naming the closest ones."""
    from genlearn import registry

    known = registry.names()
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    if close:
        guess = " or ".join(repr(c) for c in close)
        raise UserError(f"unknown model {name!r}; did you mean {guess}? (`genlearn models` lists them all)")
    raise UserError(f"unknown model {name!r}; known models: {', '.join(known)}")


# ---- train ----------------------------------------------------------------------------------------
def train(
    model: str,
    out: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | dict[str, Any] | list[Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> Run:
    """Train the registered model `model` into the run directory `out` (default runs/MODEL), as
    `genlearn train MODEL [--config FILE] [--set key=value ...] [--out DIR] [--resume]` does.

    `config`: a TOML file of settings, a dict of them, or a list of those applied in turn;
    `overrides` come last (typed values, or strings as --set gives them: `epochs=3` or
    `epochs="3"`). With `resume`, the run in `out` continues from its checkpoint, its settings
    the starting point (only epochs, time_limit and the like may change). The run directory is
    locked while training; a fresh run refuses a directory that already holds one.

    Returns the finished `Run` (path, model name, config, results). Ctrl-C or SIGTERM during
    training writes a checkpoint and raises `genlearn.errors.Interrupted` (its `step`); a
    Ctrl-C before the loop starts raises KeyboardInterrupt; a NaN loss raises TrainingError.

    >>> run = genlearn.train("vae", "runs/tiny", epochs=1, train_limit=500, progress=False)
    >>> run.results["metrics"]["elbo"] < 0
    True
    >>> genlearn.train("vae", "runs/tiny", resume=True, epochs=2, progress=False).results["epochs"]
    2.0
    >>> genlearn.train("vea")
    Traceback (most recent call last):
    genlearn.errors.UserError: unknown model 'vea'; did you mean 'vae'? (`genlearn models` lists them all)
    """
    from genlearn import config as cfg
    from genlearn import registry, runs
    from genlearn.train import loop

    check_model_name(model)  # before touching the disk
    path = checked_path(out if out is not None else f"runs/{model}", "--out")
    values: dict[str, Any] = {}
    if resume:
        name, saved = registry.run_config(run_directory(path))
        if name != model:
            raise UserError(f"{path} is a {name!r} run, not {model!r}")
        values.update({k: getattr(saved, k) for k in cfg.fields_of(type(saved))})
    else:
        runs.check_empty(path)
    for part in _config_parts(config):
        values.update(_config_values(part, model))
    values.update(overrides)
    resolved = registry.make_config(model, values)
    instance = registry.instantiate(model, resolved)
    results = loop.fit(instance, resolved, path, model, resume=resume, progress=progress)
    return Run(path, model, resolved, results)


def _config_parts(config: Any) -> list[Any]:
    if config is None:
        return []
    return list(config) if isinstance(config, (list, tuple)) else [config]


def _config_values(part: Any, model: str) -> dict[str, Any]:
    """The settings of a config file (its `model`, if named, must be `model`) or a dict."""
    from genlearn import config as cfg

    if isinstance(part, dict):
        return dict(part)
    values = cfg.read_toml(checked_path(part, "--config"))
    named = values.pop("model", model)
    values.pop("genlearn_version", None)
    if named != model:
        raise UserError(f"{part} is a config for model {named!r}, not {model!r}")
    return values


# ---- load and sample ------------------------------------------------------------------------------
def load(run: RunLike, device: str = "cpu") -> GenerativeModel:
    """The trained model of a run directory (any run `genlearn train` wrote, or a zoo entry), in
    eval mode on `device`, its weights from model.safetensors (config upgraded from older
    versions' keys).

    >>> model = genlearn.load("runs/demo-vae")
    >>> model.sample(16).shape                                 # the model's own sampler
    torch.Size([16, 1, 28, 28])
    """
    from genlearn import registry

    return registry.load_model(run_directory(run), device)


def load_with_weights(run: RunLike, device: Any = "cpu") -> tuple[GenerativeModel, Any]:
    """The run's model (as `load`) and the identity of the weights it was given (their step
    and sha256), so that a figure computed from them is filed only with results of exactly those
    weights."""
    from genlearn import registry, runs

    path = run_directory(run)
    name, config = registry.run_config(path)
    model = registry.instantiate(name, config)
    weights = runs.load_weights(path, model)
    return model.to(device).eval(), weights


def _model(run_or_model: Any) -> GenerativeModel:
    from genlearn.models.base import GenerativeModel

    return run_or_model if isinstance(run_or_model, GenerativeModel) else load(run_or_model)


def sample(
    run_or_model: Any,
    n: int | None = None,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    out: str | os.PathLike[str] | None = None,
    labels: Any = None,
    captions: str | Iterable[str] | None = None,
) -> torch.Tensor:
    """`n` samples of a run (a directory, a `Run`) or a loaded model, as `genlearn sample RUN`
    draws them: images (n, C, H, W) in [0, 1], or points (n, 2). With `out`, also writes what
    the command line writes there (`genlearn.viz.samples.write_samples`): `.png` a grid (a row per
    label or caption), `.npz` the arrays, `.gif` the family's picture over time (alignDRAW's
    alignments, LAPGAN's pyramid, DRAW's canvas) with a companion .png; the returned images are
    then the finished samples.

    `n` defaults to 64 (with labels one per label, with captions 8 per caption, a .gif of a
    conditional model 4). `labels`: "3,5", "0-9", a list, a range or a tensor of digits;
    `captions`: a caption or a list of them; `temperature` other than 1 for models that scale
    their prior's noise (alignDRAW). The same arguments give the same samples, in any process.

    >>> x = genlearn.sample("runs/demo-vae", 16, seed=1)
    >>> x.shape, bool(x.min() >= 0 and x.max() <= 1)
    (torch.Size([16, 1, 28, 28]), True)
    >>> bool((genlearn.sample("runs/demo-vae", 16, seed=1) == x).all())     # the seed decides
    True
    >>> _ = genlearn.sample("runs/demo-vae", 100, out="digits.png")  # 10 x 10, as the CLI writes
    >>> genlearn.sample("runs/demo-vae", out="x.jpg")
    Traceback (most recent call last):
    genlearn.errors.UserError: --out must end in .png, .npz or .gif (got '.jpg')
    """
    from genlearn.viz import samples as drawing

    if out is not None:
        written = write_samples(
            run_or_model, out, n, seed=seed, temperature=temperature, labels=labels, captions=captions
        )
        return written.samples
    samples, _ = drawing.checked_draw(_model(run_or_model), n, seed, temperature, labels, captions)
    return samples


def write_samples(
    run_or_model: Any, out: str | os.PathLike[str], n: int | None = None, **options: Any
) -> Any:
    """`sample(..., out=out)`, returning what was written: the samples, the files and a line
    for each (what `genlearn sample` prints)."""
    from genlearn.viz import samples as drawing

    drawing.check_out(out)  # before the model is loaded
    return drawing.write_samples(_model(run_or_model), out, n, **options)


def render_samples(
    run_or_model: Any,
    n: int | None = None,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    labels: Any = None,
    captions: str | Iterable[str] | None = None,
    format: str = "png",
) -> bytes:
    """The bytes `genlearn sample RUN --n N --seed S --temperature T [--labels L | --caption C]
    --out x.png` writes, without touching the disk: a pure function of the run's weights and
    these arguments, byte-identical to the CLI's file (what the browser explorer serves).
    `format="npz"` gives the arrays instead (their zip's timestamps differ from call to call).

    >>> from genlearn.cli import main
    >>> main(["sample", "runs/demo-vae", "--n", "16", "--seed", "3", "--out", "x.png"])
    wrote 16 samples to x.png
    0
    >>> genlearn.api.render_samples("runs/demo-vae", 16, seed=3) == open("x.png", "rb").read()
    True
    """
    from genlearn.viz import samples as drawing

    return drawing.render_samples(
        _model(run_or_model),
        n,
        seed=seed,
        temperature=temperature,
        labels=labels,
        captions=captions,
        format=format,
    )


def read_captions(path: str | os.PathLike[str]) -> list[str]:
    """The captions of a file, one a line (`genlearn sample --captions FILE`)."""
    from genlearn.data.captions import read_captions_file

    return read_captions_file(checked_path(path, "--captions"))


# ---- evaluate -------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """One metric's figures, how long they took and where, and whether results.json has them:
    `recorded` its path, else `not_recorded` why not (a run still training, another split...)."""

    metric: str
    figures: dict[str, Any]
    seconds: float
    device: str
    recorded: Path | None = None
    not_recorded: str = ""


def metric_names(names: Iterable[str]) -> list[str]:
    """The metric names in order (each may be "a,b"), each known and named once: checked before
    any model or data is loaded."""
    from genlearn.eval import metrics

    listed = [name.strip() for given in names for name in given.split(",")]
    if not listed:
        raise UserError(f"name a metric; available: {', '.join(metrics.METRICS)}")
    for name in listed:
        metrics.check_name(name)
    twice = sorted({name for name in listed if listed.count(name) > 1})
    if twice:
        raise UserError(f"metric {twice[0]!r} is named twice in --metric")
    return listed


def evaluations(
    run: RunLike,
    *metrics: str,
    split: str = "test",
    seed: int = 0,
    k: int | None = None,
    ais_runs: int | None = None,
    temperature: float = 1.0,
    progress: bool = False,
    record: bool = True,
    device: str = "cpu",
) -> Iterator[Evaluation]:
    """`evaluate`, one metric at a time as each is done (what `genlearn eval` prints from)."""
    from genlearn import config as cfg
    from genlearn import data as datasets
    from genlearn import registry, runs
    from genlearn.eval import metrics as m
    from genlearn.viz.samples import check_temperature

    opts = m.Options(
        seed=seed,
        k=m.Options.k if k is None else k,
        ais_runs=m.Options.ais_runs if ais_runs is None else ais_runs,
        split=split,
        temperature=temperature,
        progress=progress,
    )
    names = metric_names(metrics)
    m.check_options(names, [o for o, v in (("--k", k), ("--ais-runs", ais_runs)) if v is not None])
    where = cfg.resolve_device(device)
    path = run_directory(run)
    model, weights = load_with_weights(path, where)
    if temperature != 1.0:
        check_temperature(model, temperature)
    _, config = registry.run_config(path)
    data = datasets.load(config, train=False)
    held = {key: v.to(where) for key, v in data.split(split, binary=model.data_kind == "binary").items()}
    for name, figures, seconds in m.compute_many(names, model, held, data, opts):
        done = Evaluation(name, figures, seconds, str(where))
        if record and split == "test" and not (path / runs.TRAINER_FILE).exists():
            done.not_recorded = (
                f"{path} is an exported entry (no trainer state); its results.json keeps the figures "
                "measured when it was exported"
            )
        elif record and split == "test":
            try:
                runs.record_metrics(path, figures, weights)
                done.recorded = path / runs.RESULTS_FILE
            except UserError as exc:
                done.not_recorded = str(exc)
        yield done


def evaluate(
    run: RunLike,
    *metrics: str,
    split: str = "test",
    seed: int = 0,
    k: int | None = None,
    ais_runs: int | None = None,
    temperature: float = 1.0,
    progress: bool = False,
    record: bool = True,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Metrics of a run on held-out data, as `genlearn eval RUN --metric NAME,...` computes them:
    {metric: {figure: value}}. `metrics`: elbo, nll, probe, parzen, fid, coverage,
    label_agreement, conformity, nearest, ais (each applies to the models whose abilities it
    needs; the metrics of samples share one draw). `k`: importance samples of nll (5000);
    `ais_runs`: AIS runs of ais (100); an option given for none of the metrics it applies to is
    refused. Test figures are recorded in the run's results.json (`record=False`: not); a figure
    that cannot be recorded (a run still training, results of other weights) is returned all
    the same, with a warning.

    >>> figures = genlearn.evaluate("runs/demo-vae", "elbo", "nll", k=50)
    >>> sorted(figures["nll"]), figures["nll"]["nll_k50"] > 0
    (['nll_k50', 'nll_k50_stderr'], True)
    >>> genlearn.Run.read("runs/demo-vae").results["metrics"]["nll_k50"] == figures["nll"]["nll_k50"]
    True
    >>> genlearn.evaluate("runs/demo-vae", "nll", ais_runs=10)
    Traceback (most recent call last):
    genlearn.errors.UserError: --ais-runs applies to ais only, not to nll; leave it out
    """
    out = {}
    for done in evaluations(
        run, *metrics, split=split, seed=seed, k=k, ais_runs=ais_runs, temperature=temperature,
        progress=progress, record=record, device=device,
    ):  # fmt: skip
        if done.not_recorded:
            warnings.warn(f"{done.metric} not recorded in results.json: {done.not_recorded}", stacklevel=2)
        out[done.metric] = done.figures
    return out


# ---- compare and export ---------------------------------------------------------------------------
def compare(runs: Iterable[RunLike], *, out: str | os.PathLike[str] | None = None, seed: int = 0) -> Table:
    """Every figure of several finished runs in one table (`genlearn compare RUN ...`): a column
    per run, rows grouped as likelihood, sample quality, diversity, representation, other and
    cost, `—` where a figure does not apply, `not run` where it applies but was not evaluated;
    the sampling speed measured on this machine (seeded by `seed`). With `out`, writes
    compare.md and compare.png there (`table.written`).

    The table renders itself: `table.text()`, `table.markdown()`, `table.as_json()` (a dict),
    `table.json()`, `table.picture()` (PNG bytes); `table.row("elbo").cells` are its cells.

    >>> table = genlearn.compare(["runs/demo-vae", "runs/demo-vae-2d"], out="report")
    >>> [c.text for c in table.row("likelihood_kind").cells]
    ['IW estimate', 'IW estimate']
    >>> [str(p) for p in table.written]
    ['report/compare.md', 'report/compare.png']
    >>> table.as_json()["rows"][0]["label"]
    'gives a likelihood (which kind)'
    """
    from genlearn.comparison import measure, render

    paths = [run_directory(r) for r in runs]
    if not paths:
        raise UserError("name at least one run to compare")
    target = None
    if out is not None:
        target = checked_path(out, "--out")
        if target.exists() and not target.is_dir():
            raise UserError(f"--out {target} is a file; give a directory for compare.md and compare.png")
    table = measure.build(paths, seed)
    if target is not None:
        table.written = render.write_report(table, target)
    return table


def export(run: RunLike, out: str | os.PathLike[str], **options: Any) -> Path:
    """Write a shareable copy of a finished run into the new directory `out`: its weights, config,
    results, pictures and a model card (`genlearn export RUN DIR`); `options` go to
    `genlearn.zoo.export_run` (e.g. `metrics=["elbo"]`: the figures measured for the card).
    Returns the directory written.

    >>> genlearn.export("runs/demo-vae", "demo-vae-card", metrics=["elbo"])
    PosixPath('demo-vae-card')
    """
    from genlearn import zoo

    if options.get("metrics") is not None:
        options["metrics"] = metric_names(options["metrics"])
    return zoo.export_run(run_directory(run), checked_path(out, "the export directory"), **options)


# ---- models and info ------------------------------------------------------------------------------
def models() -> dict[str, str]:
    """The registered model names and their one-line descriptions (`genlearn models`)."""
    from genlearn import registry

    return {name: registry.entry(name).description for name in registry.names()}


@dataclass
class Info:
    """What `genlearn info RUN` shows: the model, its config file as written, its results."""

    path: Path
    model: str
    config_text: str
    results: dict[str, Any]


def info(run: RunLike) -> Info:
    from genlearn import files, registry, runs

    path = run_directory(run)
    name, _ = registry.run_config(path)
    text = files.read_text(path / runs.CONFIG_FILE, "config file")
    return Info(path, name, text, runs.results(path))


def environment() -> dict[str, str]:
    """What `genlearn info` shows without a run: versions, threads, the GPU, the data cache."""
    import torch

    import genlearn
    from genlearn.data import mnist

    cache = mnist.cache_dir()
    wheel = cache / mnist.WHEEL_NAME
    return {
        "genlearn": genlearn.__version__,
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "cuda": f"yes, {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no",
        "cache": str(cache),
        "wheel": "present" if wheel.exists() else f"missing: {mnist.fetch_command()}",
        "arrays": "cached" if (cache / mnist.CACHE_FILE).exists() else "not yet cached",
    }
