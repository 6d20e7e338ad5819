"""The metrics `genlearn eval RUN --metric NAME` can compute, each through the model contract.

Every metric is `metric(model, split, data, opts) -> dict`: `split` is the held-out batch dict it
scores (`x`, and `y` where the data set has labels) on the model's device, `data` the whole data
set (for training images, a validation set or the real-data ceiling), `opts` the typed
`Options`. A metric that does not apply to the model (`NEEDS`: its declared abilities, conditions
and image shape) is refused with one `UserError` line before any work (`compute`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from tqdm import tqdm

from genlearn.config import check_seed
from genlearn.errors import UserError
from genlearn.models.base import checked_temperature


@dataclass(frozen=True)
class Options:
    """How a metric is computed: the seed of its noise, the importance samples of `nll`, the AIS
    runs of `ais`, the split it scores, the sampling temperature, and whether to show progress.
    `drawn` holds the samples already drawn by `compute_many`'s metrics (None: none are kept)."""

    seed: int = 0
    k: int = 5000
    ais_runs: int = 100
    split: str = "test"
    temperature: float = 1.0
    progress: bool = False
    drawn: dict[tuple[int, float], torch.Tensor] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        checked_temperature(self.temperature)  # before any model or data is loaded
        check_seed(self.seed)
        if self.k < 1:
            raise UserError(f"--k must be at least 1, got {self.k}")
        if self.ais_runs < 1:
            raise UserError(f"--ais-runs must be at least 1, got {self.ais_runs}")
        if self.split not in ("test", "valid"):
            raise UserError(f"unknown split {self.split!r}; choose test or valid")


def _generator(split: dict[str, torch.Tensor], seed: int) -> torch.Generator:
    """A generator on the device the data lives on (the noise is drawn there)."""
    return torch.Generator(device=split["x"].device).manual_seed(seed)


def elbo(model, split, data, opts: Options) -> dict[str, Any]:
    from genlearn.eval.likelihood import elbo_stats

    return elbo_stats(model, split["x"].flatten(1), generator=_generator(split, opts.seed))


def nll(model, split, data, opts: Options) -> dict[str, Any]:
    """The importance-weighted estimate with k samples; for a model that has only a variational
    bound (DRAW), that bound, labelled `nll_bound`."""
    if not model.can("log_likelihood") and model.can("nll_bound"):
        parts = {"": split}
        if opts.split == "test":  # and the data set's further test parts (held-out captions)
            for part in data.test_parts:
                held = data.split(part, binary=model.data_kind == "binary")
                parts[f"_{part.removeprefix('test_')}"] = {
                    k: v.to(split["x"].device) for k, v in held.items()
                }
        result = {}
        for suffix, batch in parts.items():
            torch.manual_seed(opts.seed)
            out = model.evaluate(batch)
            result |= {
                f"nll_bound{suffix}": out["nll_bound"],
                f"nll_bound{suffix}_stderr": out["nll_bound_stderr"],
            }
        return result
    from genlearn.eval.likelihood import nll as iw_nll

    x = split["x"].flatten(1)
    out = iw_nll(model, x, opts.k, generator=_generator(split, opts.seed), progress=opts.progress)
    return {f"nll_k{opts.k}": out["nll"], f"nll_k{opts.k}_stderr": out["nll_stderr"]}


def probe(model, split, data, opts: Options) -> dict[str, Any]:
    from genlearn.eval.probe import probe_accuracy

    return probe_accuracy(model, split, data, seed=opts.seed, progress=opts.progress)


