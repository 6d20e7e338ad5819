"""Fault injection: a user's work is never lost or mixed, and a mistake is one `error:` line.

A second process on a run directory, a resume that changes what defines the run, files in --out
that belong to no run, a damaged metrics.jsonl, a full disk while checkpointing, a stop during the
final figures, bad paths and values, files that parse but have the wrong structure, a damaged
MNIST cache, and the 2-D GAN's samples; a run's files that are links, a checkpoint whose commit
fails part-way, an output over the file-size limit, weights that are NaN, results.json that is a
directory or nested too deeply. Runs are tiny VAEs on 300 MNIST images (a second each); the lower
layers' own checks, without MNIST, are in test_files.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from conftest import assert_user_error, cli_env, needs_mnist, run_main
from genlearn import config as cfg
from genlearn import registry, runs
from genlearn.data import mnist
from genlearn.train import checkpoint

pytestmark = [pytest.mark.slow, needs_mnist]

TINY = ["train_limit=300", "batch_size=100", "hidden_units=16", "latent_dim=4", "eval_every=0"]


def train(run_dir, *extra, resume: bool = False, **env):
    args = ["train", "vae", "--out", run_dir, "--quiet", *(["--resume"] if resume else [])]
    return run_main(*args, "--set", *TINY, *extra, **env)


def finished(run_dir) -> Path:
    proc = train(run_dir, "epochs=1")
    assert proc.returncode == 0, proc.stderr
    return Path(run_dir)


# --------------------------------------------------------------------------------------------
# One process per run directory


def test_a_run_directory_in_use_is_refused_with_its_holder(tmp_path):
    run_dir = tmp_path / "run"
    with runs.locked(run_dir):
        line = assert_user_error(train(run_dir, "epochs=1"), contains="in use by process")
        assert str(os.getpid()) in line
        assert_user_error(train(run_dir, "epochs=1", resume=True))  # not a run yet: also refused
    assert train(run_dir, "epochs=1").returncode == 0  # free again


def test_a_killed_holder_locks_no_one_out(tmp_path):
    run_dir = tmp_path / "run"
    code = f"from genlearn import runs; import time\nwith runs.locked({str(run_dir)!r}):\n    print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_user_error(train(run_dir, "epochs=1"), contains=f"process {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert train(run_dir, "epochs=1").returncode == 0


def test_a_second_training_process_cannot_join_a_running_one(tmp_path):
    """The real case: `genlearn train` runs; a second `--resume` of it is refused, not mixed in."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "genlearn", "train", "vae", "--out", str(run_dir), "--quiet", "--set"]
    first = subprocess.Popen([*args, *TINY, "epochs=1000", "checkpoint_every=0"], env=cli_env())
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / runs.TRAINER_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (run_dir / runs.TRAINER_FILE).exists()
        assert_user_error(train(run_dir, "epochs=1000", resume=True), contains="in use by process")
        assert_user_error(train(run_dir, "epochs=1"), contains="already holds a run")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert train(run_dir, "epochs=1000", "time_limit=0.5", resume=True).returncode == 0


# --------------------------------------------------------------------------------------------
# Resume with changed settings


@pytest.mark.parametrize(
    "change", ["batch_size=50", "seed=3", "train_limit=200", "optimizer=sgd", "latent_dim=3"]
)
def test_resume_refuses_a_change_that_defines_the_run(tmp_path, change):
    run_dir = finished(tmp_path / "run")
    before = (run_dir / runs.CONFIG_FILE).read_bytes()
    key = change.split("=")[0]
    assert_user_error(train(run_dir, "epochs=2", change, resume=True), contains=f"cannot change {key}")
    assert (run_dir / runs.CONFIG_FILE).read_bytes() == before  # config.toml untouched
    assert train(run_dir, "epochs=2", resume=True).returncode == 0  # and the run still resumes


def test_resume_may_train_longer_and_change_the_lr(tmp_path):
    run_dir = finished(tmp_path / "run")
    proc = train(run_dir, "epochs=2", "lr=0.0005", "log_every=1", resume=True)
    assert proc.returncode == 0, proc.stderr
    saved = tomllib.loads((run_dir / runs.CONFIG_FILE).read_text())
    assert saved["epochs"] == 2 and saved["lr"] == 0.0005


# --------------------------------------------------------------------------------------------
# Overwrites


