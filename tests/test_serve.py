"""`genlearn serve`: the explorer's JSON API through Starlette's test client, on tiny runs trained
once for the module, and the Gibbs chain the explorer shows of the Boltzmann machines.

Every endpoint answers as README documents it; a grid is the CLI's file byte for byte, and every
answer is a function of the query alone (the same bytes from a fresh server, and under a burst
of concurrent requests); each user mistake is the line the CLI prints; no request reaches outside
the served directories (`..`, `%2e%2e`, absolute paths, links out, for runs and static files:
404, and nothing there is opened); and a served run directory is byte for byte unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import genlearn
from conftest import (
    HAVE_MNIST,
    TINY,
    TINY_TRAINING,
    assert_user_error,
    cli_args,
    cli_env,
    needs_mnist,
    one_thread,
    run_main,
    train_tiny,
)
from genlearn import registry
from genlearn.models.base import chain_steps
from genlearn.serve import views
from genlearn.serve.app import COMMAND_HEADER, create_app
from genlearn.viz import samples as drawing

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what the dev extras install
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

RUNS = {
    "vae": ("vae", TINY["vae"]),
    "vae8": ("vae", TINY["vae"] | {"latent_dim": 8}),
    "gan": ("gan", TINY["gan"]),
    "cgan": ("cgan", TINY["cgan"]),
    "draw": ("draw", TINY["draw"]),
    "aligndraw": ("aligndraw", TINY["aligndraw"]),
    "lapgan": ("lapgan", TINY["lapgan"]),
    "rbm": ("rbm", TINY["rbm"]),
    "dbn": ("dbn", TINY["dbn"]),
    "dbm": ("dbm", TINY["dbm"]),
}


# ---- the served directory -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """root/runs holds the tiny runs (and one unfinished run, and a link to a run outside);
    root/outside holds a finished run and a secret, neither of which may be served."""
    if not HAVE_MNIST:
        pytest.skip("MNIST is not in the cache (run `make setup`)")
    base = tmp_path_factory.mktemp("serve")
    train_tiny(base / "runs", RUNS)
    train_tiny(base / "outside", {"run": RUNS["gan"]})
    (base / "outside" / "secret.txt").write_text("not to be served\n")
    unfinished = base / "runs" / "sweep" / "unfinished"
    unfinished.mkdir(parents=True)
    for name in ("config.toml", "model.safetensors"):
        (unfinished / name).write_bytes((base / "runs" / "gan" / name).read_bytes())
    (base / "runs" / "link").symlink_to(base / "outside" / "run")
    (base / "runs" / "sweep" / "deep").mkdir()
    for name in ("config.toml", "model.safetensors", "results.json"):
        (base / "runs" / "sweep" / "deep" / name).write_bytes((base / "runs" / "gan" / name).read_bytes())
    return base


@pytest.fixture(scope="module")
def client(root):
    with pytest.MonkeyPatch.context() as mp, one_thread():
        mp.chdir(root)
        yield TestClient(create_app(["runs"]))


@pytest.fixture
def inside(root, monkeypatch):
    monkeypatch.chdir(root)
    with one_thread():
        yield root


def command(response) -> str:
    return urllib.parse.unquote(response.headers[COMMAND_HEADER])


def png_of(data_url: str) -> bytes:
    assert data_url.startswith("data:image/png;base64,")
    return base64.b64decode(data_url.split(",", 1)[1])


def pixels(png: bytes, every: int = 1) -> list:
    """The picture's pixels, every `every`-th row and column (a 2x grid read at 1x)."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)))[::every, ::every].tolist()


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` (links included, not followed): its bytes and mtime."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            out[str(path)] = (os.readlink(path).encode(), 0)
        elif path.is_file():
            out[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


# ---- runs -----------------------------------------------------------------------------------------
@needs_mnist
def test_runs_lists_every_finished_run_and_nothing_else(client, root):
    listed = client.get("/api/runs")
    assert listed.status_code == 200 and listed.headers["content-type"] == "application/json"
    runs = {r["id"]: r for r in listed.json()}
    expected = {f"runs/{name}" for name in RUNS} | {"runs/sweep/deep"}
    assert set(runs) == expected  # not the unfinished run, not the link to a run outside
    families = list(dict.fromkeys(r["family"] for r in listed.json()))  # in the lecture's order
    assert families == ["VAE", "DRAW", "AlignDRAW", "GAN", "LAPGAN", "RBM", "DBN", "DBM"]
    assert [r["id"] for r in listed.json() if r["family"] == "GAN"] == [
        "runs/cgan",
        "runs/gan",
        "runs/sweep/deep",
    ]
    vae = runs["runs/vae"]
    assert vae["model"] == "vae" and vae["family"] == "VAE" and vae["path"] == "runs/vae"
    assert vae["views"] == ["samples", "latent", "manifold", "scores"] and vae["latent_dim"] == 2
    assert vae["paper"]["url"].startswith("https://") and vae["image_shape"] == [1, 28, 28]
    results = json.loads((root / "runs" / "vae" / "results.json").read_text())
    elbo = next(f for f in vae["figures"] if f["key"] == "elbo")
    assert elbo["value"] == results["metrics"]["elbo"] and elbo["better"] == "higher"
    assert vae["training"]["steps"] == results["steps"] and vae["training"]["device"] == "cpu"
    assert runs["runs/cgan"]["conditions"] == {"labels": {"min": 0, "max": 9}}
    captions = runs["runs/aligndraw"]["conditions"]["captions"]
    assert "digit" in captions["vocabulary"] and len(captions["examples"]) == 4
    assert all(w in captions["vocabulary"] for c in captions["examples"] for w in views_words(c))
    assert {runs[f"runs/{k}"]["process"] for k in ("draw", "aligndraw", "lapgan", "rbm", "dbn", "dbm")} == {
        "canvas",
        "alignment",
        "pyramid",
        "gibbs",
    }
    assert runs["runs/gan"]["process"] is None and "latent" not in runs["runs/gan"]["views"]


def views_words(caption: str) -> list[str]:
    import re

    return re.findall(r"[^\s.]+|\.", caption.lower())


@needs_mnist
def test_a_run_in_detail_has_its_config_and_results(client, root):
    detail = client.get("/api/runs/runs/cgan").json()
    assert detail["results"] == json.loads((root / "runs" / "cgan" / "results.json").read_text())
    assert detail["config"]["conditional"] is True and detail["config"]["g_channels"] == 8
    assert detail["id"] == "runs/cgan"


@needs_mnist
def test_compare_is_the_table_of_every_served_run(client):
    table = client.get("/api/compare").json()
    columns = [r["column"] for r in table["runs"]]
    assert columns == [r["id"] for r in client.get("/api/runs").json()]  # the gallery's order
    assert sorted(columns) == sorted([f"runs/{k}" for k in RUNS] + ["runs/sweep/deep"])
    kind = next(r for r in table["rows"] if r["id"] == "likelihood_kind")
    by_run = dict(zip(columns, (c["text"] for c in kind["cells"])))
    assert by_run["runs/vae"] == "IW estimate" and by_run["runs/gan"] == "no (Parzen)"
    elbo = next(r for r in table["rows"] if r["id"] == "elbo")
    assert elbo["better"] == "↑" and len(elbo["cells"]) == len(columns)
    assert not any(r["id"] == "sample_images_per_s" for r in table["rows"])


# ---- samples: the CLI's file ------------------------------------------------------------------------
GRIDS = [
    ("vae", "n=16&seed=3"),
    ("gan", "n=9&seed=1"),
    ("cgan", "labels=0-9&n=20&seed=2"),
    ("aligndraw", "caption=the%20digit%207%20is%20at%20the%20top%20left%20of%20the%20image%20.&n=4&seed=5"),
    ("draw", "seed=4"),
    ("lapgan", "n=4&seed=0"),
    ("rbm", "n=4&seed=0"),
    ("dbm", "n=4&seed=7"),
]


@needs_mnist
@pytest.mark.parametrize("name,query", GRIDS, ids=[g[0] for g in GRIDS])
def test_a_grid_is_the_cli_file_and_its_command_writes_it(client, inside, name, query):
    served = client.get(f"/api/runs/runs/{name}/samples.png?{query}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    line = command(served)
    args = shlex.split(line)
    assert args[:3] == ["genlearn", "sample", f"runs/{name}"] and args[-2:] == ["--out", "samples.png"]
    proc = run_main(*args[1:-1], str(inside / f"{name}.png"))
    assert proc.returncode == 0, proc.stderr
    assert (inside / f"{name}.png").read_bytes() == served.content
    again = client.get(f"/api/runs/runs/{name}/samples.png?{query}")
    fresh = TestClient(create_app(["runs"])).get(f"/api/runs/runs/{name}/samples.png?{query}")
    assert again.content == served.content == fresh.content


@needs_mnist
def test_the_gallery_cards_are_drawn_ahead_as_they_would_be_asked(inside):
    app = create_app(["runs"])
    app.state.explorer.warm()
    ahead = TestClient(app).get("/api/runs/runs/rbm/samples.png?seed=0&n=16")
    assert ahead.headers["server-timing"].startswith("kept;")
    asked = TestClient(create_app(["runs"])).get("/api/runs/runs/rbm/samples.png?n=16&seed=0")
    assert asked.headers["server-timing"].startswith("made;")
    assert ahead.content == asked.content and ahead.headers[COMMAND_HEADER] == asked.headers[COMMAND_HEADER]


@needs_mnist
def test_the_seed_and_the_labels_change_the_grid(client):
    one = client.get("/api/runs/runs/cgan/samples.png?seed=1&labels=3").content
    assert one != client.get("/api/runs/runs/cgan/samples.png?seed=2&labels=3").content
    assert one != client.get("/api/runs/runs/cgan/samples.png?seed=1&labels=4").content


# ---- errors -------------------------------------------------------------------------------------------
ERRORS = [  # (url, status, the CLI's arguments giving the same line, or None)
    ("runs/aligndraw/samples.png?caption=the%20digit%20blorp", 400,
     ["sample", "runs/aligndraw", "--caption", "the digit blorp"]),
    ("runs/cgan/samples.png?labels=3,12", 400, ["sample", "runs/cgan", "--labels", "3,12"]),
    ("runs/vae/samples.png?temperature=-1", 400, ["sample", "runs/vae", "--temperature", "-1"]),
    ("runs/vae/samples.png?temperature=0.5", 400, ["sample", "runs/vae", "--temperature", "0.5"]),
    ("runs/gan/samples.png?labels=3", 400, ["sample", "runs/gan", "--labels", "3"]),
    ("runs/cgan/samples.png?labels=0-9&n=15", 400, ["sample", "runs/cgan", "--labels", "0-9", "--n", "15"]),
    ("runs/nope/samples.png", 404, ["sample", "runs/nope"]),
    ("runs/nope", 404, ["sample", "runs/nope"]),
]  # fmt: skip


@needs_mnist
@pytest.mark.parametrize("url,status,cli", ERRORS, ids=[e[0] for e in ERRORS])
def test_a_mistake_is_the_line_the_cli_prints(client, inside, url, status, cli):
    answer = client.get(f"/api/runs/{url}")
    assert answer.status_code == status and answer.headers["content-type"] == "application/json"
    line = assert_user_error(run_main(*cli, "--out", str(inside / "x.png")))
    assert answer.json() == {"error": line.removeprefix("error: ")}


@needs_mnist
@pytest.mark.parametrize(
    "url,contains",
    [
        ("runs/vae/samples.png?n=300", "at most 256"),
        ("runs/cgan/samples.png?labels=0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9,0-9", "at most 256"),
        ("runs/vae/samples.png?n=abc", "argument --n: invalid int value: 'abc'"),
        ("runs/vae/samples.png?seed=1.5", "argument --seed: invalid int value: '1.5'"),
        ("runs/vae/samples.png?colour=red", "unknown parameter 'colour'"),
        ("runs/vae/samples.png?seed=100000000000000000000000", "not a 64-bit integer"),
        ("runs/gan/latent.json", "latent view does not apply"),
        ("runs/draw/process.json?n=65", "at most 64"),
        ("runs/draw/process.json?steps=4", "'steps' does not apply"),
        ("runs/rbm/process.json?steps=201", "at most 200"),
        ("runs/rbm/process.json?start=ones", "start must be noise, data, zeros"),
        ("runs/rbm/process.json?every=0", "every 1 or more"),
        ("runs/vae/decode.png?x=nan&y=0", "finite"),
        ("runs/vae/interpolate.png?ax=0&ay=0&bx=1&by=1&mode=wiggly", "linear or spherical"),
        ("runs/vae/interpolate.png?ax=0&ay=0&bx=1&by=1&steps=1", "steps must be 2 to 32"),
        ("runs/vae/latent.json?n=0", "--n must be 1 to"),
        ("runs/vae/scores.json?n=65", "at most 64"),
    ],
)  # fmt: skip
def test_what_the_explorer_refuses_is_one_line(client, url, contains):
    answer = client.get(f"/api/runs/{url}")
    assert answer.status_code == 400 and contains in answer.json()["error"], answer.text
    assert "\n" not in answer.json()["error"]


@needs_mnist
def test_an_unknown_api_path_is_404_json(client):
    for url in ("/api/nothing", "/api/runs/", "/api/runs/runs/vae/secret.json", "/nothing.js"):
        answer = client.get(url)
        assert answer.status_code == 404 and "error" in answer.json(), url


# ---- views ---------------------------------------------------------------------------------------------
@needs_mnist
def test_draw_timeline_ends_in_the_grid_and_carries_its_windows(client, inside):
    answer = client.get("/api/runs/runs/draw/process.json?n=6&seed=5")
    out = answer.json()
    model = genlearn.load("runs/draw")
    assert out["kind"] == "canvas" and out["steps"] == model.config.T == len(out["frames"])
    grid = client.get("/api/runs/runs/draw/samples.png?n=6&seed=5").content
    assert pixels(png_of(out["frames"][-1])) == pixels(grid, every=2)  # the last canvas is the sample
    assert len(out["windows"]) == model.config.T and all(len(step) == 6 for step in out["windows"])
    x0, y0, x1, y1 = out["windows"][0][0]
    assert x1 > x0 and y1 > y0
    assert out["layout"] == {"columns": 3, "rows": 2, "pad": 2, "scale": 1, "height": 28, "width": 28}
    args = shlex.split(out["command"])
    assert command(answer) == out["command"] and args[-1] == "process.gif"
    proc = run_main(*args[1:-1], str(inside / "p.gif"))
    assert proc.returncode == 0 and (inside / "p.gif").is_file(), proc.stderr


@needs_mnist
def test_aligndraw_timeline_shades_the_words_of_the_caption(client):
    caption = "the digit 3 is on the left of the digit 8 ."
    out = client.get(
        f"/api/runs/runs/aligndraw/process.json?n=2&seed=1&caption={urllib.parse.quote(caption)}"
    )
    out = out.json()
    assert out["kind"] == "alignment" and out["captions"] == [caption, caption]
    assert out["words"][0] == views_words(caption)
    for step in out["alignment"]:
        for weights in step:
            assert len(weights) == len(views_words(caption)) and math.isclose(sum(weights), 1, abs_tol=1e-3)
    grid = TestClient(create_app(["runs"])).get(
        f"/api/runs/runs/aligndraw/samples.png?n=2&seed=1&caption={urllib.parse.quote(caption)}"
    )
    assert pixels(png_of(out["frames"][-1])) == pixels(grid.content, every=2)


@needs_mnist
def test_lapgan_timeline_runs_coarse_to_fine(client):
    out = client.get("/api/runs/runs/lapgan/process.json?n=4").json()
    levels = genlearn.load("runs/lapgan").config.levels
    assert out["kind"] == "pyramid" and out["steps"] == 2 * levels - 1 == len(out["labels"])
    assert out["labels"][0].startswith(f"I{levels - 1} ") and out["labels"][-1].startswith("I0 (28x28)")


@needs_mnist
@pytest.mark.parametrize("name", ["rbm", "dbn", "dbm"])
@pytest.mark.parametrize("start", ["noise", "data", "zeros"])
def test_a_gibbs_chain_is_what_its_snippet_draws(client, inside, name, start):
    out = client.get(f"/api/runs/runs/{name}/process.json?n=3&seed=2&start={start}&steps=12&every=5").json()
    assert out["kind"] == "gibbs" and out["chain"]["steps"] == [0, 5, 10, 12] == chain_steps(12, 5)
    assert out["labels"] == ["step 0", "step 5", "step 10", "step 12"]
    scope: dict = {}
    exec(out["command"], scope)  # the Python that reproduces the view
    frames = scope["frames"]
    assert [png_of(f) for f in out["frames"]] == [views.frame_png(f) for f in frames]
    if start == "zeros":
        assert float(frames[0].max()) == 0.0


@needs_mnist
def test_the_latent_plane_of_a_2d_vae_is_z_itself(client, inside):
    out = client.get("/api/runs/runs/vae/latent.json?n=50").json()
    model = genlearn.load("runs/vae")
    from genlearn import data as datasets

    test = datasets.load(model.config, train=False).split("test", binary=True)
    mean = model.features(test["x"][:50])
    assert out["axes"] == ["z1", "z2"] and len(out["points"]) == 50
    assert torch.allclose(torch.tensor([p[:2] for p in out["points"]]), mean, atol=1e-4)
    assert [p[2] for p in out["points"]] == test["y"][:50].tolist()
    x0, x1, y0, y1 = out["bounds"]
    assert all(x0 <= p[0] <= x1 and y0 <= p[1] <= y1 for p in out["points"])
    decoded = client.get("/api/runs/runs/vae/decode.png?x=0.25&y=-1.5").content
    assert decoded == drawing.grid_png(model.decode_mean(torch.tensor([[0.25, -1.5]])))
    strip = client.get("/api/runs/runs/vae/interpolate.png?ax=0.25&ay=-1.5&bx=1&by=2&steps=2").content
    assert strip == drawing.grid_png(model.decode_mean(torch.tensor([[0.25, -1.5], [1.0, 2.0]])), nrow=2)
    assert out["manifold"]["steps"] == 20 and out["manifold"]["z"] == sorted(out["manifold"]["z"])
    manifold = np.asarray(pixels(client.get(out["manifold"]["url"]).content), dtype=int)
    z = out["manifold"]["z"]
    for r, c in ((0, 0), (19, 19), (4, 13)):  # the tile at (r, c) is the image decoded at (z[c], z[19 - r])
        tile = manifold[2 + 30 * r : 30 + 30 * r, 2 + 30 * c : 30 + 30 * c]
        at = client.get(f"/api/runs/runs/vae/decode.png?x={z[c]}&y={z[19 - r]}").content
        assert np.abs(tile - np.asarray(pixels(at, every=2), dtype=int)[2:30, 2:30]).max() <= 1


@needs_mnist
def test_the_latent_plane_of_a_wider_code_is_its_principal_plane(client, inside):
    out = client.get("/api/runs/runs/vae8/latent.json?n=30").json()
    assert out["axes"] == ["PC1", "PC2"] and out["dim"] == 8
    assert 0 < out["explained"][1] <= out["explained"][0] <= 1
    model = genlearn.load("runs/vae8")
    from genlearn import data as datasets

    flat = views.plane(model, datasets.load(model.config, train=False))
    assert torch.allclose(flat.axes @ flat.axes.T, torch.eye(2), atol=1e-5)  # orthonormal axes
    at_mean = client.get("/api/runs/runs/vae8/decode.png?x=0&y=0").content
    assert at_mean == drawing.grid_png(model.decode_mean(flat.mean[None]))
    # the points are the codes projected: the plane's coordinates of the same codes
    test = datasets.load(model.config, train=False).split("test", binary=True)["x"][:30]
    assert torch.allclose(
        torch.tensor([p[:2] for p in out["points"]]), flat.coordinates(model.features(test)), atol=1e-4
    )
    ends = flat.code(torch.tensor([0.1, -0.2]), torch.tensor([0.3, 0.4]))
    strip = client.get("/api/runs/runs/vae8/interpolate.png?ax=0.1&ay=0.3&bx=-0.2&by=0.4&steps=2")
    assert strip.content == drawing.grid_png(model.decode_mean(ends), nrow=2)


def test_spherical_interpolation_keeps_to_the_great_circle():
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    path = views.slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b, atol=1e-6)
    assert torch.allclose(path.norm(dim=1), torch.linspace(3, 1, 5), atol=1e-6)  # norms interpolated
    assert torch.allclose(path[:, 1], torch.zeros(5))  # in the plane of a and b
    angles = torch.atan2(path[:, 2], path[:, 0])
    assert torch.allclose(angles.diff(), torch.full((4,), math.pi / 8), atol=1e-5)  # evenly along the arc


@needs_mnist
def test_scores_are_of_the_grids_samples_with_their_nearest_training_image(client, inside):
    out = client.get("/api/runs/runs/rbm/scores.json?n=4&seed=6").json()
    model = genlearn.load("runs/rbm")
    x = genlearn.sample(model, 4, seed=6)
    assert [s["score"]["value"] for s in out["samples"]] == pytest.approx(
        model.free_energy(x).tolist(), abs=1e-3
    )
    assert out["score"]["name"] == "free energy F(x)" and out["score"]["better"] == "lower"
    from genlearn import data as datasets

    train = datasets.load(model.config, train=False).train_x.flatten(1)
    for s, image in zip(out["samples"], x.flatten(1)):
        distances = (train - image).norm(dim=1)
        assert s["nearest"]["index"] == int(distances.argmin())
        assert s["nearest"]["distance"] == pytest.approx(float(distances.min()), abs=1e-3)
        shown = png_of(s["nearest"]["image"])
        assert shown == drawing.grid_png(train[s["nearest"]["index"]].reshape(1, 1, 28, 28))


@needs_mnist
@pytest.mark.parametrize(
    "name,score,better",
    [("vae", "ELBO", "higher"), ("draw", "bound on -log p(x)", "lower"), ("gan", None, None)],
)
def test_each_family_says_what_it_can_of_its_samples(client, name, score, better):
    out = client.get(f"/api/runs/runs/{name}/scores.json?n=3&seed=1").json()
    assert len(out["samples"]) == 3
    if score is None:
        assert "score" not in out and all("score" not in s for s in out["samples"])
    else:
        assert out["score"]["name"] == score and out["score"]["better"] == better
        assert all(math.isfinite(s["score"]["value"]) for s in out["samples"])
    again = client.get(f"/api/runs/runs/{name}/scores.json?n=3&seed=1").json()
    fresh = TestClient(create_app(["runs"])).get(f"/api/runs/runs/{name}/scores.json?n=3&seed=1").json()
    assert out == again == fresh


@needs_mnist
def test_aligndraw_scores_name_the_captions_its_samples_were_drawn_for(client, inside):
    out = client.get("/api/runs/runs/aligndraw/scores.json?n=3&seed=4").json()
    captions = out["conditions"]["captions"]
    model = genlearn.load("runs/aligndraw")
    drawn = genlearn.sample(model, 3, seed=4)
    with views.seeded(model, 4) as g:
        assert model.default_conditions(3, g)["captions"] == captions
        again = model.sample(3, g, captions=captions)
    assert torch.equal(drawn, again)  # those captions, drawn first, are what the grid was drawn for
    assert out["score"]["name"] == "bound on -log p(x) given its caption"


# ---- nothing outside is read, nothing inside is written --------------------------------------------
def raw_get(app, raw_path: str) -> tuple[int, bytes]:
    """GET `raw_path` as a server would hand it to the application: percent-decoded, with no
    dot segments removed (a test client normalises `..` away before it is sent)."""
    path, _, query = raw_path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": urllib.parse.unquote(path), "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


class Opened:
    """Every path opened (or listed) while active, through Python's audit events."""

    active = False
    paths: list[str] = []
    installed = False

    def __enter__(self):
        if not Opened.installed:
            sys.addaudithook(Opened._hook)
            Opened.installed = True
        Opened.paths, Opened.active = [], True
        return Opened.paths

    def __exit__(self, *exc):
        Opened.active = False

    @staticmethod
    def _hook(event, args):
        if Opened.active and event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
            target = args[0]
            if isinstance(target, (str, bytes, os.PathLike)):
                Opened.paths.append(os.fsdecode(target))


TRAVERSALS = [
    "/api/runs/../outside/run/samples.png",
    "/api/runs/runs/../outside/run/samples.png",
    "/api/runs/runs/%2e%2e/outside/run/samples.png",
    "/api/runs/runs/%2E%2E/%2e%2e/outside/secret.txt",
    "/api/runs/runs/..%2foutside%2frun",
    "/api/runs/runs/link/samples.png",
    "/api/runs/runs/link",
    "/api/runs/runs/vae/../../outside/run/samples.png",
    "/api/runs/{root}/outside/run/samples.png",
    "/api/runs//{root}/outside/run",
    "/api/runs/%2F{root}%2Foutside%2Frun/samples.png",
    "/../outside/secret.txt",
    "/%2e%2e/%2e%2e/outside/secret.txt",
    "/js/../../../outside/secret.txt",
    "/{root}/outside/secret.txt",
    "/out/secret.txt",
]


@needs_mnist
@pytest.mark.parametrize("template", TRAVERSALS)
def test_no_path_leads_outside_the_served_directories(root, inside, template, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>page</title>")
    (static / "out").symlink_to(root / "outside")  # a link out of the static files
    app = create_app(["runs"], static=static)
    raw = template.format(root=str(root).lstrip("/"))
    with Opened() as opened:
        status, body = raw_get(app, raw)
    assert status == 404, (raw, status, body[:200])
    assert b"not to be served" not in body
    outside = str(root / "outside")
    assert not [p for p in opened if os.path.abspath(p).startswith(outside)], opened


@needs_mnist
def test_the_watch_on_opened_files_sees_what_a_request_reads(root, inside):
    """The check above can fail: a served run's request is seen opening the run's weights."""
    app = create_app(["runs"])
    with Opened() as opened:
        status, _ = raw_get(app, "/api/runs/runs/gan/samples.png?n=4")
    assert status == 200 and any(p.endswith("runs/gan/model.safetensors") for p in opened), opened


@needs_mnist
def test_static_files_are_the_packages_page(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.content == (Path(genlearn.__file__).parent / "serve" / "static" / "index.html").read_bytes()


QUERIES = [
    "/api/runs",
    "/api/compare",
    "/api/runs/runs/vae/samples.png?n=16&seed={i}",
    "/api/runs/runs/cgan/samples.png?labels=0-9&seed={i}",
    "/api/runs/runs/aligndraw/samples.png?n=2&seed={i}",
    "/api/runs/runs/draw/process.json?n=4&seed={i}",
    "/api/runs/runs/rbm/process.json?n=2&seed={i}&steps=10&start=data",
    "/api/runs/runs/dbm/process.json?n=2&seed={i}&steps=10",
    "/api/runs/runs/lapgan/process.json?n=2&seed={i}",
    "/api/runs/runs/vae/latent.json?n=20",
    "/api/runs/runs/vae8/decode.png?x={i}&y=0.5",
    "/api/runs/runs/vae/interpolate.png?ax=0&ay={i}&bx=1&by=1&mode=spherical",
    "/api/runs/runs/vae/manifold.png",
    "/api/runs/runs/vae/scores.json?n=2&seed={i}",
    "/api/runs/runs/dbn/scores.json?n=2&seed={i}",
    "/api/runs/runs/nope/samples.png",
    "/api/runs/runs/cgan/samples.png?labels=12",
]


@needs_mnist
def test_a_burst_of_concurrent_requests_gets_the_lone_answers_and_writes_nothing(root, inside):
    before = snapshot(root / "runs")
    urls = [q.format(i=i) for i in range(2) for q in QUERIES]
    lone = {}
    for url in dict.fromkeys(urls):  # each answered alone, by a server of its own
        answer = TestClient(create_app(["runs"], model_memory=1)).get(url)
        lone[url] = (answer.status_code, answer.content)
    app = create_app(["runs"], model_memory=1, answer_memory=0)  # one model kept at a time, no answer
    client = TestClient(app)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda u: (u, client.get(u)), urls * 2))
    for url, answer in answers:
        assert (answer.status_code, answer.content) == lone[url], url
    assert len(app.state.explorer.models.loaded()) == 1  # the memory limit evicted the others
    assert snapshot(root / "runs") == before  # byte for byte, no new file, no lock, no picture


@needs_mnist
def test_a_run_whose_files_change_is_loaded_again(root, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(root / "runs" / "gan", tmp_path / "runs" / "gan")
    monkeypatch.chdir(tmp_path)
    client = TestClient(create_app(["runs"]))
    first = client.get("/api/runs/runs/gan/samples.png?n=4").content
    other = registry.create("gan", **(TINY_TRAINING | TINY["gan"] | {"seed": 5}))
    import safetensors.torch

    time.sleep(0.01)
    safetensors.torch.save_file(other.state_dict(), str(tmp_path / "runs" / "gan" / "model.safetensors"))
    second = client.get("/api/runs/runs/gan/samples.png?n=4").content
    assert second != first and second == api_bytes(tmp_path / "runs" / "gan")


@needs_mnist
def test_a_damaged_run_is_left_out_of_the_gallery_and_said_when_asked(root, tmp_path, monkeypatch):
    import shutil

    for name in ("gan", "vae"):
        shutil.copytree(root / "runs" / name, tmp_path / "runs" / name)
    (tmp_path / "runs" / "gan" / "model.safetensors").write_bytes(b"not safetensors")
    monkeypatch.chdir(tmp_path)
    client = TestClient(create_app(["runs"]))
    assert [r["id"] for r in client.get("/api/runs").json()] == ["runs/vae"]
    answer = client.get("/api/runs/runs/gan/samples.png")
    assert answer.status_code == 400 and "runs/gan/model.safetensors is corrupt" in answer.json()["error"]


def api_bytes(run: Path) -> bytes:
    return genlearn.api.render_samples(run, 4)


def test_readme_documents_every_endpoint_and_cap():
    from genlearn.serve.app import VIEWS

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### The JSON API") :]
    section = section[: section.index("\n## ")]
    for endpoint in ["/api/runs`", "/api/runs/{run}`", "/api/compare`", *(f"/{{run}}/{f}" for f in VIEWS)]:
        assert endpoint in section, endpoint
    caps = {
        "n at most 256": views.MAX_SAMPLES == 256,
        "(at most 64)": views.MAX_PROCESS == views.MAX_SCORED == 64,
        "at most 200 steps": views.MAX_CHAIN_STEPS == 200,
        "at most 10,000": views.MAX_LATENT == 10_000,
        "2 to 32 images": views.MAX_STRIP == 32,
    }
    for words, holds in caps.items():
        assert words in section and holds, words