def _samples(model, n: int, opts: Options, **condition: Any) -> torch.Tensor:
    """n samples from the model, seeded, at the options' temperature, on the CPU, in chunks of
    `SAMPLE_CHUNK`; a conditional model draws its conditions from the held-out distribution unless
    they are given. Within `compute_many` the metrics share one draw: the first n of N samples
    drawn with the same seed are the n samples themselves when n is a whole number of chunks
    (the chunks are drawn in turn from the seeded generator), so a metric of 1,000 samples takes
    the first chunk of another's 10,000."""
    shared = opts.drawn is not None and not condition
    key = (id(model), opts.temperature)
    kept = opts.drawn.get(key) if shared else None
    if kept is not None and (len(kept) == n or (len(kept) > n and n % SAMPLE_CHUNK == 0)):
        return kept[:n]
    torch.manual_seed(opts.seed)
    model.eval()
    samples = model.sample_in_chunks(n, chunk=SAMPLE_CHUNK, temperature=opts.temperature, **condition)
    if shared and (kept is None or len(kept) < n):
        opts.drawn[key] = samples
    return samples


SAMPLE_CHUNK = 1000  # samples per call of the model's sampler: bounded memory


def parzen(model, split, data, opts: Options) -> dict[str, Any]:
    """The GAN paper's protocol on MNIST intensities (for every family, whatever it trains on),
    and the same estimator on 10,000 real training images: the ceiling it can show."""
    from genlearn.eval import parzen as pz

    held = _all(getattr(data, f"{opts.split}_x"))
    valid = data.valid_x[: pz.N_VALID]
    out: dict[str, Any] = {}
    sets = (
        ("parzen", _samples(model, pz.N_SAMPLES, opts)),
        ("parzen_real_train", data.train_images(pz.N_SAMPLES)),
    )
    for name, points in sets:
        sigma = pz.select_sigma(points, valid)
        est = pz.parzen_estimate(points, held, sigma)
        out |= {name: est["mean"], f"{name}_stderr": est["stderr"], f"{name}_sigma": sigma}
    return out


N_SAMPLE_METRIC = 10_000  # samples scored by fid, coverage and label_agreement


def fid(model, split, data, opts: Options) -> dict[str, Any]:
    """Frechet distance between the features of 10,000 samples and of the split's images, with
    the same distance for the 10,000 validation images as the floor. The features are the
    in-project MNIST classifier's 256; on the 60 x 60 canvases the conformity checker's 256
    instead (`fid_canvas`: a network trained on canvases of MNIST training digits to read which
    digit sits where, so its features see digit shapes and their places). Another feature space,
    so another name: never one column with the 28 x 28 figure."""
    from genlearn.eval import sample_metrics as sm

    canvases = model.image_shape == CANVAS_SHAPE
    samples = _readable(model, _samples(model, N_SAMPLE_METRIC, opts))
    name, features = (
        ("fid_canvas", _checker_features(opts)) if canvases else ("fid", _classifier_features(opts))
    )

    @torch.no_grad()
    def stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return sm.gaussian_stats(features(_all(images)).to("cpu", torch.float64))

    floor_set = data.valid_x if opts.split == "test" else data.test_x
    held = stats(getattr(data, f"{opts.split}_x"))
    return {
        name: sm.frechet_from_stats(*stats(samples), *held),
        f"{name}_real": sm.frechet_from_stats(*stats(floor_set), *held),
    }


def _readable(model, samples: torch.Tensor) -> torch.Tensor:
    """The samples, checked as the network that reads them expects (the MNIST classifier's
    28 x 28 intensities, the conformity checker's 60 x 60 canvases) before that network is
    loaded, or trained on a fresh machine."""
    from genlearn.eval.classifier import as_images
    from genlearn.eval.conformity import as_canvases

    check = as_canvases if model.image_shape == CANVAS_SHAPE else as_images
    return check(samples, "the model's samples")


def _classifier_features(opts: Options) -> Callable[[torch.Tensor], torch.Tensor]:
    from genlearn.eval.classifier import load_classifier

    return load_classifier(progress=opts.progress).features


def _checker_features(opts: Options) -> Callable[[torch.Tensor], torch.Tensor]:
    from genlearn.eval.conformity import load_checker

    return load_checker(progress=opts.progress).features


