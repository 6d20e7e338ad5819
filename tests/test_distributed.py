"""Data parallelism under torchrun: 2 CPU ranks (gloo) train as one process with the combined batch.

Each rank trains on its half of every global batch. The autoencoder is deterministic (no sampling
noise), so the two-rank run and the single-process run see the same global batches and must end
with the same weights, up to float rounding from summing
the gradient in two halves; and the two ranks must hold identical weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch

from genlearn import runs

FIELDS = dict(epochs=1, train_limit=1200, batch_size=100, hidden_units=64, code_dim=8, eval_every=0, seed=3)

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import safetensors.torch, torch
    from genlearn import registry
    from genlearn.train import loop

    out = sys.argv[1]
    fields = eval(sys.argv[2])
    model = registry.create("autoencoder", **fields)
    seen, step = [], model.train_step  # each training image this process trains on, by its pixel sum
    model.train_step = lambda batch: seen.append(batch["x"].flatten(1).sum(1)) or step(batch)
    loop.fit(model, model.config, out, "autoencoder", progress=False)
    rank = int(os.environ.get("RANK", "0"))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["seen"] = torch.stack(seen)  # (steps, rows of the step)
    safetensors.torch.save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
    """
)


def _run(cmd: list[str], tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_ranks_match_each_other_and_one_process(tmp_path: Path) -> None:
    script = tmp_path / "train_once.py"
    script.write_text(SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    _run([str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(ddp), repr(FIELDS)], tmp_path)
    _run([sys.executable, str(script), str(single), repr(FIELDS)], tmp_path)

    rank0 = safetensors.torch.load_file(ddp / "rank0.safetensors")
    rank1 = safetensors.torch.load_file(ddp / "rank1.safetensors")
    alone = safetensors.torch.load_file(single / "rank0.safetensors")
    on_disk = safetensors.torch.load_file(ddp / "model.safetensors")
    params = _parameter_names()
    # each rank trains on its own half of every global batch, and the halves make up the batch
    seen0, seen1, seen = rank0.pop("seen"), rank1.pop("seen"), alone.pop("seen")
    assert seen0.shape == seen1.shape == (12, 50) and seen.shape == (12, 100)
    torch.testing.assert_close(torch.cat([seen0, seen1], 1).sort(1).values, seen.sort(1).values)
    for key in alone:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"
        assert torch.equal(rank0[key], on_disk[key]), f"rank 0 did not write its weights for {key}"
        if key in params:  # running statistics (buffers) come from per-rank batches, as in DDP
            torch.testing.assert_close(rank0[key], alone[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")
    # Only rank 0 writes the run directory: no files from rank 1 besides our own dump.
    assert sorted(p.name for p in ddp.iterdir() if p.suffix != ".png" and p.name != runs.LOCK_FILE) == sorted(
        ["config.toml", "metrics.jsonl", "model.safetensors", "trainer.pt", "results.json", "tensorboard"]
        + ["rank0.safetensors", "rank1.safetensors"]
    )
    # Training did something: the weights are far from their initial values.
    init = _initial_state()
    assert max((alone[k] - init[k]).abs().max().item() for k in params) > 1e-2


def _parameter_names() -> set[str]:
    from genlearn import registry

    return {name for name, _ in registry.create("autoencoder", **FIELDS).named_parameters()}


def _initial_state() -> dict[str, torch.Tensor]:
    from genlearn import registry

    torch.manual_seed(FIELDS["seed"])
    return registry.create("autoencoder", **FIELDS).state_dict()


PCD_FIELDS = dict(method="pcd", n_hidden=20, epochs=1, train_limit=600, batch_size=100, eval_every=0, seed=3)

PCD_SCRIPT = SCRIPT.replace('"autoencoder"', '"rbm"')


@pytest.mark.slow
def test_two_ranks_keep_their_own_pcd_chains(tmp_path: Path) -> None:
    """Persistent chains (`local_buffers`) are each rank's own: neither broadcast from rank 0 at the
    start nor overwritten after each step, while the parameters stay identical on every rank."""
    script = tmp_path / "train_rbm.py"
    script.write_text(PCD_SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(out), repr(PCD_FIELDS)]
    _run(cmd, tmp_path)

    rank0 = safetensors.torch.load_file(out / "rank0.safetensors")
    rank1 = safetensors.torch.load_file(out / "rank1.safetensors")
    assert not torch.equal(rank0["chains"], rank1["chains"]), "rank 1's chains were overwritten by rank 0's"
    from genlearn import registry

    params = {name for name, _ in registry.create("rbm", **PCD_FIELDS).named_parameters()}
    assert params == {"W", "visible_bias", "hidden_bias"}
    for key in params:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"


@pytest.mark.parametrize(
    "name, fields",
    [
        ("rbm", dict(n_hidden=20, method="pcd")),
        ("dbn", dict(hidden="20,10")),
        ("dbm", dict(n_hidden1=20, n_hidden2=10)),
    ],
)
def test_local_buffers_name_the_persistent_chains(name: str, fields: dict) -> None:
    """Every persistent-chain buffer is declared local, and every declared name is a buffer."""
    from genlearn import registry

    model = registry.create(name, **fields)
    buffers = {n for n, _ in model.named_buffers()}
    assert set(model.local_buffers) <= buffers
    assert set(model.local_buffers) == {n for n in buffers if n.split(".")[-1] == "chains"}


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys
    from genlearn import registry
    from genlearn.train import loop

    out, epochs, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
    fields = dict(epochs=epochs, train_limit=600, batch_size=100, hidden_units=32, latent_dim=4,
                  eval_every=0, seed=5, tensorboard=False)
    model = registry.create("vae", **fields)
    loop.fit(model, model.config, out, "vae", resume=resume, progress=False)
    """
)


@pytest.mark.slow
def test_a_stopped_and_resumed_torchrun_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """Each rank draws its own noise (the VAE's reparameterisation): the checkpoint holds every
    rank's RNG state, so a run stopped after one epoch and resumed ends bit for bit where a run that
    never stopped does."""
    script = tmp_path / "fit.py"
    script.write_text(RESUME_SCRIPT)
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2"]
    whole, half = tmp_path / "whole", tmp_path / "half"
    _run([*torchrun, str(script), str(whole), "2", "fresh"], tmp_path)
    _run([*torchrun, str(script), str(half), "1", "fresh"], tmp_path)
    _run([*torchrun, str(script), str(half), "2", "resume"], tmp_path)
    a = safetensors.torch.load_file(whole / "model.safetensors")
    b = safetensors.torch.load_file(half / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    state = torch.load(half / "trainer.pt", weights_only=True)
    assert len(state["rank_rngs"]) == 2 and not torch.equal(*state["rank_rngs"])
