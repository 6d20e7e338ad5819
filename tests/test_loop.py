"""The training loop: exact resumption (after a clean stop, SIGKILL, Ctrl-C), NaN handling,
checkpoint recovery, and what a run directory holds.

Runs are small VAEs on the first 1,000 MNIST images. Reference runs are trained in this process
(one thread, like the subprocesses) and compared bit for bit with runs of `genlearn train`.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import (
    assert_same_trainer_state,
    assert_same_weights,
    assert_user_error,
    cli_args,
    cli_env,
    limited,
    one_thread,
    run_cli,
    run_main,
    step_of,
    trainer_state,
    weights,
)
from genlearn import config as cfg
from genlearn import registry, runs
from genlearn.data import mnist
from genlearn.errors import TrainingError, UserError
from genlearn.models.vae import VAE
from genlearn.train import checkpoint, loop

pytestmark = pytest.mark.slow


def fake_state(step: int, **extra) -> dict:
    """A minimal trainer state with every key `checkpoint.load_trainer` insists on."""
    return {k: 0 for k in checkpoint.TRAINER_KEYS} | {"step": step} | extra


SMALL = {"train_limit": 1000, "batch_size": 100, "hidden_units": 64, "latent_dim": 8}
STEPS_PER_EPOCH = 10
# The long run that gets killed: 1,500 steps, a checkpoint every half second.
LONG = {"eval_every": 0, "checkpoint_every": 0.5, "log_every": 10}
LONG_EPOCHS = 150


def make_config(**over):
    return registry.make_config("vae", {**SMALL, **over})


def fit(run_dir, data, *, resume: bool = False, **over):
    """In-process training of the model `genlearn train vae --set ...` would build."""
    config = make_config(**over)
    with one_thread():
        model = registry.instantiate("vae", config)
        return loop.fit(model, config, run_dir, "vae", resume=resume, progress=False, data=data)


def sets(**over) -> list[str]:
    return [f"{k}={v}" for k, v in {**SMALL, **over}.items()]


def train_records(run_dir) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "split" not in r]


def leftovers(run_dir) -> list[str]:
    return sorted(p.name for p in Path(run_dir).iterdir() if "tmp" in p.name)


@pytest.fixture(scope="module")
def small(mnist_full) -> mnist.MNIST:
    return limited(mnist_full, SMALL["train_limit"])


# --------------------------------------------------------------------------------------------
# Exact resumption


def test_two_epochs_equal_one_epoch_plus_a_resumed_epoch(tmp_path, small):
    fit(tmp_path / "two", small, epochs=2, log_every=5)
    first = run_cli(
        "train",
        "vae",
        "--out",
        tmp_path / "one",
        "--quiet",
        "--set",
        *sets(epochs=1, log_every=5),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert trainer_state(tmp_path / "one")["step"] == STEPS_PER_EPOCH
    proc = run_cli(
        "train", "vae", "--out", tmp_path / "one", "--resume", "--quiet", "--set", "epochs=2", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr

    assert_same_weights(tmp_path / "two", tmp_path / "one")
    assert_same_trainer_state(tmp_path / "two", tmp_path / "one")
    assert trainer_state(tmp_path / "one")["step"] == 2 * STEPS_PER_EPOCH
    # The logged training losses are the same too, and no step is logged twice.
    two, one = train_records(tmp_path / "two"), train_records(tmp_path / "one")
    assert [(r["step"], r["loss"]) for r in one] == [(r["step"], r["loss"]) for r in two]
    results = json.loads((tmp_path / "one" / "results.json").read_text())
    assert results["epochs"] == 2 and results["steps"] == 20
    assert tomllib.loads((tmp_path / "one" / "config.toml").read_text())["epochs"] == 2


def test_time_limit_stops_mid_epoch_and_the_run_resumes_to_the_uninterrupted_weights(tmp_path, small):
    fit(tmp_path / "whole", small, epochs=2, eval_every=0)
    # A budget of a microsecond runs out after the first step.
    stopped = fit(tmp_path / "budget", small, epochs=2, eval_every=0, time_limit=1e-6)
    assert stopped["stopped_by"] == "time_limit"
    assert stopped["steps"] == 1 and stopped["epochs"] == pytest.approx(1 / STEPS_PER_EPOCH)
    assert trainer_state(tmp_path / "budget")["step"] == 1
    done = fit(tmp_path / "budget", small, resume=True, epochs=2, eval_every=0, time_limit=0)
    assert done["stopped_by"] == "epochs" and done["steps"] == 2 * STEPS_PER_EPOCH
    assert_same_weights(tmp_path / "whole", tmp_path / "budget")


def test_initial_weights_come_from_the_seed_alone():
    """`genlearn train` builds its model with registry.instantiate; the runs of the CLI compared
    with in-process runs below (same weights, bit for bit) check that from the other side."""
    config = make_config(seed=5)
    torch.manual_seed(1)
    a = registry.instantiate("vae", config).state_dict()
    torch.rand(1000)  # whatever the global RNG holds
    b = registry.instantiate("vae", config).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = registry.instantiate("vae", make_config(seed=6)).state_dict()
    assert not any(torch.equal(a[k], c[k]) for k in a if k.endswith("weight"))


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory, small) -> Path:
    """The uninterrupted long run."""
    ref = tmp_path_factory.mktemp("long") / "reference"
    fit(ref, small, epochs=LONG_EPOCHS, **LONG)
    assert trainer_state(ref)["step"] == LONG_EPOCHS * STEPS_PER_EPOCH
    return ref


def _start_long_run(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cli_args("train", "vae", "--out", run_dir, "--quiet", "--set", *sets(epochs=LONG_EPOCHS, **LONG)),
        env=cli_env(),
        cwd=run_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_a_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the running process has written its first checkpoint (step > 0)."""
    deadline = time.monotonic() + timeout
    while (step_of(run_dir / "model.safetensors") or 0) == 0:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    time.sleep(0.2)  # and let it train on a little past that checkpoint
    assert proc.poll() is None, "the run finished before it could be stopped; make LONG_EPOCHS larger"