@pytest.mark.parametrize(
    "leftover", [runs.RESULTS_FILE, runs.METRICS_FILE, runs.MODEL_FILE, runs.CONFIG_FILE]
)
def test_files_of_a_run_in_out_are_never_trained_over(tmp_path, leftover):
    run_dir = finished(tmp_path / "run")
    keep = {leftover}
    for f in list(run_dir.iterdir()):
        if f.name in runs.RUN_FILES and f.name not in keep:
            f.unlink()  # e.g. a finished run whose trainer.pt was deleted
    content = (run_dir / leftover).read_bytes()
    assert_user_error(train(run_dir, "epochs=1"), contains="already holds a run")
    assert (run_dir / leftover).read_bytes() == content


def test_a_metric_that_cannot_be_recorded_is_printed_all_the_same(tmp_path, monkeypatch):
    run_dir = finished(tmp_path / "run")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "fsync", read_only)  # every write of a run file fsyncs before its rename
    proc = run_main("eval", run_dir, "--metric", "nll", "--k", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nll_k2"] > 0
    assert proc.stderr.startswith("warning: not recorded") and "Read-only" in proc.stderr
    monkeypatch.undo()
    assert "nll_k2" not in runs.results(run_dir)["metrics"]  # results.json as it was
    with runs.locked(run_dir):  # a run still training: printed, not recorded
        proc = run_main("eval", run_dir, "--metric", "nll", "--k", "2")
    assert proc.returncode == 0 and "nll_k2:" in proc.stdout and "in use" in proc.stderr


def test_resuming_a_finished_run_keeps_the_metrics_eval_added(tmp_path):
    run_dir = finished(tmp_path / "run")
    assert run_main("eval", run_dir, "--metric", "nll", "--k", "2").returncode == 0
    assert "nll_k2" in runs.results(run_dir)["metrics"]
    assert train(run_dir, "epochs=1", resume=True).returncode == 0  # nothing more to train
    assert "nll_k2" in runs.results(run_dir)["metrics"]
    assert train(run_dir, "epochs=2", resume=True).returncode == 0  # new weights: kept apart
    res = runs.results(run_dir)
    assert "nll_k2" not in res["metrics"]
    assert "nll_k2" in res["earlier_metrics"] and res["earlier_metrics"]["steps"] == 3


# --------------------------------------------------------------------------------------------
# metrics.jsonl, a full disk, a stop during the figures


def test_a_damaged_metrics_line_does_not_stop_a_resume(tmp_path):
    run_dir = tmp_path / "run"
    assert train(run_dir, "epochs=1", "log_every=1").returncode == 0
    with open(run_dir / runs.METRICS_FILE, "a") as fh:
        fh.write('{"step": 2, "loss": 1')  # a crash mid-write
    proc = train(run_dir, "epochs=2", "log_every=1", resume=True)
    assert proc.returncode == 0, proc.stderr
    records = runs.read_records(run_dir / runs.METRICS_FILE)
    assert [r["step"] for r in records if "split" not in r] == list(range(1, 7))


def test_a_full_disk_keeps_the_last_checkpoint_and_leaves_no_temporaries(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert train(run_dir, "epochs=1").returncode == 0
    good = (run_dir / runs.MODEL_FILE).read_bytes()
    calls = []

    def full(path, data):
        calls.append(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "write_synced", full)
    line = assert_user_error(train(run_dir, "epochs=3", "checkpoint_every=0", resume=True), contains="space")
    assert "step 3 is kept" in line and calls
    assert (run_dir / runs.MODEL_FILE).read_bytes() == good
    assert not [p.name for p in run_dir.iterdir() if "tmp" in p.name]
    monkeypatch.undo()
    assert train(run_dir, "epochs=3", resume=True).returncode == 0


def test_a_stop_during_the_final_figures_leaves_an_unfinished_run_that_resumes(tmp_path, monkeypatch):
    from genlearn.viz import figures

    real = figures.write_run_figures

    def stopped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # the stop flag is set; the figures still finish
        return real(*args, **kwargs)

    monkeypatch.setattr(figures, "write_run_figures", stopped)
    run_dir = tmp_path / "run"
    proc = train(run_dir, "epochs=1")
    assert proc.returncode == 130 and "resume with" in proc.stderr, proc.stderr
    assert not (run_dir / runs.RESULTS_FILE).exists()  # not finished: no results.json
    monkeypatch.undo()
    assert train(run_dir, "epochs=1", resume=True).returncode == 0
    res = runs.results(run_dir)
    assert res["steps"] == 3 and "samples.png" in res["figures"]
    assert all((run_dir / f).exists() for f in res["figures"])


# --------------------------------------------------------------------------------------------
# Paths and values


def test_bad_out_paths_are_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_user_error(train(a_file, "epochs=1"), contains="in the way")
    assert_user_error(train(a_file / "run", "epochs=1"), contains="is a file")
    assert_user_error(train("/proc/genlearn-run", "epochs=1"), contains="cannot create")


@pytest.mark.parametrize(
    "value,contains",
    [
        ("seed=2e13", "seed"),
        ("seed=20000000000000", "at most"),
        ("lr=inf", "finite"),
        ("lr=nan", "finite"),
        ("lr=1e-400", "too small"),  # would parse to 0.0 and train at lr 0
        ("lr=1e999", "too large"),
        ("hidden_units=100000000", "more than"),  # refused before the allocator sees it
        ("latent_dim=99999999999999999999", "too large"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(tmp_path, value, contains):
    assert_user_error(train(tmp_path / "run", "epochs=1", value), contains=contains)
    assert not (tmp_path / "run").exists()


def test_sampling_more_than_memory_holds_is_refused(tmp_path):
    run_dir = finished(tmp_path / "run")
    line = assert_user_error(run_main("sample", run_dir, "--n", "100000000", "--out", tmp_path / "x.npz"))
    assert "GiB" in line
    assert_user_error(
        run_main("sample", run_dir, "--n", "20000", "--out", tmp_path / "x.png"), contains=".npz"
    )


def test_a_data_dir_with_a_newline_round_trips(tmp_path):
    config = registry.make_config("vae", {"data_dir": 'a\nb"c\\d\te\x7f'})
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml(config, "vae", "0"))
    assert tomllib.loads(path.read_text())["data_dir"] == config.data_dir


def test_a_few_test_images_still_make_the_pictures(tmp_path, mnist_full):
    from genlearn.train import loop

    few = mnist.MNIST(
        mnist_full.train_x[:200], mnist_full.train_y[:200], mnist_full.valid_x[:30], mnist_full.valid_y[:30],
        mnist_full.test_x[:7], mnist_full.test_y[:7],
    )  # fmt: skip
    model = registry.create("vae", hidden_units=16, latent_dim=4, epochs=1, eval_every=0)
    res = loop.fit(model, model.config, tmp_path / "run", "vae", progress=False, data=few)
    assert "reconstructions.png" in res["figures"]


# --------------------------------------------------------------------------------------------
# Files that parse but have the wrong structure


@pytest.mark.parametrize(
    "text,contains", [("config = 3\n", "table"), ("model = [1]\n", "model"), ("model = 3\n", "model")]
)
def test_config_files_of_the_wrong_shape(tmp_path, text, contains):
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert_user_error(
        run_main("train", "vae", "--config", path, "--out", tmp_path / "run"), contains=contains
    )
    run_dir = finished(tmp_path / "done")
    (run_dir / runs.CONFIG_FILE).write_text(text)
    assert_user_error(run_main("info", run_dir))


def test_a_trainer_state_of_another_family_is_refused(tmp_path):
    vae_run = finished(tmp_path / "vae")
    other = tmp_path / "ae"
    proc = run_main(
        "train",
        "autoencoder",
        "--out",
        other,
        "--quiet",
        "--set",
        "train_limit=300",
        "epochs=1",
        "eval_every=0",
        "hidden_units=16",
    )
    assert proc.returncode == 0, proc.stderr
    shutil.copy(vae_run / runs.TRAINER_FILE, other / runs.TRAINER_FILE)
    proc = run_main("train", "autoencoder", "--out", other, "--resume", "--quiet", "--set", "epochs=2")
    line = assert_user_error(proc, contains="trainer.pt")
    assert "does not fit this model" in line or "not a pair" in line


def test_a_results_file_holding_a_list_is_refused(tmp_path):
    run_dir = finished(tmp_path / "run")
    (run_dir / runs.RESULTS_FILE).write_text("[1, 2]\n")
    assert_user_error(run_main("info", run_dir), contains="results")
    assert_user_error(run_main("compare", run_dir, run_dir), contains="results")


# --------------------------------------------------------------------------------------------
# Data and the 2-D GAN


def test_a_damaged_mnist_cache_is_rebuilt_from_the_wheel_or_refused(tmp_path, monkeypatch):
    real = mnist.cache_dir()
    monkeypatch.setenv("GENLEARN_CACHE", str(tmp_path))
    with np.load(real / mnist.CACHE_FILE) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays["test_x"][0, 14, 14] ^= 0xFF  # one pixel of one test image
    np.savez(tmp_path / mnist.CACHE_FILE, **arrays)
    assert_user_error(
        run_main("train", "vae", "--out", tmp_path / "run", "--set", "epochs=1"), contains="corrupt"
    )
    shutil.copy(real / mnist.WHEEL_NAME, tmp_path / mnist.WHEEL_NAME)
    rebuilt = mnist.load_arrays()
    assert mnist.arrays_digest(rebuilt) == mnist.ARRAYS_SHA256


def test_the_2d_gan_samples_as_points(tmp_path):
    run_dir = tmp_path / "gan"
    sets = [
        "dataset=ring8",
        "g_hidden=16",
        "d_units=8",
        "z_dim=4",
        "train_limit=500",
        "epochs=1",
        "eval_every=0",
    ]
    assert run_main("train", "gan", "--out", run_dir, "--quiet", "--set", *sets).returncode == 0
    assert run_main("sample", run_dir, "--n", "50", "--out", tmp_path / "p.png").returncode == 0
    assert run_main("sample", run_dir, "--n", "50", "--out", tmp_path / "p.npz").returncode == 0
    points = np.load(tmp_path / "p.npz")["points"]
    assert points.shape == (50, 2) and (points < 0).any()  # not clamped to [0, 1]
    model = registry.load_model(run_dir)
    torch.testing.assert_close(
        torch.from_numpy(points), model.sample(50, generator=torch.Generator().manual_seed(0))
    )
    assert json.loads(json.dumps(runs.results(run_dir)))["metrics"]["modes"] == 8


def test_a_run_that_diverges_before_its_first_checkpoint_can_be_started_again(tmp_path, monkeypatch):
    from genlearn.models.vae import VAE

    run_dir = tmp_path / "run"
    monkeypatch.setattr(VAE, "train_step", lambda self, batch: {"loss": float("nan")})  # step 1
    line = assert_user_error(train(run_dir, "epochs=1"), status=1)
    monkeypatch.undo()
    assert "nothing was saved" in line
    assert not any((run_dir / f).exists() for f in runs.RUN_FILES)
    assert train(run_dir, "epochs=1").returncode == 0  # the same --out, a lower lr


def test_resuming_with_results_that_are_not_numbers_prints_its_summary(tmp_path):
    run_dir = finished(tmp_path / "run")
    res = runs.results(run_dir)
    res["metrics"] |= {"class_histogram": [0.1] * 10, "ais_log_z_low": None}
    runs.write_json(run_dir / runs.RESULTS_FILE, res)
    proc = train(run_dir, "epochs=1", resume=True)
    assert proc.returncode == 0, proc.stderr
    assert runs.results(run_dir)["metrics"]["class_histogram"] == [0.1] * 10


def test_metrics_of_other_weights_are_not_filed_with_a_runs_results(tmp_path):
    run_dir = finished(tmp_path / "run")
    res = runs.results(run_dir)
    other = {"step": 999, "sha256": "0" * 64}
    runs.write_json(run_dir / runs.RESULTS_FILE, res | {"steps": 999, "weights": other})  # a resume's
    proc = run_main("eval", run_dir, "--metric", "nll", "--k", "2")
    assert proc.returncode == 0 and "nll_k2:" in proc.stdout and "step 999" in proc.stderr
    assert "nll_k2" not in runs.results(run_dir)["metrics"]


# --------------------------------------------------------------------------------------------
# A run's own files that are links, a checkpoint commit that fails, outputs past a limit


def _victim(tmp_path) -> Path:
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"someone else's file")
    return victim


def _no_temporaries(directory: Path) -> bool:
    return not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_a_lock_that_is_a_link_is_never_written_through(tmp_path):
    run_dir = finished(tmp_path / "run")
    victim = _victim(tmp_path)
    (run_dir / runs.LOCK_FILE).unlink()
    (run_dir / runs.LOCK_FILE).symlink_to(victim)
    proc = run_main("eval", run_dir, "--metric", "nll", "--k", "2")
    assert proc.returncode == 0 and "nll_k2:" in proc.stdout and "symbolic link" in proc.stderr
    assert_user_error(train(run_dir, "epochs=2", resume=True), contains="symbolic link")
    assert victim.read_bytes() == b"someone else's file"
    assert "nll_k2" not in runs.results(run_dir)["metrics"]


@pytest.mark.parametrize(
    "name,command",
    [
        (runs.CONFIG_FILE, "info"),
        (runs.RESULTS_FILE, "info"),
        (runs.MODEL_FILE, "sample"),
        (runs.TRAINER_FILE, "resume"),
        (runs.METRICS_FILE, "resume"),
    ],
)
def test_a_runs_own_files_that_are_links_are_refused(tmp_path, name, command):
    run_dir = finished(tmp_path / "run")
    victim = tmp_path / "elsewhere"
    shutil.move(run_dir / name, victim)  # the file's own content, moved out and linked back
    (run_dir / name).symlink_to(victim)
    before = victim.read_bytes()
    if command == "info":
        proc = run_main("info", run_dir)
    elif command == "sample":
        proc = run_main("sample", run_dir, "--n", "4", "--out", tmp_path / "s.png")
    else:
        proc = train(run_dir, "epochs=2", "log_every=1", resume=True)
    assert_user_error(proc, contains="symbolic link")
    assert victim.read_bytes() == before


@pytest.mark.parametrize("how", ["immutable weights", "a failing rename"])
def test_a_checkpoint_that_cannot_be_committed_keeps_the_previous_pair(tmp_path, monkeypatch, how):
    run_dir = finished(tmp_path / "run")
    pair = {f: (run_dir / f).read_bytes() for f in (runs.MODEL_FILE, runs.TRAINER_FILE)}
    if how == "immutable weights":
        if subprocess.run(["chattr", "+i", str(run_dir / runs.MODEL_FILE)], capture_output=True).returncode:
            pytest.skip("chattr +i is not available here")
    else:
        real = os.replace

        def replace(src, dst, *args, **kwargs):  # the second of the commit's two renames fails
            if str(src).endswith(runs.MODEL_FILE + ".tmp"):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    try:
        proc = train(run_dir, "epochs=3", "checkpoint_every=0", resume=True)
    finally:
        subprocess.run(["chattr", "-i", str(run_dir / runs.MODEL_FILE)], capture_output=True)
        monkeypatch.undo()
    assert "step 3 is kept" in assert_user_error(proc)
    assert {f: (run_dir / f).read_bytes() for f in pair} == pair and _no_temporaries(run_dir)
    assert train(run_dir, "epochs=3", resume=True).returncode == 0  # and the run goes on from there
    assert runs.results(run_dir)["steps"] == 9


def test_sample_over_the_file_size_limit_keeps_the_previous_file(tmp_path):
    import resource

    run_dir = finished(tmp_path / "run")
    out = tmp_path / "grid.png"
    out.write_bytes(b"the previous grid")
    proc = subprocess.run(
        [sys.executable, "-m", "genlearn", "sample", str(run_dir), "--n", "64", "--out", str(out)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY)),
    )
    assert_user_error(proc, contains="file-size limit")
    assert out.read_bytes() == b"the previous grid" and _no_temporaries(tmp_path)


def test_weights_with_nan_are_refused_naming_the_tensor(tmp_path):
    run_dir = finished(tmp_path / "run")
    tensors = safetensors.torch.load_file(str(run_dir / runs.MODEL_FILE))
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name].view(-1)[0] = float("nan")
    safetensors.torch.save_file(tensors, str(run_dir / runs.MODEL_FILE), metadata={"step": "3"})
    line = assert_user_error(run_main("sample", run_dir, "--n", "4", "--out", tmp_path / "s.png"))
    assert repr(name) in line and "non-finite" in line
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("damage", ["directory", "nested", "digits"])
def test_a_damaged_results_file_is_one_line(tmp_path, damage):
    run_dir = finished(tmp_path / "run")
    path = run_dir / runs.RESULTS_FILE
    path.unlink()
    if damage == "directory":
        path.mkdir()
    else:
        path.write_text(
            "[" * 100_000 if damage == "nested" else '{"metrics": {}, "steps": 1' + "0" * 5000 + "}"
        )
    assert_user_error(run_main("info", run_dir), contains="results.json")
    assert_user_error(run_main("compare", run_dir, run_dir), contains="results.json")


def test_a_train_out_with_a_name_over_255_bytes_is_one_line(tmp_path):
    assert_user_error(train(tmp_path / ("x" * 300), "epochs=1"), contains="255")
    assert_user_error(train(tmp_path / ("x" * 300) / "run", "epochs=1"), contains="255")


def test_results_name_the_weights_they_describe(tmp_path):
    run_dir = finished(tmp_path / "run")
    res = runs.results(run_dir)
    assert res["weights"] == runs.weights_id(run_dir).as_json() and res["weights"]["step"] == res["steps"]
