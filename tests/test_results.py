"""`make results` (benchmarks/results.py): the quick plan end to end, its table, its section of
RESULTS.md, and resuming; and its one-line refusals of bad input.

The quick plan runs in this process (`main(..., in_process=True)`), so that the test can shrink
what the metrics score and stand small networks in for the real ones: MNIST sliced to 2,000
training and 500 validation and test images, 400 composites per captioned split, 400 samples per
sample metric, Gibbs chains of 20 steps, AIS over 200 temperatures, the session's small MNIST
classifier (conftest.py) and a conformity checker of 20 steps trained here. A fresh machine has no
cached classifier or checker, and training the real ones takes minutes: nothing here may load
them, nor read or write the real cache. The section is written into a temporary copy of a results
file, never docs/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tqdm import tqdm

from conftest import REAL_CACHE, assert_user_error, needs_mnist, one_thread
from genlearn import cli, registry, runs
from genlearn import comparison as compare

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"train": 2000, "valid": 500, "test": 500}
BEFORE = "# Results\n\nHand-written text above the generated section.\n"
AFTER = "\n## Later\n\nHand-written text below it.\n"


def _load_script():
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "benchmarks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


results = _load_script()


def _run(*args: str) -> tuple[int, str, str]:
    """The script's main in this process, with its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), one_thread():
        try:
            code = results.main(list(args), in_process=True)
        except SystemExit as exc:  # argparse's refusals
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _short_chains(sample):
    """A Boltzmann machine's `sample` whose Gibbs chains run at most 20 steps."""

    def short(self, n, generator=None, steps=20, **condition):
        return sample(self, n, generator, min(steps, 20), **condition)

    return short