def _assert_finished_like(run_dir: Path, reference: Path) -> None:
    assert_same_weights(reference, run_dir)
    assert_same_trainer_state(reference, run_dir)
    steps = [r["step"] for r in train_records(run_dir)]
    assert steps == [r["step"] for r in train_records(reference)], "metrics.jsonl has lost or repeated steps"
    assert leftovers(run_dir) == []


def test_sigkill_mid_run_resumes_to_the_uninterrupted_weights(long_reference):
    run_dir = long_reference.parent / "killed"
    proc = _start_long_run(run_dir)
    try:
        _wait_for_a_checkpoint(run_dir, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    total = LONG_EPOCHS * STEPS_PER_EPOCH
    mid = trainer_state(run_dir)["step"]
    assert 0 < mid < total, f"the checkpoint left behind is at step {mid}, not mid-run"

    done = run_cli("train", "vae", "--out", run_dir, "--resume", "--quiet", cwd=run_dir.parent)
    assert done.returncode == 0, done.stderr
    assert trainer_state(run_dir)["step"] == total
    _assert_finished_like(run_dir, long_reference)


def test_ctrl_c_saves_exits_130_and_resumes_to_the_uninterrupted_weights(long_reference):
    run_dir = long_reference.parent / "interrupted"
    proc = _start_long_run(run_dir)
    try:
        _wait_for_a_checkpoint(run_dir, proc)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"genlearn train vae --out {run_dir} --resume" in err
    total = LONG_EPOCHS * STEPS_PER_EPOCH
    stopped = trainer_state(run_dir)["step"]
    assert 0 < stopped < total
    # The checkpoint written on Ctrl-C is a consistent pair, with nothing half-written left.
    assert step_of(run_dir / "model.safetensors") == stopped
    assert leftovers(run_dir) == []

    done = run_cli("train", "vae", "--out", run_dir, "--resume", "--quiet", cwd=run_dir.parent)
    assert done.returncode == 0, done.stderr
    _assert_finished_like(run_dir, long_reference)


def test_ctrl_c_before_the_first_checkpoint_claims_no_checkpoint(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mnist, "load", interrupted)
    proc = run_main(
        "train", "vae", "--out", tmp_path / "run", "--quiet", "--set", *sets(epochs=1), cwd=tmp_path
    )
    assert proc.returncode == 130
    assert "nothing was saved" in proc.stderr and "checkpoint" not in proc.stderr, proc.stderr
    assert not (tmp_path / "run" / "trainer.pt").exists()


# --------------------------------------------------------------------------------------------
# NaN / Inf


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, small, bad):
    """The loss of step 6 is computed at the weights left by step 5, so those are not good: the
    checkpoint kept is step 4's, the last whose weights gave a finite loss (at step 5)."""
    config = make_config(epochs=2, checkpoint_every=0, eval_every=0, log_every=1)
    torch.manual_seed(0)
    model = VAE(config)
    real_step, calls, after_step_4 = model.train_step, [], {}

    def train_step(batch):
        calls.append(1)
        if len(calls) == 5:
            after_step_4.update({k: v.clone() for k, v in model.state_dict().items()})
        return real_step(batch) if len(calls) <= 5 else {"loss": bad}

    model.train_step = train_step
    with one_thread(), pytest.raises(TrainingError) as info:
        loop.fit(model, config, tmp_path, "vae", progress=False, data=small)
    msg = str(info.value)
    assert "loss" in msg and "step 6" in msg and "checkpoint" in msg
    assert "\n" not in msg

    assert trainer_state(tmp_path)["step"] == 4
    assert step_of(tmp_path / "model.safetensors") == 4
    kept = weights(tmp_path)
    assert all(bool(t.isfinite().all()) for t in kept.values())
    assert all(torch.equal(kept[k], after_step_4[k]) for k in kept), (
        "the kept weights are not those of step 4"
    )
    assert leftovers(tmp_path) == [] and not (tmp_path / "results.json").exists()
    assert [r["step"] for r in train_records(tmp_path)] == [1, 2, 3, 4, 5]

    # The run can go on from there.
    fresh = VAE(config)
    with one_thread():
        results = loop.fit(fresh, config, tmp_path, "vae", resume=True, progress=False, data=small)
    assert results["steps"] == 20 and math.isfinite(results["metrics"]["elbo"])


