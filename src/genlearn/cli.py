"""`genlearn train | sample | eval | compare | models | info`.

A user mistake prints one `error: ...` line and exits with status 2; a training failure (NaN loss)
exits 1 with its own `error:` line; Ctrl-C during training saves a checkpoint and exits 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from genlearn.errors import Interrupted, TrainingError, UserError

# `genlearn.eval.metrics.METRICS`'s names, written out so that `--help` does not import torch
METRIC_NAMES = (
    "elbo", "nll", "probe", "parzen", "fid", "coverage", "label_agreement", "conformity", "nearest", "ais",
)  # fmt: skip


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

    e = sub.add_parser("eval", help="evaluate a trained run on held-out data")
    e.add_argument("run")
    e.add_argument(
        "--metric",
        required=True,
        help=f"one or several, comma-separated (the metrics of samples then share one draw): {', '.join(METRIC_NAMES)}",
    )
    e.add_argument("--k", type=int, default=5000, help="importance samples for nll")
    e.add_argument(
        "--ais-runs", type=int, default=100, help="AIS runs for ais (the protocol's 100; more tighten log Z)"
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

    sub.add_parser("models", help="list the registered models")
    i = sub.add_parser("info", help="versions and data status, or one run's config and results")
    i.add_argument("run", nargs="?")
    return p


def cmd_train(args) -> int:
    from genlearn import config as cfg
    from genlearn import registry, runs
    from genlearn.train import loop

    registry.entry(args.model)  # unknown model: fail before touching the disk
    out = Path(args.out or f"runs/{args.model}")
    values: dict[str, Any] = {}
    if args.resume:
        name, saved = registry.run_config(out)
        if name != args.model:
            raise UserError(f"{out} is a {name!r} run, not {args.model!r}")
        values.update({k: getattr(saved, k) for k in cfg.fields_of(type(saved))})
    else:
        runs.check_empty(out)
    if args.config:
        file_values = cfg.read_toml(args.config)
        named = file_values.pop("model", args.model)
        file_values.pop("genlearn_version", None)
        if named != args.model:
            raise UserError(f"{args.config} is a config for model {named!r}, not {args.model!r}")
        values.update(file_values)
    values.update(cfg.parse_sets(args.set))
    config = registry.make_config(args.model, values)
    model = registry.instantiate(args.model, config)
    try:
        res = loop.fit(model, config, out, args.model, resume=args.resume, progress=not args.quiet)
    except Interrupted as stop:
        print(
            f"\ninterrupted at step {stop.step}: checkpoint saved in {out}; resume with: "
            f"genlearn train {args.model} --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        kept = "the last checkpoint is kept" if (out / runs.TRAINER_FILE).exists() else "nothing was saved"
        print(f"\ninterrupted; {kept}", file=sys.stderr)
        return 130
    if res:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items() if isinstance(v, float))
        print(f"{args.model}: {res['epochs']} epochs, {res['train_time_s']:.0f} s; test {shown}")
        print(f"run directory: {out}  pictures: {', '.join(str(out / f) for f in res.get('figures', []))}")
    return 0


def parse_labels(text: str) -> list[int]:
    """`3,3,7` -> [3, 3, 7]; `0-9` -> [0, 1, ..., 9]; ranges and single digits may be mixed."""
    labels: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise UserError(f"--labels expects digits like 3,3,7 or 0-9, not {text!r}") from None
        if last < first:
            raise UserError(f"--labels range {part.strip()!r} runs backwards")
        labels.extend(range(first, last + 1))
    return labels


def _read_captions(args) -> list[str]:
    """--caption TEXT, or the non-empty lines of --captions FILE."""
    if args.caption is not None:
        return [args.caption]
    path = Path(args.captions)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"cannot read captions from {str(path)!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    captions = [ln for ln in lines if ln]
    if not captions:
        raise UserError(f"{str(path)!r} has no captions; write one caption a line")
    return captions


def _repeat_each(items: list, n: int | None, default_each: int, what: str) -> tuple[int, int]:
    """(n, how many of each item) for n samples spread evenly over `items` (one grid row each)."""
    n = len(items) * default_each if n is None else n
    if n < 1 or n % len(items):
        raise UserError(f"--n {n} is not a positive multiple of the {len(items)} {what} given")
    return n, n // len(items)


def _sample_conditions(model, args) -> tuple[int, dict, int]:
    """How many samples, with which conditions, and how many of each condition (one grid row
    each) `genlearn sample` asks for."""
    import torch

    gif = Path(args.out).suffix == ".gif"
    asked = (
        "labels"
        if args.labels is not None
        else "captions"
        if (args.caption, args.captions) != (None, None)
        else None
    )
    if asked is None:
        n = (4 if gif and model.conditions else 64) if args.n is None else args.n
        if n < 1:
            raise UserError(f"--n must be at least 1, got {n}")
        return n, {}, 1
    if asked not in model.conditions:
        takes = ", ".join(model.conditions) or "no condition"
        flag = "--labels" if asked == "labels" else "--caption/--captions"
        raise UserError(f"model {model.name!r} takes no {asked} (it takes {takes}); leave out {flag}")
    if asked == "labels":
        labels = parse_labels(args.labels)
        n, each = _repeat_each(labels, args.n, 1, "labels")
        return n, {"labels": torch.tensor(labels).repeat_interleave(each)}, each
    captions = _read_captions(args)
    n, each = _repeat_each(captions, args.n, 1 if gif else 8, "captions")
    return n, {"captions": [c for c in captions for _ in range(each)]}, each


MAX_GRID = 10_000  # images in one .png grid


def _check_memory(model, n: int) -> None:
    """Refuse, before anything is drawn, n samples that would not fit in half the free memory."""
    import math
    import os

    need = n * math.prod(model.image_shape or (2,)) * 4  # float32
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > free // 2:
        raise UserError(
            f"--n {n} needs {need / 2**30:.1f} GiB for the samples but {free / 2**30:.1f} GiB of memory "
            "is free; ask for fewer (or several files with different --seed)"
        )


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from genlearn import registry
    from genlearn.viz.grids import save_grid

    out = Path(args.out)
    if out.suffix not in (".png", ".npz", ".gif"):
        raise UserError(f"--out must end in .png, .npz or .gif, not {out.suffix or 'nothing'!r}")
    if not out.parent.is_dir():
        raise UserError(f"directory {str(out.parent)!r} does not exist")
    model = registry.load_model(args.run)
    n, condition, per_label = _sample_conditions(model, args)
    options = model.sampling_options(args.temperature)  # {} at temperature 1
    generator = torch.Generator().manual_seed(args.seed)
    if out.suffix == ".gif" and model.can("sample_alignments"):
        from genlearn.viz.alignment import save_alignment_gif, save_alignment_matrix

        canvases, windows, alphas, captions = model.sample_alignments(
            n, generator=generator, **condition, **options
        )
        save_alignment_gif(canvases, windows, alphas, captions, out)
        shown = min(n, 8)
        matrix = save_alignment_matrix(alphas[:, :shown], captions[:shown], out.with_suffix(".png"))
        print(f"wrote the canvas and the words' alignment of {n} samples over {len(canvases)} steps to {out}")
        print(f"wrote the alignment matrix (steps x words) of {shown} of them to {matrix}")
        return 0
    if out.suffix == ".gif" and model.can("sample_pyramid"):
        from genlearn.viz.pyramid import save_pyramid_gif, save_pyramid_png

        images, residuals = model.sample_pyramid(n, generator=generator, **condition, **options)
        save_pyramid_gif(images, residuals, out, nrow=per_label if per_label > 1 else None)
        shown = min(n, 8)
        png = save_pyramid_png(
            [x[:shown] for x in images], [h[:shown] for h in residuals], out.with_suffix(".png")
        )
        print(f"wrote the pyramid of {n} samples, coarse to fine over {len(images)} levels, to {out}")
        print(f"wrote each level's image and residual of {shown} of them to {png}")
        return 0
    if out.suffix == ".gif" and not model.can("sample_canvases"):
        raise UserError(
            f"a .gif does not apply to model {model.name!r}: it has no sample_canvases(n, generator) "
            "(the drawing over time) and no sample_pyramid(n, generator) (the pyramid coarse to fine); "
            "write .png or .npz"
        )
    if out.suffix == ".gif":
        from genlearn.viz.canvas import save_canvas_gif, save_canvas_strip

        canvases, windows = model.sample_canvases(n, generator=generator, **condition, **options)
        save_canvas_gif(canvases, out, windows=windows)
        strip = save_canvas_strip(canvases[:, : min(n, 8)], out.with_suffix(".png"))
        print(f"wrote the canvas of {n} samples over {len(canvases)} steps to {out} and {strip}")
        return 0
    if out.suffix == ".png" and n > MAX_GRID:
        raise UserError(f"--n {n} is too many for one picture (at most {MAX_GRID}); use .npz")
    _check_memory(model, n)
    samples = model.sample_in_chunks(n, generator=generator, temperature=args.temperature, **condition)
    try:
        if out.suffix == ".npz":  # images in [0, 1]; 2-D points as they are
            np.savez_compressed(out, **{"images" if model.image_shape else "points": samples.numpy()})
        elif model.image_shape is None:
            from genlearn.viz.figures import scatter

            scatter(samples, None, out)
        else:
            save_grid(samples.clamp(0, 1), out, nrow=per_label if per_label > 1 else None)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {n} samples to {out}")
    return 0


def cmd_eval(args) -> int:
    from genlearn import config as cfg
    from genlearn import data as datasets
    from genlearn import registry
    from genlearn.eval import metrics

    opts = metrics.Options(
        seed=args.seed,
        k=args.k,
        ais_runs=args.ais_runs,
        split=args.split,
        temperature=args.temperature,
        progress=not args.json and sys.stderr.isatty(),
    )
    names = metric_names(args.metric)
    device = cfg.resolve_device(args.device)
    model = registry.load_model(args.run, device)
    _, config = registry.run_config(args.run)
    data = datasets.load(config, train=False)
    split = {k: v.to(device) for k, v in data.split(args.split, binary=model.data_kind == "binary").items()}
    for name, result, seconds in metrics.compute_many(names, model, split, data, opts):
        report_metric(args, name, result, seconds, device)
    return 0


def metric_names(given: str) -> list[str]:
    """`--metric a,b`: the names in order, each known (checked before any model or data is
    loaded) and named once."""
    from genlearn.eval import metrics

    names = [name.strip() for name in given.split(",")]
    for name in names:
        metrics.check_name(name)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"metric {twice[0]!r} is named twice in --metric")
    return names


def report_metric(args, name: str, result: dict[str, Any], seconds: float, device: Any) -> None:
    """A computed metric recorded in results.json (test split only) and printed; a failure to
    record is a warning under the figures, which are printed all the same and never lost."""
    from genlearn import runs

    not_recorded = ""
    if args.split == "test":
        try:
            runs.record_metrics(args.run, result)
        except UserError as exc:
            not_recorded = f"warning: not recorded in results.json: {exc}"
    if args.json:
        record = {"run": args.run, "metric": name, "split": args.split, **result}
        print(runs.dumps(record | {"seconds": seconds, "device": str(device)}), flush=True)
    else:
        for k, v in result.items():
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
        print(f"({name}, {args.split} split, {seconds:.1f} s)", flush=True)
    if not_recorded:
        print(not_recorded, file=sys.stderr)


def cmd_compare(args) -> int:
    from genlearn import compare

    print(compare.command(args.runs, out=args.out, as_json=args.json))
    return 0


def cmd_models(args) -> int:
    from genlearn import registry

    width = max(map(len, registry.names()))
    for name in registry.names():
        print(f"{name.ljust(width)}  {registry.entry(name).description}")
    return 0


def cmd_info(args) -> int:
    import torch

    import genlearn
    from genlearn import registry, runs
    from genlearn.data import mnist

    if args.run:
        name, config = registry.run_config(args.run)
        print(f"run {args.run}: model {name}")
        print((Path(args.run) / "config.toml").read_text().rstrip())
        res = runs.results(args.run)
        if res:
            print("results:", json.dumps(res.get("metrics", {}), indent=2))
        return 0
    cache = mnist.cache_dir()
    print(f"genlearn {genlearn.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"cuda: {'yes, ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    print(f"data cache: {cache}")
    print(
        f"  MNIST wheel: {'present' if (cache / mnist.WHEEL_NAME).exists() else 'missing: ' + mnist.fetch_command()}"
    )
    print(f"  MNIST arrays: {'cached' if (cache / mnist.CACHE_FILE).exists() else 'not yet cached'}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "compare": cmd_compare,
    "models": cmd_models,
    "info": cmd_info,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