# ---- the quick plan, end to end -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_world(mnist_full, small_classifier, tmp_path_factory):
    """MNIST sliced, the metrics' sample sizes cut, the small classifier and a tiny checker in
    place of the real ones, and a cache directory of the test's own."""
    from genlearn.data import captions, mnist
    from genlearn.eval import ais, classifier, conformity, metrics, parzen
    from genlearn.models import dbm, dbn, rbm

    small = dataclasses.replace(
        mnist_full,
        **{f"{s}_{k}": getattr(mnist_full, f"{s}_{k}")[:n] for s, n in SMALL.items() for k in "xy"},
    )

    def load(data_dir="", train_limit=0):
        if not train_limit:
            return small
        return dataclasses.replace(
            small, train_x=small.train_x[:train_limit], train_y=small.train_y[:train_limit]
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLEARN_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(mnist, "load", load)
        mp.setattr(captions, "N_EVAL", 400)
        mp.setattr(parzen, "N_SAMPLES", 400)
        mp.setattr(parzen, "N_VALID", 200)
        mp.setattr(metrics, "N_SAMPLE_METRIC", 400)  # above the 256 features FID's covariances have
        mp.setattr(metrics, "N_NEAREST", 100)
        mp.setattr(compare.measure, "SAMPLING_BUDGET_S", 0.02)
        mp.setattr(ais, "default_betas", lambda: torch.linspace(0, 1, 201, dtype=torch.float64))
        for boltzmann in (rbm.RBM, dbn.DBN, dbm.DBM):  # Gibbs chains of 20 steps, not 1,000
            mp.setattr(boltzmann, "sample", _short_chains(boltzmann.sample))
        with one_thread():
            checker = conformity.load_checker(
                progress=False, cache_dir=tmp_path_factory.mktemp("checker"), steps=20, batch_size=32
            )
        mp.setattr(conformity, "load_checker", lambda **_: checker)
        mp.setattr(classifier, "load_classifier", lambda **_: small_classifier)
        yield


class Counted:
    """genlearn's command line, counting the trainings and evaluations the plan runs."""

    def __init__(self, main):
        self.main, self.calls = main, []

    def __call__(self, args):
        self.calls.append(list(args))
        return self.main(args)

    def count(self, command: str) -> int:
        return sum(call[0] == command for call in self.calls)


@pytest.fixture(scope="module")
def plan(small_world, tmp_path_factory):
    """The quick plan run once (budget 0.5 s), into a copy of a results file; and a second time."""
    root = tmp_path_factory.mktemp("results")
    target = root / "RESULTS.md"
    target.write_text(f"{BEFORE}{results.BEGIN}\nan earlier generated section\n{results.END}{AFTER}")
    args = ("--quick", "--budget", "0.5", "--plan", str(root / "plan"), "--results", str(target))
    found = {"root": root, "target": target, "args": args}
    with pytest.MonkeyPatch.context() as mp:
        for run in ("first", "second"):
            counted = Counted(cli.main)
            mp.setattr(cli, "main", counted)
            found[run] = (*_run(*args), counted)
            found[f"{run}_text"] = target.read_text()
            mp.setattr(cli, "main", counted.main)
    return found


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The generated section's table: its column heads and its rows of cells."""
    section = text.split(results.BEGIN, 1)[1].split(results.END, 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in rows]
    return split[0], [r for r in split[1:] if not r[0].startswith("---") and not r[0].startswith("**")]


@needs_mnist
@pytest.mark.slow
def test_the_quick_plan_trains_and_evaluates_every_family_and_writes_the_section(plan):
    code, out, err = plan["first"][:3]
    assert code == 0, err
    counted = plan["first"][3]
    families = registry.names()
    assert counted.count("train") == len(families)
    assert all("--resume" not in call for call in counted.calls)
    heads, rows = _table(plan["first_text"])
    assert heads[1:] == [f"`{name}` ({name})" for name in families]
    assert all(len(row) == len(heads) for row in rows)
    not_run = [(row[0], heads[i]) for row in rows for i, cell in enumerate(row) if cell == compare.NOT_RUN]
    assert not not_run, f"applicable but not evaluated: {not_run}"
    for name in families:  # every family has a figure in a row of each metric that applies
        for metric, keys in results.plan_family(
            name, plan["root"] / "plan", results.QUICK, 1
        ).metrics.items():
            held = runs.results(plan["root"] / "plan" / name)["metrics"]
            assert all(k in held for k in keys), (name, metric)
    assert (plan["root"] / "plan" / f"{families[0]}.log").read_text().count("$ genlearn") >= 2
    assert f"{counted.count('train')} trainings" in out


@needs_mnist
@pytest.mark.slow
def test_the_section_replaces_only_its_own_part_of_the_results_file(plan):
    for text in (plan["first_text"], plan["second_text"]):
        assert text.startswith(BEFORE + results.BEGIN) and text.endswith(results.END + AFTER)
        assert text.count(results.BEGIN) == 1 and text.count(results.END) == 1
        assert "an earlier generated section" not in text
    section = plan["first_text"].split(results.BEGIN, 1)[1]
    assert "Quick mode" in section and "--quick --budget 0.5" in section
    assert "torch " in section and "cores" in section and "UTC" in section
    assert "--k 5" in section and "--ais-runs 5" in section
    assert "![" in section and "(results/compare.png)" in section
    for name in registry.names():
        assert f"`{name}` (`configs/" in section
    with Image.open(plan["root"] / "results" / "compare.png") as picture:
        assert picture.width > 300 and picture.height > 300


@needs_mnist
@pytest.mark.slow
def test_a_second_run_skips_finished_work(plan):
    code, out, err, counted = plan["second"]
    assert code == 0, err
    assert counted.calls == []
    assert "0 trainings and 0 evaluations run now" in out


@needs_mnist
@pytest.mark.slow
def test_a_training_stopped_mid_way_is_resumed_and_its_metrics_evaluated_again(plan, monkeypatch):
    run = plan["root"] / "plan" / "dcgan"
    (run / runs.RESULTS_FILE).unlink()  # stopped after its last checkpoint, before finishing
    counted = Counted(cli.main)
    monkeypatch.setattr(cli, "main", counted)
    code, out, err = _run(*plan["args"])
    assert code == 0, err
    trainings = [c for c in counted.calls if c[0] == "train"]
    assert len(trainings) == 1 and trainings[0][1] == "dcgan" and "--resume" in trainings[0]
    # one evaluation for the metrics that share a draw of samples
    assert [c[c.index("--metric") + 1] for c in counted.calls if c[0] == "eval"] == [
        "parzen,fid,coverage,nearest"
    ]
    assert runs.results(run)["metrics"]["fid"] is not None


@needs_mnist
@pytest.mark.slow
def test_a_plan_stopped_by_sigterm_stops_its_jobs_and_resumes(tmp_path):
    """`kill PID` of a plan running in the background: the running training is stopped with its
    checkpoint, the plan exits 130 saying how to resume, and no job is left behind."""
    import os
    import signal
    import time

    plan, first = tmp_path / "plan", registry.names()[0]
    command = [sys.executable, str(ROOT / "benchmarks" / "results.py"), "--quick", "--budget", "60"]
    command += ["--plan", str(plan)]  # the quick plan's RESULTS.md is its own, in the plan
    env = dict(os.environ, GENLEARN_CACHE=str(REAL_CACHE))  # MNIST, whatever other tests set
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (plan / first / "metrics.jsonl").is_file():  # its first training is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert runs.results(plan / first) == {}  # stopped before the end of its 60 s
    assert (plan / first / "trainer.pt").is_file()  # with its checkpoint
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and str(plan) in _cmdline(pid)]
    assert left == []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# ---- bad input: one line each ---------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    code, out, err = _run(*args)
    return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--jobs", "64"], "--jobs"),
        (["--jobs", "0"], "--jobs"),
        (["--budget", "0"], "--budget"),
        (["--budget", "inf"], "--budget"),
        (["--budget", "ten"], "invalid float"),
        (["--frobnicate"], "unrecognized"),
    ],
)
def test_bad_options_are_refused_in_one_line(args, says, tmp_path):
    assert_user_error(
        _cli(*args, "--plan", str(tmp_path / "p"), "--results", str(tmp_path / "R.md")), contains=says
    )
    assert not (tmp_path / "p").exists()


