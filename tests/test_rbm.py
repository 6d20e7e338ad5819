"""The binary RBM: free energy and exact log Z against brute force, the CD/PCD gradient against the
exact likelihood gradient, training that raises the exact likelihood, persistent chains, exact
resumption, and reconstruction on real MNIST."""

from __future__ import annotations

import copy
import itertools
import math
import types

import pytest
import torch
from torch.nn import functional as F

from conftest import limited, needs_mnist, one_thread
from genlearn.errors import UserError
from genlearn.models.rbm import RBM, Config


def tiny(n_visible: int, n_hidden: int, scale: float = 1.0, seed: int = 0, **fields) -> RBM:
    """A small RBM with weights and biases of the given scale (not the tiny initial ones)."""
    torch.manual_seed(seed)
    model = RBM(Config(n_visible=n_visible, n_hidden=n_hidden, init_std=scale, **fields))
    with torch.no_grad():
        model.visible_bias.normal_(0, scale)
        model.hidden_bias.normal_(0, scale)
    return model


def all_states(m: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)), dtype=torch.float64)


def energy(model: RBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E(v, h) = -v^T W h - b^T v - c^T h for every pair of rows (|v| x |h|), float64."""
    W, b, c = (t.detach().double() for t in (model.W, model.visible_bias, model.hidden_bias))
    return -(v @ W @ h.t()) - (v @ b)[:, None] - (h @ c)[None, :]


def exact_log_likelihood(model: RBM, x: torch.Tensor) -> float:
    return float(-model.free_energy(x.double()).detach().mean()) - model.log_partition_exact()


def model_distribution(model: RBM) -> tuple[torch.Tensor, torch.Tensor]:
    """All visible states and p(v) by enumeration."""
    vs = all_states(model.n_visible)
    log_p = -model.free_energy(vs).detach()
    return vs, torch.softmax(log_p, 0)


# ---------------------------------------------------------------------------------------------
def test_free_energy_matches_brute_force_sum_over_hidden():
    model = tiny(5, 4, scale=1.5)
    vs, hs = all_states(5), all_states(4)
    brute = -torch.logsumexp(-energy(model, vs, hs), dim=1)
    assert torch.allclose(model.free_energy(vs), brute, atol=1e-10, rtol=0)
    # float32 input gives the same values in float32
    assert torch.allclose(model.free_energy(vs.float()).double(), brute, atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape", [(6, 5), (4, 7)])
def test_log_partition_same_from_either_layer_and_brute_force(shape):
    model = tiny(*shape, scale=1.2)
    brute = float(torch.logsumexp(-energy(model, all_states(shape[0]), all_states(shape[1])).flatten(), 0))
    by_visible = model.log_partition_exact("visible")
    by_hidden = model.log_partition_exact("hidden")
    assert by_visible == pytest.approx(brute, abs=1e-9)
    assert by_hidden == pytest.approx(brute, abs=1e-9)
    assert model.log_partition_exact() == pytest.approx(brute, abs=1e-9)


def test_log_partition_enumerates_the_smaller_layer_and_refuses_large_ones():
    narrow = tiny(30, 3)  # 2^3 hidden states; the 30 visible units could not be enumerated
    vs_logz = narrow.log_partition_exact()
    assert math.isfinite(vs_logz)
    with pytest.raises(UserError, match=r"2\^30 .*visible.*25"):
        narrow.log_partition_exact("visible")
    with pytest.raises(UserError, match=r"2\^26 .*hidden"):
        RBM(Config(n_hidden=26)).log_partition_exact()
    with pytest.raises(UserError, match="layer"):
        narrow.log_partition_exact("both")


def test_cd_gradient_approaches_exact_gradient_for_long_chains():
    """CD-k with k large is the exact log-likelihood gradient (negated) up to Monte Carlo error;
    CD-1 on the same model is visibly biased, so the comparison can tell them apart."""
    model = tiny(6, 4, scale=1.0, k=200)
    torch.manual_seed(1)
    data = (torch.rand(20_000, 6) < torch.linspace(0.1, 0.9, 6)).float()
    x = data.double()
    ph_data = torch.sigmoid(x @ model.W.detach().double() + model.hidden_bias.detach().double())
    vs, p = model_distribution(model)
    ph_model = torch.sigmoid(vs @ model.W.detach().double() + model.hidden_bias.detach().double())
    exact = {  # d log-likelihood / d theta, averaged over the data
        "W": x.t() @ ph_data / len(x) - (vs * p[:, None]).t() @ ph_model,
        "visible_bias": x.mean(0) - p @ vs,
        "hidden_bias": ph_data.mean(0) - p @ ph_model,
    }
    grads = model.gradients(data)
    for name, value in exact.items():
        assert torch.allclose(grads[name].double(), -value, atol=0.02), name
    model.config.k = 1
    cd1 = model.gradients(data)
    assert (cd1["W"].double() + exact["W"]).abs().max() > 0.05


@pytest.mark.parametrize("k", [1, 2, 3])
def test_cd_k_runs_exactly_k_gibbs_steps_from_the_data(k):
    """The negative states of CD-k started at one image v_0 have the law of k applications of the
    Gibbs kernel T(v'|v) = sum_h p(h|v) p(v'|h), computed here by enumeration."""
    model = tiny(4, 3, scale=1.5, k=k)
    vs, hs = all_states(4), all_states(3)
    W, b, c = (t.detach().double() for t in (model.W, model.visible_bias, model.hidden_bias))

    def conditional(states, logits):  # P[i, j] = p(states_j | row i of the logits), factorised
        p = torch.sigmoid(logits)
        return torch.exp(torch.log(p) @ states.t() + torch.log1p(-p) @ (1 - states).t())

    kernel = conditional(hs, vs @ W + c) @ conditional(vs, hs @ W.t() + b)
    start = 5  # v_0 = (0, 1, 0, 1)
    law = torch.linalg.matrix_power(kernel, k)[start]
    v0 = vs[start].float().expand(40_000, 4).contiguous()
    torch.manual_seed(0)
    negative_mean = model.gradients(v0)["visible_bias"].double() + vs[start]  # mean of v_k
    assert torch.allclose(negative_mean, law @ vs, atol=0.015), (negative_mean, law @ vs)


def test_centred_gradient_is_the_plain_one_moved_by_the_offsets():
    """Same samples (same seed), offsets mu and lambda: the centred statistics expand to
    dW' = dW - mu dc^T - db lambda^T, and the plain biases' steps are db' - dW' lambda and
    dc' - dW'^T mu with db' = db and dc' = dc; with zero offsets the two gradients are equal."""
    plain, centred = tiny(7, 5, k=2), tiny(7, 5, k=2, centred=True)
    data = (torch.rand(64, 7) < 0.4).float()
    torch.manual_seed(3)
    g = plain.gradients(data)
    for offsets in ("zero", "random"):
        mu = torch.zeros(7) if offsets == "zero" else torch.rand(7)
        lam = torch.zeros(5) if offsets == "zero" else torch.rand(5)
        centred.visible_offset.copy_(mu)
        centred.hidden_offset.copy_(lam)
        torch.manual_seed(3)
        gc = centred.gradients(data)
        dw = g["W"] - torch.outer(mu, g["hidden_bias"]) - torch.outer(g["visible_bias"], lam)
        assert torch.allclose(gc["W"], dw, atol=1e-6)
        assert torch.allclose(gc["visible_bias"], g["visible_bias"] - dw @ lam, atol=1e-6)
        assert torch.allclose(gc["hidden_bias"], g["hidden_bias"] - dw.t() @ mu, atol=1e-6)
        # the offsets then move towards the batch's means
        assert torch.allclose(centred.visible_offset, 0.99 * mu + 0.01 * data.mean(0))


def sample_teacher(n: int, seed: int = 0, flip: float = 0.05) -> torch.Tensor:
    """n 12-pixel vectors from a known multimodal distribution: one of three random prototypes,
    each pixel flipped with probability `flip` (entropy about log 3 + 12 H(0.05) = 3.5 nats)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(3, 12, generator=g) < 0.5).float()
    which = torch.randint(0, 3, (n,), generator=g)
    return (prototypes[which] - (torch.rand(n, 12, generator=g) < flip).float()).abs()


