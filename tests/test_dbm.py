"""The deep Boltzmann machine: exact log Z and log p*(v) against brute force over all three layers
(whichever layer is enumerated), AIS over h1 against the exact value, the mean-field bound below
log p(v) and tightening with more rounds, the doubled pretraining RBMs and their composition,
joint training as PCD on mean-field statistics, persistent chains that sample the model, exact
resumption across the phases, and training that raises the bound on MNIST."""

from __future__ import annotations

import copy
import itertools
import math
import types

import pytest
import torch

from conftest import limited, needs_mnist, one_thread
from genlearn import config as cfg
from genlearn.errors import UserError
from genlearn.eval import ais
from genlearn.eval.ais import log_likelihood_bound
from genlearn.models.dbm import DBM, Config


def tiny(V: int, H1: int, H2: int, scale: float = 1.0, seed: int = 0, **fields) -> DBM:
    """A small DBM with weights and biases of the given scale (float64 unless told otherwise)."""
    torch.manual_seed(seed)
    model = DBM(Config(n_visible=V, n_hidden1=H1, n_hidden2=H2, init_std=scale, **fields)).double()
    with torch.no_grad():
        model.joint.W.normal_(0, scale)
        model.joint.visible_bias.normal_(0, scale)
        model.joint.hidden_bias.normal_(0, scale)
    return model


def all_states(m: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)), dtype=torch.float64)


def brute_negative_energy(model: DBM) -> torch.Tensor:
    """-E(v, h1, h2) for every state of the three layers, (2^V, 2^H1, 2^H2), from the energy
    written out with W1, W2 and the biases."""
    W1, W2, b, c1, c2 = (
        t.detach().double()
        for t in (model.W1, model.W2, model.visible_bias, model.hidden_bias1, model.hidden_bias2)
    )
    v, h1, h2 = all_states(model.n_visible), all_states(model.n_hidden1), all_states(model.n_hidden2)
    return (
        (v @ W1 @ h1.t())[:, :, None]
        + (h1 @ W2 @ h2.t())[None]
        + (v @ b)[:, None, None]
        + (h1 @ c1)[None, :, None]
        + (h2 @ c2)[None, None, :]
    )


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
def test_exact_log_z_and_log_p_star_do_not_depend_on_the_enumerated_layer():
    model = tiny(5, 4, 3, scale=1.3)
    neg_energy = brute_negative_energy(model)
    brute = float(torch.logsumexp(neg_energy.flatten(), 0))
    assert model.log_partition_exact("h1") == pytest.approx(brute, abs=1e-9)
    assert model.log_partition_exact("v+h2") == pytest.approx(brute, abs=1e-9)
    assert model.log_partition_exact() == pytest.approx(brute, abs=1e-9)
    vs = all_states(5)
    brute_v = torch.logsumexp(neg_energy.flatten(1), 1)
    for layer in ("h1", "h2"):
        assert torch.allclose(model.log_unnormalised_exact(vs, layer), brute_v, atol=1e-10, rtol=0), layer
    assert float(torch.logsumexp(model.log_likelihood_exact(vs), 0)) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(UserError, match="layer"):
        model.log_partition_exact("h2")


def test_h1_marginal_is_tractable():
    """Given h1, v and h2 are independent, so p*(h1) = sum_{v,h2} exp(-E) is the free energy of the
    RBM view that AIS anneals: the two agree with brute force for every h1."""
    model = tiny(5, 4, 3, scale=1.3)
    view = model.partition_rbm()
    h1 = all_states(4)
    W, b, c = (t.double() for t in (view.W, view.visible_bias, view.hidden_bias))
    log_p_star = h1 @ b + torch.nn.functional.softplus(h1 @ W + c).sum(1)
    brute = torch.logsumexp(brute_negative_energy(model).permute(1, 0, 2).flatten(1), 1)
    assert torch.allclose(log_p_star, brute, atol=1e-5, rtol=0)  # the view is float32


@pytest.mark.parametrize("base", ["uniform", "base-rate"])
def test_ais_agrees_with_exact_log_z(base):
    model = tiny(12, 8, 6, scale=0.8, seed=1)
    exact = model.log_partition_exact()
    base_bias = None
    if base == "base-rate":
        data = (torch.rand(300, 12, generator=gen(3)) < 0.3).double()
        base_bias = model.ais_base_bias(data)
        assert base_bias.shape == (8,)
    log_z, low, high = ais.dbm_log_partition(model, base_bias=base_bias, generator=gen(0))
    assert low <= exact <= high, (low, exact, high)
    assert abs(log_z - exact) < 0.1
    assert high - low < 0.5


