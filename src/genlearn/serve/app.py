"""The explorer's web application: the JSON API over the served runs (README, "The explorer's JSON
API") and the page's static files (`serve/static/`, shipped with the package).

Each handler parses its query, finds the run by its id in the catalog (never by a path the
request spells), takes the model from the cache and calls a view (`serve.views`). A user
mistake is HTTP 400 with `{"error": ...}`, the line the command line prints after `error: `; an
unknown run or path is 404. Nothing is ever written: not into a run directory, not anywhere.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from genlearn import config as cfg
from genlearn import registry, runs
from genlearn.errors import UserError
from genlearn.serve import views
from genlearn.serve.cache import ANSWER_MEMORY, COMPUTE, MODEL_MEMORY, Answers, DataSets, Loaded, Models
from genlearn.serve.catalog import Catalog, RunEntry, UnknownRun

STATIC = Path(__file__).resolve().parent / "static"
COMMAND_HEADER = "X-Genlearn-Command"
JSON = "application/json"
PNG = "image/png"
CAPTION_EXAMPLES = 4
# What the page's gallery asks of each run (drawn ahead by `Explorer.warm`): 16 images, or a
# scatter of 256 points.
GALLERY_CARD = {"n": "16", "seed": "0"}
GALLERY_POINTS = {"n": "256", "seed": "0"}
# The parameters of each view: as `genlearn sample` names them where it has them.
DRAW_PARAMS = ("n", "seed", "temperature", "labels", "caption")
CHAIN_PARAMS = ("n", "seed", "start", "steps", "every")
VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {  # file name: (view, parameters)
    "samples.png": ("samples", DRAW_PARAMS),
    "latent.json": ("latent", ("n",)),
    "decode.png": ("latent", ("x", "y")),
    "interpolate.png": ("latent", ("ax", "ay", "bx", "by", "steps", "mode")),
    "manifold.png": ("manifold", ()),
    "process.json": ("process", (*DRAW_PARAMS, "start", "steps", "every")),
    "scores.json": ("scores", DRAW_PARAMS),
}


class Query:
    """A request's query parameters, read as `genlearn sample` reads its options: an unknown
    parameter, or a value that is not a number where one is asked, is one line."""

    def __init__(self, request: Request, allowed: Iterable[str], view: str):
        self.values = dict(request.query_params)
        allowed = tuple(allowed)
        unknown = [k for k in self.values if k not in allowed]
        if unknown:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no parameters"
            raise UserError(f"unknown parameter {unknown[0]!r} for {view}; {takes}")

    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.values.items()))

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def int(self, name: str, default: int | None = None) -> int | None:
        return self._number(name, default, int)

    def float(self, name: str, default: float | None = None) -> float | None:
        return self._number(name, default, float)

    def _number(self, name: str, default: Any, kind: Callable[[str], Any]) -> Any:
        """The parameter read as `kind` (int or float), or `default` when it is not given; a value
        that is not one is argparse's line for the option of that name."""
        value = self.values.get(name)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            raise UserError(f"argument --{name}: invalid {kind.__name__} value: {value!r}") from None

    def finite(self, name: str, default: float | None = None) -> float:
        value = self.float(name, default)
        if value is None:
            raise UserError(f"give {name}, a number")
        if not math.isfinite(value):
            raise UserError(f"{name} must be a finite number, got {value:g}")
        return value

    def seed(self) -> int:
        """A seed torch can take (a 64-bit integer)."""
        seed = self.int("seed", 0) or 0
        if not -(2**63) <= seed < 2**64:
            raise UserError(f"argument --seed: {seed} is not a 64-bit integer (torch's seeds are)")
        return seed

    def draw(self) -> views.Draw:
        return views.Draw(
            n=self.int("n"),
            seed=self.seed(),
            temperature=self.float("temperature", 1.0),
            labels=self.text("labels"),
            caption=self.text("caption"),
        )


