"""What a user of the explorer meets, timed through HTTP on a running `genlearn serve`.

The server runs in its own process, as a user starts it (`genlearn serve DIR --port 0`, torch
bounded to two threads), and every figure is a request sent to it over a kept-alive connection:
the round trip, and the server's own time from its `Server-Timing` header ("made": computed for
this request; "kept": an identical answer given before). Each measurement uses a query not asked
before (a new seed, a new point), so that it is computed, unless it says "kept".

- The gallery of 16 runs once their models are loaded: `GET /api/runs`, then each run's
  `samples.png?n=16` (what the page's cards ask), computed; and again as kept answers.
- A grid of 64 from a VAE and a GAN (`samples.png?n=64`), beside the straightforward way to get
  the same picture, `genlearn sample RUN --n 64 --seed S --out x.png` (a process each time).
- The drawing over time of 16 images, DRAW's and alignDRAW's (`process.json?n=16`), beside
  `genlearn sample RUN --n 16 --seed S --out x.gif`, the command line's way to watch it.
- The latent view's decode under the cursor (`decode.png?x=&y=`) for a 50-d VAE (its principal
  plane) and a 2-D one, beside the decoder called in-process (`decode_mean` and the PNG): the
  floor under any server.

Implementations alternate within each round (server, then reference), `--rounds` rounds; the best
and the spread (median, worst) are printed. By default the runs are the registered families at
their presets' full sizes with their initial weights (how fast a model draws does not depend on
its training), written to a temporary directory; give directories to time real runs instead.

    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py [DIR ...] [--rounds 5] [--no-reference]
    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py --quick     # one round, no reference: a check
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import header  # noqa: E402

# The 16 runs of the default gallery: (directory, registered model, settings beyond its preset).
GALLERY = [
    ("autoencoder", "autoencoder", {}),
    ("vae", "vae", {}),
    ("vae-2d", "vae", {"latent_dim": 2}),
    ("draw", "draw", {}),
    ("draw-noattn", "draw-noattn", {}),
    ("draw-2digit", "draw-2digit", {}),
    ("aligndraw", "aligndraw", {}),
    ("gan", "gan", {}),
    ("dcgan", "dcgan", {}),
    ("cgan", "cgan", {}),
    ("lapgan", "lapgan", {}),
    ("lapgan-conditional", "lapgan-conditional", {}),
    ("rbm", "rbm", {}),
    ("dbn", "dbn", {}),
    ("dbm", "dbm", {}),
    ("gan-points", "gan", {"dataset": "ring8"}),
]
TARGETS_S = {"gallery": 1.0, "grid": 0.1, "timeline": 1.0, "decode": 0.03}


# ---- the runs -------------------------------------------------------------------------------------
def write_fresh_runs(directory: Path) -> None:
    """Each family at its preset's size with its initial weights (prepared on its data, as
    training begins), as a finished run: config.toml, model.safetensors, results.json."""
    import safetensors.torch

    import genlearn
    from genlearn import config as cfg
    from genlearn import data as datasets
    from genlearn import files, registry, runs

    for name, model_name, fields in GALLERY:
        run = directory / name
        run.mkdir(parents=True)
        model = registry.create(model_name, **fields)
        model.prepare(datasets.load(model.config), model.config.batch_size)
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        files.atomic_write(run / runs.MODEL_FILE, safetensors.torch.save(tensors, metadata={"step": "0"}))
        files.atomic_write(
            run / runs.CONFIG_FILE, cfg.to_toml(model.config, model_name, genlearn.__version__)
        )
        runs.write_json(
            run / runs.RESULTS_FILE, {"model": model_name, "metrics": {}, "epochs": 0, "steps": 0}
        )


# ---- the server -----------------------------------------------------------------------------------
class Server:
    """`genlearn serve DIRS --port 0` in a process of its own, and a kept-alive connection to it."""

    def __init__(self, directories: list[Path]):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genlearn", "serve", *map(str, directories), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env=env,
        )
        self.started = time.perf_counter()
        line = self.proc.stdout.readline()
        if " at http://" not in line:
            raise SystemExit(f"genlearn serve did not start: {line!r}")
        self.address = line.split(" at ")[1].split()[0]
        host, port = self.address.removeprefix("http://").rstrip("/").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)

    def wait_ready(self) -> str:
        """The server's line saying its gallery is ready (every model loaded, every card drawn),
        and how long after its start it came."""
        line = self.proc.stdout.readline().strip()
        return f"{line} ({time.perf_counter() - self.started:.1f} s after the command started)"

    def get(self, path: str) -> tuple[float, float, bytes]:
        """(round trip s, server s, body) of one GET; an error answer stops the benchmark."""
        start = time.perf_counter()
        try:
            self.conn.request("GET", path)
            answer = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):  # idle past uvicorn's keep-alive (5 s)
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            start = time.perf_counter()
            self.conn.request("GET", path)
            answer = self.conn.getresponse()
        body = answer.read()
        wall = time.perf_counter() - start
        if answer.status != 200:
            raise SystemExit(f"GET {path}: {answer.status} {body[:300]!r}")
        timing = answer.getheader("Server-Timing") or "made;dur=nan"
        return wall, float(timing.split("dur=")[1]) / 1000, body

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)


def cli_seconds(args: list[str]) -> float:
    """Wall seconds of `genlearn ARGS` in a fresh process (one thread), as a user runs it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genlearn", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