def _all(images: Any) -> torch.Tensor:
    """A split's images as one tensor (the two-digit canvases are composed on demand)."""
    return images if isinstance(images, torch.Tensor) else images[: len(images)]


def coverage(model, split, data, opts: Options) -> dict[str, Any]:
    """Class histogram of 10,000 samples by the classifier, its KL from uniform, and the
    classifier score exp(E KL(p(y|x) || p(y)))."""
    from genlearn.eval import sample_metrics as sm
    from genlearn.eval.classifier import load_classifier

    samples = _readable(model, _samples(model, N_SAMPLE_METRIC, opts))
    classifier = load_classifier(progress=opts.progress)
    log_p = sm.class_log_probs(samples, classifier)  # one pass of the classifier for all three
    hist = sm.histogram_of(log_p)
    return {
        "coverage_kl": sm.kl_to_uniform(hist),
        "classifier_score": sm.score_of(log_p),
        "class_histogram": [round(float(h), 4) for h in hist],
    }


def label_agreement(model, split, data, opts: Options) -> dict[str, Any]:
    """For a model that takes labels: 10,000 samples, 1,000 drawn for each digit, and the fraction
    that the in-project MNIST classifier assigns to the digit they were drawn for (with its
    standard error and per class). The classifier's own test accuracy is its ceiling."""
    from genlearn.eval import sample_metrics as sm
    from genlearn.eval.classifier import NUM_CLASSES, load_classifier
    from genlearn.nn.stats import mean_and_stderr

    labels = torch.arange(NUM_CLASSES).repeat_interleave(N_SAMPLE_METRIC // NUM_CLASSES)
    samples = _readable(model, _samples(model, len(labels), opts, labels=labels.to(model.device)))
    classifier = load_classifier(progress=opts.progress)
    hits = (sm.class_log_probs(samples, classifier).argmax(1) == labels).double()
    mean, stderr = mean_and_stderr(hits)
    per_class = hits.view(NUM_CLASSES, -1).mean(1)
    return {
        "label_agreement": mean,
        "label_agreement_stderr": stderr,
        "label_agreement_per_class": [round(float(a), 4) for a in per_class],
    }


def conformity(model, split, data, opts: Options) -> dict[str, Any]:
    """For a model that takes captions: 10,000 samples drawn for the test captions ("seen") and
    10,000 for the held-out test captions, and the fraction of each whose digits and places the
    in-project checker reads exactly as the caption says (all eight places right), with standard
    errors and per caption type. The checker's agreement with the real composites of the same
    captions is the ceiling (`conformity_real_*`). Each held-out caption type carries one held-out
    (type, slot, digit) combination, so the held-out figures per type are per combination, and
    `heldout_digit_right_per_type` says how often the held-out digit alone is drawn in its place:
    whether it is the unseen combination or the rest of the caption that fails."""
    from genlearn.data import captions as cap
    from genlearn.eval.conformity import exact_match, load_checker, read_positions
    from genlearn.nn.stats import mean_and_stderr

    checker = load_checker(progress=opts.progress)
    torch.manual_seed(opts.seed)
    generator = torch.Generator(device=model.device).manual_seed(opts.seed)
    model.eval()
    out: dict[str, Any] = {}
    for part, name in (("seen", "test"), ("heldout", "test_heldout")):
        real = data.split(name, binary=False)
        tokens = real["caption"]
        texts = [cap.decode(t) for t in tokens]
        pieces = [texts[i : i + 1000] for i in range(0, len(texts), 1000)]
        bar = tqdm(pieces, desc=f"conformity ({part})", unit="chunk", disable=not opts.progress)
        samples = torch.cat(
            [
                model.sample_in_chunks(len(c), generator=generator, temperature=opts.temperature, captions=c)
                for c in bar
            ]
        )
        read, wanted = read_positions(checker, samples), cap.reading_of(tokens)
        hits = (read == wanted).all(1).double()
        out[f"conformity_{part}"], out[f"conformity_{part}_stderr"] = mean_and_stderr(hits)
        out[f"conformity_real_{part}"] = exact_match(checker, real["x"], tokens).double().mean().item()
        kind = cap.caption_types(tokens)
        out[f"conformity_{part}_per_type"] = _per_type(hits, kind, len(cap.TYPES))
        if part == "heldout":
            place = cap.held_out_place(kind)[:, None]
            digit_right = (read.gather(1, place) == wanted.gather(1, place)).squeeze(1).double()
            out["heldout_digit_right_per_type"] = _per_type(digit_right, kind, len(cap.TYPES))
    return out


def _per_type(values: torch.Tensor, kind: torch.Tensor, types: int) -> list[float]:
    """The mean of `values` over the captions of each of the `types` caption types, rounded for
    results.json."""
    return [round(values[kind == k].mean().item(), 4) for k in range(types)]


N_NEAREST = 1000  # samples, and test images, whose nearest training image `nearest` finds


def nearest(model, split, data, opts: Options) -> dict[str, Any]:
    """Are samples copies? The mean Euclidean distance from 1,000 samples to their nearest
    training image, beside the same for 1,000 of the split's images (which no model has seen):
    samples much nearer the training set than held-out images are would be memorised ones."""
    from genlearn.eval.sample_metrics import nearest_distances
    from genlearn.nn.stats import mean_and_stderr

    train = data.all_train_images()  # indexable; the 60 x 60 canvases are composed chunk by chunk
    held = _all(getattr(data, f"{opts.split}_x")[:N_NEAREST])
    out: dict[str, Any] = {}
    for name, queries in (("samples", _samples(model, N_NEAREST, opts)), (opts.split, held)):
        mean, stderr = mean_and_stderr(nearest_distances(queries, train))
        out |= {f"nearest_train_{name}": mean, f"nearest_train_{name}_stderr": stderr}
    return out


def ais(model, split, data, opts: Options) -> dict[str, Any]:
    """Annealed importance sampling (Salakhutdinov & Murray 2008): log Z with its +-3 std interval
    from 100 runs (`--ais-runs`) over ~14,500 temperatures, a base-rate model from the training
    data, and the split's mean log-likelihood (a variational bound on it for the DBN and DBM)."""
    from genlearn.eval import ais as ais_
    from genlearn.nn.distributions import base_rate_bias

    x, generator = split["x"].flatten(1), _generator(split, opts.seed)
    if model.can("ais_bound"):  # DBN, DBM: a variational bound with log Z from AIS
        base = model.ais_base_bias(data.train_x)
        out = ais_.log_likelihood_bound(model, x, n_runs=opts.ais_runs, base_bias=base, generator=generator)
    else:  # an RBM: its log-likelihood with log Z from AIS
        base = base_rate_bias(data.train_x)
        out = ais_.rbm_log_likelihood(
            model, x, n_runs=opts.ais_runs, base_visible_bias=base, generator=generator
        )
    return {f"ais_{k}": float(v) for k, v in out.items()}


METRICS: dict[str, Callable[..., dict[str, Any]]] = {
    "elbo": elbo,
    "nll": nll,
    "probe": probe,
    "parzen": parzen,
    "fid": fid,
    "coverage": coverage,
    "label_agreement": label_agreement,
    "conformity": conformity,
    "nearest": nearest,
    "ais": ais,
}


# ---- which metric applies to which model, declared once -------------------------------------------------
# Each entry says why the metric does not apply to a model, or None where it does: `compute`
# refuses with it before any work, `genlearn compare` marks the cell "does not apply" with it, and
# `make results` plans the evaluations from it. Read from declared abilities, conditions and the
# image shape, never by probing the model.
Why = Callable[[Any], "str | None"]


def _ability(*names: str, lacking: str) -> Why:
    """Applies to a model that declares any of the abilities `names`; `lacking` says why not."""
    return lambda model: None if any(model.can(n) for n in names) else lacking


def _condition(name: str) -> Why:
    return lambda model: None if name in model.conditions else f"it takes no {name}"


def _images(model) -> str | None:
    """Sample metrics score images; a model of 2-D points is judged by its mode statistics."""
    if model.image_shape is None:
        return "it makes 2-D points; its mode statistics are in results.json"
    return None


def _read_by(*shapes: tuple[int, ...]) -> Why:
    """Metrics read through a network trained on images of these shapes (the MNIST classifier on
    28 x 28 digits, the conformity checker on 60 x 60 canvases)."""

    def why(model) -> str | None:
        if (reason := _images(model)) is not None or tuple(model.image_shape) in shapes:
            return reason
        allowed = " or ".join(map(str, shapes))
        return f"it makes images of shape {tuple(model.image_shape)}; it reads {allowed}"

    return why


DIGITS = (1, 28, 28)  # what the MNIST classifier reads
CANVAS_SHAPE = (1, 60, 60)  # the two-digit canvases: no MNIST classifier reads them

NEEDS: dict[str, Why] = {
    "elbo": _ability("log_likelihood", lacking="it has no Gaussian encoder and log p(x|z)"),
    "nll": _ability(
        "log_likelihood", "nll_bound", lacking="it has neither a Gaussian encoder and log p(x|z) nor a bound"
    ),
    "probe": _ability("features", lacking="it has no features to probe"),
    "parzen": _images,
    "fid": _read_by(DIGITS, CANVAS_SHAPE),
    "coverage": _read_by(DIGITS),
    "label_agreement": _condition("labels"),
    "conformity": _condition("captions"),
    "nearest": _images,
    "ais": _ability(
        "free_energy", "ais_bound", lacking="it is no Boltzmann machine: no free energy to anneal"
    ),
}


def why_not(name: str, model) -> str | None:
    """Why metric `name` does not apply to `model`, or None where it does."""
    check_name(name)
    return NEEDS[name](model)


def applies(name: str, model) -> bool:
    return why_not(name, model) is None


def check_name(name: str) -> None:
    """Refuse an unknown metric name (before any model or data is loaded)."""
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")


# ---- what each metric writes, declared once ---------------------------------------------------------
# Every figure a metric (or training, for a few models) writes into results.json, in the order
# tables show them: `genlearn compare` makes a row of each (its cells from these keys), its picture
# captions the ones with a `short` name, and `make results` checks a metric was recorded by them.
LIKELIHOOD = "likelihood"
QUALITY = "sample quality"
DIVERSITY = "diversity"
REPRESENTATION = "representation"
HIGHER, LOWER = "↑", "↓"  # which way is better


@dataclass(frozen=True)
class Figure:
    """A figure in results.json. `key` is its name there; a key with `{}` names a family of figures
    (`nll_k{}`: one per k, `each` the regular expression of the part in braces), shown as
    `generic` while no run reports one (no row at all when `generic` is empty). `label` says what
    it is (`{}` the part), `better` which way is better, `short` its name in a picture's caption
    ("" for none), `unit` its unit there; `sub` marks a reference under the figure above it (a
    ceiling, a floor, a baseline). `cell` says how a table shows it with its `companions` (keys
    folded into its cell): "plain", "stderr" (± the `stderr` key, `KEY_stderr` unless named),
    "interval" (AIS's [low, high]), "probe" (the feature dimension), "histogram" (least / most
    common class), "modes" (of how many). `metric` is the `genlearn eval --metric` that writes it
    (None: training does, for the models it names); `only` narrows where it applies when one
    metric gives different figures to different models (the metric's `NEEDS` decides the rest)."""

    key: str
    group: str
    label: str
    metric: str | None
    better: str = ""
    short: str = ""
    unit: str = ""
    sub: bool = False
    cell: str = "plain"
    digits: int = 2
    companions: tuple[str, ...] = ()
    stderr: str = ""
    only: Callable[[Any], bool] | None = None
    each: str = ""
    generic: str = ""

    def applies(self, model) -> bool | None:
        """Whether the figure applies to `model`; None for a figure of training whose `only`
        is not said (it applies where a run reports it, e.g. an exact log-likelihood)."""
        if self.metric is not None:
            return applies(self.metric, model) and (self.only is None or self.only(model))
        return self.only(model) if self.only else None

    def instance(self, part: str) -> Figure:
        """The figure of one part of a family (`nll_k{}` -> `nll_k5000`); the generic figure for
        part ""."""
        if not self.each:
            return self
        if not part:
            return replace(self, key=self.key.replace("{}", ""), label=self.generic,
                           short=self.short.replace("{}", ""), each="")  # fmt: skip

        def fill(text: str) -> str:
            return text.replace("{}", part)

        return replace(
            self,
            key=fill(self.key),
            label=fill(self.label),
            short=fill(self.short),
            companions=tuple(map(fill, self.companions)),
            stderr=fill(self.stderr),
            each="",
        )

    def parts(self, keys: Iterable[str]) -> list[str]:
        """The parts of this family that `keys` report (k of every IW estimate, in order)."""
        pattern = re.compile(re.escape(self.key).replace(re.escape("{}"), f"({self.each})"))
        found = {g[1] for k in keys if (g := pattern.fullmatch(k))}
        return sorted(found, key=lambda p: (len(p), p) if p.isdigit() else (0, p))

    @property
    def text(self) -> str:
        """The label as a table shows it: indented under its figure when `sub`, with ↑ / ↓."""
        return ("  " if self.sub else "") + self.label + (f" {self.better}" if self.better else "")


def _can(*capabilities: str) -> Callable[[Any], bool]:
    return lambda model: any(model.can(c) for c in capabilities)


def _digits(model) -> bool:
    """`fid` of 28 x 28 digits is on the MNIST classifier's features."""
    return tuple(model.image_shape or ()) == DIGITS


def _canvases(model) -> bool:
    """`fid` of 60 x 60 canvases is on the conformity checker's features (another row)."""
    return tuple(model.image_shape or ()) == CANVAS_SHAPE


def _bound_only(model) -> bool:
    """`genlearn eval --metric nll` gives DRAW's bound only where there is no IW estimate."""
    return model.can("nll_bound") and not model.can("log_likelihood")


def _bound_parts(model) -> bool:
    return _bound_only(model) and "captions" in model.conditions


def _rbm_ais(model) -> bool:
    return model.can("free_energy") and not model.can("ais_bound")


def _points(model) -> bool:
    return model.data_kind == "points"


NATS = "nats"
_STDERR = "stderr"
_AIS = ("_low", "_high", "_stderr")

FIGURES: tuple[Figure, ...] = (
    Figure("elbo", LIKELIHOOD, "ELBO, variational lower bound on log p(x)", "elbo", HIGHER, "ELBO", NATS,
           cell=_STDERR, companions=("elbo_stderr", "n")),  # n: the images it averaged
    Figure("nll_k{}", LIKELIHOOD, "−log p(x), importance-weighted estimate, k={}", "nll", LOWER, "NLL k={}",
           NATS, cell=_STDERR, companions=("nll_k{}_stderr",), only=_can("log_likelihood"), each=r"\d+",
           generic="−log p(x), importance-weighted (k)"),
    Figure("nll_bound", LIKELIHOOD, "−log p(x) ≤ variational bound L^x+L^z", "nll", LOWER, "bound", NATS,
           cell=_STDERR, companions=("nll_bound_stderr",), only=_bound_only),
    Figure("nll_bound_{}", LIKELIHOOD, "−log p(x) ≤ bound L^x+L^z, {} test part", "nll", LOWER, "bound ({})",
           NATS, cell=_STDERR, companions=("nll_bound_{}_stderr", "nll_bound_stderr_{}"),
           stderr="nll_bound_{}_stderr", only=_bound_parts, each=r"(?!stderr)\w+(?<!_stderr)"),
    Figure("ais_log_likelihood", LIKELIHOOD, "log p(x), AIS estimate [±3σ of log Z]", "ais", HIGHER,
           "AIS log p", NATS, cell="interval", companions=tuple(f"ais_log_likelihood{s}" for s in _AIS),
           only=_rbm_ais),
    Figure("ais_bound", LIKELIHOOD, "log p(x) ≥ AIS-based variational bound [±3σ]", "ais", HIGHER,
           "AIS bound", NATS, cell="interval", companions=tuple(f"ais_bound{s}" for s in _AIS),
           only=_can("ais_bound")),
    Figure("ais_log_z", LIKELIHOOD, "log Z by AIS [±3σ]", "ais", short="log Z", sub=True, cell="interval",
           companions=tuple(f"ais_log_z{s}" for s in _AIS)),
    Figure("log_likelihood", LIKELIHOOD, "log p(x), exact (log Z enumerated)", None, HIGHER, "log p", NATS),
    Figure("bound", LIKELIHOOD, "log p(x) ≥ variational bound, exact log Z", None, HIGHER, "bound", NATS),
    Figure("parzen", LIKELIHOOD, "log p(x), Parzen estimate on 10,000 samples", "parzen", HIGHER, "Parzen",
           NATS, cell=_STDERR, companions=("parzen_stderr", "parzen_sigma")),
    Figure("parzen_real_train", LIKELIHOOD, "the same on 10,000 training images (ceiling)", "parzen",
           sub=True, cell=_STDERR, companions=("parzen_real_train_stderr", "parzen_real_train_sigma")),
    Figure("fid", QUALITY, "FID, MNIST classifier features, 10,000 samples", "fid", LOWER, "FID",
           only=_digits),
    Figure("fid_real", QUALITY, "FID of real validation images (floor)", "fid", sub=True, only=_digits),
    Figure("fid_canvas", QUALITY, "Frechet distance, 60x60 checker features, 10,000 samples", "fid", LOWER,
           "FD canvas", only=_canvases),
    Figure("fid_canvas_real", QUALITY, "the same of real validation canvases (floor)", "fid", sub=True,
           only=_canvases),
    Figure("classifier_score", QUALITY, "classifier score exp E KL(p(y|x)‖p(y))", "coverage", HIGHER, "score"),
    Figure("label_agreement", QUALITY, "label agreement: the classifier reads the label", "label_agreement",
           HIGHER, "labels", cell=_STDERR, digits=4,
           companions=("label_agreement_stderr", "label_agreement_per_class")),
    Figure("conformity_seen", QUALITY, "caption conformity, seen captions", "conformity", HIGHER,
           "conformity", cell=_STDERR, digits=4,
           companions=("conformity_seen_stderr", "conformity_seen_per_type")),
    Figure("conformity_real_seen", QUALITY, "real composites (ceiling)", "conformity", sub=True, digits=4),
    Figure("conformity_heldout", QUALITY, "caption conformity, held-out captions", "conformity", HIGHER,
           "held-out", cell=_STDERR, digits=4,
           companions=("conformity_heldout_stderr", "conformity_heldout_per_type",
                       "heldout_digit_right_per_type")),
    Figure("conformity_real_heldout", QUALITY, "real composites (ceiling)", "conformity", sub=True, digits=4),
    Figure("high_quality", QUALITY, "points within 3σ of a mode", None, HIGHER, "high quality", digits=4,
           only=_points),
    Figure("coverage_kl", DIVERSITY, "KL(class histogram ‖ uniform), 10,000 samples", "coverage", LOWER, "KL",
           digits=4),
    Figure("class_histogram", DIVERSITY, "least / most common class's share", "coverage", sub=True,
           cell="histogram"),
    Figure("nearest_train_samples", DIVERSITY, "distance to the nearest training image, 1,000 samples",
           "nearest", short="nearest", cell=_STDERR, companions=("nearest_train_samples_stderr",)),
    Figure("nearest_train_test", DIVERSITY, "the same for 1,000 test images (copies would be far below)",
           "nearest", sub=True, cell=_STDERR, companions=("nearest_train_test_stderr",)),
    Figure("modes_captured", DIVERSITY, "modes captured", None, HIGHER, "modes", cell="modes",
           companions=("modes",), only=_points),
    Figure("probe_accuracy", REPRESENTATION, "linear probe accuracy on its features", "probe", HIGHER, "probe",
           cell="probe", digits=4, companions=("probe_dim",)),
    Figure("probe_accuracy_pixels", REPRESENTATION, "the same probe on raw pixels (baseline)", "probe",
           sub=True, digits=4),
)  # fmt: skip


def figures_of(name: str) -> list[Figure]:
    """The figures metric `name` writes (a family such as `nll_k{}` once)."""
    check_name(name)
    return [f for f in FIGURES if f.metric == name]


# The options of `genlearn eval` that only some metrics take: given for none of the metrics
# asked, an option is refused (it would change nothing).
OPTIONS: dict[str, tuple[str, ...]] = {"--k": ("nll",), "--ais-runs": ("ais",)}


def check_options(names: list[str], given: Iterable[str]) -> None:
    """Refuse, before any work, an option of `OPTIONS` given with none of the metrics it applies to."""
    for option in given:
        takers = OPTIONS[option]
        if not any(name in takers for name in names):
            raise UserError(
                f"{option} applies to {' and '.join(takers)} only, not to {', '.join(names)}; leave it out"
            )


SAMPLED = ("parzen", "fid", "coverage", "label_agreement", "conformity", "nearest")  # metrics of samples
# the metrics of unconditioned samples: within one `compute_many` they score one draw
SHARED_DRAW = ("parzen", "fid", "coverage", "nearest")


def _check(name: str, model, opts: Options) -> None:
    """Refuse, before any work: an unknown metric, one that does not apply to the model (`NEEDS`),
    and a temperature other than 1 for a metric that does not sample or a model that cannot."""
    check_name(name)
    if opts.temperature != 1.0 and name not in SAMPLED:
        raise UserError(
            f"--temperature applies to the metrics of samples ({', '.join(SAMPLED)}), not {name!r}"
        )
    reason = why_not(name, model)
    if reason is not None:
        raise UserError(
            f"metric {name!r} does not apply to model {model.name or type(model).__name__!r} ({reason})"
        )
    model.sampling_options(opts.temperature)  # a model that cannot sample at another temperature


def compute(name: str, model, split: dict[str, torch.Tensor], data: Any, opts: Options) -> dict[str, Any]:
    """Metric `name` of `model` on the held-out batch dict `split` of data set `data`. At a
    sampling temperature other than 1 every figure is named with a `_t<T>` suffix (conformity_seen_t0.5),
    so that it never stands in results.json for the model's own."""
    _check(name, model, opts)
    if opts.temperature == 1.0:
        return METRICS[name](model, split, data, opts)
    return {f"{k}_t{opts.temperature:g}": v for k, v in METRICS[name](model, split, data, opts).items()}


def compute_many(
    names: list[str], model, split: dict[str, torch.Tensor], data: Any, opts: Options
) -> Iterator[tuple[str, dict[str, Any], float]]:
    """Each metric of `names` in turn, as (name, figures, seconds), the metrics of samples sharing
    one draw: parzen, fid and coverage score the same 10,000 samples and nearest their first 1,000
    (the same seed draws the same samples), so drawing them once saves most of the time of a slow
    sampler (Gibbs chains) and changes no figure. The seconds of the first of them include the
    draw. The names are all checked before any is computed."""
    for name in names:
        _check(name, model, opts)
    opts = replace(opts, drawn={})
    for name in names:
        start = time.perf_counter()
        figures = compute(name, model, split, data, opts)
        yield name, figures, time.perf_counter() - start