def test_cli_nan_exits_1_with_one_error_line(tmp_path):
    nan_sets = sets(lr=1e30, checkpoint_every=0, eval_every=0, epochs=1)
    proc = run_cli("train", "vae", "--out", tmp_path / "run", "--quiet", "--set", *nan_sets, cwd=tmp_path)
    line = assert_user_error(proc, status=1, contains="at step")
    assert "lower lr" in line
    assert not (tmp_path / "run" / "results.json").exists()
    assert step_of(tmp_path / "run" / "model.safetensors") is not None


def test_the_checkpoint_kept_after_a_divergence_gives_a_finite_loss(tmp_path, small):
    with pytest.raises(TrainingError):
        fit(tmp_path, small, lr=1e30, epochs=1, checkpoint_every=0, eval_every=0)
    model = VAE(make_config())
    step = runs.load_weights(tmp_path, model).step
    assert step == 0  # with lr=1e30 only the initial weights ever gave a finite loss
    initial = registry.instantiate("vae", make_config()).state_dict()  # what the run started from
    assert all(torch.equal(v, initial[k]) for k, v in model.state_dict().items())
    x = mnist.binarize(small.train_x[:100], torch.Generator().manual_seed(0)).flatten(1)
    with torch.no_grad():
        loss = -model.elbo(x, torch.Generator().manual_seed(0)).mean()
    assert math.isfinite(float(loss)), f"the kept checkpoint (step {step}) gives loss {float(loss)}"


def test_resume_uses_the_learning_rate_of_the_config(tmp_path, small):
    fit(tmp_path, small, epochs=1, eval_every=0)
    after_one = weights(tmp_path)
    fit(tmp_path, small, resume=True, epochs=2, eval_every=0, lr=0.0)
    assert tomllib.loads((tmp_path / "config.toml").read_text())["lr"] == 0.0
    after_two = weights(tmp_path)
    changed = [k for k in after_one if not torch.equal(after_one[k], after_two[k])]
    assert not changed, f"with lr=0 the weights must not move, but {changed} did"


# --------------------------------------------------------------------------------------------
# Checkpoint files


