r"""Linear probe: how linearly decodable the labels are from a model's frozen features.

Supervised feature learning on top of an unsupervised model, measured the usual way: a multinomial
logistic regression on the features h = features(x) of the 50,000 training images,

    p(y = c | h) = softmax(W s(h) + b)_c,     s(h) = (h - mean) / std   (training statistics)
    minimise  -1/N sum_n log p(y_n | h_n) + lambda/2 ||W||^2,

fitted full-batch with L-BFGS from W = 0, b = 0 (deterministic for a given number of threads).
lambda is chosen from a small grid by accuracy on the 10,000 validation images; the grid is walked
from strong to weak regularisation, each fit starting from the last and stopped after at most
MAX_ITER iterations. That keeps the pixel probe to about 100 evaluations (5 s on one core) and
within 0.1% of its converged accuracy; low-dimensional codes converge well within the budget.
The chosen probe is then scored on the held-out split handed in (the test split by default; with
`--split valid` the reported number is the selection score itself and is optimistic).

The same probe on raw pixels is reported beside it (about 92% test accuracy on MNIST intensities),
so a model's number reads as better or worse than no feature learning at all. Both probes see
the images the model sees: for a model trained on binarized MNIST (`data_kind == "binary"`) the
training and validation images are binarized once with the fixed seed, like the held-out split.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch.nn import functional as F

from genlearn.data import mnist
from genlearn.errors import UserError

L2_GRID = (1e-2, 1e-3, 1e-4)
MAX_ITER = 30  # L-BFGS iterations per grid value; each fit starts from the previous one
CHUNK = 5000


@torch.no_grad()
def _features(model: Any, x: torch.Tensor) -> torch.Tensor:
    out = [model.features(chunk.to(model.device)).float().flatten(1).cpu() for chunk in x.split(CHUNK)]
    return torch.cat(out)


def _standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Standardize with the training statistics, dropping columns constant on the training set.

    A constant column (a border pixel that is always 0) gets a zero gradient apart from the
    penalty, so its weight stays 0 and dropping it changes nothing but the cost.
    """
    mean = train.mean(0)
    std = train.std(0)
    keep = std > 1e-6 * std.max().clamp(min=1e-12)
    mean, std = mean[keep], std[keep]
    return [(t[:, keep] - mean) / std for t in (train, *others)]


def _accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.addmm(b, x, w).argmax(1) == y).float().mean().item()


class _Objective:
    """Mean cross-entropy + lambda/2 ||W||^2 and its gradient, by hand, at flat parameters.

    Autograd's backward runs X^T @ R on a transposed view, which MKL does slowly for ten classes;
    laid out as W (K, d) @ X^T (d, N) and R^T (K, N) @ X (N, d), both products are contiguous and
    an evaluation costs about a quarter as much (40-80 ms for 50,000 x 784 on one core).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: int):
        self.x = x.contiguous()
        self.xt = x.t().contiguous()
        self.y = y.reshape(1, -1)
        self.onehot_t = F.one_hot(y, classes).t().to(x.dtype)
        self.n, self.d = x.shape
        self.classes = classes
        self.evaluations = 0

    def unflatten(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """theta (K*d + K,) float64 -> W (K, d), b (K,) in the features' dtype."""
        theta = theta.to(self.x.dtype)
        k, d = self.classes, self.d
        return theta[: k * d].view(k, d), theta[k * d :]

    @torch.no_grad()
    def __call__(self, theta: torch.Tensor, l2: float) -> tuple[float, torch.Tensor]:
        self.evaluations += 1
        w, b = self.unflatten(theta)
        logits_t = torch.addmm(b.unsqueeze(1), w, self.xt)  # (K, N)
        log_p = torch.log_softmax(logits_t, dim=0)
        loss = -log_p.gather(0, self.y).double().mean() + 0.5 * l2 * w.double().pow(2).sum()
        resid = log_p.exp_().sub_(self.onehot_t).div_(self.n)  # d loss / d logits
        grad_w = torch.addmm(w, resid, self.x, beta=l2)
        grad = torch.cat([grad_w.flatten(), resid.sum(1)]).double()
        return loss.item(), grad