# ---- reporting ------------------------------------------------------------------------------------
def spread(values: list[float], unit: str = "s") -> str:
    scale = 1000 if unit == "ms" else 1
    best, median, worst = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    digits = 1 if unit == "ms" else 3
    return f"best {best:.{digits}f} {unit} (median {median:.{digits}f}, worst {worst:.{digits}f}; {len(values)} runs)"


def verdict(best: float, target: float) -> str:
    return f"target < {target * 1000:.0f} ms: {'met' if best < target else 'NOT met'}"


# ---- the measurements -----------------------------------------------------------------------------
def gallery(server: Server, rounds: int) -> dict[str, list[float]]:
    """The gallery as the page asks for it (seed 0: drawn ahead by the server), then with a seed
    not asked before (computed), then that seed again (kept)."""
    out: dict[str, list[float]] = {"first": [], "computed": [], "kept": [], "cards_server": []}
    for r in range(rounds):
        for kind, seed in (("first", 0), ("computed", 1000 + r), ("kept", 1000 + r)):
            start = time.perf_counter()
            _, _, body = server.get("/api/runs")
            served = 0.0
            for run in json.loads(body):
                _, s, _ = server.get(f"/api/runs/{run['id']}/samples.png?n=16&seed={seed}")
                served += s
            out[kind].append(time.perf_counter() - start)
            if kind == "computed":
                out["cards_server"].append(served)
    return out


