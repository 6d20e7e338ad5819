"""alignDRAW: the alignment over words, the learned prior, captions in batches and alone, the
vocabulary, training on real captioned composites, exact resumption, and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import assert_user_error, needs_mnist, one_thread, resume_then_compare, run_cli, run_main
from genlearn import registry
from genlearn.errors import UserError
from genlearn.models.aligndraw import AlignDRAW, kl_gaussians

SMALL = dict(T=3, enc_size=16, dec_size=16, z_size=4, read_n=3, write_n=3, lang_size=8, align_size=8)
SMALL_SETS = [f"{k}={v}" for k, v in SMALL.items()]
SEEN = "the digit 3 is on the left of the digit 8 ."


def small(**extra) -> AlignDRAW:
    return registry.create("aligndraw", **(SMALL | extra))


def test_registered_preset_is_the_papers():
    c = registry.make_config("aligndraw")
    assert (c.T, c.enc_size, c.dec_size, c.z_size, c.read_n, c.write_n) == (32, 300, 300, 150, 8, 8)
    assert (c.lang_size, c.align_size, c.height, c.width, c.optimizer, c.lr) == (
        128,
        512,
        60,
        60,
        "rmsprop",
        1e-3,
    )
    assert c.dataset == "mnist-captions"


def test_vocabulary_is_the_datas():
    from genlearn.data import captions

    assert small().words == captions.VOCAB


def test_kl_between_gaussians_is_exact():
    g = torch.Generator().manual_seed(0)
    mu_q, logvar_q, mu_p, log_sigma_p = (torch.randn(5, 7, generator=g) for _ in range(4))
    q = torch.distributions.Normal(mu_q, torch.exp(0.5 * logvar_q))
    p = torch.distributions.Normal(mu_p, torch.exp(log_sigma_p))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    got = kl_gaussians(torch.cat([mu_q, logvar_q], -1), mu_p, log_sigma_p)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_alignment_sums_to_one_and_padding_gets_none():
    model = small()
    captions = [SEEN, "the digit 3 is on the left of the digit 8", "the digit 7", "7"]
    frames, windows, alphas, got = model.sample_alignments(
        4, torch.Generator().manual_seed(0), captions=captions
    )
    assert got == captions
    assert frames.shape == (3, 4, 1, 60, 60) and windows.shape == (3, 4, 4) and alphas.shape == (3, 4, 12)
    torch.testing.assert_close(alphas.sum(-1), torch.ones(3, 4))
    lengths = [12, 11, 3, 1]
    for i, n in enumerate(lengths):
        assert bool((alphas[:, i, n:] == 0).all()), f"caption {i} gives weight to padding"
        assert bool((alphas[:, i, :n] > 0).all())


def test_alignment_energies_in_blocks_equal_the_whole_batch():
    """Evaluation computes e_j through a reused buffer, a block of captions at a time (with a
    last block shorter than the rest); the values must be those of the one-shot expression."""
    model = small()
    g = torch.Generator().manual_seed(3)
    u_lang = torch.randn(23, 12, model.config.align_size, generator=g)
    w_dec = torch.randn(23, model.config.align_size, generator=g)
    with torch.no_grad():
        blocked = model.energies(u_lang, w_dec, rows=5)
        whole = torch.tanh(u_lang + w_dec.unsqueeze(1)) @ model.align_v
    assert blocked.shape == (23, 12)
    torch.testing.assert_close(blocked, whole, rtol=0, atol=0)


def test_a_batch_of_captions_gives_what_each_caption_gives_alone():
    model = small().eval()
    captions = [
        SEEN,
        "the digit 7 is at the top left of the image",
        "the digit 1",
        "the digit 0 is at the top",
    ]
    tokens, mask = model.tokenize(captions)
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((4, 3600), 0.2), generator=g)
    eps = torch.randn(model.T, 4, model.config.z_size, generator=g)
    with torch.no_grad():
        recon, kl = model.loss_terms(x, tokens, mask, eps=eps)
        for i, text in enumerate(captions):
            t1, m1 = model.tokenize([text])
            r1, k1 = model.loss_terms(x[i : i + 1], t1, m1, eps=eps[:, i : i + 1])
            torch.testing.assert_close(r1, recon[i : i + 1], rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(k1, kl[i : i + 1], rtol=1e-5, atol=1e-4)
    # and in generation, on the mean path (tau = 0: no noise, so nothing depends on the batch's
    # draws): each caption's canvases and alignments over all T steps, with or without the others
    frames, _, alphas, _ = model.sample_alignments(4, None, 0.0, captions=captions)
    for i, text in enumerate(captions):
        one_frames, _, one, _ = model.sample_alignments(1, None, 0.0, captions=[text])
        n = len(model.tokenize([text])[0][0])
        torch.testing.assert_close(one[:, 0, :n], alphas[:, i, :n], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(one_frames[:, 0], frames[:, i], rtol=1e-4, atol=1e-5)


def test_prior_at_the_first_step_is_the_standard_normal(monkeypatch):
    """With T = 1 the KL term is KL(Q(z_1) || N(0, I)) in closed form, whatever the prior's
    weights; with T = 2 it depends on them (P(z_2 | h^dec_1) is learned)."""
    from genlearn.models import aligndraw

    posteriors = []

    def spy(mean, logvar, generator=None, eps=None):
        posteriors.append(torch.cat([mean, logvar], dim=-1))
        return reparameterize(mean, logvar, generator, eps)

    reparameterize = aligndraw.reparameterize
    monkeypatch.setattr(aligndraw, "reparameterize", spy)
    for T, depends in ((1, False), (2, True)):
        model = small(T=T).eval()
        tokens, mask = model.tokenize([SEEN, "the digit 4"])
        x = torch.bernoulli(torch.full((2, 3600), 0.3), generator=torch.Generator().manual_seed(0))
        eps = torch.randn(T, 2, model.config.z_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            posteriors.clear()
            before = model.loss_terms(x, tokens, mask, eps=eps)[1]
            if T == 1:  # KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum(sigma^2 + mu^2 - 1 - log sigma^2)
                mu, logvar = posteriors[0].chunk(2, dim=-1)
                exact = 0.5 * (logvar.exp() + mu.square() - 1 - logvar).sum(-1)
                torch.testing.assert_close(before, exact, rtol=1e-5, atol=1e-5)
            start = sum(model.sizes[:3])
            model.dec_out.weight[:, start : start + model.sizes[3]] += 3.0
            model.dec_out.bias[start : start + model.sizes[3]] += 1.0
            after = model.loss_terms(x, tokens, mask, eps=eps)[1]
        assert bool((before != after).any()) == depends, (T, before, after)


def test_temperature_scales_the_draws_around_the_priors_mean_path():
    """tau = 1 is the model's own sampler, draw for draw; tau = 0 is the mean path, the same
    whatever the seed; in between, samples move towards it."""
    model = small(T=4).eval()
    caps = [SEEN] * 3

    def draw(seed: int, **kw) -> torch.Tensor:
        return model.sample(3, generator=torch.Generator().manual_seed(seed), captions=caps, **kw)

    # tau = 1 draws what the step-by-step sampler draws from the same seed
    frames, _ = model.sample_canvases(3, torch.Generator().manual_seed(0), captions=caps)
    assert torch.equal(frames[-1], draw(0))
    mean_path = draw(0, temperature=0.0)
    assert torch.equal(mean_path, draw(1, temperature=0.0))
    # rows of one batch with one caption agree up to float rounding, not bit for bit: a CPU's
    # matrix-product kernels may round a row differently by where it falls in their blocking
    torch.testing.assert_close(mean_path[0], mean_path[2], rtol=1e-5, atol=1e-6)
    assert not torch.equal(draw(0), draw(1))
    far, near = (float((draw(0, temperature=t) - mean_path).abs().mean()) for t in (1.0, 0.1))
    assert near < 0.2 * far, (near, far)  # about tau times as far (sqrt(tau) would be 0.32)
    frames, _ = model.sample_canvases(3, torch.Generator().manual_seed(0), temperature=0.0, captions=caps)
    assert torch.equal(frames[-1], mean_path)
    with pytest.raises(UserError, match="0 or more"):
        model.sample_in_chunks(2, temperature=-1.0, captions=caps[:2])


def test_temperature_needs_the_ability():
    vae = registry.create("vae", hidden_units=8, latent_dim=2)
    with pytest.raises(UserError, match="temperature"):
        vae.sample_in_chunks(2, temperature=0.5)


@pytest.mark.parametrize(
    "text, says",
    [
        ("the digit seven is on the left", "unknown word 'seven'"),
        ("", "empty caption"),
        ("the digit 3 is on the left of the digit 8 . the digit", "at most 12 words"),
    ],
)
def test_bad_captions_are_refused_with_what_is_allowed(text, says):
    with pytest.raises(UserError, match=says) as err:
        small().sample(1, captions=[text])
    if "unknown" in says:
        assert "the digit is on at left right top bottom of image ." in str(err.value)


def test_captions_are_read_like_a_user_writes_them():
    model = small()
    a, _ = model.tokenize(["The digit 7 is at the top left of the image."])
    b, _ = model.tokenize(["the digit 7 is at the top left of the image ."])
    assert torch.equal(a, b)


def test_default_captions_come_from_the_data_and_need_it():
    model = small()
    with pytest.raises(UserError, match="give captions"):
        model.sample(2)


@needs_mnist
def test_loss_goes_down_on_captioned_mnist(seed, expect):
    from genlearn.data import captions

    data = captions.load(train_limit=2000)
    model = small(T=4, enc_size=32, dec_size=32, z_size=8, lr=3e-3, seed=seed)
    model.prepare(data, 50)
    g = torch.Generator().manual_seed(seed)
    with one_thread():
        losses = [model.train_step(data.batch(torch.arange(50), True, g))["loss"] for _ in range(60)]
    expect("last 10 steps' loss / first 3 steps'", sum(losses[-10:]) / 10 / (sum(losses[:3]) / 3), "<", 0.5)
    drawn = model.default_conditions(50, torch.Generator().manual_seed(0))["captions"]
    valid = {captions.decode(t) for t in data.split("valid", binary=False)["caption"][:1000]}
    assert len(drawn) == 50 and set(drawn) <= valid and len(set(drawn)) > 10


@needs_mnist
def test_resumed_run_equals_uninterrupted(tmp_path):
    resume_then_compare(
        tmp_path, "aligndraw", [*SMALL_SETS, "train_limit=200", "batch_size=50", "eval_every=0"]
    )


@needs_mnist
def test_cli_train_sample_captions_gif_and_bounds(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "train", "aligndraw", "--out", run, "--quiet",
        "--set", *SMALL_SETS, "epochs=1", "train_limit=200", "batch_size=50", "eval_every=0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run / "results.json").read_text())["metrics"]
    coin = 3600 * math.log(2)  # the bound of a canvas of 0.5 everywhere and no KL
    assert 0 < results["nll_bound"] < coin and 0 < results["nll_bound_heldout"] < coin, results
    for name in ("alignment-seen.gif", "alignment-heldout.png", "samples.png", "samples-captions.txt"):
        assert (run / name).exists(), name
    proc = run_main("sample", run, "--caption", "the digit 7 is at the top left of the image .", "--n", 4,
                    "--out", tmp_path / "a.png")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.png").is_file()
    file = tmp_path / "captions.txt"
    file.write_text(f"{SEEN}\n\nthe digit 1 is at the bottom right of the image\n")
    proc = run_main("sample", run, "--captions", file, "--out", tmp_path / "b.gif")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.gif").exists() and (tmp_path / "b.png").exists()
    assert_user_error(
        run_main("sample", run, "--caption", "a cat", "--out", tmp_path / "c.png"), contains="unknown word"
    )
    assert_user_error(
        run_main("sample", run, "--labels", "3", "--out", tmp_path / "d.png"), contains="labels"
    )
    assert_user_error(
        run_main("sample", run, "--captions", file, "--n", 5, "--out", tmp_path / "e.png"),
        contains="multiple",
    )
    assert_user_error(
        run_main("sample", run, "--captions", tmp_path / "none.txt", "--out", tmp_path / "f.png"),
        contains="cannot read",
    )
    out = json.loads(run_main("eval", run, "--metric", "nll", "--json").stdout)
    assert 0 < out["nll_bound"] < coin and 0 < out["nll_bound_heldout"] < coin, out
