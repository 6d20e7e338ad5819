"""The margin of every test that checks a training outcome, under several seeds.

    .venv/bin/python tests/margins.py [--seeds 0,1,2,3,4] [--out margins.jsonl] [pytest args...]

runs `pytest -m outcome --train-seed S` once per seed (the tests marked `outcome` are those that
assert through the `expect` fixture of conftest.py), collects every checked value, and prints one
row per check: its threshold, the worst value over the seeds, and how far that is from the
threshold as a fraction of the threshold's distance from the committed seed's value. A failure
under any seed shows as a worst value on the wrong side. The committed tests run seed 0 only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(seeds: list[int], out: Path, extra: list[str]) -> None:
    out.unlink(missing_ok=True)
    for seed in seeds:
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "outcome",
            f"--train-seed={seed}",
            f"--outcomes={out}",
        ]
        print("$", " ".join(cmd[1:] + extra), flush=True)
        subprocess.run(cmd + extra, cwd=ROOT)


def worst(records: list[dict]) -> dict:
    """The record nearest to (or past) its threshold."""
    sign = 1.0 if records[0]["op"] in (">", ">=") else -1.0
    return min(records, key=lambda r: sign * (r["value"] - r["threshold"]))


def table(out: Path) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for line in out.read_text().splitlines():
        record = json.loads(line)
        groups[(record["test"], record["name"])].append(record)
    rows = [
        "| test | check | threshold | seed 0 | worst of seeds (seed) | seeds | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for (test, name), records in sorted(groups.items()):
        w = worst(records)
        committed = next((r["value"] for r in records if r["seed"] == 0), float("nan"))
        ops = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
        failures = sum(not ops[r["op"]](r["value"], r["threshold"]) for r in records)
        short = test.split("::", 1)[1] if "::" in test else test
        rows.append(
            f"| {short} | {name} | {w['op']} {w['threshold']:.4g} | {committed:.4g} | {w['value']:.4g} ({w['seed']}) "
            f"| {len({r['seed'] for r in records})} | {failures} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--out", default="margins.jsonl", type=Path)
    parser.add_argument("--table-only", action="store_true", help="tabulate an existing --out file")
    args, extra = parser.parse_known_args()
    if not args.table_only:
        run([int(s) for s in args.seeds.split(",")], args.out.resolve(), extra)
    print(table(args.out))


if __name__ == "__main__":
    main()