def lbfgs(
    fun,
    theta: torch.Tensor,
    max_iter: int,
    history: int = 10,
    tol_grad: float = 1e-5,
    tol_change: float = 1e-9,
) -> torch.Tensor:
    """Minimise a smooth convex `fun(theta) -> (value, gradient)` by L-BFGS with Armijo backtracking.

    The two-loop recursion of Nocedal & Wright (algorithm 7.4), initial scaling s'y / y'y, and
    a unit step tried first (halved until the sufficient-decrease condition holds). A few lines
    here rather than `torch.optim.LBFGS`, whose first step imports torch._dynamo (about 2 s).
    """
    f, g = fun(theta)
    pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    for _ in range(max_iter):
        if g.abs().max().item() <= tol_grad:
            break
        q = -g
        alphas = []
        for s, y, rho in reversed(pairs):
            a = rho * s.dot(q).item()
            q = q - a * y
            alphas.append(a)
        if pairs:
            s, y, _ = pairs[-1]
            q = q * (s.dot(y) / y.dot(y)).item()
        else:
            q = q * min(1.0, 1.0 / g.abs().sum().item())
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            q = q + (a - rho * y.dot(q).item()) * s
        slope = g.dot(q).item()
        if slope > -tol_change:
            break
        step = 1.0
        while True:
            new = theta + step * q
            f_new, g_new = fun(new)
            if f_new <= f + 1e-4 * step * slope or step < 1e-8:
                break
            step *= 0.5
        s, y = new - theta, g_new - g
        sy = s.dot(y).item()
        if sy > 1e-12:
            pairs.append((s, y, 1.0 / sy))
            pairs = pairs[-history:]
        done = abs(f - f_new) <= tol_change * max(1.0, abs(f))
        theta, f, g = new, f_new, g_new
        if done:
            break
    return theta


def fit_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    valid_x: torch.Tensor,
    valid_y: torch.Tensor,
    classes: int,
    grid: tuple[float, ...] = L2_GRID,
    max_iter: int = MAX_ITER,
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Fit the regularisation path on standardized features; returns (W, b, lambda, valid acc).

    W is (d, classes); the path runs from the largest lambda down, each fit warm-started.
    """
    objective = _Objective(train_x, train_y, classes)
    theta = torch.zeros(classes * (train_x.shape[1] + 1), dtype=torch.float64)
    best: tuple[torch.Tensor, torch.Tensor, float, float] | None = None
    for l2 in sorted(grid, reverse=True):
        theta = lbfgs(lambda t, l2=l2: objective(t, l2), theta, max_iter)
        w, b = objective.unflatten(theta)
        acc = _accuracy(valid_x, valid_y, w.t(), b)
        if best is None or acc > best[3]:
            best = (w.t().clone(), b.clone(), l2, acc)
    assert best is not None
    return best


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    valid_x: torch.Tensor,
    valid_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    grid: tuple[float, ...] = L2_GRID,
    max_iter: int = MAX_ITER,
) -> dict[str, float]:
    """Test accuracy of the validation-selected probe on (n, d) feature matrices."""
    train_x, valid_x, test_x = _standardize(train_x.float(), valid_x.float(), test_x.float())
    classes = int(max(train_y.max(), valid_y.max(), test_y.max())) + 1
    w, b, l2, valid_acc = fit_probe(train_x, train_y, valid_x, valid_y, classes, grid, max_iter)
    return {"accuracy": _accuracy(test_x, test_y, w, b), "l2": l2, "valid_accuracy": valid_acc}


def probe_accuracy(
    model: Any, split: dict[str, torch.Tensor], full: Any, seed: int = 0, progress: bool = False
) -> dict:
    """Linear-probe test accuracy on `model.features` and on raw pixels.

    `split` is the held-out batch dict {"x", "y"} it scores; `full` the data set (`mnist.MNIST`)
    whose training images fit the probe and whose validation images choose its regularisation,
    binarized (fixed) for a model trained on binary images. `seed` seeds any noise inside
    `features` (none for deterministic encoders); the fit itself is deterministic.
    """
    train_x, valid_x = full.train_x, full.valid_x
    if model.data_kind == "binary":
        train_x = mnist.binarize_fixed(train_x)
        valid_x = mnist.binarize_fixed(valid_x)
    test_x, test_y = split["x"].cpu(), split["y"].cpu()
    sets = {
        "features": lambda x: _features(model, x),
        "pixels": lambda x: x.flatten(1).float(),
    }
    out: dict[str, Any] = {}
    was_training = model.training
    model.eval()
    try:
        for name, fn in sets.items():
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                feats = [fn(x) for x in (train_x, valid_x, test_x)]
            if not all(torch.isfinite(f).all() for f in feats):
                raise UserError(f"the model's {name} are not all finite; the probe needs finite features")
            res = linear_probe(feats[0], full.train_y, feats[1], full.valid_y, feats[2], test_y)
            if progress:
                print(
                    f"probe on {name}: dim {feats[0].shape[1]}, l2 {res['l2']:g}, "
                    f"valid {res['valid_accuracy']:.4f}, test {res['accuracy']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
            if name == "features":
                out["probe_accuracy"] = res["accuracy"]
                out["probe_dim"] = int(feats[0].shape[1])
            else:
                out["probe_accuracy_pixels"] = res["accuracy"]
    finally:
        model.train(was_training)
    return {k: out[k] for k in ("probe_accuracy", "probe_accuracy_pixels", "probe_dim")}
