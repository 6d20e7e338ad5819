"""`genlearn train | sample | eval | compare | export | serve | models | info`: the arguments
parsed, the work done by `genlearn.api` (`genlearn.serve` for the explorer), the outcome printed.

A user mistake prints one `error: ...` line and exits with status 2; a training failure (NaN loss)
exits 1 with its own `error:` line. Ctrl-C (or SIGTERM) during training saves a checkpoint and
exits 130; anywhere else it prints one line saying what was and was not written, and exits 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genlearn import api
from genlearn.errors import Interrupted, TrainingError, UserError

# `genlearn.eval.metrics.METRICS`'s names, written out so that `--help` does not import torch
METRIC_NAMES = (
    "elbo", "nll", "probe", "parzen", "fid", "coverage", "label_agreement", "conformity", "nearest", "ais",
)  # fmt: skip
INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage dump
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genlearn", description="Train, sample, evaluate and compare generative models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model into a run directory")
    t.add_argument("model", help="registered model name (see `genlearn models`)")
    t.add_argument("--config", help="TOML file of config values")
    t.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="override fields"
    )
    t.add_argument("--out", help="run directory (default runs/<model>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run")
    s.add_argument(
        "--n",
        type=int,
        help="how many (default 64; with --labels one per label; with captions 8 per caption, or 4 for a .gif)",
    )
    s.add_argument(
        "--out",
        required=True,
        help=".png (grid), .npz (key 'images'), .gif (DRAW's canvas; alignDRAW's with the words' alignment; "
        "LAPGAN's pyramid coarse to fine)",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="draw z_t = mu_t + T sigma_t eps_t (models that can: alignDRAW); 1 = the model, 0 = the mean path",
    )
    given = s.add_mutually_exclusive_group()
    given.add_argument(
        "--labels",
        help="digits to draw, e.g. 3,3,7 or 0-9 (models that take labels); --n N repeats each N/len times",
    )
    given.add_argument(
        "--caption", help="a caption to draw (models that take captions), e.g. 'the digit 7 ...'"
    )
    given.add_argument("--captions", metavar="FILE", help="captions to draw, one a line: a grid row each")

    e = sub.add_parser(
        "eval", help="evaluate a trained run on held-out data (test figures go to results.json)"
    )
    e.add_argument("run")
    e.add_argument(
        "--metric",
        required=True,
        help=f"one or several, comma-separated (the metrics of samples then share one draw): {', '.join(METRIC_NAMES)}",
    )
    e.add_argument("--k", type=int, help="importance samples for nll (default 5000)")
    e.add_argument(
        "--ais-runs", type=int, help="AIS runs for ais (default the protocol's 100; more tighten log Z)"
    )
    e.add_argument("--split", default="test", choices=("test", "valid"))
    e.add_argument("--seed", type=int, default=0)
    e.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature of sample-based metrics (models that can); figures get a _t<T> suffix",
    )
    e.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where to evaluate")
    e.add_argument("--json", action="store_true", help="print one JSON object a metric, a line each")

    c = sub.add_parser(
        "compare", help="every metric of several runs in one table, grouped, with measured sampling speed"
    )
    c.add_argument("runs", nargs="+", help="run directories (each once)")
    c.add_argument(
        "--out", help="directory for compare.md (the table, configs, dates) and compare.png (samples)"
    )
    c.add_argument("--json", action="store_true", help="print the table as one JSON object")

    x = sub.add_parser(
        "export",
        help="writes a shareable copy of a finished run: weights, config, results, pictures and a model card",
    )
    x.add_argument("run")
    x.add_argument("dir", help="where the copy goes (a new directory, e.g. zoo/NAME)")
    x.add_argument(
        "--metric",
        help="the metrics measured for the card, comma-separated (default: every one that applies)",
    )
    x.add_argument("--recipe", default="", help="the command that trains the run, for the card")
    x.add_argument("--note", default="", help="a line the card's reader should know")

    v = sub.add_parser("serve", help="explore every finished run in the browser (a page over a JSON API)")
    v.add_argument(
        "dirs", nargs="*", metavar="DIR", help="directories holding runs (default: zoo/ and runs/)"
    )
    v.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    v.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")

    sub.add_parser("models", help="list the registered models")
    i = sub.add_parser("info", help="versions and data status, or one run's config and results")
    i.add_argument("run", nargs="?")
    return p


# ---- train ----------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from genlearn import config as cfg

    out = Path(args.out or f"runs/{args.model}")
    try:
        run = api.train(
            args.model,
            args.out,
            config=[part for part in (args.config, cfg.parse_sets(args.set)) if part is not None],
            resume=args.resume,
            progress=not args.quiet,
        )
    except Interrupted as stop:
        print(
            f"\ninterrupted at step {stop.step}: checkpoint saved in {out}; resume with: "
            f"genlearn train {args.model} --out {out} --resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    except KeyboardInterrupt:
        print(f"\ninterrupted; {_checkpoint_kept(out)}", file=sys.stderr)
        return INTERRUPTED
    res = run.results
    if res:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items() if isinstance(v, float))
        print(f"{args.model}: {res['epochs']} epochs, {res['train_time_s']:.0f} s; test {shown}")
        print(f"run directory: {out}  pictures: {', '.join(str(out / f) for f in res.get('figures', []))}")
    return 0


def _checkpoint_kept(out: Path) -> str:
    from genlearn import files, runs

    try:
        kept = files.lexists(out / runs.TRAINER_FILE)
    except UserError:
        kept = False
    return "the last checkpoint is kept" if kept else "nothing was saved"


# ---- sample ---------------------------------------------------------------------------------------
def cmd_sample(args) -> int:
    captions = [args.caption] if args.caption is not None else None
    if args.captions is not None:
        captions = api.read_captions(args.captions)
    written = api.write_samples(
        args.run,
        args.out,
        args.n,
        seed=args.seed,
        temperature=args.temperature,
        labels=args.labels,
        captions=captions,
    )
    for line in written.lines:
        print(line)
    return 0


# ---- eval -----------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from genlearn import runs

    done = api.evaluations(
        args.run,
        args.metric,
        split=args.split,
        seed=args.seed,
        k=args.k,
        ais_runs=args.ais_runs,
        temperature=args.temperature,
        progress=not args.json and sys.stderr.isatty(),
        device=args.device,
    )
    args.recorded = []  # what the Ctrl-C line reports
    for e in done:
        if args.json:
            record = {"run": args.run, "metric": e.metric, "split": args.split, **e.figures}
            print(runs.dumps(record | {"seconds": e.seconds, "device": e.device}), flush=True)
        else:
            for k, v in e.figures.items():
                print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
            print(f"({e.metric}, {args.split} split, {e.seconds:.1f} s)", flush=True)
        if e.not_recorded:
            print(f"warning: not recorded in results.json: {e.not_recorded}", file=sys.stderr)
        elif e.recorded is not None:
            args.recorded.append(e.metric)
            print(f"recorded in {e.recorded}", file=sys.stderr, flush=True)
    return 0


# ---- compare, export, models, info ----------------------------------------------------------------
def cmd_compare(args) -> int:
    table = api.compare(args.runs, out=args.out)
    text = table.json() if args.json else table.text()
    written = ", ".join(map(str, table.written))
    if written and args.json:  # stdout stays JSON
        print(f"wrote {written}", file=sys.stderr)
    print(f"{text}\n\nwrote {written}" if written and not args.json else text)
    return 0


def cmd_export(args) -> int:
    metrics = [m.strip() for m in args.metric.split(",")] if args.metric else None
    written = api.export(
        args.run, args.dir, metrics=metrics, recipe=args.recipe, note=args.note, progress=sys.stderr.isatty()
    )
    print(f"wrote a shareable copy of {args.run} to {written}")
    return 0


def cmd_serve(args) -> int:
    from genlearn import serve

    serve.serve(args.dirs, args.host, args.port)
    return 0


def cmd_models(args) -> int:
    found = api.models()
    width = max(map(len, found))
    for name, description in found.items():
        print(f"{name.ljust(width)}  {description}")
    return 0


def cmd_info(args) -> int:
    if args.run:
        info = api.info(args.run)
        print(f"run {args.run}: model {info.model}")
        print(info.config_text.rstrip())
        if info.results:
            print("results:", json.dumps(info.results.get("metrics", {}), indent=2))
        return 0
    env = api.environment()
    print(f"genlearn {env['genlearn']}, torch {env['torch']}, {env['threads']} threads")
    print(f"cuda: {env['cuda']}")
    print(f"data cache: {env['cache']}")
    print(f"  MNIST wheel: {env['wheel']}")
    print(f"  MNIST arrays: {env['arrays']}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "compare": cmd_compare,
    "export": cmd_export,
    "serve": cmd_serve,
    "models": cmd_models,
    "info": cmd_info,
}


# ---- Ctrl-C outside training ------------------------------------------------------------------------
def interrupted(args, started: float) -> str:
    """What a command stopped by Ctrl-C (or SIGTERM) wrote and did not write. Every file genlearn
    writes is written whole or not at all (a temporary renamed into place), so a file is either
    new or as it was."""
    if args.command == "train":  # stopped before the loop started
        return _checkpoint_kept(Path(args.out or f"runs/{args.model}"))
    if args.command == "eval":
        recorded = getattr(args, "recorded", [])
        if recorded:
            return f"{', '.join(recorded)} recorded in {Path(args.run) / 'results.json'}; nothing else was written"
        return "nothing was written (results.json is as it was)"
    if args.command == "sample":
        out = Path(args.out)
        return _new_files([out, out.with_suffix(".png")], started, f"{args.out} is as it was")
    if args.command == "compare" and args.out:
        out = Path(args.out)
        return _new_files([out / "compare.md", out / "compare.png"], started, f"{args.out} is as it was")
    if args.command == "export":  # the copy is made beside it and moved into place whole
        return f"nothing was written to {args.dir}"
    return "nothing was written"


def _new_files(paths: list[Path], started: float, otherwise: str) -> str:
    """Which of `paths` were written since `started`."""
    fresh = []
    for path in dict.fromkeys(paths):
        try:
            if path.stat().st_mtime >= started:
                fresh.append(str(path))
        except OSError:
            pass
    if fresh:
        return f"wrote {', '.join(fresh)}; nothing else was written"
    return f"nothing was written ({otherwise})"


def main(argv: list[str] | None = None) -> int:
    import signal
    import time

    from genlearn import files

    args = _parser().parse_args(argv)
    started = time.time()
    previous = signal.getsignal(signal.SIGTERM)
    files.raise_on_sigterm()  # a `kill` stops a command as Ctrl-C does
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; {interrupted(args, started)}", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `genlearn info RUN | head`: the reader has gone; so has the output
        _silence_stdout()
        return 0
    finally:
        _restore(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _restore(signum: int, handler) -> None:
    """Put back the handler a caller in this process had (main() may run inside another program)."""
    import signal

    try:
        signal.signal(signum, handler)
    except (ValueError, TypeError):  # not the main thread, or a handler set outside Python
        pass


if __name__ == "__main__":
    sys.exit(main())
