"""The zoo: trained runs shipped with genlearn, and `genlearn export RUN DIR`, which writes one.

An entry is a finished run directory without the trainer's state (trainer.pt) or TensorBoard
events: config.toml, model.safetensors (float32), metrics.jsonl (the training curve), the run's
pictures, results.json with every metric that applies measured from the exported file, and
README.md, a model card in the layout the Hugging Face hub reads (YAML front matter with
`library_name: genlearn`, tags, data sets and metrics, then the paper, the recipe, the training
time, the CPU and the date, and the figures beside the paper's). Any command that reads a run
(`load`, `sample`, `eval`, `compare`, `info`) reads an entry the same way.

An export is written into a temporary directory beside its destination and renamed into place
at the end, so an interrupted export leaves no half-written entry.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors.torch

from genlearn import files, registry, runs
from genlearn.errors import UserError

# An entry carries over its run's config and training records, not trainer.pt (the optimiser's
# state, several times the weights), tensorboard/ (the same curve again) or the lock; its pictures
# are drawn again from the weights it ships.
CARD_FILE = "README.md"
# `genlearn eval`'s settings for the expensive metrics of an export: the protocols' own.
EXPORT_K = 5000
EXPORT_AIS_RUNS = 100


@dataclass(frozen=True)
class Figure:
    """A figure a paper reports (or the headline figure of a family without one): the
    results.json key it compares with, the paper's value (None: none published for this setting),
    which way is better, what it is, and the config values the paper's figure was measured at (a
    run with others, such as a 2-D latent space, is shown without it)."""

    key: str
    label: str
    higher_is_better: bool
    paper: float | None = None
    paper_note: str = ""
    paper_setting: tuple[tuple[str, Any], ...] = ()

    def beside(self, paper: float | None, note: str) -> Figure:
        """This figure with the value a paper reports for it, and where."""
        return replace(self, paper=paper, paper_note=note)


@dataclass(frozen=True)
class Paper:
    cite: str
    url: str
    tags: tuple[str, ...]
    figures: tuple[Figure, ...] = field(default_factory=tuple)


_PARZEN = Figure("parzen", "Parzen log-likelihood of the test images (nats)", True)
_FID = Figure("fid", "FID against the test images (in-project MNIST classifier)", False)
_CLASSIFIER_SCORE = Figure("classifier_score", "classifier score (in-project classifier; 10 at most)", True)
_LABELS = Figure("label_agreement", "label agreement (samples read as the asked digit)", True)
_DRAW_BOUND = Figure("nll_bound", "test NLL bound (nats)", False)
_AIS_BOUND = Figure("ais_bound", "test log-likelihood, variational bound with log Z by AIS (nats)", True)
# (citation, link) of the papers that more than one family follows
_DRAW = (
    "Gregor, Danihelka, Graves, Rezende & Wierstra, DRAW: A Recurrent Neural Network For Image Generation (ICML 2015)",
    "https://arxiv.org/abs/1502.04623",
)
_LAPGAN = (
    "Denton, Chintala, Szlam & Fergus, Deep Generative Image Models using a Laplacian Pyramid of "
    "Adversarial Networks (NIPS 2015)",
    "https://arxiv.org/abs/1506.05751",
)
_SM08 = (
    "Salakhutdinov & Murray, On the Quantitative Analysis of Deep Belief Networks (ICML 2008)",
    "https://doi.org/10.1145/1390156.1390266",
)

# Each family's paper and the figures its card puts beside the paper's.
PAPERS: dict[str, Paper] = {
    "autoencoder": Paper(
        "Hinton & Salakhutdinov, Reducing the Dimensionality of Data with Neural Networks (Science 2006)",
        "https://doi.org/10.1126/science.1127647",
        ("autoencoder", "representation-learning"),
        (
            Figure("probe_accuracy", "linear probe accuracy on the codes (test)", True),
            Figure("recon", "reconstruction loss (nats, test)", False),
        ),
    ),
    "vae": Paper(
        "Kingma & Welling, Auto-Encoding Variational Bayes (ICLR 2014); the IWAE estimate of "
        "Burda, Grosse & Salakhutdinov (ICLR 2016)",
        "https://arxiv.org/abs/1312.6114",
        ("vae", "variational-autoencoder"),
        (
            Figure(
                "nll_k5000",
                "test NLL, importance-weighted, k = 5000 (nats)",
                False,
                86.76,
                "Burda et al. 2016, Table 1: VAE, one stochastic layer, k = 1, 3,280 epochs",
                (("latent_dim", 50),),
            ),
            Figure("elbo", "test ELBO (nats)", True),
            Figure("probe_accuracy", "linear probe accuracy on the posterior means (test)", True),
            _FID,
        ),
    ),
    "draw": Paper(
        *_DRAW,
        ("draw", "recurrent", "attention", "variational-autoencoder"),
        (_DRAW_BOUND.beside(80.97, "Table 2, DRAW with attention"), _FID),
    ),
    "draw-noattn": Paper(
        *_DRAW,
        ("draw", "recurrent", "variational-autoencoder"),
        (_DRAW_BOUND.beside(87.40, "Table 2, DRAW without attention"), _FID),
    ),
    "draw-2digit": Paper(
        *_DRAW,
        ("draw", "recurrent", "attention", "two-digit-mnist"),
        (
            Figure(
                "nll_bound",
                "test NLL bound on 60 x 60 canvases (nats)",
                False,
                None,
                "section 4.3 shows samples only",
            ),
            Figure("fid_canvas", "Frechet distance of the canvases (conformity checker's features)", False),
        ),
    ),
    "aligndraw": Paper(
        "Mansimov, Parisotto, Ba & Salakhutdinov, Generating Images from Captions with Attention (ICLR 2016)",
        "https://arxiv.org/abs/1511.02793",
        ("aligndraw", "text-to-image", "attention", "mnist-captions"),
        (
            Figure(
                "nll_bound", "test NLL bound, seen captions (nats)", False, None, "no MNIST figure published"
            ),
            Figure("nll_bound_heldout", "test NLL bound, held-out captions (nats)", False),
            Figure("conformity_seen", "conformity, seen captions", True),
            Figure("conformity_heldout", "conformity, held-out captions", True),
        ),
    ),
    "gan": Paper(
        "Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville & Bengio, Generative "
        "Adversarial Nets (NIPS 2014)",
        "https://arxiv.org/abs/1406.2661",
        ("gan", "adversarial"),
        (_PARZEN.beside(225.0, "Table 1, 225 ± 2"), _FID, _CLASSIFIER_SCORE),
    ),
    "dcgan": Paper(
        "Radford, Metz & Chintala, Unsupervised Representation Learning with Deep Convolutional "
        "Generative Adversarial Networks (ICLR 2016)",
        "https://arxiv.org/abs/1511.06434",
        ("gan", "dcgan", "adversarial"),
        (_PARZEN.beside(225.0, "the GAN paper's Table 1 (no DCGAN MNIST figure)"), _FID, _CLASSIFIER_SCORE),
    ),
    "cgan": Paper(
        "Mirza & Osindero, Conditional Generative Adversarial Nets (2014)",
        "https://arxiv.org/abs/1411.1784",
        ("gan", "conditional-gan", "adversarial"),
        (_PARZEN.beside(132.0, "Table 1, 132 ± 1.8"), _FID, _LABELS),
    ),
    "lapgan": Paper(
        *_LAPGAN,
        ("gan", "lapgan", "laplacian-pyramid", "adversarial"),
        (_FID, _PARZEN, _CLASSIFIER_SCORE),
    ),
    "lapgan-conditional": Paper(
        *_LAPGAN,
        ("gan", "lapgan", "conditional-gan", "laplacian-pyramid", "adversarial"),
        (_FID, _LABELS, _PARZEN),
    ),
    "rbm": Paper(
        *_SM08,
        ("rbm", "boltzmann-machine", "energy-based"),
        (
            Figure(
                "ais_log_likelihood",
                "test log-likelihood by AIS (nats)",
                True,
                -86.34,
                "RBM of 500 hidden units trained by CD-25",
            ),
        ),
    ),
    "dbn": Paper(
        *_SM08,
        ("dbn", "deep-belief-network", "boltzmann-machine"),
        (_AIS_BOUND.beside(-86.22, "DBN 500-2000"),),
    ),
    "dbm": Paper(
        "Salakhutdinov & Hinton, Deep Boltzmann Machines (AISTATS 2009)",
        "https://proceedings.mlr.press/v5/salakhutdinov09a.html",
        ("dbm", "deep-boltzmann-machine", "boltzmann-machine"),
        (_AIS_BOUND.beside(-84.62, "DBM 500-1000"),),
    ),
}
# The 2-D toy data sets are scored by VEEGAN's mode counts (Srivastava et al., NIPS 2017).
TOY_FIGURES = (
    Figure("modes_captured", "modes captured (of 8 on the ring)", True),
    Figure("high_quality", "share of high-quality samples (within 3 std of a mode)", True),
)


def paper_of(name: str) -> Paper:
    return PAPERS.get(name, Paper(name, "", (name,)))


def headline_figures(name: str, config: Any) -> tuple[Figure, ...]:
    """The figures a card and the results page show for a run of family `name`."""
    if config.dataset in ("ring8", "grid25"):
        return TOY_FIGURES
    return tuple(
        f
        if all(getattr(config, key, None) == value for key, value in f.paper_setting)
        else f.beside(None, "")
        for f in paper_of(name).figures
    )


# ---- the machine ------------------------------------------------------------------------------
def cpu_name() -> str:
    """The CPU as /proc/cpuinfo names it, with its family and model and the vector units that
    decide the speed of the same code (a virtual machine may say only "Intel Xeon Processor")."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in first.splitlines() if ":" in ln)}
    flags = info.get("flags", "").split()
    units = [name for flag, name in (("avx512f", "AVX-512"), ("amx_bf16", "AMX")) if flag in flags]
    units = units or (["AVX2"] if "avx2" in flags else [])
    return (
        f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')} model "
        f"{info.get('model', '?')}{', ' + ', '.join(units) if units else ''})"
    )


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---- export -----------------------------------------------------------------------------------
def check_finished(run_dir: Path, name: str) -> dict[str, Any]:
    """results.json of a finished run whose weights it describes; anything else is refused."""
    described = runs.results(run_dir)
    if not described:
        raise UserError(
            f"{run_dir} has not finished (no {runs.RESULTS_FILE}); finish it with "
            f"`genlearn train {name} --out {run_dir} --resume` before exporting it"
        )
    runs.check_same_weights(described, runs.weights_id(run_dir), run_dir)
    return described