@pytest.mark.parametrize("method,centred", [("pcd", False), ("cd", False), ("pcd", True)])
def test_training_increases_exact_log_likelihood(method, centred, seed, expect):
    data = sample_teacher(2000)
    torch.manual_seed(seed)
    config = Config(
        n_visible=12,
        n_hidden=6,
        method=method,
        lr=0.1,
        weight_decay=0.0,
        momentum_final=0.5,
        centred=centred,
        seed=seed,
    )
    model = RBM(config)
    model.prepare(types.SimpleNamespace(train_x=data), 100)
    before = exact_log_likelihood(model, data)  # about -6.5: independent pixels at the base rate
    with one_thread():
        for _ in range(10):
            for batch in data[torch.randperm(len(data))].split(100):
                stats = model.train_step({"x": batch})
    after = exact_log_likelihood(model, data)  # about -4.1 (the data's entropy is 3.5 nats)
    assert all(math.isfinite(v) for v in stats.values())
    expect("exact log-likelihood gain (nats)", after - before, ">", 1.5)


def test_pcd_chains_sample_the_model():
    """With the weights held still (lr = 0), the persistent chains are a Gibbs sampler of the
    model: their pixel frequencies approach the exact marginals p(v_i = 1)."""
    model = tiny(10, 5, scale=1.0, method="pcd", lr=0.0, batch_size=4000)
    vs, p = model_distribution(model)
    marginals = (p @ vs).float()
    data = torch.zeros(4000, 10)
    for _ in range(40):
        model.train_step({"x": data})
    assert torch.allclose(model.chains.float().mean(0), marginals, atol=0.03)
    assert (model.chains.float().mean(0) - marginals).abs().max() < (data.mean(0) - marginals).abs().max()


