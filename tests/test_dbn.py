"""The deep belief network: exact log p(x) of tiny DBNs against brute force, the variational bound
below it (and equal to it when q is the true posterior), the sampler against exact marginals,
the greedy layer schedule, exact resumption across a layer switch, and greedy training that
raises the bound on MNIST."""

from __future__ import annotations

import copy
import itertools
import math
import types

import pytest
import torch
from torch.nn import functional as F

from conftest import limited, needs_mnist, one_thread
from genlearn import config as cfg
from genlearn import registry
from genlearn.errors import UserError
from genlearn.eval.ais import log_likelihood_bound
from genlearn.models.dbn import DBN, Config
from genlearn.models.rbm import RBM


def tiny(n_visible: int, hidden: str, scale: float = 1.0, seed: int = 0, **fields) -> DBN:
    """A small DBN in float64 with weights and biases of the given scale."""
    torch.manual_seed(seed)
    model = DBN(Config(n_visible=n_visible, hidden=hidden, init_std=scale, **fields)).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.visible_bias.normal_(0, scale)
            layer.hidden_bias.normal_(0, scale)
    return model


def all_states(m: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)), dtype=torch.float64)


def log_bernoulli(logits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """log p(states_a | logits_b) for every pair: (len(states), len(logits))."""
    return states @ F.logsigmoid(logits).t() + (1 - states) @ F.logsigmoid(-logits).t()


def params(layer: RBM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(t.detach().double() for t in (layer.W, layer.visible_bias, layer.hidden_bias))


def brute_top_log_marginal(layer: RBM) -> torch.Tensor:
    """log p(h) of the top RBM's visible layer by summing the joint over both layers."""
    W, b, c = params(layer)
    vs, hs = all_states(W.shape[0]), all_states(W.shape[1])
    neg_energy = vs @ W @ hs.t() + (vs @ b)[:, None] + (hs @ c)[None, :]
    return torch.logsumexp(neg_energy, 1) - torch.logsumexp(neg_energy.flatten(), 0)


def exact_bound(model: DBN, x: torch.Tensor) -> torch.Tensor:
    """The two-layer DBN's bound, sum over every h1 of q(h1|x)[log p(x|h1) + log p(h1) - log q(h1|x)],
    by enumeration: no sampling."""
    bottom, top = model.layers
    W, b, c = params(bottom)
    hs = all_states(W.shape[1])
    log_q = log_bernoulli(x @ W + c, hs).t()  # (images, states)
    log_joint = log_bernoulli(hs @ W.t() + b, x) + brute_top_log_marginal(top)[None, :]
    return (log_q.exp() * (log_joint - log_q)).sum(1)


# ---------------------------------------------------------------------------------------------
def test_exact_log_likelihood_matches_brute_force_for_three_layers():
    """log p(x) = log sum_{h1,h2} p(x|h1) p(h1|h2) p(h2), the top RBM's marginal from its joint."""
    model = tiny(6, "4,3,2", scale=1.2)
    l1, l2, l3 = model.layers
    xs, h1, h2 = all_states(6), all_states(4), all_states(3)
    W1, b1, _ = params(l1)
    W2, b2, _ = params(l2)
    log_p_h2 = brute_top_log_marginal(l3)
    log_p_h1_h2 = log_bernoulli(h2 @ W2.t() + b2, h1)  # (h1, h2)
    log_p_x_h1 = log_bernoulli(h1 @ W1.t() + b1, xs)  # (x, h1)
    brute = torch.logsumexp(log_p_x_h1[:, :, None] + log_p_h1_h2[None] + log_p_h2[None, None], (1, 2))
    exact = model.log_likelihood_exact(xs)
    assert torch.allclose(exact, brute, atol=1e-10, rtol=0)
    assert float(torch.logsumexp(exact, 0)) == pytest.approx(0.0, abs=1e-10)  # a distribution over x


def test_single_layer_dbn_is_its_rbm():
    model = tiny(6, "4")
    xs = all_states(6)
    rbm = model.layers[0]
    assert torch.allclose(model.log_likelihood_exact(xs), -rbm.free_energy(xs) - rbm.log_partition_exact())
    terms = model.bound_terms(xs, n_samples=3)  # no hidden layer below the top: -F(x) exactly
    assert torch.allclose(terms, -rbm.free_energy(xs).double(), atol=1e-10)


def test_bound_is_below_exact_log_likelihood_and_the_estimator_is_unbiased():
    model = tiny(8, "5,4", scale=1.5)
    xs = all_states(8)
    exact = model.log_likelihood_exact(xs)
    bound = exact_bound(model, xs)
    gap = exact - bound  # the KL from q(h1|x) to the posterior: >= 0, and not 0 here
    assert float(gap.min()) >= -1e-10 and float(gap.mean()) > 0.05
    g = torch.Generator().manual_seed(0)
    estimate = log_likelihood_bound(
        model, xs, log_z=model.layers[-1].log_partition_exact(), generator=g, n_samples=400
    )
    assert estimate["bound"] == pytest.approx(float(bound.mean()), abs=0.05)  # Monte Carlo error ~0.01
    assert estimate["bound"] < float(exact.mean())


def test_bound_is_exact_when_the_top_rbm_is_the_bottom_one_transposed():
    """Top RBM = bottom RBM with the layers swapped: the DBN is the bottom RBM, q(h1|x) is its true
    posterior, and every single-sample estimate equals log p(x) + log Z (zero variance)."""
    model = tiny(6, "4,6", scale=1.5)
    bottom, top = model.layers
    with torch.no_grad():
        top.W.copy_(bottom.W.t())
        top.visible_bias.copy_(bottom.hidden_bias)
        top.hidden_bias.copy_(bottom.visible_bias)
    xs = all_states(6)
    rbm_exact = -bottom.free_energy(xs) - bottom.log_partition_exact()
    assert torch.allclose(model.log_likelihood_exact(xs), rbm_exact, atol=1e-10)
    terms = model.bound_terms(xs, n_samples=1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(terms - top.log_partition_exact(), rbm_exact, atol=1e-9)


def test_ais_bound_interval_covers_the_exact_log_z_bound():
    model = tiny(10, "8,6", scale=1.0)
    x = (torch.rand(300, 10, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    exact_z = model.layers[-1].log_partition_exact()
    with_exact = log_likelihood_bound(
        model, x, log_z=exact_z, generator=torch.Generator().manual_seed(2), n_samples=5
    )
    with_ais = log_likelihood_bound(model, x, generator=torch.Generator().manual_seed(2), n_samples=5)
    assert with_ais["log_z_low"] <= exact_z <= with_ais["log_z_high"]
    assert abs(with_ais["log_z"] - exact_z) < 0.1
    assert with_exact["bound_low"] == with_exact["bound"] == with_exact["bound_high"]
    assert with_ais["bound_low"] <= with_ais["bound"] <= with_ais["bound_high"]


def test_samples_follow_the_exact_marginals():
    """Gibbs in the top RBM then the top-down pass samples the DBN: the mean of the returned
    p(x|h1) over many chains approaches the exact pixel marginals sum_x p(x) x."""
    model = tiny(6, "4,3", scale=1.5)
    xs = all_states(6)
    marginals = model.log_likelihood_exact(xs).exp() @ xs
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(0), steps=30)
    assert samples.shape == (20_000, 6) and samples.min() >= 0 and samples.max() <= 1
    assert torch.allclose(samples.mean(0), marginals, atol=0.015), (samples.mean(0), marginals)


# ---------------------------------------------------------------------------------------------
def teacher(n: int, seed: int = 0) -> torch.Tensor:
    """n binary 12-pixel vectors: one of three prototypes with 5% of the pixels flipped."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(3, 12, generator=g) < 0.5).float()
    which = torch.randint(0, 3, (n,), generator=g)
    return (prototypes[which] - (torch.rand(n, 12, generator=g) < 0.05).float()).abs()


def test_layers_train_in_turn_on_the_frozen_layers_output():
    data = teacher(400)
    model = DBN(Config(n_visible=12, hidden="8,6", epochs=4, batch_size=100, epochs_per_layer=1.5))
    model.prepare(types.SimpleNamespace(train_x=data), 100)  # 4 steps per epoch: 6 steps of layer 1
    assert [model.layer_at(s) for s in (0, 5, 6, 15)] == [0, 0, 1, 1]
    for _ in range(6):
        stats = model.train_step({"x": data[:100]})
        assert stats["layer"] == 1.0
    assert int(model.layers[1].updates) == 0 and int(model.layers[0].updates) == 6
    frozen = copy.deepcopy(model.layers[0].state_dict())
    upper, seen = model.layers[1], {}

    def record(batch):
        seen["visible_bias"] = upper.visible_bias.detach().clone()
        return RBM.train_step(upper, batch)

    upper.train_step = record
    model.train_step({"x": data[:100]})
    assert int(model.training_layer) == 1 and int(upper.updates) == 1
    for key, value in model.layers[0].state_dict().items():
        assert torch.equal(value, frozen[key]), key
    # the upper RBM started at the base rate of the layer below on the training images
    W, c = model.layers[0].W.detach(), model.layers[0].hidden_bias.detach()
    p = torch.sigmoid(data @ W + c).mean(0).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(torch.sigmoid(seen["visible_bias"]), p, atol=1e-5)
    # an even split when epochs_per_layer is 0
    even = DBN(Config(n_visible=12, hidden="8,6,4", epochs=6, batch_size=100))
    even.prepare(types.SimpleNamespace(train_x=data), 100)
    assert [even.layer_at(s) for s in (0, 7, 8, 15, 16, 23, 99)] == [0, 0, 1, 1, 2, 2, 2]


def test_the_lr_schedule_runs_once_per_layer():
    """Each RBM anneals over its own steps: with a cosine schedule to 0 the learning rate is back at
    its peak when a layer starts and near 0 at the end of each layer, in the training loop itself."""
    from genlearn.train.loop import lr_factor

    data = teacher(400)
    model = DBN(Config(n_visible=12, hidden="8,6", epochs=4, batch_size=100, epochs_per_layer=1.5))
    model.prepare(types.SimpleNamespace(train_x=data), 100)  # 16 steps: 6 of layer 1, 10 of layer 2
    progress = [model.schedule_progress(s, 16) for s in range(16)]
    assert progress[0] == 0.0 and progress[6] == 0.0
    assert progress[5] == pytest.approx(5 / 6) and progress[15] == pytest.approx(9 / 10)
    assert all(a < b for a, b in zip(progress[:5], progress[1:6]))
    assert lr_factor(Config(lr_schedule="cosine", lr_final=0.0), 6, progress[6]) == 1.0
    assert registry.create("vae").schedule_progress(4, 16) == 0.25  # no phases: the whole run


@needs_mnist
def test_the_loop_anneals_each_layer_from_its_peak(mnist_full, tmp_path):
    """In `loop.fit` itself, with a cosine schedule to 0: the logged learning rate starts at its
    peak for each layer and falls to near 0 by each layer's last step."""
    import json

    from genlearn.train import loop

    sets = dict(hidden="8,6", epochs=4, batch_size=100, epochs_per_layer=1.5, lr_schedule="cosine")
    config = registry.make_config("dbn", {**sets, "lr_final": 0.0, "log_every": 1, "eval_every": 0})
    model = registry.instantiate("dbn", config)
    with one_thread():
        loop.fit(model, config, tmp_path, "dbn", progress=False, data=limited(mnist_full, 400))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    lr = [r["lr"] for r in map(json.loads, lines) if "split" not in r and "lr" in r]
    assert len(lr) == 16  # 6 steps of layer 1, 10 of layer 2
    peak = config.lr
    assert lr[0] == pytest.approx(peak) and lr[6] == pytest.approx(peak)  # each layer starts at its peak
    assert lr[5] < 0.1 * peak and lr[15] < 0.1 * peak  # and ends near 0
    assert all(a > b for a, b in zip(lr[:5], lr[1:6])) and all(a > b for a, b in zip(lr[6:15], lr[7:16]))


@pytest.mark.parametrize("propagate", ["sample", "mean"])
def test_what_the_frozen_layers_pass_up(propagate):
    data = teacher(100)
    model = DBN(Config(n_visible=12, hidden="8,6", epochs=2, batch_size=100, propagate=propagate))
    model.prepare(types.SimpleNamespace(train_x=data), 100)
    model.train_step({"x": data})
    upper, seen = model.layers[1], {}

    def record(batch):
        seen["x"] = batch["x"]
        return RBM.train_step(upper, batch)

    upper.train_step = record
    model.train_step({"x": data})
    h = seen["x"]
    assert h.shape == (100, 8)
    binary = bool(((h == 0) | (h == 1)).all())
    assert binary == (propagate == "sample")


def test_resume_is_bit_exact_across_the_layer_switch():
    data = teacher(400)
    batches = data.split(100)
    config = Config(
        n_visible=12, hidden="8,6", epochs=2, batch_size=100, method="pcd", k=2, momentum_epochs=0.5
    )

    def fresh(seed):
        torch.manual_seed(seed)
        model = DBN(copy.deepcopy(config))
        model.prepare(types.SimpleNamespace(train_x=data), 100)
        return model

    a = fresh(0)
    torch.manual_seed(11)
    for batch in batches[:3]:  # the switch to layer 2 comes at step 4
        a.train_step({"x": batch})
    saved = copy.deepcopy((a.state_dict(), {k: o.state_dict() for k, o in a.optimizers.items()}))
    rng = torch.get_rng_state()
    for batch in [*batches[3:], *batches]:
        a.train_step({"x": batch})

    b = fresh(99)
    b.load_state_dict(saved[0])
    for key, opt in b.optimizers.items():
        opt.load_state_dict(saved[1][key])
    torch.set_rng_state(rng)
    for batch in [*batches[3:], *batches]:
        b.train_step({"x": batch})
    assert set(a.state_dict()) == set(b.state_dict())
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert int(b.training_layer) == 1 and int(b.updates) == 8
    assert {"training_layer", "updates", "layers.1.chains", "layers.1.updates"} <= set(b.state_dict())


def test_contract_config_evaluate_and_shapes():
    with pytest.raises(UserError, match="hidden"):
        cfg.build(Config, {"hidden": "500,x"})
    with pytest.raises(UserError, match="hidden"):
        cfg.build(Config, {"hidden": "0"})
    assert cfg.build(Config, {"hidden": "500, 2000"}).layer_sizes() == (784, 500, 2000)
    default = DBN(Config())
    assert [tuple(layer.W.shape) for layer in default.layers] == [(784, 500), (500, 2000)]
    assert default.data_kind == "binary" and default.image_shape == (1, 28, 28)
    assert set(default.optimizers) == {"layer1", "layer2"}
    model = tiny(12, "8,6").float()
    data = teacher(50)
    out = model.evaluate({"x": data})
    assert set(out) == {"layer", "recon", "bound"} and all(math.isfinite(v) for v in out.values())
    assert model.features(data).shape == (50, 14)
    assert model.reconstruct(data).shape == (50, 12)
    s1 = model.sample(5, generator=torch.Generator().manual_seed(0), steps=10)
    s2 = model.sample(5, generator=torch.Generator().manual_seed(0), steps=10)
    assert torch.equal(s1, s2)
    with pytest.raises(UserError, match="enumerates"):
        DBN(Config(n_visible=12, hidden="20,4")).log_likelihood_exact(data)


@needs_mnist
@pytest.mark.slow
def test_greedy_training_raises_the_bound_on_mnist(mnist_full, seed, expect):
    """784-64-16 on 2,000 images, 5 epochs per layer: the bound on validation images (exact
    log Z of the small top RBM) rises while layer 1 trains and again while layer 2 trains."""
    from genlearn.data import mnist

    data = limited(mnist_full, 2000)
    valid = mnist_full.split("valid", binary=True)["x"][:1000]
    torch.manual_seed(seed)
    model = DBN(Config(hidden="64,16", epochs=10, batch_size=50, seed=seed))
    model.prepare(data, 50)

    def bound() -> float:
        out = log_likelihood_bound(
            model,
            valid,
            log_z=model.layers[-1].log_partition_exact(),
            generator=torch.Generator().manual_seed(seed + 1),
            n_samples=5,
        )
        return out["bound"]

    g = torch.Generator().manual_seed(seed)
    bounds = [bound()]  # about -203: independent pixels at the base rate
    with one_thread():
        for epoch in range(10):
            for idx in torch.randperm(2000, generator=g).split(50):
                model.train_step({"x": mnist.binarize(data.train_x[idx], g)})
            if epoch in (4, 9):
                bounds.append(bound())
    assert int(model.training_layer) == 1
    initial, after_layer1, after_layer2 = bounds  # about -203, -179, -167
    expect("bound gain of layer 1 (nats)", after_layer1 - initial, ">", 15)
    expect("bound gain of layer 2 (nats)", after_layer2 - after_layer1, ">", 5)