def _check_destination(out: Path) -> None:
    files.check_path(out, "export directory")
    if files.is_link(out):
        raise UserError(f"{out} is a symbolic link; export into a plain directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; export into a new directory")
    if not out.parent.is_dir():
        raise UserError(f"directory {str(out.parent)!r} does not exist")


def _float32_weights(run_dir: Path, destination: Path) -> runs.WeightsId:
    """model.safetensors with every floating tensor as float32 (counters stay integers), its
    metadata (the step) kept; returns the exported file's identity."""
    tensors, _ = runs.read_weights(run_dir / runs.MODEL_FILE)
    with safetensors.safe_open(str(run_dir / runs.MODEL_FILE), framework="pt") as fh:
        metadata = fh.metadata() or {}
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    data = safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    files.atomic_write(destination / runs.MODEL_FILE, data)
    return runs.identify(data, destination / runs.MODEL_FILE)


def _carry(run_dir: Path, destination: Path) -> None:
    """Copy config.toml and the training curve's records (metrics.jsonl)."""
    files.atomic_write(destination / runs.CONFIG_FILE, files.read_bytes(run_dir / runs.CONFIG_FILE))
    if files.lexists(run_dir / runs.METRICS_FILE):
        files.atomic_write(destination / runs.METRICS_FILE, files.read_bytes(run_dir / runs.METRICS_FILE))