def per_run_cards(server: Server, ids: list[str]) -> list[tuple[str, float]]:
    """Each card's server time (computed), slowest first: where the gallery's time goes."""
    times = [(i, server.get(f"/api/runs/{i}/samples.png?n=16&seed=77")[1]) for i in ids]
    return sorted(times, key=lambda t: -t[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dirs", nargs="*", type=Path, help="directories of runs (default: fresh full-size runs)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-reference", action="store_true", help="skip the command-line references")
    parser.add_argument("--quick", action="store_true", help="one round, no references: does it work")
    parser.add_argument("--positions", type=int, default=20, help="cursor positions per round (decode)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.no_reference, args.positions = 1, True, 5
    torch.set_num_threads(1)
    header("genlearn serve: the explorer through HTTP")
    with tempfile.TemporaryDirectory() as tmp:
        args.scratch = Path(tmp)
        directories = args.dirs
        if not directories:
            start = time.perf_counter()
            write_fresh_runs(Path(tmp) / "runs")
            print(f"# runs: {len(GALLERY)} families at their presets' sizes, initial weights "
                  f"(written in {time.perf_counter() - start:.0f} s)")  # fmt: skip
            directories = [Path(tmp) / "runs"]
        server = Server(directories)
        try:
            measure(server, args)
        finally:
            server.close()


def find(ids: list[str], *names: str) -> str | None:
    return next((i for name in names for i in ids if i.rsplit("/", 1)[-1] == name), None)


def against_the_cli(
    server: Server,
    args: argparse.Namespace,
    paths: dict[str, str],
    families: tuple[tuple[str, tuple[str, ...]], ...],
    what: str,
    view: str,
    n: int,
    seed: int,
    suffix: str,
) -> None:
    """`view` of n images (a new seed each round, from `seed`) for the first served run of each
    family (`paths`: each served run's directory, by id): the server's time and the round trip against TARGETS_S[what], and beside them (unless
    --no-reference) `genlearn sample RUN --n N --out x.SUFFIX` in a fresh process, which draws
    the same."""
    for label, names in families:
        run = find(list(paths), *names)
        if run is None:
            continue
        served, trips, cli = [], [], []
        for r in range(args.rounds):
            wall, s, _ = server.get(f"/api/runs/{run}/{view}?n={n}&seed={seed + r}")
            served.append(s)
            trips.append(wall)
            if not args.no_reference:
                out = str(args.scratch / f"{what}{suffix}")
                cli.append(
                    cli_seconds(["sample", paths[run], "--n", str(n), "--seed", str(seed + r), "--out", out])
                )
        print(f"{what} of {n}, {label} ({run}): server {spread(served, 'ms')}, round trip {spread(trips, 'ms')}; "
              f"{verdict(min(served), TARGETS_S[what])}")  # fmt: skip
        if cli:
            print(f"  reference `genlearn sample {paths[run]} --n {n} --out x{suffix}`: {spread(cli)}")


def measure(server: Server, args: argparse.Namespace) -> None:
    print(f"# {server.wait_ready()}")
    _, _, body = server.get("/api/runs")
    listed = json.loads(body)
    ids = [r["id"] for r in listed]
    paths = {r["id"]: r["path"] for r in listed}

    g = gallery(server, args.rounds)
    print(f"gallery of {len(ids)} runs (/api/runs + a card of 16 samples each, as the page asks), once loaded: "
          f"{spread(g['first'], 'ms')}; {verdict(min(g['first']), TARGETS_S['gallery'])}")  # fmt: skip
    print(f"  with a seed not asked before (every card drawn): {spread(g['computed'])}, of which the server "
          f"drew the cards in {spread(g['cards_server'])}")  # fmt: skip
    print(f"  that seed again (kept answers): {spread(g['kept'], 'ms')}")
    slowest = per_run_cards(server, ids)[:5]
    print("  slowest cards (server): " + ", ".join(f"{i} {t * 1000:.0f} ms" for i, t in slowest))

    families = (("VAE", ("vae",)), ("GAN", ("dcgan", "gan")))
    against_the_cli(server, args, paths, families, "grid", "samples.png", 64, 2000, ".png")
    families = (("DRAW", ("draw",)), ("alignDRAW", ("aligndraw",)))
    against_the_cli(server, args, paths, families, "timeline", "process.json", 16, 3000, ".gif")

    for label, names in (("VAE, principal plane", ("vae",)), ("VAE, 2-D latent", ("vae-2d",))):
        run = find(ids, *names)
        if run is None:
            continue
        server.get(f"/api/runs/{run}/latent.json?n=2000")  # the view opens: its plane is computed
        served, trips, floor = [], [], []
        floor_model = None
        if not args.no_reference:
            import genlearn
            from genlearn.viz.samples import grid_png

            floor_model = genlearn.load(paths[run])
        for r in range(args.rounds):
            for k in range(args.positions):
                x, y = (r * args.positions + k) * 0.013 - 1, 0.5 - k * 0.021
                wall, s, _ = server.get(f"/api/runs/{run}/decode.png?x={x:.4f}&y={y:.4f}")
                served.append(s)
                trips.append(wall)
                if floor_model is not None:
                    start = time.perf_counter()
                    with torch.no_grad():
                        z = torch.zeros(1, floor_model.config.latent_dim)
                        z[0, :2] = torch.tensor([x, y])
                        grid_png(floor_model.decode_mean(z))
                    floor.append(time.perf_counter() - start)
        print(f"decode under the cursor, {label} ({run}): server {spread(served, 'ms')}, round trip "
              f"{spread(trips, 'ms')}; {verdict(min(trips), TARGETS_S['decode'])} (round trip)")  # fmt: skip
        if floor:
            print(f"  floor: decode_mean + PNG in-process, {spread(floor, 'ms')}")


if __name__ == "__main__":
    main()