def _json(obj: Any, status: int = 200, command: str | None = None) -> Response:
    headers = {COMMAND_HEADER: encode_command(command)} if command else None
    return Response(runs.dumps(obj), status_code=status, media_type=JSON, headers=headers)


def encode_command(command: str) -> str:
    """The command as the header carries it: percent-encoded UTF-8, as `encodeURIComponent`
    writes it (a header holds ASCII only, and a snippet has newlines)."""
    return quote(command, safe="!*'()")


def error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


class Explorer:
    """The state behind the API: the catalog of served runs, the loaded models, the data sets and
    the answers already given."""

    def __init__(
        self,
        directories: Iterable[str | os.PathLike[str]],
        model_memory: int = MODEL_MEMORY,
        answer_memory: int = ANSWER_MEMORY,
    ):
        self.catalog = Catalog(directories)
        self.models = Models(lambda run: registry.load_model(run.path), model_memory)
        self.answers = Answers(answer_memory)
        self.data = DataSets()
        self.stopping = threading.Event()  # tells `warm` to stop between two runs

    # ---- runs -------------------------------------------------------------------------------------
    def summary(self, run: RunEntry, loaded: Loaded) -> dict[str, Any]:
        """What `/api/runs` says of a run, computed once per version of its files."""
        if "summary" not in loaded.derived:
            loaded.derived["summary"] = self._summary(run, loaded.model)
        return loaded.derived["summary"]

    def _summary(self, run: RunEntry, model: Any) -> dict[str, Any]:
        from genlearn import zoo

        name, config = registry.run_config(run.path)
        results = runs.results(run.path)
        metrics = results.get("metrics", {})
        paper = zoo.paper_of(name)
        figures = [
            {
                "key": f.key,
                "label": f.label,
                "value": metrics.get(f.key),
                "stderr": metrics.get(f"{f.key}_stderr"),
                "better": "higher" if f.higher_is_better else "lower",
            }
            for f in zoo.headline_figures(name, config)
        ]
        settings = {k: getattr(config, k) for k in cfg.fields_of(type(config))}
        latent = settings.get("latent_dim", settings.get("code_dim")) if model.can("encode") else None
        return {
            "id": run.id,
            "path": str(run.path),
            "model": name,
            "family": registry.entry(name).cls_name,
            "title": registry.entry(name).description,
            "paper": {"cite": paper.cite, "url": paper.url},
            "capabilities": sorted(model.capabilities),
            "views": views.views(model),
            "process": views.process_kind(model),
            "conditions": self.conditions_shown(model, config),
            "image_shape": list(model.image_shape) if model.image_shape is not None else None,
            "latent_dim": latent,
            "figures": figures,
            "training": {
                "epochs": results.get("epochs"),
                "steps": results.get("steps"),
                "seconds": results.get("train_time_s"),
                "device": results.get("device"),
                "finished": datetime.fromtimestamp(run.identity[-1] / 1e9).strftime("%Y-%m-%d %H:%M"),
            },
            "_config": settings,
            "_results": results,
        }

    @staticmethod
    def conditions_shown(model: Any, config: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "labels" in model.conditions:
            out["labels"] = {"min": 0, "max": 9}
        if "captions" in model.conditions:
            try:  # validation captions the model keeps (none before its first training step)
                with views.seeded(model, 0) as generator:
                    examples = model.default_conditions(CAPTION_EXAMPLES, generator)["captions"]
            except UserError:
                examples = []
            out["captions"] = {
                "vocabulary": config.vocabulary.split(),
                "max_words": config.max_words,
                "examples": list(examples),
            }
        return out

    def listed(self) -> list[tuple[RunEntry, Loaded]]:
        """Every served run that loads, with its model, family by family in the lecture's order
        (then by id); one that does not load is left out and said once on the server's console."""
        out = []
        for run in self.catalog.refresh().values():
            try:
                out.append((run, self.models.get(run)))
            except Exception as exc:  # a damaged run does not take the others down with it
                warn_once(f"{run.path} is left out: {exc}")
        order = registry.families()
        return sorted(out, key=lambda item: (order.index(type(item[1].model).__name__), item[0].id))

    def runs_list(self, request: Request) -> Response:
        Query(request, (), "/api/runs")
        listed = self.listed()
        key = ("runs", tuple((r.id, r.identity) for r, _ in listed))
        return self._answer(key, lambda: (self._public_list(listed), JSON, None))

    def _public_list(self, listed: list[tuple[RunEntry, Loaded]]) -> bytes:
        with COMPUTE:
            items = [self.summary(run, loaded) for run, loaded in listed]
        return runs.dumps([{k: v for k, v in s.items() if not k.startswith("_")} for s in items]).encode()

    def warm(self, announce: Callable[..., Any] | None = None) -> None:
        """Load every served run's model and draw its gallery card (`GALLERY_CARD`) into the kept
        answers, as the first visit would: a Boltzmann machine's 16 samples take its sampler's
        1,000 Gibbs steps, seconds that the gallery need not wait for. Runs that fail are left
        to their requests to report. `announce` is told when it is done."""
        start = time.perf_counter()
        listed = self.listed()
        for run, loaded in listed:
            if self.stopping.is_set():
                return
            query = GALLERY_CARD if loaded.model.image_shape is not None else GALLERY_POINTS
            key = (run.id, run.identity, "samples.png", tuple(sorted(query.items())))
            if self.answers.get(key) is not None:
                continue
            try:
                d = views.Draw(n=int(query["n"]), seed=int(query["seed"]))
                with COMPUTE:
                    body = views.samples_png(loaded.model, d)
                command = encode_command(views.sample_command(str(run.path), d, "samples.png"))
                self.answers.put(key, body, {"content-type": PNG, COMMAND_HEADER: command})
            except Exception as exc:  # said when the card is asked for
                warn_once(f"{run.path}: its gallery card could not be drawn ahead: {exc}")
        if announce is not None:
            seconds = time.perf_counter() - start
            announce(
                f"gallery ready: {len(listed)} runs loaded and their cards drawn in {seconds:.1f} s",
                flush=True,
            )

    def run_detail(self, run: RunEntry) -> Response:
        loaded = self.models.get(run)
        with COMPUTE:
            s = self.summary(run, loaded)
        detail = {k: v for k, v in s.items() if not k.startswith("_")}
        return _json(detail | {"config": s["_config"], "results": s["_results"]})

    def compare(self, request: Request) -> Response:
        Query(request, (), "/api/compare")
        listed = self.listed()
        key = ("compare", tuple((r.id, r.identity) for r, _ in listed))
        return self._answer(key, lambda: (runs.dumps(self._table(listed)).encode(), JSON, None))

    def _table(self, listed: list[tuple[RunEntry, Loaded]]) -> dict[str, Any]:
        """`genlearn compare`'s table of the served runs (columns named by their ids), every row
        but the sampling speed, which compare measures by sampling for a second per run."""
        from genlearn.comparison import measure
        from genlearn.comparison.table import GROUPS, Table

        if not listed:
            return {"runs": [], "rows": [], "notes": ["no runs are served"]}
        with COMPUTE:
            table_runs = measure.read_runs([run.path for run, _ in listed])
            for column, (run, loaded) in zip(table_runs, listed):
                column.column, column.model = run.id, loaded.model
                column.sampling = {"images_per_s": None}
            specs = measure.metric_specs([r.metrics for r in table_runs])
            rows = [row for spec in specs if (row := measure.metric_row(spec, table_runs))]
            extra, _ = measure.other_rows(table_runs, specs)
            cost = [r for r in measure.cost_rows(table_runs) if r.id != "sample_images_per_s"]
            ordered = [*measure.fact_rows(table_runs), *rows, *extra, *cost]
            ordered.sort(key=lambda r: list(GROUPS).index(r.group))
            notes = [
                "— does not apply to the family; not run: applies, but `genlearn eval RUN --metric NAME` has "
                "not been run; · not reported.",
                "Likelihood rows are different quantities (estimates, bounds, Parzen) and are never merged.",
                "The sampling speed is not measured here: `genlearn compare RUN ...` measures it.",
            ]
            table = Table(table_runs, ordered, notes)
            out = table.as_json()
        for row, json_row in zip(table.rows, out["rows"]):
            json_row["better"] = row.better
        for json_run in out["runs"]:
            json_run.pop("sampling", None)
        return out

    # ---- views of one run -----------------------------------------------------------------------
    def run_route(self, request: Request) -> Response:
        rest = request.path_params["rest"]
        known = self.catalog.runs()
        if rest in known:
            return self.run_detail(self.catalog.get(rest))
        run_id, _, file = rest.rpartition("/")
        if file not in VIEWS or not run_id:
            return self.run_detail(self.catalog.get(rest))  # an unknown run: 404
        run = self.catalog.get(run_id)
        view, allowed = VIEWS[file]
        query = Query(request, allowed, file)
        key = (run.id, run.identity, file, query.key())
        return self._answer(key, lambda: self._view(run, file, query))

    def _view(self, run: RunEntry, file: str, q: Query) -> tuple[bytes, str, str | None]:
        loaded = self.models.get(run)
        model, path = loaded.model, str(run.path)
        views.require_view(model, VIEWS[file][0])
        with COMPUTE:
            if file == "samples.png":
                d = q.draw()
                return views.samples_png(model, d), PNG, views.sample_command(path, d, "samples.png")
            if file == "process.json":
                return self._process(run, model, q)
            if file == "scores.json":
                d = q.draw()
                refs = self.data.training_images(model.config)
                results = self.summary(run, loaded)["_results"]
                out = views.scores_json(model, results, refs, d, path)
                return runs.dumps(out).encode(), JSON, out["command"]
            if file == "manifold.png":
                snippet = views.python_snippet(
                    path,
                    "from genlearn.viz.figures import manifold",
                    "from genlearn.viz.samples import grid_png",
                    "png = grid_png(manifold(model), nrow=20, scale=1)  # the grid of the run's manifold.png",
                )
                return views.manifold_png(model), PNG, snippet
            return self._latent(run, loaded, file, q)

    def _process(self, run: RunEntry, model: Any, q: Query) -> tuple[bytes, str, str | None]:
        kind = views.process_kind(model)
        used = CHAIN_PARAMS if kind == "gibbs" else DRAW_PARAMS
        wrong = [k for k in q.values if k not in used]
        if wrong:
            raise UserError(
                f"{wrong[0]!r} does not apply to the {kind} of model {model.name!r}; it takes {', '.join(used)}"
            )
        if kind == "gibbs":
            start = q.text("start", "noise") or "noise"
            data = self.data.of(model.config) if start == "data" else None
            out = views.chain_json(
                model,
                data,
                str(run.path),
                q.int("n", views.PROCESS_N),
                q.seed(),
                start,
                q.int("steps", views.CHAIN_STEPS),
                q.int("every", views.CHAIN_EVERY),
            )
        else:
            out = views.process_json(model, q.draw(), str(run.path))
        return runs.dumps(out).encode(), JSON, out["command"]

    def _latent(self, run: RunEntry, loaded: Loaded, file: str, q: Query) -> tuple[bytes, str, str | None]:
        model, path = loaded.model, str(run.path)
        if "plane" not in loaded.derived:
            loaded.derived["plane"] = views.plane(model, self.data.of(model.config))
        plane = loaded.derived["plane"]
        lines = _plane_snippet(plane)
        if file == "latent.json":
            out = views.latent_json(model, self.data.of(model.config), plane, q.int("n", 2000))
            if "manifold" in out:
                out["manifold"]["url"] = f"/api/runs/{quote(run.id)}/manifold.png"
            out["command"] = views.python_snippet(
                path, *lines, "# the points: plane coordinates of features(test images)"
            )
            return runs.dumps(out).encode(), JSON, out["command"]
        if file == "decode.png":
            x, y = q.finite("x"), q.finite("y")
            snippet = views.python_snippet(
                path, *lines, f"image = model.decode_mean(code(torch.tensor([{x!r}]), torch.tensor([{y!r}])))"
            )
            return views.decode_png(model, plane, x, y), PNG, snippet
        a = (q.finite("ax"), q.finite("ay"))
        b = (q.finite("bx"), q.finite("by"))
        steps, mode = q.int("steps", 10), q.text("mode", "linear") or "linear"
        png = views.interpolate_png(model, plane, a, b, steps, mode)
        snippet = views.python_snippet(
            path,
            *lines,
            f"# {steps} images from ({a[0]}, {a[1]}) to ({b[0]}, {b[1]}), {mode} (genlearn.serve.views.interpolate_png)",
        )
        return png, PNG, snippet

    # ---- answers --------------------------------------------------------------------------------
    def _answer(self, key: Any, make: Callable[[], tuple[bytes, str, str | None]]) -> Response:
        """The answer to a request: kept from an earlier identical one, or made and kept."""
        start = time.perf_counter()
        kept, made = self.answers.get(key), "kept"
        if kept is None:
            body, media, command = make()
            headers = {"content-type": media}
            if command:
                headers[COMMAND_HEADER] = encode_command(command)
            self.answers.put(key, body, headers)
            kept, made = (body, headers), "made"
        body, headers = kept
        extra = {k: v for k, v in headers.items() if k != "content-type"}
        extra["Server-Timing"] = f"{made};dur={(time.perf_counter() - start) * 1000:.2f}"
        return Response(body, media_type=headers["content-type"], headers=extra)


def _plane_snippet(plane: views.Plane) -> list[str]:
    if plane.names == ("z1", "z2"):
        return ["code = lambda x, y: torch.stack([x, y], 1)  # z = (x, y)"]
    return [
        "from genlearn.serve.views import plane",
        "from genlearn import data",
        "flat = plane(model, data.load(model.config, train=False))  # PCA of 2,000 test codes",
        "code = flat.code",
    ]


_warned: set[str] = set()


def warn_once(line: str) -> None:
    if line not in _warned:
        _warned.add(line)
        print(f"warning: {line}", file=sys.stderr, flush=True)


def guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """A handler whose user mistakes are 400, unknown runs 404 and failures 500, each as JSON."""

    def endpoint(request: Request) -> Response:
        try:
            return handler(request)
        except UnknownRun as exc:
            return error(str(exc), 404)
        except UserError as exc:
            return error(str(exc), 400)
        except Exception as exc:  # a bug: said on the console, one line to the page
            traceback.print_exc()
            return error(f"the explorer failed: {type(exc).__name__}: {exc}", 500)

    endpoint.__name__ = handler.__name__
    return endpoint


def _not_found(request: Request) -> Response:
    return error(f"no such API path: {request.url.path}", 404)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error("not found" if status == 404 else str(getattr(exc, "detail", exc)), status)


def create_app(
    directories: Iterable[str | os.PathLike[str]],
    *,
    static: str | os.PathLike[str] | None = None,
    model_memory: int = MODEL_MEMORY,
    answer_memory: int = ANSWER_MEMORY,
) -> Starlette:
    """The explorer over the runs under `directories` (a UserError if one is not a directory):
    the API under /api/, the page's static files (`static`, default the package's) everywhere
    else. `model_memory`: bytes of loaded models kept; `answer_memory`: bytes of answers kept."""
    explorer = Explorer(directories, model_memory, answer_memory)
    routes = [
        Route("/api/runs", guarded(explorer.runs_list)),
        Route("/api/compare", guarded(explorer.compare)),
        Route("/api/runs/{rest:path}", guarded(explorer.run_route)),
        Route("/api/{rest:path}", _not_found),
        Route("/api", _not_found),
    ]
    folder = Path(static) if static is not None else STATIC
    if folder.is_dir():
        routes.append(Mount("/", StaticFiles(directory=folder, html=True, follow_symlink=False)))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.explorer = explorer
    return app