def test_a_missing_results_file_or_broken_markers_are_refused(tmp_path):
    assert_user_error(_cli("--quick", "--results", str(tmp_path / "none.md")), contains="does not exist")
    broken = tmp_path / "R.md"
    broken.write_text(f"x\n{results.END}\n{results.BEGIN}\n")
    assert_user_error(_cli("--quick", "--results", str(broken)), contains="markers")


def test_a_family_without_a_preset_stops_the_plan_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "CONFIGS", tmp_path / "configs")
    monkeypatch.setattr(results, "ROOT", tmp_path)
    (tmp_path / "R.md").write_text("# R\n")
    proc = _cli("--quick", "--plan", str(tmp_path / "p"), "--results", str(tmp_path / "R.md"))
    assert_user_error(proc, contains=f"family {registry.names()[0]!r} has no preset")
    assert not (tmp_path / "p").exists()


def test_a_plan_directory_held_or_made_otherwise_is_refused(tmp_path):
    (tmp_path / "R.md").write_text("# R\n")
    plan_dir, other = tmp_path / "p", tmp_path / "other"
    common = ("--quick", "--results", str(tmp_path / "R.md"))
    with runs.locked(plan_dir):
        assert_user_error(_cli(*common, "--plan", str(plan_dir)), contains="another --plan")
    runs.write_json(plan_dir / results.PLAN_FILE, results.QUICK.settings(7.0))
    assert_user_error(_cli(*common, "--plan", str(plan_dir)), contains="other settings")
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert_user_error(_cli(*common, "--plan", str(other)), contains="not a results plan")