def _pictures(entry: Path) -> list[str]:
    """The run's pictures drawn again from the entry's own (float32) weights, as training draws
    them at its end: what the entry shows is what its file holds."""
    from genlearn import data as datasets
    from genlearn.viz.figures import write_run_figures

    model = registry.load_model(entry)
    _, config = registry.run_config(entry)
    return write_run_figures(model, datasets.load(config, train=False), entry)


def applicable_metrics(model: Any) -> list[str]:
    """Every metric of `genlearn eval` that applies to the model, in the registry's order."""
    from genlearn.eval import metrics

    return [name for name in metrics.METRICS if metrics.applies(name, model)]


def measure(
    run_dir: Path,
    names: Iterable[str] | None = None,
    *,
    k: int = EXPORT_K,
    ais_runs: int = EXPORT_AIS_RUNS,
    progress: bool = False,
    announce: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Every applicable metric (or `names`) of the run in `run_dir`, computed from its weights
    file as it is, on the test split; `announce(name, seconds)` is told of each as it ends."""
    from genlearn import data as datasets
    from genlearn.eval import metrics

    model = registry.load_model(run_dir)
    _, config = registry.run_config(run_dir)
    names = list(names) if names is not None else applicable_metrics(model)
    data = datasets.load(config, train=False)
    split = data.split("test", binary=model.data_kind == "binary")
    opts = metrics.Options(k=k, ais_runs=ais_runs, progress=progress)
    figures: dict[str, Any] = {}
    for name, result, seconds in metrics.compute_many(names, model, split, data, opts):
        figures |= result
        if announce:
            announce(name, seconds)
    return figures


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    metrics: Iterable[str] | None = None,
    recipe: str = "",
    note: str = "",
    shown_as: str = "",
    progress: bool = False,
    announce: Callable[[str, float], None] | None = None,
) -> Path:
    """Write the finished run `run` as a zoo entry in the new directory `out` and return it.

    The weights are written as float32; every metric that applies (or `metrics`) is computed
    from the written file and recorded in the entry's results.json beside the run's own test
    figures; the model card (README.md) names `recipe` (the command that trains the run; by
    default `genlearn train MODEL` with the run's config file) and `note` (anything a reader of
    the card should know, e.g. that a longer run of the recipe was exported); its commands name
    the entry `shown_as` (default: `out` as given; `make zoo` writes beside zoo/NAME first).

    >>> import genlearn.zoo
    >>> genlearn.zoo.export_run("runs/demo-vae", "exported/demo-vae")  # doctest: +SKIP
    PosixPath('exported/demo-vae')
    """
    run_dir, out = Path(run), Path(out)
    name, _ = registry.run_config(run_dir)  # a readable run of a known family
    described = check_finished(run_dir, name)
    _check_destination(out)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        weights = _float32_weights(run_dir, work)
        _carry(run_dir, work)
        pictures = _pictures(work)
        exported = {k: v for k, v in described.items() if k not in ("weights", "earlier_metrics")}
        exported |= {
            "weights": weights.as_json(),
            "figures": pictures,
            "trained_until": _utc((run_dir / runs.RESULTS_FILE).stat().st_mtime),
            "exported": {
                "from": str(run_dir),
                "date": _utc(datetime.now(UTC).timestamp()),
                "cpu": cpu_name(),
                "recipe": recipe or default_recipe(name, shown_as or str(out)),
                "note": note,
            },
        }
        runs.write_json(work / runs.RESULTS_FILE, exported)
        exported["metrics"] = {
            **described.get("metrics", {}),
            **measure(work, metrics, progress=progress, announce=announce),
        }
        runs.write_json(work / runs.RESULTS_FILE, exported)
        files.atomic_write(
            work / CARD_FILE, model_card(work, recipe=recipe, note=note, shown_as=shown_as or str(out))
        )
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


# ---- the model card ---------------------------------------------------------------------------
# Figures that are shares, shown as percentages on the card.
SHARES = ("probe_accuracy", "label_agreement", "conformity_seen", "conformity_heldout", "high_quality")


def _fmt(value: Any, digits: int = 2, share: bool = False) -> str:
    if share and isinstance(value, float):
        return f"{100 * value:.{max(digits - 1, 1)}f}%"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"  # a count, such as modes captured
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def _with_stderr(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "—"
    stderr = metrics.get(f"{key}_stderr")
    share = key in SHARES
    return _fmt(value, share=share) + (f" ± {_fmt(stderr, share=share)}" if isinstance(stderr, float) else "")


def default_recipe(name: str, shown_as: str) -> str:
    """The command that trains the entry again: its own config.toml holds every setting."""
    return f"genlearn train {name} --config {shown_as}/{runs.CONFIG_FILE}"


def training_summary(results: dict[str, Any], where: bool = True) -> str:
    """ "50 epochs (25,000 steps), 269 s of training on the CPU" from results.json (without
    " of training on ..." where `where` is false, as in a table with a column for the machine)."""
    seconds = float(results.get("train_time_s") or 0.0)
    time = (
        f"{seconds / 3600:.1f} h"
        if seconds >= 5400
        else f"{seconds / 60:.0f} min"
        if seconds >= 120
        else f"{seconds:.0f} s"
    )
    epochs = results.get("epochs")
    epochs = f"{epochs:g}" if isinstance(epochs, (int, float)) else "?"
    device = "the CPU" if results.get("device", "cpu") == "cpu" else results["device"]
    summary = f"{epochs} epochs ({results.get('steps', 0):,} steps), {time}"
    return f"{summary} of training on {device}" if where else summary


def _front_matter(name: str, paper: Paper, figures: list[tuple[Figure, Any]], results: dict[str, Any]) -> str:
    dataset = results.get("data", "mnist").split(",")[0]
    lines = [
        "---",
        "library_name: genlearn",
        "tags:",
        *[f"- {tag}" for tag in ("genlearn", "generative-model", *paper.tags)],
        "datasets:",
        f"- {'mnist' if dataset.startswith('mnist') else dataset}",
        "metrics:",
        *[f"- {figure.key}" for figure, _ in figures],
        "model-index:",
        f"- name: genlearn-{name}",
        "  results:",
        "  - task:",
        f"      type: {task_of(paper)}",
        "    dataset:",
        f"      type: {dataset}",
        f"      name: {results.get('data', 'mnist')}",
        "      split: test",
        "    metrics:",
    ]
    for figure, value in figures:
        lines += [f"    - type: {figure.key}", f"      name: {figure.label}", f"      value: {value!r}"]
    return "\n".join(lines + ["---", ""])


def metric_of(key: str) -> str:
    """The `genlearn eval --metric` name that writes results.json key `key`."""
    for prefix, metric in (("nll", "nll"), ("ais_", "ais"), ("fid", "fid"), ("conformity", "conformity")):
        if key.startswith(prefix):
            return metric
    return {"probe_accuracy": "probe", "classifier_score": "coverage", "coverage_kl": "coverage"}.get(
        key, key
    )


def task_of(paper: Paper) -> str:
    """The Hugging Face task of a family: images from captions, from labels, or from nothing."""
    if "text-to-image" in paper.tags:
        return "text-to-image"
    return "image-generation" if "conditional-gan" in paper.tags else "unconditional-image-generation"


def model_card(entry: str | Path, *, recipe: str = "", note: str = "", shown_as: str = "") -> str:
    """README.md of a zoo entry, from its config.toml and results.json; `shown_as` is the path its
    commands use (default: the entry's own)."""
    entry = Path(entry)
    here = shown_as or str(entry)
    name, config = registry.run_config(entry)
    results = runs.results(entry)
    metrics = results.get("metrics", {})
    paper = paper_of(name)
    shown = [
        (f, metrics[f.key])
        for f in headline_figures(name, config)
        if isinstance(metrics.get(f.key), (int, float))
    ]
    exported = results.get("exported", {})
    rows = "\n".join(
        f"| {f.label} | {'↑' if f.higher_is_better else '↓'} | {_with_stderr(metrics, f.key)} | "
        f"{_fmt(f.paper) if f.paper is not None else '—'}{f' ({f.paper_note})' if f.paper_note else ''} |"
        for f, _ in shown
    )
    every = "\n".join(f"| `{k}` | {_fmt(v, 4)} |" for k, v in metrics.items() if isinstance(v, (int, float)))
    pictures = "\n".join(f"![{p}]({p})" for p in results.get("figures", []) if p.endswith((".png", ".gif")))
    body = f"""# genlearn `{name}`: {Path(here).name}

{paper.cite}. {paper.url}

A model of genlearn's `{name}` family trained on {results.get("data", "MNIST")}; every figure
below was measured from this directory's `model.safetensors` on the test split.
{chr(10) + note + chr(10) if note else ""}
| | | this model | paper |
| --- | --- | --- | --- |
{rows}

**Recipe:** `{recipe or default_recipe(name, here)}`
**Training:** {training_summary(results)}, finished {results.get("trained_until", "?")}.
**CPU:** {exported.get("cpu", "?")} (exported {exported.get("date", "?")}).

## Use

```
genlearn sample {here} --n 64 --out samples.png
genlearn eval {here} --metric {metric_of(shown[0][0].key) if shown else "parzen"}
genlearn info {here}
```
```python
import genlearn
model = genlearn.load("{here}")
images = genlearn.sample("{here}", 16, seed=0)
```

## Pictures

{pictures}

## Every figure in results.json

| key | value |
| --- | --- |
{every}
"""
    return _front_matter(name, paper, shown, results) + body


def write_card(entry: str | Path, shown_as: str = "") -> Path:
    """Write an entry's model card again from its results.json (its recipe and note included), as
    after a change to the card's layout or to a paper's figures; returns the card's path.
    `shown_as` as for `model_card`."""
    entry = Path(entry)
    exported = runs.results(entry).get("exported", {})
    card = entry / CARD_FILE
    files.atomic_write(
        card,
        model_card(
            entry, recipe=exported.get("recipe", ""), note=exported.get("note", ""), shown_as=shown_as
        ),
    )
    return card


# ---- the results page -------------------------------------------------------------------------
def short_cpu(cpu: str) -> str:
    """The CPU as a table cell: "Intel Xeon (family 6 model 167, AVX-512, AMX)"."""
    for noise in ("(R)", "(TM)", " Processor", " CPU"):
        cpu = cpu.replace(noise, "")
    return " ".join(cpu.split())


def family_markdown(names: list[str], zoo_dir: str | Path, link: str) -> str:
    """One family's table in docs/RESULTS.md: for each zoo entry of `names`, a row per headline
    figure (the paper's value beside the zoo's) with the entry's recipe, training, CPU and date on
    its first row, then the entries' pictures; an entry not built yet says how to build it.
    `link` is zoo_dir as the page links it."""
    rows, pictures = [], []
    for name in names:
        entry = Path(zoo_dir) / name
        if not (entry / runs.RESULTS_FILE).is_file():
            rows.append(f"| `zoo/{name}` | not built yet: `make zoo ZOO={name}` | | | | | | |")
            continue
        family, config = registry.run_config(entry)
        results = runs.results(entry)
        metrics, exported = results.get("metrics", {}), results.get("exported", {})
        figures = [f for f in headline_figures(family, config) if f.key in metrics]
        about = [
            f"`{exported.get('recipe', '?')}`",
            training_summary(results, where=False),
            short_cpu(exported.get("cpu", "?")),
            exported.get("date", "?")[:10],
        ]
        for i, f in enumerate(figures or [None]):
            head = f"[`zoo/{name}`]({link}/{name}/{CARD_FILE})" if i == 0 else ""
            cells = (
                [f"{f.label} {'↑' if f.higher_is_better else '↓'}", _fmt(f.paper) if f.paper is not None else "—",
                 f"**{_with_stderr(metrics, f.key)}**"]
                if f else ["—", "—", "—"]
            )  # fmt: skip
            rows.append("| " + " | ".join([head, *cells, *(about if i == 0 else [""] * 4)]) + " |")
        shown = [p for p in results.get("figures", []) if p.endswith(".png") and p != "training.png"]
        own = [p for p in shown[1:] if p != "reconstructions.png"]  # the family's picture first
        pictures += [f"![{name} {p}]({link}/{name}/{p})" for p in shown[:1] + (own or shown[1:])[:1]]
    lines = [
        "| entry | figure | paper | zoo | recipe | training | CPU | measured |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ]
    return "\n".join(lines + (["", " ".join(pictures)] if pictures else []))