def test_pcd_chains_persist_across_steps_and_are_saved():
    data = sample_teacher(100)
    a = tiny(12, 6, method="pcd")
    assert "chains" in a.state_dict() and a.chains.dtype == torch.uint8
    b = tiny(12, 6, method="pcd")
    with torch.no_grad():
        a.chains.zero_()
        b.chains.fill_(1)
    for model in (a, b):
        torch.manual_seed(5)
        model.train_step({"x": data})
    assert not torch.equal(a.W, b.W)  # the update read each model's own chains
    assert not torch.equal(a.chains, b.chains)
    # ... and CD's update does not depend on them
    c, d = tiny(12, 6, method="cd"), tiny(12, 6, method="cd")
    with torch.no_grad():
        d.chains.fill_(1)
    for model in (c, d):
        torch.manual_seed(5)
        model.train_step({"x": data})
    assert torch.equal(c.W, d.W)


def test_pcd_chains_move_and_stay_binary():
    model = tiny(12, 6, method="pcd", k=3, batch_size=100)
    data = sample_teacher(50)  # a batch smaller than batch_size uses the first 50 chains
    before = model.chains.clone()
    model.train_step({"x": data})
    assert not torch.equal(model.chains[:50], before[:50])
    assert torch.equal(model.chains[50:], before[50:])
    assert set(model.chains.unique().tolist()) <= {0, 1}
    with pytest.raises(UserError, match="chains"):
        model.train_step({"x": sample_teacher(101)})


def test_resume_is_bit_exact():
    """State dict (chains and update counter included), optimiser state and RNG are everything a
    PCD run needs: a restored model continues exactly like the original."""
    data = sample_teacher(400)
    batches = data.split(100)
    fields = dict(method="pcd", k=2, momentum_epochs=0.01)  # the momentum switch happens in here
    a = tiny(12, 6, **fields)
    a.steps_per_epoch = 100
    torch.manual_seed(11)
    for batch in batches[:2]:
        a.train_step({"x": batch})
    saved = copy.deepcopy((a.state_dict(), a.optimizers["model"].state_dict()))
    rng = torch.get_rng_state()
    for batch in batches[2:]:
        a.train_step({"x": batch})

    b = tiny(12, 6, seed=99, **fields)
    b.steps_per_epoch = 100
    b.load_state_dict(saved[0])
    b.optimizers["model"].load_state_dict(saved[1])
    torch.set_rng_state(rng)
    for batch in batches[2:]:
        b.train_step({"x": batch})
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert int(b.updates) == 4


def test_update_is_sgd_on_the_negative_gradient_with_decay_on_weights_only():
    model = tiny(8, 5, scale=0.5, momentum=0.0, momentum_final=0.0, lr=0.3, weight_decay=0.1)
    data = sample_teacher(64)[:, :8]
    old = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.manual_seed(2)
    grads = model.gradients(data)
    torch.manual_seed(2)
    model.train_step({"x": data})
    assert torch.allclose(model.W, old["W"] - 0.3 * (grads["W"] + 0.1 * old["W"]), atol=1e-6)
    for name in ("visible_bias", "hidden_bias"):
        assert torch.allclose(getattr(model, name), old[name] - 0.3 * grads[name], atol=1e-6), name