def test_short_schedule_is_within_its_wider_interval():
    model = tiny(12, 8, 6, scale=1.0, seed=2)
    exact = model.log_partition_exact()
    log_z, low, high = ais.dbm_log_partition(model, betas=torch.linspace(0, 1, 301), generator=gen(0))
    assert low <= exact <= high, (low, exact, high)
    long = ais.dbm_log_partition(model, generator=gen(0))
    assert long[2] - long[1] < high - low


def test_variational_bound_is_below_log_p_and_tightens_with_mean_field_rounds():
    model = tiny(8, 5, 4, scale=1.0)
    vs = all_states(8)
    exact = model.log_unnormalised_exact(vs)
    previous = None
    for steps in (0, 1, 2, 5, 30):
        bound = model.variational_bound(vs, steps)
        assert bool((bound <= exact + 1e-10).all()), steps
        if previous is not None:  # each round maximises over one layer given the other
            assert bool((bound >= previous - 1e-10).all()), steps
        previous = bound
    first, last = model.variational_bound(vs, 0), previous
    assert float((last - first).mean()) > 0.05  # mean field moved the bound
    assert float((exact - last).mean()) > 1e-3  # and q is not the posterior
    # the bound with exact log Z is below the exact log-likelihood
    out = log_likelihood_bound(model, vs, log_z=model.log_partition_exact())
    assert out["bound"] < float(model.log_likelihood_exact(vs).mean())
    assert out["bound"] == pytest.approx(float(last.mean()) - model.log_partition_exact(), abs=1e-9)


def test_mean_field_is_a_fixed_point_of_its_updates():
    model = tiny(8, 5, 4, scale=0.5)
    vs = all_states(8)
    mu1, mu2, _, _ = model.mean_field(vs, 200)
    W1, W2, c1, c2 = (t.detach() for t in (model.W1, model.W2, model.hidden_bias1, model.hidden_bias2))
    assert torch.allclose(mu1, torch.sigmoid(vs @ W1 + mu2 @ W2.t() + c1), atol=1e-10)
    assert torch.allclose(mu2, torch.sigmoid(mu1 @ W2 + c2), atol=1e-10)


# ---------------------------------------------------------------------------------------------
def test_pretraining_rbms_double_one_side_and_compose_into_the_dbm():
    model = tiny(6, 4, 3)
    bottom, top = model.bottom, model.top
    with torch.no_grad():
        for rbm in (bottom, top):
            for p in rbm.parameters():
                p.normal_()
    v, h1, h2 = (torch.rand(5, n, dtype=torch.float64) for n in (6, 4, 3))
    Wb, bb, cb = (t.detach() for t in (bottom.W, bottom.visible_bias, bottom.hidden_bias))
    Wt, bt, ct = (t.detach() for t in (top.W, top.visible_bias, top.hidden_bias))
    assert torch.allclose(bottom.hidden_input(v), cb + 2 * v @ Wb)  # visible input counted twice
    assert torch.allclose(bottom.visible_input(h1), bb + h1 @ Wb.t())
    assert torch.allclose(top.hidden_input(h1), ct + h1 @ Wt)
    assert torch.allclose(top.visible_input(h2), bt + 2 * h2 @ Wt.t())  # hidden input counted twice
    model.compose()
    assert torch.equal(model.W1, Wb) and torch.equal(model.W2, Wt)
    assert torch.equal(model.visible_bias, bb) and torch.equal(model.hidden_bias2, ct)
    assert torch.allclose(model.hidden_bias1, (cb + bt) / 2)


