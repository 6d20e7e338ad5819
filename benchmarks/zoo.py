"""`make zoo`: train every entry of the zoo from its recipe, export it, and measure it.

    python benchmarks/zoo.py [--only NAME[,NAME...]] [--runs runs/zoo] [--zoo zoo] [--jobs 1] [--cards]

The plan is configs/zoo.toml: each entry names a model and a preset of configs/ (which holds the
budget). Each entry is trained as a user would (`genlearn train MODEL --config configs/PRESET --out
runs/zoo/NAME --quiet`, on one thread), then exported (`genlearn export runs/zoo/NAME DIR`, which
measures every metric that applies from the exported file) and moved to zoo/NAME, where it
replaces an earlier entry only when its headline figure (the first of its model card) is better.

Interrupted, the same command resumes: a training stopped mid-way continues from its checkpoint
(`--resume`), a finished one is not trained again, and an export is written whole or not at all.
A progress bar counts the plan's trainings and exports; each entry's commands and their output go
to runs/zoo/NAME.log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from genlearn import zoo
from genlearn.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "configs" / "zoo.toml"


@dataclass(frozen=True)
class Entry:
    name: str
    model: str
    preset: Path
    note: str = ""


def read_plan(path: Path = PLAN) -> list[Entry]:
    with open(path, "rb") as fh:
        plan = tomllib.load(fh)
    return [
        Entry(name, spec["model"], ROOT / "configs" / spec["preset"], spec.get("note", ""))
        for name, spec in plan.items()
    ]


def select(plan: list[Entry], only: str) -> list[Entry]:
    if not only:
        return plan
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {e.name for e in plan}
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"error: no zoo entry {unknown[0]!r}; the plan has: {', '.join(sorted(known))}")
    return [e for e in plan if e.name in names]


def genlearn(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "genlearn", *map(str, args)]


def run_logged(cmd: list[str], log: Path) -> None:
    """Run `cmd` on one thread, appending the command and its output to `log`; a failure stops
    this entry (the log says why)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:4])} failed (exit {done.returncode}); see {log}")


def finished(run: Path) -> bool:
    from genlearn import runs

    try:
        described = runs.results(run)
        runs.check_same_weights(described, runs.weights_id(run), run) if described else None
    except Exception:
        return False
    return bool(described)


def train(entry: Entry, run: Path, log: Path) -> None:
    if finished(run):
        return
    resume = ["--resume"] if (run / "trainer.pt").exists() else []
    run_logged(
        genlearn("train", entry.model, "--config", entry.preset, "--out", run, "--quiet", *resume), log
    )


def headline(entry_dir: Path) -> tuple[float, bool] | None:
    """(value, higher is better) of the entry's first headline figure, None without one."""
    from genlearn import registry, runs, zoo

    name, config = registry.run_config(entry_dir)
    metrics = runs.results(entry_dir).get("metrics", {})
    for figure in zoo.headline_figures(name, config):
        if isinstance(metrics.get(figure.key), (int, float)):
            return float(metrics[figure.key]), figure.higher_is_better
    return None


def better(new: Path, old: Path) -> bool:
    """Whether the export `new` should replace the entry `old`."""
    if not (old / "results.json").exists():
        return True
    a, b = headline(new), headline(old)
    if a is None or b is None:
        return a is not None
    return a[0] > b[0] if a[1] else a[0] < b[0]


def export(entry: Entry, run: Path, zoo_dir: Path, log: Path, note: str = "") -> str:
    """Export the run beside the zoo (`genlearn export`, in this process), then put it in place if
    it is better; says what it did."""
    import genlearn

    target = zoo_dir / entry.name
    staged = zoo_dir / f".{entry.name}.new"
    shutil.rmtree(staged, ignore_errors=True)
    recipe = f"genlearn train {entry.model} --config configs/{entry.preset.name}"
    with open(log, "a") as fh:
        fh.write(f"$ genlearn export {run} {staged} --recipe '{recipe}'\n")
    notes = " ".join(n for n in (entry.note, note) if n)
    genlearn.export(run, staged, recipe=recipe, note=notes, shown_as=f"zoo/{entry.name}")
    if not better(staged, target):
        shutil.rmtree(staged)
        return f"{entry.name}: kept the earlier entry (its headline figure is as good or better)"
    old = zoo_dir / f".{entry.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)
    return f"{entry.name}: exported to {target}"


def main() -> None:
    import torch

    torch.set_num_threads(1)  # the exports' metrics, on one thread as the trainings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="entries to build, comma-separated (default: all)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "zoo", help="where the trainings run")
    parser.add_argument("--zoo", type=Path, default=ROOT / "zoo", help="where the entries go")
    parser.add_argument("--jobs", type=int, default=1, help="entries side by side, one thread each")
    parser.add_argument(
        "--note", default="", help="a line for every card of this build (e.g. the machine's load)"
    )
    parser.add_argument(
        "--cards",
        action="store_true",
        help="only write the entries' model cards again from their results.json",
    )
    args = parser.parse_args()
    plan = select(read_plan(), args.only)
    if args.cards:
        for entry in plan:
            if (args.zoo / entry.name).is_dir():
                tqdm.write(f"{entry.name}: {zoo.write_card(args.zoo / entry.name, f'zoo/{entry.name}')}")
        return
    args.runs.mkdir(parents=True, exist_ok=True)
    args.zoo.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=2 * len(plan), desc="zoo", unit="step")

    def build(entry: Entry) -> str:
        run, log = args.runs / entry.name, args.runs / f"{entry.name}.log"
        bar.set_postfix_str(f"training {entry.name}")
        train(entry, run, log)
        bar.update()
        bar.set_postfix_str(f"exporting {entry.name}")
        said = export(entry, run, args.zoo, log, args.note)
        bar.update()
        return said

    failures = 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for entry, future in [(e, pool.submit(build, e)) for e in plan]:
            try:
                tqdm.write(future.result())
            except (RuntimeError, UserError) as exc:
                failures += 1
                tqdm.write(f"{entry.name}: {exc}")
    bar.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