# ---- the command -------------------------------------------------------------------------------------
@needs_mnist
def test_serve_refuses_what_it_cannot_serve_in_one_line(inside, tmp_path):
    assert_user_error(run_main("serve", "no-such-dir"), contains="does not exist")
    assert_user_error(run_main("serve", "runs/vae/config.toml"), contains="is not a directory")
    assert_user_error(run_main("serve", "--port", "http"), contains="invalid int value")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run_main("serve", cwd=empty), contains="nothing to serve")
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_user_error(run_main("serve", "runs", "--port", str(port)), contains="cannot listen")


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("host,warned", [("127.0.0.1", False), ("127.0.0.2", True)])
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_genlearn_serve_answers_then_stops_cleanly(inside, host, warned, stop):
    """The command prints its address, answers (raw paths too), and Ctrl-C or SIGTERM stops it:
    status 0, no traceback."""
    import http.client

    proc = subprocess.Popen(
        cli_args("serve", "runs", "--host", host, "--port", "0"),
        cwd=inside, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {len(RUNS) + 1} runs from runs at http://{host}:"), line
        port = int(line.split(":")[-1].split("/")[0])
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", "/api/runs/runs/vae/samples.png?n=4&seed=2")
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read() == genlearn.api.render_samples("runs/vae", 4, seed=2)
        conn.request("GET", "/api/runs/runs/../../outside/run/samples.png")  # sent as it is spelt
        answer = conn.getresponse()
        assert answer.status == 404 and b"not to be served" not in answer.read()
        conn.close()
    finally:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and out.strip().endswith("stopped")
    assert ("warning: --host 127.0.0.2" in err) == warned and len(err.strip().splitlines()) == int(warned)


# ---- the Gibbs chain the explorer shows --------------------------------------------------------------
def tiny(name: str, **fields) -> genlearn.models.base.GenerativeModel:
    return registry.create(name, **fields).eval()


def exact_visible_mean(model, name: str) -> torch.Tensor:
    """E[v] under the model, by enumerating every visible state (4 units)."""
    from genlearn.models.rbm import binary_states

    states = binary_states(0, 16, 4, torch.float64, "cpu")
    if name == "rbm":
        log_p = -model.double().free_energy(states)
    elif name == "dbn":
        log_p = model.double().log_likelihood_exact(states)
    else:
        log_p = model.double().log_unnormalised_exact(states)
    p = torch.softmax(log_p, 0)
    model.float()
    return (p[:, None] * states).sum(0).float()


@pytest.mark.parametrize(
    "name,fields",
    [
        ("rbm", {"n_visible": 4, "n_hidden": 3}),
        ("dbn", {"n_visible": 4, "hidden": "3,2"}),
        ("dbm", {"n_visible": 4, "n_hidden1": 3, "n_hidden2": 2}),
    ],
)
def test_a_gibbs_chain_reaches_the_models_own_distribution(name, fields):
    """Strong weights, 4 visible units: after enough steps the chains' mean image is E[v] under
    the model, computed exactly by enumeration (from noise and from zeros alike)."""
    model = tiny(name, init_std=1.5, seed=3, **fields)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    expected = exact_visible_mean(model, name)
    for start in ("noise", "zeros"):
        frames = model.gibbs_chain(4000, 60, start, torch.Generator().manual_seed(0), every=30)
        assert frames.shape == (3, 4000, 4)
        assert torch.allclose(frames[-1].mean(0), expected, atol=0.03), (start, frames[-1].mean(0), expected)


@pytest.mark.parametrize(
    "name,fields",
    [("rbm", {"n_hidden": 5}), ("dbn", {"hidden": "5,3"}), ("dbm", {"n_hidden1": 5, "n_hidden2": 3})],
)
def test_a_chain_is_its_generators_and_keeps_the_steps_asked(name, fields):
    model = tiny(name, **fields)
    images = torch.rand(2, 1, 28, 28)
    one = model.gibbs_chain(2, 9, images, torch.Generator().manual_seed(4), every=1)
    assert one.shape == (10, 2, 1, 28, 28) and float(one.min()) >= 0 and float(one.max()) <= 1
    assert torch.equal(one, model.gibbs_chain(2, 9, images, torch.Generator().manual_seed(4), every=1))
    sparse = model.gibbs_chain(2, 9, images, torch.Generator().manual_seed(4), every=4)
    assert torch.equal(sparse, one[[0, 4, 8, 9]])  # the same chain, fewer frames
    assert set(one[0].unique().tolist()) <= {0.0, 1.0}  # frame 0: the start, binarized
    with torch.no_grad():  # no weights: every frame after the start is the visible biases' sigmoid
        for p in model.parameters():
            if p.dim() == 2:
                p.zero_()
    flat = model.gibbs_chain(2, 3, "noise", torch.Generator().manual_seed(0))
    bias = flat[1:].flatten(2)
    assert torch.allclose(bias, bias[0, 0].expand_as(bias))
    assert model.gibbs_chain(2, 0, "zeros").shape[0] == 1
    with pytest.raises(genlearn.UserError, match="steps must be 0 or more"):
        model.gibbs_chain(2, -1)
    with pytest.raises(genlearn.UserError, match="starts from noise, zeros or images"):
        model.gibbs_chain(2, 3, "ones")
