"""The metrics `genlearn eval RUN --metric NAME` can compute, each checking it fits the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from genlearn.errors import UserError


def _needs(model: torch.nn.Module, metric: str, *methods: str) -> None:
    missing = [m for m in methods if not hasattr(model, m)]
    if missing:
        name = getattr(model, "name", type(model).__name__)
        raise UserError(f"metric {metric!r} does not apply to model {name!r} (it has no {missing[0]})")


def _generator(data, seed: int) -> torch.Generator:
    """A generator on the device the data lives on (the noise is drawn there)."""
    return torch.Generator(device=data["x"].device).manual_seed(seed)


def elbo(model, data, opts) -> dict[str, Any]:
    _needs(model, "elbo", "encode", "log_likelihood")
    from genlearn.eval.likelihood import elbo_stats

    return elbo_stats(model, data["x"].flatten(1), generator=_generator(data, opts.seed))


def nll(model, data, opts) -> dict[str, Any]:
    if not hasattr(model, "encode") and hasattr(model, "nll_bound"):  # DRAW: its bound L^x + L^z
        torch.manual_seed(opts.seed)
        out = model.evaluate(data)
        return {"nll_bound": out["nll_bound"], "nll_bound_stderr": out["nll_bound_stderr"]}
    _needs(model, "nll", "encode", "log_likelihood")
    from genlearn.eval.likelihood import nll as iw_nll

    out = iw_nll(
        model,
        data["x"].flatten(1),
        opts.k,
        generator=_generator(data, opts.seed),
        progress=opts.progress,
    )
    return {f"nll_k{opts.k}": out["nll"], f"nll_k{opts.k}_stderr": out["nll_stderr"]}


def probe(model, data, opts) -> dict[str, Any]:
    _needs(model, "probe", "features")
    from genlearn.eval.probe import probe_accuracy

    return probe_accuracy(model, data, seed=opts.seed, progress=opts.progress)


def _samples(model, n: int, seed: int) -> torch.Tensor:
    """n samples from the model, seeded, on the CPU, in chunks of at most 1,000."""
    _needs(model, "sample-based metrics", "sample")
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return torch.cat([model.sample(min(1000, n - i)).float().cpu() for i in range(0, n, 1000)])


def parzen(model, data, opts) -> dict[str, Any]:
    """The GAN paper's protocol on MNIST intensities (for every family, whatever it trains on),
    and the same estimator on 10,000 real training images: the ceiling it can show."""
    from genlearn.eval import parzen as pz

    full = data["mnist"]
    held = getattr(full, f"{opts.split}_x")
    valid = full.valid_x[: pz.N_VALID]
    out: dict[str, Any] = {}
    sets = (
        ("parzen", _samples(model, pz.N_SAMPLES, opts.seed)),
        ("parzen_real_train", full.train_x[: pz.N_SAMPLES]),
    )
    for name, points in sets:
        sigma = pz.select_sigma(points, valid)
        est = pz.parzen_estimate(points, held, sigma)
        out |= {name: est["mean"], f"{name}_stderr": est["stderr"], f"{name}_sigma": sigma}
    return out


N_SAMPLE_METRIC = 10_000  # samples scored by fid and coverage


def _classifiable(samples: torch.Tensor) -> torch.Tensor:
    """The samples if the MNIST classifier can read them (checked before it is loaded or trained)."""
    from genlearn.eval.classifier import as_images

    return as_images(samples, "the model's samples")


def fid(model, data, opts) -> dict[str, Any]:
    """Frechet distance between the in-project classifier's features of 10,000 samples and of the
    split's images, with the same distance for the 10,000 validation images as the floor."""
    from genlearn.eval import sample_metrics as sm
    from genlearn.eval.classifier import load_classifier

    full = data["mnist"]
    samples = _classifiable(_samples(model, N_SAMPLE_METRIC, opts.seed))
    classifier = load_classifier(progress=opts.progress)
    floor_set = full.valid_x if opts.split == "test" else full.test_x
    held = sm.feature_stats(getattr(full, f"{opts.split}_x"), classifier, "held-out images")
    return {
        "fid": sm.frechet_from_stats(*sm.feature_stats(samples, classifier, "samples"), *held),
        "fid_real": sm.frechet_from_stats(*sm.feature_stats(floor_set, classifier, "real images"), *held),
    }


def coverage(model, data, opts) -> dict[str, Any]:
    """Class histogram of 10,000 samples by the classifier, its KL from uniform, and the
    classifier score exp(E KL(p(y|x) || p(y)))."""
    from genlearn.eval import sample_metrics as sm
    from genlearn.eval.classifier import load_classifier

    samples = _classifiable(_samples(model, N_SAMPLE_METRIC, opts.seed))
    classifier = load_classifier(progress=opts.progress)
    log_p = sm.class_log_probs(samples, classifier)  # one pass of the classifier for all three
    hist = sm.histogram_of(log_p)
    return {
        "coverage_kl": sm.kl_to_uniform(hist),
        "classifier_score": sm.score_of(log_p),
        "class_histogram": [round(float(h), 4) for h in hist],
    }


def ais(model, data, opts) -> dict[str, Any]:
    """Annealed importance sampling (Salakhutdinov & Murray 2008): log Z with its +-3 std interval
    from 100 runs (`--ais-runs`) over ~14,500 temperatures, a base-rate model from the training pixel means,
    and the split's mean log-likelihood (a variational bound on it for the DBN and DBM)."""
    x, train_x, generator = data["x"].flatten(1), data["mnist"].train_x, _generator(data, opts.seed)
    n_runs = opts.ais_runs
    if hasattr(model, "log_likelihood_bound"):  # DBN, DBM: a variational bound with log Z from AIS
        out = model.log_likelihood_bound(x, train_x=train_x, n_runs=n_runs, generator=generator)
    else:
        _needs(model, "ais", "free_energy")
        from genlearn.eval import ais as ais_

        out = ais_.rbm_log_likelihood(
            model, x, n_runs=n_runs, base_visible_bias=ais_.base_rate_bias(train_x), generator=generator
        )
    return {f"ais_{k}": float(v) for k, v in out.items()}


METRICS: dict[str, Callable[..., dict[str, Any]]] = {
    "elbo": elbo,
    "nll": nll,
    "probe": probe,
    "parzen": parzen,
    "fid": fid,
    "coverage": coverage,
    "ais": ais,
}
PLANNED: tuple[str, ...] = ()


def check_name(name: str) -> None:
    """Refuse an unknown metric name (before any model or data is loaded)."""
    if name not in METRICS:
        later = f" ({name!r} is not implemented yet)" if name in PLANNED else ""
        raise UserError(f"unknown metric {name!r}{later}; available: {', '.join(METRICS)}")


def compute(name: str, model, data, opts) -> dict[str, Any]:
    check_name(name)
    return METRICS[name](model, data, opts)