def teacher(n: int, V: int = 12, seed: int = 0) -> torch.Tensor:
    """n binary vectors: one of three prototypes with 5% of the pixels flipped."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(3, V, generator=g) < 0.5).float()
    which = torch.randint(0, 3, (n,), generator=g)
    return (prototypes[which] - (torch.rand(n, V, generator=g) < 0.05).float()).abs()


def test_phases_follow_the_schedule():
    data = teacher(400)
    model = DBM(Config(n_visible=12, n_hidden1=6, n_hidden2=4, batch_size=100, pretrain_epochs=1.5))
    model.prepare(types.SimpleNamespace(train_x=data), 100)  # 4 steps per epoch: 6 per RBM
    assert [model.phase_at(s) for s in (0, 5, 6, 11, 12, 1000)] == [0, 0, 1, 1, 2, 2]
    stats = [model.train_step({"x": data[:100]}) for _ in range(12)]
    assert torch.equal(model.W1, model.bottom.W) and torch.equal(model.W2, model.top.W)  # composed
    stats += [model.train_step({"x": data[:100]}) for _ in range(2)]
    assert [s["phase"] for s in stats] == [0.0] * 6 + [1.0] * 6 + [2.0] * 2
    # each step reports the lr of the RBM it trained (metrics.jsonl logs it)
    assert [s["lr"] for s in stats] == [model.config.pretrain_lr] * 12 + [model.config.lr] * 2
    assert [int(getattr(model, n).updates) for n in ("bottom", "top", "joint")] == [6, 6, 2]
    assert not torch.equal(model.W1, model.bottom.W)  # joint training moves the DBM's own weights
    # the top RBM started at the base rate of the bottom RBM's doubled p(h1 | v) on the data
    fresh = DBM(
        Config(n_visible=12, n_hidden1=6, n_hidden2=4, batch_size=100, pretrain_epochs=1.5, pretrain_lr=0)
    )
    fresh.prepare(types.SimpleNamespace(train_x=data), 100)
    for _ in range(7):
        fresh.train_step({"x": data[:100]})
    p = fresh.bottom_up(data, sample=False).mean(0).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(torch.sigmoid(fresh.top.visible_bias.detach()), p, atol=1e-5)
    # no pretraining: joint training from the first step
    direct = DBM(Config(n_visible=12, n_hidden1=6, n_hidden2=4, batch_size=100, pretrain_epochs=0))
    assert direct.train_step({"x": data[:100]})["phase"] == 2.0


def test_the_lr_schedule_runs_once_per_phase():
    data = teacher(400)
    model = DBM(Config(n_visible=12, n_hidden1=6, n_hidden2=4, batch_size=100, pretrain_epochs=1.5))
    model.prepare(types.SimpleNamespace(train_x=data), 100)  # 6 steps per RBM, then joint
    progress = [model.schedule_progress(s, 22) for s in range(22)]
    assert progress[0] == progress[6] == progress[12] == 0.0  # each phase starts at the top
    assert progress[5] == progress[11] == pytest.approx(5 / 6)
    assert progress[21] == pytest.approx(9 / 10)


def test_joint_update_is_mean_field_data_term_minus_chain_term():
    """One joint step with plain SGD: the change of each parameter is lr times (data statistics
    under mean field) minus (model statistics from the persistent chains it left behind)."""
    data = teacher(50)
    model = DBM(
        Config(
            n_visible=12, n_hidden1=6, n_hidden2=4, batch_size=50, pretrain_epochs=0, lr=0.1,
            momentum=0.0, momentum_final=0.0, weight_decay=0.0, mf_steps=7, init_std=0.5,
        )
    )  # fmt: skip
    model.train_step({"x": data})  # starts the chains
    W1, W2, b, c1, c2 = (
        t.detach().clone()
        for t in (model.W1, model.W2, model.visible_bias, model.hidden_bias1, model.hidden_bias2)
    )
    mu1, mu2, _, _ = model.mean_field(data, 7)
    mu1 = torch.sigmoid(data @ W1 + mu2 @ W2.t() + c1)  # the half-step the gradient takes
    model.train_step({"x": data})
    chains = model.joint.chains.float()
    v_neg, h2_neg = chains[:, :12], chains[:, 12:]
    p1_neg = torch.sigmoid(v_neg @ W1 + h2_neg @ W2.t() + c1)
    n = len(data)
    expected = {
        "W1": W1 + 0.1 * (data.t() @ mu1 - v_neg.t() @ p1_neg) / n,
        "W2": W2 + 0.1 * (mu1.t() @ mu2 - p1_neg.t() @ h2_neg) / n,
        "visible_bias": b + 0.1 * (data - v_neg).mean(0),
        "hidden_bias1": c1 + 0.1 * (mu1 - p1_neg).mean(0),
        "hidden_bias2": c2 + 0.1 * (mu2 - h2_neg).mean(0),
    }
    for name, value in expected.items():
        assert torch.allclose(getattr(model, name), value, atol=1e-5), name


def test_centred_joint_update_is_the_centred_dbm_gradient():
    """Centring (Montavon & Mueller 2012): with offsets a (v), b1 (h1), a2 (h2), one plain SGD
    step changes the weights by lr times the centred statistics <(v - a)(h1 - b1)^T> and
    <(h1 - b1)(h2 - a2)^T> (data under mean field minus chains), and each bias by its plain step
    minus what the weight steps move it through the offsets; the offsets start at the layers'
    means when joint training begins."""
    data = teacher(50)
    model = DBM(
        Config(
            n_visible=12, n_hidden1=6, n_hidden2=4, batch_size=50, pretrain_epochs=0, lr=0.1,
            momentum=0.0, momentum_final=0.0, weight_decay=0.0, mf_steps=7, init_std=0.5, centred=True,
        )
    )  # fmt: skip
    mu1, mu2, _, _ = model.mean_field(data)
    half = torch.sigmoid(data @ model.W1.detach() + mu2 @ model.W2.detach().t() + model.hidden_bias1.detach())
    model.train_step({"x": data})  # starts the chains and sets the offsets, then one step moves them
    rate, joint = model.config.offset_rate, model.joint
    # started at the means of [v, mu2] and mu1, then moved towards the step's [v, mu2] and h1 means
    assert torch.allclose(joint.visible_offset, torch.cat([data, mu2], 1).mean(0), atol=1e-6)
    assert torch.allclose(joint.hidden_offset, (1 - rate) * mu1.mean(0) + rate * half.mean(0), atol=1e-6)
    W1, W2, b, c1, c2 = (
        t.detach().clone()
        for t in (model.W1, model.W2, model.visible_bias, model.hidden_bias1, model.hidden_bias2)
    )
    offsets = joint.visible_offset.clone(), joint.hidden_offset.clone()
    a, a2, b1 = offsets[0][:12], offsets[0][12:], offsets[1]
    m1, m2, _, _ = model.mean_field(data, 7)
    m1 = torch.sigmoid(data @ W1 + m2 @ W2.t() + c1)  # the half-step the gradient takes
    model.train_step({"x": data})
    chains = joint.chains.float()
    v_neg, h2_neg = chains[:, :12], chains[:, 12:]
    p1_neg = torch.sigmoid(v_neg @ W1 + h2_neg @ W2.t() + c1)
    n = len(data)
    dW1 = 0.1 * ((data - a).t() @ (m1 - b1) - (v_neg - a).t() @ (p1_neg - b1)) / n
    dW2 = 0.1 * ((m1 - b1).t() @ (m2 - a2) - (p1_neg - b1).t() @ (h2_neg - a2)) / n
    expected = {
        "W1": W1 + dW1,
        "W2": W2 + dW2,
        "visible_bias": b + 0.1 * (data - v_neg).mean(0) - dW1 @ b1,
        "hidden_bias1": c1 + 0.1 * (m1 - p1_neg).mean(0) - dW1.t() @ a - dW2 @ a2,
        "hidden_bias2": c2 + 0.1 * (m2 - h2_neg).mean(0) - dW2.t() @ b1,
    }
    for name, value in expected.items():
        assert torch.allclose(getattr(model, name), value, atol=1e-5), name
    assert torch.allclose(joint.hidden_offset, (1 - rate) * b1 + rate * m1.mean(0), atol=1e-6)
    assert torch.allclose(
        joint.visible_offset, (1 - rate) * offsets[0] + rate * torch.cat([data, m2], 1).mean(0)
    )


def test_persistent_chains_sample_the_dbm():
    """With the weights held still (lr = 0) the chains are a Gibbs sampler of the DBM: their pixel
    frequencies approach the exact marginals sum_v p(v) v."""
    model = tiny(8, 5, 4, scale=1.0, pretrain_epochs=0, lr=0.0, batch_size=4000).float()
    vs = all_states(8)
    marginals = (model.log_likelihood_exact(vs).exp() @ vs).float()
    data = torch.zeros(4000, 8)
    for _ in range(40):
        model.train_step({"x": data})
    freq = model.joint.chains[:, :8].float().mean(0)
    assert torch.allclose(freq, marginals, atol=0.03), (freq, marginals)
    samples = model.sample(4000, generator=gen(0), steps=40)
    assert samples.shape == (4000, 8)
    assert torch.allclose(samples.mean(0), marginals, atol=0.03)


@pytest.mark.parametrize("centred", [False, True])
def test_resume_is_bit_exact_across_the_phases(centred):
    data = teacher(400)
    batches = data.split(100)
    config = Config(
        n_visible=12, n_hidden1=6, n_hidden2=4, batch_size=100, pretrain_epochs=1.0, pretrain_method="pcd",
        gibbs_steps=2, mf_steps=3, momentum_epochs=0.5, centred=centred,
    )  # fmt: skip

    def fresh(seed):
        torch.manual_seed(seed)
        model = DBM(copy.deepcopy(config))
        model.prepare(types.SimpleNamespace(train_x=data), 100)
        return model

    stream = [*batches, *batches, *batches]  # bottom: steps 0-3, top: 4-7, joint: 8-11
    for stop in (3, 6, 9):
        a = fresh(0)
        torch.manual_seed(11)
        for batch in stream[:stop]:
            a.train_step({"x": batch})
        saved = copy.deepcopy((a.state_dict(), {k: o.state_dict() for k, o in a.optimizers.items()}))
        rng = torch.get_rng_state()
        for batch in stream[stop:]:
            a.train_step({"x": batch})

        b = fresh(99)
        b.load_state_dict(saved[0])
        for key, opt in b.optimizers.items():
            opt.load_state_dict(saved[1][key])
        torch.set_rng_state(rng)
        for batch in stream[stop:]:
            b.train_step({"x": batch})
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), (stop, key)
        assert int(b.phase) == 2 and int(b.updates) == 12
    assert {"phase", "updates", "joint.chains", "joint.W", "bottom.W", "top.W"} <= set(b.state_dict())
    assert ("joint.visible_offset" in b.state_dict()) == centred


def test_contract_config_evaluate_and_shapes():
    default = DBM(Config())
    assert (tuple(default.W1.shape), tuple(default.W2.shape)) == ((784, 500), (500, 1000))
    assert default.data_kind == "binary" and default.image_shape == (1, 28, 28)
    assert set(default.optimizers) == {"bottom", "top", "joint"}
    with pytest.raises(UserError, match="pretrain_method"):
        cfg.build(Config, {"pretrain_method": "pt"})
    model = tiny(12, 6, 4).float()
    data = teacher(50)
    out = model.evaluate({"x": data})
    assert set(out) == {"phase", "recon", "bound", "log_likelihood"}
    assert all(math.isfinite(v) for v in out.values()) and out["bound"] <= out["log_likelihood"] + 1e-4
    assert model.features(data).shape == (50, 10)
    assert model.reconstruct(data).shape == (50, 12)
    s1 = model.sample(5, generator=gen(0), steps=10)
    assert s1.shape == (5, 12) and torch.equal(s1, model.sample(5, generator=gen(0), steps=10))
    with pytest.raises(UserError, match="limit"):
        DBM(Config(n_visible=12, n_hidden1=20, n_hidden2=20)).log_unnormalised_exact(data)


@needs_mnist
@pytest.mark.slow
def test_training_raises_the_bound_on_mnist(mnist_full, seed, expect):
    """784-16-16 on 2,000 images: 3 epochs per pretraining RBM, then 4 of joint training. The bound
    on validation images (exact log Z) rises with pretraining and again with joint training, and
    stays close to the exact log-likelihood."""
    from genlearn.data import mnist

    data = limited(mnist_full, 2000)
    valid = mnist_full.split("valid", binary=True)["x"][:1000]
    torch.manual_seed(seed)
    model = DBM(Config(n_hidden1=16, n_hidden2=16, pretrain_epochs=3, epochs=10, batch_size=50, seed=seed))
    model.prepare(data, 50)

    def bound() -> float:
        return log_likelihood_bound(model, valid, log_z=model.log_partition_exact())["bound"]

    g = torch.Generator().manual_seed(seed)
    bounds = [bound()]  # about -203: independent pixels at the base rate
    with one_thread():
        for epoch in range(10):
            for idx in torch.randperm(2000, generator=g).split(50):
                model.train_step({"x": mnist.binarize(data.train_x[idx], g)})
            if epoch in (5, 9):
                bounds.append(bound())
    initial, pretrained, joint = bounds  # about -203, -183, -179
    assert int(model.phase) == 2
    expect("bound gain of pretraining (nats)", pretrained - initial, ">", 10)
    expect("bound gain of joint training (nats)", joint - pretrained, ">", 1)
    exact = float(model.log_likelihood_exact(valid[:200]).mean())
    gap = exact - log_likelihood_bound(model, valid[:200], log_z=model.log_partition_exact())["bound"]
    assert gap >= 0  # a bound, exactly
    expect("exact log-likelihood - bound (nats)", gap, "<", 1.0)
