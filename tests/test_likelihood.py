"""Tests of the ELBO and the importance-weighted log-likelihood estimator.

The models are defined here (no data set needed): a linear-Gaussian model whose log p(x), exact
posterior and expected ELBO are known in closed form, and a small Bernoulli decoder with a
one-dimensional latent whose log p(x) is computed by quadrature. Statistical checks use
tolerances derived from standard errors (analytic or estimated), with fixed seeds.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from genlearn.eval import likelihood as lk
from genlearn.nn.distributions import bernoulli_log_prob, gaussian_log_prob


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class LinearGaussian(nn.Module):
    """z ~ N(0, I_L), x | z ~ N(W z + b, sigma^2 I_d), so x ~ N(b, W W^T + sigma^2 I).

    W has orthogonal columns, so the exact posterior N(mu(x), diag(v)) is diagonal:
    v_j = 1 / (1 + s_j^2 / sigma^2), mu(x) = v * W^T (x - b) / sigma^2. The encoder returns that
    posterior with its mean shifted by ``shift`` posterior standard deviations and its variance
    multiplied by ``var_scale`` (shift=0, var_scale=1: the exact posterior).
    """

    def __init__(self, d: int = 8, latent: int = 3, sigma: float = 0.5, seed: int = 0):
        super().__init__()
        g = gen(seed)
        q, _ = torch.linalg.qr(torch.randn(d, latent, generator=g, dtype=torch.float64))
        s = torch.linspace(0.8, 2.0, latent, dtype=torch.float64)
        self.latent_dim = latent
        self.sigma = sigma
        self.register_buffer("W", (q * s).float())
        self.register_buffer("b", torch.randn(d, generator=g).float())
        self.register_buffer("post_var", (1.0 / (1.0 + s**2 / sigma**2)).float())
        self.shift = 0.0
        self.var_scale = 1.0

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = (x - self.b) @ self.W * (self.post_var / self.sigma**2)
        return mean, self.post_var.expand_as(mean)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, var = self.posterior(x)
        mean = mean + self.shift * var.sqrt()
        return mean, torch.log(var * self.var_scale)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        n, s, latent = z.shape
        mean = (z.reshape(n * s, latent) @ self.W.T + self.b).view(n, s, -1)
        logvar = torch.full((1, 1, 1), 2.0 * math.log(self.sigma))
        return gaussian_log_prob(x[:, None, :], mean, logvar)

    def sample_x(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator)
        noise = torch.randn(n, self.b.shape[0], generator=generator)
        return z @ self.W.T + self.b + self.sigma * noise

    def exact_log_px(self, x: Tensor) -> Tensor:
        w = self.W.double()
        cov = w @ w.T + self.sigma**2 * torch.eye(w.shape[0], dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(self.b.double(), covariance_matrix=cov)
        return dist.log_prob(x.double())

    def kl_to_posterior(self, x: Tensor) -> Tensor:
        """KL(q(z|x) || p(z|x)) in closed form, so E[ELBO] = log p(x) - this."""
        mean_q, logvar_q = (t.double() for t in self.encode(x))
        mean_p, var_p = (t.double() for t in self.posterior(x))
        var_q = logvar_q.exp()
        kl = 0.5 * (var_q / var_p + (mean_q - mean_p) ** 2 / var_p - 1.0 + var_p.log() - logvar_q)
        return kl.sum(-1)

    def weight_relative_variance(self) -> float:
        """Var(w) / E[w]^2 of the importance weights w = p(x, z) / q(z|x), z ~ q.

        Per latent dimension (in posterior units: q = N(delta, tau^2), p(z|x) = N(0, 1)),
        E_q[w^2] / E[w]^2 = int p^2 / q = tau^2 / sqrt(2 tau^2 - 1) * exp(delta^2 / (2 tau^2 - 1)).
        """
        tau2, delta = self.var_scale, self.shift
        per_dim = tau2 / math.sqrt(2 * tau2 - 1) * math.exp(delta**2 / (2 * tau2 - 1))
        return per_dim**self.latent_dim - 1.0


class TinyBernoulli(nn.Module):
    """One latent dimension, a small tanh decoder with Bernoulli outputs, a deliberately crude
    encoder; log p(x) by quadrature over z (see ``exact_log_px``)."""

    def __init__(self, d: int = 10, hidden: int = 8, seed: int = 1):
        super().__init__()
        self.latent_dim = 1
        with torch.random.fork_rng(), torch.no_grad():  # seeded init, global RNG left as it was
            torch.manual_seed(seed)
            self.decoder = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, d))
            self.decoder[0].weight.mul_(3.0)
            self.decoder[2].weight.mul_(4.0)
            self.enc = nn.Linear(d, 2)
            self.enc.weight.mul_(0.3)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.enc(x)
        # logvar in [-0.5, 0.5]: q about as wide as the prior, weights of finite variance.
        return h[:, :1], 0.5 * torch.tanh(h[:, 1:])

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        n, s, latent = z.shape
        logits = self.decoder(z.reshape(n * s, latent)).view(n, s, -1)
        return bernoulli_log_prob(x[:, None, :], logits)

    def sample_x(self, n: int, generator: torch.Generator) -> Tensor:
        with torch.no_grad():
            z = torch.randn(n, 1, generator=generator)
            probs = torch.sigmoid(self.decoder(z))
            return torch.bernoulli(probs, generator=generator)

    def exact_log_px(self, x: Tensor) -> Tensor:
        """log int p(x|z) N(z; 0, 1) dz by the rectangle rule on a fine grid, in float64.

        The integrand is smooth with Gaussian tails, so the rule is accurate far below the
        statistical tolerances it is compared with.
        """
        decoder = copy.deepcopy(self.decoder).double()
        z = torch.linspace(-10.0, 10.0, 8001, dtype=torch.float64)
        dz = (z[1] - z[0]).item()
        with torch.no_grad():
            logits = decoder(z[:, None])  # (G, d): decode the grid once for all images
        log_joint_z = -torch.nn.functional.softplus(logits).sum(-1) - 0.5 * z**2
        log_joint_z = log_joint_z - 0.5 * math.log(2 * math.pi) + math.log(dz)
        # log p(x|z) = x . logits - sum softplus(logits), for all images and grid points at once.
        out = [torch.logsumexp(xb @ logits.T + log_joint_z, dim=1) for xb in x.double().split(500)]
        return torch.cat(out)


def mean_se(v: Tensor) -> tuple[float, float]:
    v = v.double()
    return v.mean().item(), (v.std() / math.sqrt(v.numel())).item()


# --------------------------------------------------------------------------------------------
# streaming log-sum-exp


def test_streaming_logsumexp_equals_torch_logsumexp():
    g = gen(0)
    w = 30.0 * torch.randn(5, 103, generator=g) - 1e4  # large offsets: naive exp underflows
    w[1, 40:] += 200.0  # the running maximum changes in a later chunk
    w[2, :50] = -math.inf  # leading -inf chunk
    w[3] = -math.inf  # an all -inf row: log 0
    splits = [1, 9, 40, 3, 50]
    got = lk.streaming_logsumexp(torch.split(w, splits, dim=1))
    want = torch.logsumexp(w, dim=1)
    assert got[3].item() == -math.inf
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0.0)
    # A single chunk is the plain formula.
    torch.testing.assert_close(lk.streaming_logsumexp([w[:3]]), want[:3], rtol=1e-6, atol=0.0)


def test_streaming_iw_equals_one_shot_logsumexp_over_the_same_samples():
    model = TinyBernoulli()
    x = model.sample_x(9, gen(1))
    k, max_rows = 50, 7  # 8 chunks of <= 7 samples per image
    assert lk._schedule(k, max_rows) == (1, 7)
    streamed = lk.iw_log_likelihood(model, x, k, generator=gen(2), max_rows=max_rows)
    weights = lk.log_importance_weights(model, x, k, generator=gen(2), max_rows=max_rows)
    assert weights.shape == (9, k)
    one_shot = torch.logsumexp(weights, dim=1) - math.log(k)
    torch.testing.assert_close(streamed, one_shot, rtol=1e-6, atol=1e-5)
    # Weights vary a lot across samples here, so the reduction is not trivially exact.
    assert (weights.std(dim=1) > 0.1).all()


def test_schedule_bounds_rows_and_balances_chunks():
    for k in [1, 2, 7, 100, 4096, 4097, 5000, 12345]:
        for max_rows in [1, 3, 1000, 4096, 10**6]:
            per_block, samples = lk._schedule(k, max_rows)
            assert per_block * samples <= max(max_rows, 1)
            n_chunks = -(-k // samples)
            assert n_chunks == -(-k // max_rows)  # as few decoder calls per image as possible
            assert k - (n_chunks - 1) * samples >= samples - n_chunks  # no tiny last chunk
    assert lk._schedule(5000, 4096) == (1, 2500)
    assert lk._schedule(10, 4096) == (409, 10)


# --------------------------------------------------------------------------------------------
# statistical properties


def test_k1_estimate_matches_elbo_in_expectation():
    model = LinearGaussian()
    model.shift, model.var_scale = 0.7, 1.8
    x = model.sample_x(4, gen(3))
    reps = 5000
    xr = x.repeat_interleave(reps, dim=0)  # 20000 rows: several image blocks and encode groups
    iw1 = lk.iw_log_likelihood(model, xr, 1, generator=gen(4)).view(4, reps)
    el = lk.elbo(model, xr, generator=gen(5), batch_size=3000).view(4, reps)
    expected = (model.exact_log_px(x) - model.kl_to_posterior(x)).float()
    for i in range(4):
        m_iw, se_iw = mean_se(iw1[i])
        m_el, se_el = mean_se(el[i])
        assert abs(m_iw - m_el) < 4.0 * math.hypot(se_iw, se_el)
        assert abs(m_el - expected[i].item()) < 4.0 * se_el
        assert abs(m_iw - expected[i].item()) < 4.0 * se_iw
        # The bound is strictly below log p(x), far beyond the noise: the test has teeth.
        gap = model.exact_log_px(x[i : i + 1]).item() - m_el
        assert gap > 20.0 * se_el


def test_bound_tightens_with_k_and_stays_below_log_px():
    model = TinyBernoulli()
    x = model.sample_x(3000, gen(6))
    exact = model.exact_log_px(x).float()
    est = {k: lk.iw_log_likelihood(model, x, k, generator=gen(10 + k)) for k in (1, 10, 100)}
    for lo, hi in [(1, 10), (10, 100)]:
        diff_mean, diff_se = mean_se(est[hi] - est[lo])
        assert diff_mean > 4.0 * diff_se, (lo, hi, diff_mean, diff_se)
    for k, values in est.items():
        gap_mean, gap_se = mean_se(exact - values)
        assert gap_mean > -3.0 * gap_se, (k, gap_mean, gap_se)
    # ... and k = 100 is already close: log p(x) is reached as k grows.
    assert mean_se(exact - est[100])[0] < 0.25 * mean_se(exact - est[1])[0]


def test_large_k_matches_exact_log_px_with_an_inexact_encoder():
    model = LinearGaussian()
    model.shift, model.var_scale = 0.5, 2.0
    x = model.sample_x(20, gen(7))
    exact = model.exact_log_px(x)
    k = 20000
    est = lk.iw_log_likelihood(model, x, k, generator=gen(8)).double()
    rho = model.weight_relative_variance()  # about 1: Var(L_k) ~ rho / k, bias ~ -rho / (2k)
    sd = math.sqrt(rho / k)
    err = est - exact
    assert err.abs().max().item() < 5.0 * sd  # each image: |error| < 0.036 nats
    assert abs(err.mean().item() + rho / (2 * k)) < 4.0 * sd / math.sqrt(x.shape[0])
    # The encoder is far from the posterior: the ELBO misses log p(x) by ~0.8 nats.
    assert (model.kl_to_posterior(x) > 0.5).all()
    # The weight variance used above is the real one (checks the tolerance itself).
    w = lk.log_importance_weights(model, x[:4], 50000, generator=gen(9)).double()
    w = torch.exp(w - torch.logsumexp(w, dim=1, keepdim=True)) * w.shape[1]
    assert abs(w.var(dim=1).mean().item() - rho) < 0.3 * rho


@pytest.mark.parametrize(("k", "max_rows"), [(1, lk.DEFAULT_MAX_ROWS), (7, 20), (100, 30)])
def test_exact_posterior_gives_exact_log_px_for_any_k(k, max_rows, monkeypatch):
    monkeypatch.setattr(lk, "_ENCODE_BATCH", 4)  # several encode groups, partial last block
    model = LinearGaussian()
    x = model.sample_x(25, gen(11))
    exact = model.exact_log_px(x)
    est = lk.iw_log_likelihood(model, x, k, generator=gen(12), max_rows=max_rows)
    torch.testing.assert_close(est.double(), exact, rtol=0.0, atol=5e-5)
    w = lk.log_importance_weights(model, x, k, generator=gen(12), max_rows=max_rows)
    assert (w - exact[:, None].float()).abs().max().item() < 5e-5  # every weight equals p(x)


# --------------------------------------------------------------------------------------------
# summaries, modes, errors


def test_nll_and_elbo_stats_summaries():
    model = LinearGaussian()
    model.shift, model.var_scale = 0.5, 2.0
    x = model.sample_x(50, gen(13))
    values = lk.iw_log_likelihood(model, x, 20, generator=gen(14))
    res = lk.nll(model, x, 20, generator=gen(14))
    assert res["k"] == 20 and res["n"] == 50
    assert res["nll"] == pytest.approx(-values.double().mean().item(), rel=1e-9)
    assert res["nll_stderr"] == pytest.approx(values.double().std().item() / math.sqrt(50))
    el = lk.elbo(model, x, generator=gen(15))
    res_el = lk.elbo_stats(model, x, generator=gen(15))
    assert res_el["elbo"] == pytest.approx(el.double().mean().item(), rel=1e-9)
    assert res_el["elbo_stderr"] == pytest.approx(el.double().std().item() / math.sqrt(50))
    assert res_el["elbo"] < -res["nll"]  # ELBO below the k = 20 bound on average


def test_eval_mode_during_evaluation_and_restored_after():
    model = TinyBernoulli()
    x = model.sample_x(3, gen(16))
    seen = []
    model.decoder.register_forward_hook(lambda mod, inp, out: seen.append(mod.training))
    model.train()
    model.enc.eval()  # a mixed state must come back as it was
    lk.iw_log_likelihood(model, x, 5, generator=gen(17))
    lk.elbo(model, x, generator=gen(17))
    assert seen and not any(seen)
    assert model.training and model.decoder.training and not model.enc.training


def test_results_are_ordinary_tensors_and_progress_bar_runs(capsys):
    model = TinyBernoulli()
    x = model.sample_x(5, gen(18))
    out = lk.iw_log_likelihood(model, x, 10, generator=gen(19), progress=True)
    assert not out.is_inference() and out.dtype == torch.float32 and out.shape == (5,)
    out -= 1.0  # in-place use outside inference mode works
    assert "5/5" in capsys.readouterr().err


def test_integer_pixels_are_accepted():
    model = TinyBernoulli()
    x = model.sample_x(4, gen(20))
    a = lk.iw_log_likelihood(model, x, 10, generator=gen(21))
    b = lk.iw_log_likelihood(model, x.to(torch.uint8), 10, generator=gen(21))
    torch.testing.assert_close(a, b, rtol=0.0, atol=0.0)


def test_invalid_arguments_raise():
    model = TinyBernoulli()
    x = model.sample_x(3, gen(22))
    with pytest.raises(ValueError, match="k"):
        lk.iw_log_likelihood(model, x, 0)
    with pytest.raises(ValueError, match="k"):
        lk.nll(model, x, -3)
    with pytest.raises(ValueError, match="k"):
        lk.log_importance_weights(model, x, 0)
    with pytest.raises(ValueError, match="at least one image"):
        lk.iw_log_likelihood(model, x[:0], 10)
    with pytest.raises(ValueError, match="at least one image"):
        lk.elbo(model, x[:0])
    with pytest.raises(ValueError, match="max_rows"):
        lk.iw_log_likelihood(model, x, 10, max_rows=0)
    with pytest.raises(TypeError):
        lk.iw_log_likelihood(model, x, 2.5)