def test_contract_sample_evaluate_and_config():
    model = tiny(12, 6)
    assert model.data_kind == "binary" and model.image_shape == (12,)
    assert RBM(Config(n_hidden=3)).image_shape == (1, 28, 28)
    s1 = model.sample(7, generator=torch.Generator().manual_seed(0), steps=20)
    s2 = model.sample(7, generator=torch.Generator().manual_seed(0), steps=20)
    assert s1.shape == (7, 12) and torch.equal(s1, s2)
    assert s1.min() >= 0 and s1.max() <= 1 and not torch.equal(s1, s1.round())  # probabilities
    data = sample_teacher(300)
    out = model.evaluate({"x": data})
    assert set(out) == {"recon", "free_energy", "log_likelihood"}
    assert all(math.isfinite(v) for v in out.values())
    assert out["log_likelihood"] == pytest.approx(exact_log_likelihood(model, data), abs=1e-4)
    assert out["free_energy"] == pytest.approx(float(model.free_energy(data).detach().mean()), abs=1e-3)
    with pytest.raises(UserError, match="method"):
        from genlearn import config as cfg

        cfg.build(Config, {"method": "pt"})


def test_prepare_starts_at_base_rate():
    x = torch.rand(500, 1, 28, 28) * torch.linspace(0, 1, 784).view(1, 1, 28, 28)
    model = RBM(Config(n_hidden=10, method="pcd"))
    model.prepare(types.SimpleNamespace(train_x=x), 100)
    p = x.flatten(1).mean(0).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(torch.sigmoid(model.visible_bias), p, atol=1e-5)
    assert model.steps_per_epoch == 5
    assert torch.all(model.chains[:, 0] == 0)  # pixel 0 is never on in x
    freq = model.chains.float().mean(0)
    assert abs(float(freq[600:].mean() - p[600:].mean())) < 0.05


@needs_mnist
@pytest.mark.slow
def test_reconstruction_improves_on_mnist(mnist_full, seed, expect):
    from genlearn.data import mnist

    data = limited(mnist_full, 500)
    torch.manual_seed(seed)
    model = RBM(Config(n_hidden=64, lr=0.1, batch_size=25, seed=seed))
    model.prepare(data, 25)
    valid = {"x": mnist_full.split("valid", binary=True)["x"][:500]}
    torch.manual_seed(seed)
    before = model.evaluate(valid)
    mse_before = F.mse_loss(model.reconstruct(valid["x"]), valid["x"])
    g = torch.Generator().manual_seed(seed)
    with one_thread():
        for _ in range(10):
            for idx in torch.randperm(500, generator=g).split(25):
                stats = model.train_step({"x": mnist.binarize(data.train_x[idx], g)})
    torch.manual_seed(seed)
    after = model.evaluate(valid)
    assert all(math.isfinite(v) for v in stats.values())
    expect("reconstruction gain (nats)", before["recon"] - after["recon"], ">", 40)  # about 201 -> 139
    mse = F.mse_loss(model.reconstruct(valid["x"]), valid["x"])
    expect("reconstruction MSE / before", mse / mse_before, "<", 0.8)


@needs_mnist
def test_cli_ais_of_a_trained_rbm_matches_its_exact_log_likelihood(tmp_path, seed, expect):
    """`genlearn train rbm` then `genlearn eval --metric ais --ais-runs 200 --json`: with 10
    hidden units log Z can be enumerated, and the AIS figures that reach the user (log Z, its
    interval, the test log-likelihood) agree with the exact ones."""
    import json

    from conftest import run_cli
    from genlearn.data import mnist
    from genlearn.registry import load_model

    run = tmp_path / "rbm"
    sets = [
        "n_hidden=10",
        "train_limit=500",
        "epochs=2",
        "eval_every=0",
        "method=pcd",
        "lr=0.05",
        f"seed={seed}",
    ]
    train = run_cli("train", "rbm", "--out", run, "--quiet", "--set", *sets, OMP_NUM_THREADS="1")
    assert train.returncode == 0, train.stderr
    proc = run_cli(
        "eval", run, "--metric", "ais", "--ais-runs", "200", "--seed", seed, "--json", OMP_NUM_THREADS="1"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    model = load_model(run).double()
    log_z = model.log_partition_exact()
    assert out["ais_log_z_low"] <= log_z <= out["ais_log_z_high"]
    expect("AIS log Z, distance from the exact one", abs(out["ais_log_z"] - log_z), "<", 0.1)
    test = mnist.binarize_fixed(mnist.load().test_x.flatten(1)).double()
    with torch.no_grad():
        exact = float((-model.free_energy(test)).mean()) - log_z
    expect(
        "AIS log-likelihood, distance from the exact one", abs(out["ais_log_likelihood"] - exact), "<", 0.1
    )
