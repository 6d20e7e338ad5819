"""Writing and reading files, by class of fault: every write is atomic and never through a link,
the checkpoint pair is committed together or not at all, every malformed file is one line, and
absurd values and sizes are refused before anything is allocated. No MNIST needed: tiny models,
files written by hand, failures injected (a failing rename, an immutable file, RLIMIT_FSIZE, a
signal part-way)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from conftest import cli_env
from genlearn import config as cfg
from genlearn import files, memory, registry, runs
from genlearn.data.captions import read_captions_file
from genlearn.errors import UserError
from genlearn.models.vae import VAE
from genlearn.train import checkpoint

LONG_NAME = "x" * 300


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text, text
    return text


# --------------------------------------------------------------------------------------------
# Atomic writes


def test_a_failure_part_way_keeps_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "samples.png"
    path.write_bytes(b"good")
    for failure in (OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(UserError if isinstance(failure, OSError) else KeyboardInterrupt) as exc:
            with files.atomic_output(path) as fh:
                fh.write(b"half of the new")
                raise failure
        if isinstance(failure, OSError):
            assert "No space left" in one_line(exc) and "previous file is kept" in str(exc.value)
        assert path.read_bytes() == b"good"
        assert temporaries(tmp_path) == []


def test_a_write_keeps_the_files_permissions(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{}")
    path.chmod(0o640)
    files.atomic_write(path, "{}\n")
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_text() == "{}\n"


@pytest.mark.parametrize("target", ["samples.png", "results.json", "a.npz", "canvas.gif"])
def test_no_write_goes_through_a_symbolic_link(tmp_path, target):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / target).symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link") as exc:
        files.atomic_write(tmp_path / target, b"new")
    one_line(exc)
    assert victim.read_bytes() == b"precious" and (tmp_path / target).is_symlink()


def test_a_dangling_link_is_refused_too(tmp_path):
    (tmp_path / "out.png").symlink_to(tmp_path / "not-yet")
    with pytest.raises(UserError, match="symbolic link"):
        files.atomic_write(tmp_path / "out.png", b"x")
    assert not (tmp_path / "not-yet").exists()


def test_a_leftover_temporary_that_is_a_link_is_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path = tmp_path / "model.safetensors.tmp"
    path.symlink_to(victim)
    files.write_synced(path, b"new bytes")
    assert victim.read_bytes() == b"precious" and path.read_bytes() == b"new bytes"


def _child(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _file_size_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_a_file_size_limit_keeps_the_previous_file(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"good")
    code = f"""
        from genlearn import files
        from genlearn.errors import UserError
        try:
            files.atomic_write({str(path)!r}, b"y" * 200_000)
        except UserError as exc:
            print(exc)
    """
    child = _child(code, preexec_fn=_file_size_limit(50_000))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert "file-size limit" in out and "previous file is kept" in out
    assert path.read_bytes() == b"good" and temporaries(tmp_path) == []


def _slow_writer(path: Path, sigterm: bool) -> subprocess.Popen:
    code = f"""
        import time
        from genlearn import files
        {"files.raise_on_sigterm()" if sigterm else ""}
        with files.atomic_output({str(path)!r}) as fh:
            fh.write(b"new, partly")
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)
    """
    child = _child(code)
    assert child.stdout.readline().strip() == "writing"
    return child


def test_a_signal_part_way_keeps_the_previous_file(tmp_path):
    path = tmp_path / "grid.png"
    path.write_bytes(b"good")
    child = _slow_writer(path, sigterm=True)  # SIGTERM: the write is abandoned and cleaned up
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    assert path.read_bytes() == b"good" and temporaries(tmp_path) == []
    child = _slow_writer(path, sigterm=False)  # SIGKILL: nothing can clean up ...
    child.kill()
    child.wait(timeout=30)
    assert path.read_bytes() == b"good" and len(temporaries(tmp_path)) == 1
    files.atomic_write(path, b"next")  # ... until the next write of the same file
    assert path.read_bytes() == b"next" and temporaries(tmp_path) == []


def test_the_temporaries_of_a_live_writer_are_left_alone(tmp_path):
    path = tmp_path / "grid.png"
    child = _slow_writer(path, sigterm=False)
    try:
        files.atomic_write(path, b"mine")
        assert len(temporaries(tmp_path)) == 1  # the other process's, still writing
    finally:
        child.kill()
        child.wait(timeout=30)


# --------------------------------------------------------------------------------------------
# Files written in place: the lock and metrics.jsonl


def test_a_lock_that_is_a_link_is_refused_and_its_target_kept(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = tmp_path / "model.safetensors"
    victim.write_bytes(b"weights")
    (run_dir / runs.LOCK_FILE).symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link") as exc, runs.locked(run_dir):
        pass
    one_line(exc)
    assert victim.read_bytes() == b"weights"


def test_a_lock_that_is_a_hard_link_or_a_fifo_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = run_dir / runs.MODEL_FILE
    victim.write_bytes(b"weights")
    os.link(victim, run_dir / runs.LOCK_FILE)
    with pytest.raises(UserError, match="hard link"), runs.locked(run_dir):
        pass
    assert victim.read_bytes() == b"weights"
    (run_dir / runs.LOCK_FILE).unlink()
    os.mkfifo(run_dir / runs.LOCK_FILE)
    with pytest.raises(UserError, match="not a plain file"), runs.locked(run_dir):
        pass


def test_appends_do_not_go_through_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / runs.METRICS_FILE).symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        files.append_text(tmp_path / runs.METRICS_FILE, '{"step": 1}\n')
    assert victim.read_text() == "precious\n"


# --------------------------------------------------------------------------------------------
# Paths


@pytest.mark.parametrize("where", ["last", "middle"])
def test_a_name_over_255_bytes_is_one_line_wherever_a_run_path_is_used(tmp_path, where):
    path = tmp_path / LONG_NAME if where == "last" else tmp_path / LONG_NAME / "run"
    for call in (
        lambda: runs.make_directory(path),
        lambda: runs.check_empty(path),
        lambda: runs.results(path),
        lambda: runs.read_json(path / runs.RESULTS_FILE),
        lambda: runs.read_records(path / runs.METRICS_FILE),
        lambda: runs.locked(path).__enter__(),
        lambda: runs.weights_id(path),
        lambda: runs.read_config(path),
        lambda: cfg.read_toml(path / runs.CONFIG_FILE),
        lambda: checkpoint.load_trainer(path),
        lambda: files.atomic_write(path / "x.png", b""),
    ):
        with pytest.raises(UserError, match="255") as exc:
            call()
        one_line(exc)


def test_a_path_over_4096_bytes_is_one_line(tmp_path):
    with pytest.raises(UserError, match="4095"):
        runs.make_directory(tmp_path.joinpath(*["d" * 200] * 25))


# --------------------------------------------------------------------------------------------
# Readers: every malformed file is one line


MALFORMED_JSON = {
    "nested": "[" * 100_000 + "]" * 100_000,
    "digits": '{"metrics": {}, "steps": 1' + "0" * 5000 + "}",
    "truncated": '{"metrics": {',
    "not utf-8": b'{"metrics": "\xff"}',
    "empty": "",
}


@pytest.mark.parametrize("case", MALFORMED_JSON)
def test_malformed_results_are_one_line(tmp_path, case):
    data = MALFORMED_JSON[case]
    (tmp_path / runs.RESULTS_FILE).write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(UserError) as exc:
        runs.results(tmp_path)
    assert str(tmp_path) in one_line(exc)


@pytest.mark.parametrize("kind", ["directory", "fifo", "list", "link"])
def test_results_that_are_not_a_results_file_are_one_line(tmp_path, kind):
    path = tmp_path / runs.RESULTS_FILE
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # would block a reader that opened it plainly
    elif kind == "list":
        path.write_text("[1, 2]")
    else:
        (tmp_path / "elsewhere.json").write_text('{"metrics": {}}')
        path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UserError) as exc:
        runs.results(tmp_path)
    one_line(exc)


def test_an_unreadable_file_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / runs.RESULTS_FILE
    path.write_text("{}")
    real = os.open

    def denied(p, flags, *args, **kwargs):
        if Path(p) == path:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)  # chmod 000 does not stop root
    with pytest.raises(UserError, match="Permission denied") as exc:
        runs.results(tmp_path)
    one_line(exc)


def test_damaged_metrics_lines_are_skipped(tmp_path):
    path = tmp_path / runs.METRICS_FILE
    lines = ['{"step": 1}', "[" * 50_000, '{"step": 1' + "0" * 5000 + "}", "\xff", '{"step": 2}']
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    assert runs.read_records(path) == [{"step": 1}, {"step": 2}]


MALFORMED_TOML = {
    "nested": "a = " + "[" * 100_000 + "]" * 100_000,
    "digits": "epochs = 1" + "0" * 5000,
    "underflow": "lr = 1e-400",
    "overflow": "lr = 1e400",
    "not utf-8": b"lr = '\xff'",
    "invalid": "lr = ",
}


@pytest.mark.parametrize("case", MALFORMED_TOML)
def test_malformed_config_files_are_one_line(tmp_path, case):
    data = MALFORMED_TOML[case]
    path = tmp_path / "c.toml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(UserError) as exc:
        cfg.read_toml(path)
    assert "c.toml" in one_line(exc)


def test_a_config_file_that_is_a_directory_is_one_line(tmp_path):
    with pytest.raises(UserError, match="directory"):
        cfg.read_toml(tmp_path)


def test_a_runs_own_config_is_not_read_through_a_link(tmp_path):
    (tmp_path / "real.toml").write_text('model = "vae"\n')
    (tmp_path / runs.CONFIG_FILE).symlink_to(tmp_path / "real.toml")
    assert cfg.read_toml(tmp_path / runs.CONFIG_FILE) == {"model": "vae"}  # a --config file may be a link
    with pytest.raises(UserError, match="symbolic link"):
        cfg.read_toml(tmp_path / runs.CONFIG_FILE, follow_links=False)


def test_a_captions_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_bytes("\ufeffthe digit 1 is at the top left of the image .\r\n\r\nsecond\n".encode())
    assert read_captions_file(path) == ["the digit 1 is at the top left of the image .", "second"]
    for content, match in ((b"\n  \n", "no captions"), (b"\xff\xfe", "not UTF-8")):
        path.write_bytes(content)
        with pytest.raises(UserError, match=match):
            read_captions_file(path)
    with pytest.raises(UserError, match="cannot read"):
        read_captions_file(tmp_path / "none.txt")
    with pytest.raises(UserError, match="directory"):
        read_captions_file(tmp_path)


# --------------------------------------------------------------------------------------------
# Values and sizes


@pytest.mark.parametrize(
    "value,match",
    [
        ("lr=1e-400", "too small"),
        ("lr=1e400", "too large"),
        ("lr=1e-310", "too small"),
        ("lr=" + "9" * 400, "too large"),
        ("epochs=" + "9" * 30, "too large"),
        ("epochs=" + "9" * 5000, "not an integer"),
    ],
)
def test_numbers_that_do_not_fit_their_type_are_refused(value, match):
    key, _, raw = value.partition("=")
    with pytest.raises(UserError, match=match) as exc:
        registry.make_config("vae", {key: raw})
    assert one_line(exc).startswith(f"bad value for {key!r}")


def test_zero_written_as_zero_is_still_zero():
    assert registry.make_config("vae", {"lr": "0"}).lr == 0.0
    assert registry.make_config("vae", {"lr": "0.0e-5", "weight_decay": "1e-30"}).lr == 0.0


def test_a_string_field_takes_only_strings():
    with pytest.raises(UserError, match="not a str"):
        registry.make_config("vae", {"data_dir": [1, 2]})


@pytest.mark.parametrize(
    "name,values",
    [
        ("vae", {"hidden_units": 100_000_000}),
        ("rbm", {"batch_size": 1_000_000_000}),
        ("gan", {"z_dim": 9 * 10**18}),
        ("dbn", {"hidden": "500,100000000000"}),
        ("aligndraw", {"max_words": 10**11}),
    ],
)
def test_absurd_sizes_are_refused_before_the_allocator(name, values):
    config = registry.make_config(name, values)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=f"model {name!r}") as exc:
        registry.instantiate(name, config)
    one_line(exc)
    assert time.perf_counter() - t0 < 5  # nothing was allocated


@pytest.mark.parametrize("name,field", [("draw", "T"), ("aligndraw", "T"), ("draw", "height")])
def test_sizes_that_no_parameter_shows_have_a_bound(name, field):
    with pytest.raises(UserError, match="at most"):
        registry.make_config(name, {field: 10**9})


def test_training_memory_counts_the_gradients_and_the_optimiser(monkeypatch):
    model = registry.create("vae", hidden_units=16, latent_dim=2)
    params = memory.parameter_bytes(model)
    monkeypatch.setattr(memory, "physical_memory", lambda: 3 * params)  # weights fit, training does not
    with pytest.raises(UserError, match="gradients and optimiser"):
        memory.check_training_memory(model, "vae")


def test_the_sample_memory_check_states_its_limit(monkeypatch):
    monkeypatch.setattr(memory, "free_memory", lambda: 8 * 2**30)
    memory.check_sample_memory((1, 28, 28), 100_000, "--n 100000")  # 0.3 GiB: fine
    with pytest.raises(UserError) as exc:
        memory.check_sample_memory((1, 28, 28), 10_000_000, "--n 10000000")
    line = one_line(exc)
    assert "more than the 4.0 GiB limit (half the 8.0 GiB of memory free now)" in line
    with pytest.raises(UserError, match="over 64 steps"):  # a GIF keeps every step and its frames
        memory.check_sample_memory((1, 28, 28), 20_000, "--n 20000", steps=64, picture_scale=2)


# --------------------------------------------------------------------------------------------
# Weights


def _tiny() -> VAE:
    torch.manual_seed(0)
    return VAE(VAE.Config(hidden_units=8, latent_dim=2))


def _write_weights(run_dir: Path, tensors: dict[str, torch.Tensor], step: int = 3) -> None:
    run_dir.mkdir(exist_ok=True)
    safetensors.torch.save_file(tensors, str(run_dir / runs.MODEL_FILE), metadata={"step": str(step)})


def test_weights_with_nan_or_inf_are_refused_naming_the_tensor(tmp_path):
    state = {k: v.clone() for k, v in _tiny().state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    for bad in (float("nan"), float("inf")):
        state[name].view(-1)[3] = bad
        _write_weights(tmp_path, state)
        with pytest.raises(UserError, match="non-finite") as exc:
            runs.load_weights(tmp_path, _tiny())
        assert repr(name) in one_line(exc)


def test_weights_of_another_dtype_are_refused_naming_the_tensor(tmp_path):
    state = {k: v.clone() for k, v in _tiny().state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].to(torch.int32)
    _write_weights(tmp_path, state)
    with pytest.raises(UserError, match="int32") as exc:
        runs.load_weights(tmp_path, _tiny())
    assert repr(name) in one_line(exc)
    state[name] = torch.full_like(state[name], 1e300, dtype=torch.float64)  # inf as float32
    _write_weights(tmp_path, state)
    with pytest.raises(UserError, match="overflows"):
        runs.load_weights(tmp_path, _tiny())


def test_the_weights_identity_is_read_with_the_weights(tmp_path):
    model = _tiny()
    _write_weights(tmp_path, model.state_dict(), step=7)
    ident = runs.load_weights(tmp_path, _tiny())
    data = (tmp_path / runs.MODEL_FILE).read_bytes()
    assert ident == runs.WeightsId(7, hashlib.sha256(data).hexdigest()) == runs.weights_id(tmp_path)


def _finished(run_dir: Path, step: int) -> runs.WeightsId:
    _write_weights(run_dir, _tiny().state_dict(), step=step)
    ident = runs.weights_id(run_dir)
    runs.write_json(run_dir / runs.RESULTS_FILE, {"metrics": {}, "steps": step, "weights": ident.as_json()})
    return ident


def test_a_metric_is_recorded_only_with_the_weights_it_was_computed_from(tmp_path):
    loaded = _finished(tmp_path, 3)  # `genlearn eval` loads these weights ...
    new = {k: v + 1 for k, v in _tiny().state_dict().items() if v.is_floating_point()}
    _write_weights(tmp_path, new | {k: v for k, v in _tiny().state_dict().items() if k not in new}, step=6)
    finished_again = runs.weights_id(tmp_path)  # ... while a resume trains on and finishes
    runs.write_json(
        tmp_path / runs.RESULTS_FILE, {"metrics": {}, "steps": 6, "weights": finished_again.as_json()}
    )
    with pytest.raises(UserError, match="step 6 but the weights are of step 3"):
        runs.record_metrics(tmp_path, {"nll": 1.0}, loaded)
    assert runs.results(tmp_path)["metrics"] == {}
    runs.record_metrics(tmp_path, {"nll": 2.0}, finished_again)
    assert runs.results(tmp_path)["metrics"] == {"nll": 2.0}


def test_same_step_other_weights_are_told_apart_by_their_hash(tmp_path):
    _finished(tmp_path, 3)
    other = runs.WeightsId(3, "0" * 64)
    with pytest.raises(UserError, match="other weights of step 3"):
        runs.record_metrics(tmp_path, {"nll": 1.0}, other)


def test_results_of_older_versions_fall_back_to_the_step(tmp_path):
    ident = _finished(tmp_path, 3)
    runs.write_json(tmp_path / runs.RESULTS_FILE, {"metrics": {}, "steps": 3})  # no "weights"
    runs.record_metrics(tmp_path, {"nll": 1.0}, ident)
    with pytest.raises(UserError, match="step 3 but the weights are of step 4"):
        runs.record_metrics(tmp_path, {"nll": 1.0}, runs.WeightsId(4, ident.sha256))


# --------------------------------------------------------------------------------------------
# The checkpoint pair


def _state(step: int) -> dict:
    return {k: 0 for k in checkpoint.TRAINER_KEYS} | {"step": step}


def _pair(run_dir: Path) -> tuple[int, int | None]:
    return checkpoint.load_trainer(run_dir)["step"], runs.step_of(run_dir / runs.MODEL_FILE)


def _saved_pair(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    checkpoint.save(tmp_path, _tiny(), _state(1))
    return tmp_path, (tmp_path / runs.MODEL_FILE).read_bytes(), (tmp_path / runs.TRAINER_FILE).read_bytes()


def _assert_previous_pair(run_dir: Path, model: bytes, trainer: bytes) -> None:
    assert (run_dir / runs.MODEL_FILE).read_bytes() == model
    assert (run_dir / runs.TRAINER_FILE).read_bytes() == trainer
    assert temporaries(run_dir) == []
    checkpoint.recover(run_dir)  # and a resume takes it as it is
    assert _pair(run_dir) == (1, 1)


@pytest.fixture
def immutable():
    """chattr +i on a file (undone at the end); skipped where the file system or rights lack it."""
    done: list[Path] = []

    def make(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        done.append(path)

    yield make
    for path in done:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.mark.parametrize("which", [runs.MODEL_FILE, runs.TRAINER_FILE])
def test_an_immutable_checkpoint_file_keeps_the_previous_pair(tmp_path, immutable, which):
    run_dir, model, trainer = _saved_pair(tmp_path)
    immutable(run_dir / which)
    with pytest.raises(UserError, match="step 1 is kept") as exc:
        checkpoint.save(run_dir, _tiny(), _state(2))
    assert "fix that and resume" in one_line(exc)
    _assert_previous_pair(run_dir, model, trainer)


def test_a_checkpoint_over_the_file_size_limit_keeps_the_previous_pair(tmp_path):
    run_dir, model, trainer = _saved_pair(tmp_path)
    code = f"""
        import torch
        from genlearn.errors import UserError
        from genlearn.models.vae import VAE
        from genlearn.train import checkpoint
        state = {{k: 0 for k in checkpoint.TRAINER_KEYS}} | {{"step": 2, "big": torch.zeros(100_000)}}
        try:
            checkpoint.save({str(run_dir)!r}, VAE(VAE.Config(hidden_units=8, latent_dim=2)), state)
        except UserError as exc:
            print(exc)
    """
    child = _child(code, preexec_fn=_file_size_limit(max(len(model), len(trainer)) + 50_000))
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "file-size limit" in out and "step 1 is kept" in out and "free some space" in out
    _assert_previous_pair(run_dir, model, trainer)


@pytest.mark.parametrize("then", ["roll forward", "roll back"])
def test_a_process_killed_between_the_two_renames_leaves_a_recoverable_pair(tmp_path, immutable, then):
    run_dir, model, trainer = _saved_pair(tmp_path)
    code = f"""
        import os
        from genlearn.models.vae import VAE
        from genlearn.train import checkpoint
        real = os.replace
        def replace(src, dst):
            if str(src).endswith("model.safetensors.tmp"):
                os._exit(9)  # killed right there
            real(src, dst)
        os.replace = replace
        checkpoint.save({str(run_dir)!r}, VAE(VAE.Config(hidden_units=8, latent_dim=2)), {{
            **{{k: 0 for k in checkpoint.TRAINER_KEYS}}, "step": 2}})
    """
    child = _child(code)
    child.communicate(timeout=120)
    assert child.returncode == 9
    assert checkpoint.load_trainer(run_dir)["step"] == 2 and runs.step_of(run_dir / runs.MODEL_FILE) == 1
    if then == "roll back":  # the new weights cannot be put in place: the previous trainer.pt returns
        immutable(run_dir / runs.MODEL_FILE)
    checkpoint.recover(run_dir)
    assert temporaries(run_dir) == []
    if then == "roll forward":
        assert _pair(run_dir) == (2, 2)
    else:
        _assert_previous_pair(run_dir, model, trainer)


def test_a_pair_that_cannot_be_restored_is_one_line(tmp_path):
    run_dir, _, _ = _saved_pair(tmp_path)
    state = torch.load(run_dir / runs.TRAINER_FILE, weights_only=True) | {"step": 5, "model_sha256": "0" * 64}
    torch.save(state, run_dir / runs.TRAINER_FILE)
    with pytest.raises(UserError, match="not a pair") as exc:
        checkpoint.recover(run_dir)
    one_line(exc)


def test_checkpoint_files_that_are_links_are_refused(tmp_path):
    run_dir, model, trainer = _saved_pair(tmp_path)
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_bytes(b"precious")
    (run_dir / runs.TRAINER_FILE).unlink()
    (run_dir / runs.TRAINER_FILE).symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        checkpoint.save(run_dir, _tiny(), _state(2))
    with pytest.raises(UserError, match="symbolic link"):
        checkpoint.load_trainer(run_dir)
    assert victim.read_bytes() == b"precious" and (run_dir / runs.MODEL_FILE).read_bytes() == model
    (run_dir / runs.MODEL_FILE).unlink()
    (run_dir / runs.MODEL_FILE).symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        runs.load_weights(run_dir, _tiny())


def test_json_of_the_wrong_top_level_type(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([1]))
    with pytest.raises(UserError, match="not an object"):
        runs.read_json(path)
    assert runs.read_json(path, top=list) == [1]