def _failing_family(tmp_path: Path, wrote: str, status: int):
    """A family whose training `runner` fails (or succeeds without writing a run), after an
    earlier failure left its own line in the log."""
    family = results.Family(
        "vae", ROOT / "configs" / "vae.toml", tmp_path / "vae", tmp_path / "vae.log", {}, {}, {}
    )
    tmp_path.mkdir(exist_ok=True)
    family.log.write_text("error: an earlier failure\n")

    def runner(args, log):
        with open(log, "a") as fh:
            fh.write(wrote)
        return status

    progress = results.Progress(tqdm(disable=True), tmp_path, {"timings": {}}, done=0, total=1)
    with pytest.raises(results.StepFailed) as failed:
        results.run_family(family, results.QUICK, runner, progress)
    return failed.value


def test_a_failing_step_is_reported_with_its_own_last_line(tmp_path):
    failed = _failing_family(tmp_path, "Traceback (most recent call last):\nValueError: boom\n", 1)
    assert (failed.status, failed.line) == (1, "ValueError: boom")
    assert "\n" not in str(failed) and "vae.log" in str(failed) and "genlearn train vae" in str(failed)
    failed = _failing_family(tmp_path / "again", "error: the data cache is damaged\n", 2)
    assert failed.line == "the data cache is damaged"


def test_a_step_that_records_nothing_is_a_failure(tmp_path):
    failed = _failing_family(tmp_path, "all went well\n", 0)
    assert "did not record its training in results.json" in failed.line


def test_a_file_without_the_section_gets_it_appended_and_keeps_the_rest():
    generated = f"{results.BEGIN}\nnew\n{results.END}"
    assert results.with_section(BEFORE, generated) == f"{BEFORE}\n{generated}\n"
    again = results.with_section(results.with_section(BEFORE, generated) + AFTER, generated)
    assert again == f"{BEFORE}\n{generated}\n{AFTER}"


def test_every_family_has_one_preset_naming_its_target():
    for name in registry.names():
        path = results.preset_path(name)
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Target: "), path
        assert results.preset_target(path), path


@needs_mnist
def test_the_zoo_mode_writes_the_table_and_each_entry_and_names_those_not_built(tmp_path):
    import genlearn
    from genlearn import zoo

    run, zoo_dir = tmp_path / "run", tmp_path / "zoo"
    with one_thread():
        genlearn.train(
            "vae", run, progress=False, hidden_units=32, latent_dim=2, train_limit=300, epochs=1, eval_every=0
        )
        zoo_dir.mkdir()
        zoo.export_run(run, zoo_dir / "vae", metrics=["elbo"])
    page = tmp_path / "RESULTS.md"
    block = "\n<!-- zoo:vae,dbm:begin -->\nSTALE\n<!-- zoo:vae,dbm:end -->\n"
    page.write_text(f"{BEFORE}{results.BEGIN}\nSTALE\n{results.END}\n{block}{AFTER}")
    code, _, err = _run("--zoo", str(zoo_dir), "--results", str(page))
    assert code == 0, err
    text = page.read_text()
    assert text.startswith(BEFORE) and text.endswith(AFTER) and "STALE" not in text
    table = text.split(results.BEGIN)[1].split(results.END)[0]
    assert "from the 1 entries of the zoo" in table and "compare.png" in table
    family = text.split("<!-- zoo:vae,dbm:begin -->")[1].split("<!-- zoo:vae,dbm:end -->")[0]
    vae, dbm = (ln for ln in family.splitlines() if ln.startswith("| ") and "zoo/" in ln)
    elbo = runs.results(zoo_dir / "vae")["metrics"]["elbo"]
    assert "[`zoo/vae`](zoo/vae/README.md)" in vae and f"**{elbo:.2f} ± " in vae
    assert "`genlearn train vae" in vae
    assert "not built yet" in dbm and "make zoo ZOO=dbm" in dbm
    assert "zoo/vae/samples.png" in family
    with Image.open(tmp_path / "results" / "compare.png") as picture:
        assert picture.format == "PNG"