def _tiny_model(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(make_config(hidden_units=8, latent_dim=2))


def test_save_writes_a_consistent_pair_and_no_temporaries(tmp_path):
    model = _tiny_model()
    checkpoint.save(tmp_path, model, fake_state(3, note="x"))
    assert step_of(tmp_path / "model.safetensors") == 3
    sha = hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert checkpoint.load_trainer(tmp_path) == fake_state(3, note="x") | {"model_sha256": sha}
    other = _tiny_model(seed=1)
    assert runs.load_weights(tmp_path, other).step == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    assert leftovers(tmp_path) == []


def _crashed_between_the_renames(run_dir: Path, model, step: int) -> None:
    """What a process killed between the commit's two renames leaves: the new trainer.pt, the
    new weights still in their temporary, and the previous trainer.pt's second name."""
    os.link(run_dir / "trainer.pt", run_dir / checkpoint.TRAINER_OLD)
    weights = checkpoint._model_bytes(model, step)
    (run_dir / checkpoint.MODEL_TMP).write_bytes(weights)
    state = fake_state(step) | {"model_sha256": hashlib.sha256(weights).hexdigest()}
    (run_dir / checkpoint.TRAINER_TMP).unlink(missing_ok=True)
    torch.save(state, run_dir / checkpoint.TRAINER_TMP)
    os.replace(run_dir / checkpoint.TRAINER_TMP, run_dir / "trainer.pt")


def test_crash_between_the_two_renames_is_repaired_by_recover(tmp_path):
    model = _tiny_model()
    checkpoint.save(tmp_path, model, fake_state(1))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    _crashed_between_the_renames(tmp_path, model, 2)
    assert checkpoint.load_trainer(tmp_path)["step"] == 2
    assert step_of(tmp_path / "model.safetensors") == 1  # the pair on disk is inconsistent

    checkpoint.recover(tmp_path)
    assert step_of(tmp_path / "model.safetensors") == 2
    loaded = _tiny_model(seed=5)
    runs.load_weights(tmp_path, loaded)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert leftovers(tmp_path) == []


def test_a_failed_rename_keeps_the_previous_pair_and_no_temporaries(tmp_path, monkeypatch):
    model = _tiny_model()
    checkpoint.save(tmp_path, model, fake_state(1))
    before = (tmp_path / "model.safetensors").read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    real = os.replace
    for name in ("trainer.pt.tmp", "model.safetensors.tmp"):  # the first rename, then the second

        def replace(src, dst, *a, failing=name, **kw):
            if Path(src).name == failing:
                raise OSError(errno.EIO, "simulated failure")
            return real(src, dst, *a, **kw)

        with monkeypatch.context() as m:
            m.setattr(os, "replace", replace)
            with pytest.raises(UserError, match="step 1 is kept"):
                checkpoint.save(tmp_path, model, fake_state(2))
        assert leftovers(tmp_path) == []
        assert checkpoint.load_trainer(tmp_path)["step"] == 1
        assert (tmp_path / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("how", ["half-written", "garbage", "empty"])
def test_half_written_model_temporary_is_discarded(tmp_path, how):
    model = _tiny_model()
    checkpoint.save(tmp_path, model, fake_state(1))
    before = (tmp_path / "model.safetensors").read_bytes()
    complete = checkpoint._model_bytes(_tiny_model(seed=9), 2)
    data = {"half-written": complete[: len(complete) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[how]
    (tmp_path / "model.safetensors.tmp").write_bytes(data)
    checkpoint.recover(tmp_path)
    assert leftovers(tmp_path) == []
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert checkpoint.load_trainer(tmp_path)["step"] == 1


def test_model_temporary_of_another_step_is_discarded(tmp_path):
    checkpoint.save(tmp_path, _tiny_model(), fake_state(4))
    before = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors.tmp").write_bytes(checkpoint._model_bytes(_tiny_model(seed=3), 5))
    checkpoint.recover(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before and leftovers(tmp_path) == []


def test_reading_a_run_while_it_checkpoints_does_not_break_the_writer(tmp_path, monkeypatch):
    model = _tiny_model()
    config = model.config
    (tmp_path / "config.toml").write_text(cfg.to_toml(config, "vae", "test"))
    checkpoint.save(tmp_path, model, fake_state(1))
    real = checkpoint.write_synced

    def write_then_someone_reads(path, data):
        real(path, data)
        if Path(path).name == "model.safetensors.tmp":
            registry.load_model(tmp_path)  # e.g. `genlearn sample RUN` started at this moment

    monkeypatch.setattr(checkpoint, "write_synced", write_then_someone_reads)
    checkpoint.save(tmp_path, model, fake_state(2))
    assert step_of(tmp_path / "model.safetensors") == 2


# --------------------------------------------------------------------------------------------
# What a run directory holds


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    fit(run_dir, small, epochs=2, latent_dim=2, log_every=2, eval_every=1, seed=3)
    return run_dir


def test_metrics_jsonl_has_one_object_per_line(finished_run):
    lines = (finished_run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(ln) for ln in lines]
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in records)
    train = [r for r in records if "split" not in r]
    assert [r["step"] for r in train] == list(range(2, 21, 2))
    for r in train:
        assert math.isfinite(r["loss"]) and r["loss"] > 0
        assert r["samples_per_s"] > 0 and math.isfinite(r["samples_per_s"])
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["step"] for r in valid] == [10]
    assert math.isfinite(valid[0]["elbo"]) and valid[0]["elbo"] < 0
    test = [r for r in records if r.get("split") == "test"]
    assert len(test) == 1 and test[0]["step"] == 20


def test_results_json(finished_run):
    results = json.loads((finished_run / "results.json").read_text())
    elbo = results["metrics"]["elbo"]
    assert math.isfinite(elbo) and elbo < 0
    assert results["seed"] == 3 and results["split"] == "test"
    assert isinstance(results["train_time_s"], (int, float)) and results["train_time_s"] >= 0
    assert results["epochs"] == 2 and results["steps"] == 20 and results["model"] == "vae"
    assert results["data"] == "mnist, binarized (fixed, seed 0)"
    assert set(results["figures"]) == {"samples.png", "reconstructions.png", "manifold.png", "training.png"}


def test_config_toml_holds_every_field(finished_run):
    saved = tomllib.loads((finished_run / "config.toml").read_text())
    assert saved.pop("model") == "vae" and "genlearn_version" in saved
    saved.pop("genlearn_version")
    config = make_config(epochs=2, latent_dim=2, log_every=2, eval_every=1, seed=3)
    assert saved == dataclasses.asdict(config)
    name, again = registry.run_config(finished_run)
    assert name == "vae" and again == config


def test_pictures_are_written(finished_run):
    for name in ("samples.png", "reconstructions.png", "training.png", "manifold.png"):
        with Image.open(finished_run / name) as img:
            assert img.format == "PNG" and img.width > 100 and img.height > 100
    with Image.open(finished_run / "samples.png") as img:
        assert img.width == 604 and img.height > img.width  # a 10 x 10 grid under its title
    with Image.open(finished_run / "manifold.png") as img:
        assert img.width > 602 + 60 and img.height > 602 + 100  # the 20 x 20 grid, its axes and title


def test_training_png_plots_the_elbo_as_a_loss(finished_run):
    from genlearn.viz.figures import training_figure

    model = registry.load_model(finished_run)
    fig = training_figure(runs.read_records(finished_run / "metrics.jsonl"), model)
    (ax,) = fig.axes
    curves = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert len(curves["validation set: -ELBO"]) == 1  # after epoch 1 (the last is the test split's)
    assert all(v > 0 for ys in curves.values() for v in ys)  # -ELBO in nats per image, both of them
    assert "nats per image" in ax.get_ylabel()


def test_no_manifold_for_a_latent_space_that_is_not_2d(tmp_path, small):
    fit(tmp_path, small, epochs=1, latent_dim=3, log_every=2, eval_every=0)
    assert (tmp_path / "samples.png").exists() and (tmp_path / "training.png").exists()
    assert not (tmp_path / "manifold.png").exists()


def test_logged_loss_is_the_mean_over_the_logged_steps(tmp_path, small):
    fit(tmp_path / "every", small, epochs=2, log_every=1, eval_every=0)
    fit(tmp_path / "four", small, epochs=2, log_every=4, eval_every=0)
    assert_same_weights(tmp_path / "every", tmp_path / "four")
    each = {r["step"]: r["loss"] for r in train_records(tmp_path / "every")}
    for r in train_records(tmp_path / "four"):
        expected = sum(each[s] for s in range(r["step"] - 3, r["step"] + 1)) / 4
        assert r["loss"] == pytest.approx(expected, rel=1e-6), f"step {r['step']}"


def _digest(run_dir: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir()) if p.is_file()
    }


def test_train_into_an_existing_run_without_resume_refuses(tmp_path, finished_run):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = _digest(run_dir)
    proc = run_cli("train", "vae", "--out", run_dir, "--set", "epochs=1", cwd=tmp_path)
    assert_user_error(proc, status=2, contains="--resume")
    assert _digest(run_dir) == before, "refusing must not touch the run"


def test_json_files_are_standard_json_with_null_for_non_finite_numbers(tmp_path):

    obj = {"low": float("-inf"), "high": float("inf"), "nan": float("nan"), "x": [1.5, float("inf")], "n": 3}
    runs.write_json(tmp_path / "r.json", obj)

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    back = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)
    assert back == {"low": None, "high": None, "nan": None, "x": [1.5, None], "n": 3}
