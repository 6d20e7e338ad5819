"""The explorer's page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium through the driver's own path: nothing is downloaded) on
`genlearn serve` over tiny runs trained once for the module (a 2-D VAE, DRAW, alignDRAW, an RBM).

Each test does what a student does and checks what the page shows: the gallery lists every run
and sorts its table, a new seed redraws the grid with the server's bytes, a caption is drawn and
an unknown word is marked without a request, DRAW's timeline scrubs, the latent plane decodes
under the cursor, a Gibbs chain advances. No page script may throw.

Without Chromium these tests skip with one line saying how to install it; under CI (`CI=true`)
they fail instead. With GENLEARN_SCREENSHOTS=DIR each view's screenshot is written to DIR
(benchmarks/screenshots.py takes the README's from the zoo).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY, needs_mnist, train_tiny

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver"
UNDER_CI = os.environ.get("CI", "").lower() == "true"


def _missing() -> list[str]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    return missing


MISSING = _missing()
if MISSING and not UNDER_CI:
    pytest.skip(f"browser tests need Chromium and its driver: {INSTALL}", allow_module_level=True)

pytestmark = [needs_mnist, pytest.mark.slow]

RUNS = {
    "vae-2d": ("vae", TINY["vae"]),
    "draw": ("draw", TINY["draw"] | {"T": 4}),
    "aligndraw": ("aligndraw", TINY["aligndraw"]),
    "rbm": ("rbm", TINY["rbm"]),
}
CAPTION = "the digit 3 is on the left of the digit 8 ."
WAIT = 30  # seconds for anything the server computes (a model's first load included)


# ---- the server and the browser -------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """A directory `runs/` of tiny finished runs, trained once for the module."""
    root = tmp_path_factory.mktemp("browser") / "runs"
    train_tiny(root, RUNS, batch_size=100)
    return root


def get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        return response.read(), dict(response.headers)


@pytest.fixture(scope="module")
def server(served) -> Iterator[str]:
    """`genlearn serve runs --port 0` in its own process, as a user starts it: its address, read
    from the line it prints."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "genlearn", "serve", served.name, "--port", "0"],
        cwd=served.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        said = _read_until_address(proc)
        address = re.search(r"http://[^/\s]+", said)
        if address is None:
            pytest.fail(f"genlearn serve did not start:\n{said}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe from filling
        yield address.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _read_until_address(proc: subprocess.Popen) -> str:
    """What the server printed up to its address (or until it exited or WAIT passed)."""
    said, deadline = "", time.monotonic() + WAIT
    while "http://" not in said and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            said += line
    return said


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver (never Selenium Manager's download)."""
    if MISSING:
        pytest.fail(f"CI=true and the browser tests cannot run: missing {', '.join(MISSING)}; {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="genlearn-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, server) -> Iterator[Page]:
    """The browser on the explorer; after the test, no page script may have thrown."""
    p = Page(browser, server)
    browser.get_log("browser")  # forget what an earlier test left
    yield p
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and not _expected(e)]
    assert not errors, f"the page logged errors: {errors}"


def _expected(entry: dict[str, Any]) -> bool:
    """A 4xx answer the test provoked is logged by Chromium as a failed resource, not a script error."""
    return "Failed to load resource" in entry["message"] and "status of 4" in entry["message"]


class Page:
    """The explorer in the browser, with the waits a test needs."""

    def __init__(self, driver: Any, base: str):
        self.driver, self.base = driver, base

    def open(self, **params: Any) -> None:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        self.driver.get(f"{self.base}/?{query}" if query else f"{self.base}/")

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """The first truthy value of `condition()` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except Exception as exc:  # an element not there yet, gone stale, ...
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}" + (f" ({last!r})" if last else ""))

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def image_bytes(self, css: str) -> bytes:
        """The bytes behind an <img> as the page holds them (its object URL read back)."""
        encoded = self.driver.execute_async_script(
            """const [img, done] = arguments;
            fetch(img.src).then(r => r.arrayBuffer()).then(b => {
              let s = ""; for (const x of new Uint8Array(b)) s += String.fromCharCode(x); done(btoa(s));
            }).catch(e => done("error: " + e));""",
            self.find(css),
        )
        assert not encoded.startswith("error"), encoded
        return base64.b64decode(encoded)

    def canvas(self, css: str) -> str:
        return self.js("return arguments[0].toDataURL()", self.find(css))

    def loaded(self, css: str) -> bool:
        return bool(
            self.js("const i = arguments[0]; return i.complete && i.naturalWidth > 0", self.find(css))
        )

    def requests(self, fragment: str) -> list[str]:
        """The URLs the page has fetched that contain `fragment` (the browser's resource timing)."""
        return [
            u
            for u in self.js("return performance.getEntriesByType('resource').map(e => e.name)")
            if fragment in urllib.parse.unquote_plus(u)
        ]

    def params(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.driver.current_url).query))

    def screenshot(self, name: str) -> None:
        target = os.environ.get("GENLEARN_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(target) / f"{name}.png"))


def api_runs(base: str) -> list[dict[str, Any]]:
    return json.loads(get(f"{base}/api/runs")[0])


def run_id(base: str, name: str) -> str:
    return next(r["id"] for r in api_runs(base) if r["id"].endswith(f"/{name}"))


# ---- the views ----------------------------------------------------------------------------------------
def test_gallery_shows_every_run_and_sorts_the_table(page, server):
    runs = api_runs(server)
    page.open()
    cards = page.wait(
        lambda: len(page.all("[data-testid=run-card]")) == len(runs) and page.all("[data-testid=run-card]"),
        "the cards",
    )
    assert sorted(c.get_attribute("data-run") for c in cards) == sorted(r["id"] for r in runs)
    assert page.find("[data-testid=run-count]").text == f"{len(runs)} runs served"
    page.wait(
        lambda: (
            all(page.js("return arguments[0].naturalWidth", img) > 0 for img in page.all(".thumb"))
            and len(page.all(".thumb")) == len(runs)
        ),
        "every card's 16 samples",
    )
    families = {s.get_attribute("data-family") for s in page.all("section.family")}
    assert families == {r["family"] for r in runs}

    rows = page.wait(lambda: page.all("[data-testid=compare] tbody tr"), "the comparison table")
    assert len(rows) == len(runs)
    headers = page.all("[data-testid=compare] [data-testid=sort]")
    columns = [_column_values(page, j + 1) for j in range(len(headers))]
    j = next(j for j, values in enumerate(columns) if None not in values and len(set(values)) == len(values))
    for clicks in (1, 2):  # one way, then the other
        page.all("[data-testid=compare] [data-testid=sort]")[j].click()
        values = _column_values(page, j + 1)
        assert sorted(values) == sorted(columns[j])
        assert values in (sorted(values), sorted(values, reverse=True)), values
        if clicks == 1:
            first = values
    assert values == first[::-1]
    page.screenshot("gallery")


def _column_values(page: Page, column: int) -> list[float | None]:
    """The numbers of the table's `column` (0: the run's name), top to bottom; None where empty."""
    cells = page.js(
        "return [...document.querySelectorAll('[data-testid=compare] tbody tr')].map(r => r.children[arguments[0]].textContent)",
        column,
    )
    values: list[float | None] = []
    for text in cells:
        try:
            values.append(float(text.split()[0].replace(",", "").replace("−", "-")))
        except (ValueError, IndexError):
            values.append(None)
    return values


def test_open_a_run_and_a_new_seed_redraws_the_grid(page, server):
    vae = run_id(server, "vae-2d")
    page.open()
    page.wait(lambda: page.find(f"[data-run='{vae}'] .run-title"), "the VAE's card").click()
    page.wait(lambda: page.params() == {"view": "samples", "run": vae}, "the samples view's URL")
    page.wait(lambda: page.loaded("[data-testid=samples-grid]"), "the grid")
    first = page.image_bytes("[data-testid=samples-grid]")
    assert first == get(f"{server}/api/runs/{vae}/samples.png?n=64&seed=0")[0]
    command = page.find("[data-testid=command]").text
    assert command.startswith("genlearn sample ") and "--seed 0" in command

    seed = page.find("[data-testid=seed]")
    seed.clear()
    seed.send_keys("7\n")
    page.wait(
        lambda: "seed=7" in (page.find("[data-testid=samples-grid]").get_attribute("data-key") or ""),
        "the grid of seed 7",
    )
    page.wait(lambda: page.loaded("[data-testid=samples-grid]"), "the new grid")
    second = page.image_bytes("[data-testid=samples-grid]")
    assert second != first
    assert second == get(f"{server}/api/runs/{vae}/samples.png?n=64&seed=7")[0]
    assert page.params()["seed"] == "7"
    page.wait(lambda: "--seed 7" in page.find("[data-testid=command]").text, "the command of seed 7")

    page.driver.back()  # the URL holds the state: back gives seed 0's grid again
    page.wait(
        lambda: "seed=0" in (page.find("[data-testid=samples-grid]").get_attribute("data-key") or ""),
        "back to seed 0",
    )
    page.wait(lambda: page.image_bytes("[data-testid=samples-grid]") == first, "seed 0's bytes again")
    page.screenshot("samples")


def test_scores_and_nearest_images_beside_the_samples(page, server):
    vae = run_id(server, "vae-2d")
    page.open(view="samples", run=vae, n=16, scores=1)
    page.wait(lambda: page.loaded("[data-testid=samples-grid]"), "the grid")
    cells = page.wait(lambda: len(page.all(".cell")) == 16 and page.all(".cell"), "a cell per sample")
    from selenium.webdriver import ActionChains

    expected = json.loads(get(f"{server}/api/runs/{vae}/scores.json?n=16&seed=0")[0])["samples"]
    ActionChains(page.driver).move_to_element(cells[5]).perform()
    page.wait(lambda: "Sample 6" in page.find("[data-testid=inspector] h2").text, "the inspector on sample 6")
    score = page.wait(lambda: page.find("[data-testid=score]").text, "sample 6's score")
    shown = float(score.split()[0].replace(",", "").replace("−", "-"))
    assert shown == pytest.approx(expected[5]["score"]["value"], abs=0.051)
    assert page.find("[data-testid=nearest]").get_attribute("src") == expected[5]["nearest"]["image"]
    page.screenshot("scores")


def test_a_caption_is_drawn_and_an_unknown_word_is_marked_before_anything_is_sent(page, server):
    aligndraw = run_id(server, "aligndraw")
    page.open(view="samples", run=aligndraw)
    box = page.wait(lambda: page.find("[data-testid=caption]"), "the caption box")
    box.clear()
    box.send_keys(CAPTION + "\n")
    page.wait(
        lambda: "caption=" in (page.find("[data-testid=samples-grid]").get_attribute("data-key") or ""),
        "the caption's grid",
    )
    page.wait(lambda: page.loaded("[data-testid=samples-grid]"), "the caption's drawing")
    quoted = urllib.parse.quote(CAPTION)
    assert (
        page.image_bytes("[data-testid=samples-grid]")
        == get(f"{server}/api/runs/{aligndraw}/samples.png?n=8&seed=0&caption={quoted}")[0]
    )
    assert page.params()["caption"] == CAPTION
    assert f"--caption '{CAPTION}'" in page.find("[data-testid=command]").text

    box.clear()
    box.send_keys("the digit 3 is on the lfet")
    unknown = page.wait(
        lambda: page.all("[data-testid=caption-tokens] [data-unknown]"), "the unknown word marked"
    )
    assert [u.text for u in unknown] == ["lfet"]
    assert "not in the model's vocabulary" in page.find("[data-testid=caption-status]").text
    assert page.find("[data-testid=draw]").get_attribute("disabled") is not None
    assert "left" in page.find("[data-testid=suggestions]").text  # did you mean
    box.send_keys("\n")
    time.sleep(1.0)  # longer than the typing pause after which a known caption is sent
    assert not page.requests("lfet"), "a caption with an unknown word was sent"
    assert page.params()["caption"] == CAPTION
    page.screenshot("caption")


def test_the_draw_timeline_scrubs_step_by_step(page, server):
    from selenium.webdriver.common.keys import Keys

    draw = run_id(server, "draw")
    page.open(view="process", run=draw, n=4)
    page.wait(
        lambda: page.find("[data-testid=process-canvas]").get_attribute("data-ready"), "DRAW's timeline"
    )
    process = json.loads(get(f"{server}/api/runs/{draw}/process.json?n=4&seed=0")[0])
    frames = len(process["frames"])
    assert frames >= 2
    counter = page.find("[data-testid=step-counter]")
    assert counter.text.endswith(f"1 / {frames}") and process["labels"][0] in counter.text
    pictures = [page.canvas("[data-testid=process-canvas]")]
    slider = page.find("[data-testid=scrubber]")
    slider.click()
    slider.send_keys(Keys.HOME)
    for step in range(1, frames):
        slider.send_keys(Keys.ARROW_RIGHT)
        page.wait(
            lambda s=str(step): page.find("[data-testid=process-canvas]").get_attribute("data-step") == s,
            f"step {step}",
        )
        assert page.find("[data-testid=step-counter]").text.endswith(f"{step + 1} / {frames}")
        pictures.append(page.canvas("[data-testid=process-canvas]"))
    assert len(set(pictures)) == frames, "each step draws its own canvas"
    assert page.find("[data-testid=command]").text.startswith("genlearn sample ")
    page.screenshot("process-draw")


def test_the_latent_plane_decodes_under_the_cursor(page, server):
    from selenium.webdriver import ActionChains

    vae = run_id(server, "vae-2d")
    page.open(view="latent", run=vae)
    plane = page.wait(lambda: page.find("[data-testid=latent-plane][data-ready]"), "the encoded test set")
    size = plane.size
    decoded = []
    for fx, fy in ((0.25, 0.3), (0.75, 0.7)):
        ActionChains(page.driver).move_to_element_with_offset(
            plane, int((fx - 0.5) * size["width"]), int((fy - 0.5) * size["height"])
        ).perform()
        z = page.wait(
            lambda: (
                (z := page.find("[data-testid=decoded]").get_attribute("data-z"))
                and z not in [d[0] for d in decoded]
                and z
            ),
            "the image decoded under the cursor",
        )
        page.wait(lambda: page.loaded("[data-testid=decoded]"), "the decoded image")
        x, y = z.split(",")
        decoded.append(
            (
                z,
                page.image_bytes("[data-testid=decoded]"),
                get(f"{server}/api/runs/{vae}/decode.png?x={x}&y={y}")[0],
            )
        )
    (z1, shown1, api1), (z2, shown2, api2) = decoded
    assert shown1 == api1 and shown2 == api2 and shown1 != shown2
    x1, y1 = map(float, z1.split(","))
    x2, y2 = map(float, z2.split(","))
    assert x2 > x1 and y2 < y1, "right is larger z1, down is smaller z2"
    marker = page.find(".marker")
    assert marker.is_displayed(), "the cursor is marked on the 2-D VAE's manifold"

    plane_click = ActionChains(page.driver)
    plane_click.move_to_element_with_offset(plane, -100, 0).click().move_to_element_with_offset(
        plane, 100, 50
    ).click().perform()
    page.wait(
        lambda: page.loaded("[data-testid=strip]") and page.find("[data-testid=strip]").is_displayed(),
        "the interpolation strip",
    )
    assert {"ax", "ay", "bx", "by"} <= page.params().keys()
    page.screenshot("latent")


def test_a_gibbs_chain_advances(page, server):
    rbm = run_id(server, "rbm")
    page.open(view="process", run=rbm, steps=20, every=5, n=4)
    canvas = page.wait(lambda: page.find("[data-testid=process-canvas][data-ready]"), "the chain")
    first = page.canvas("[data-testid=process-canvas]")
    assert canvas.get_attribute("data-step") == "0"
    page.find("[data-testid=play]").click()
    page.wait(
        lambda: page.find("[data-testid=process-canvas]").get_attribute("data-step") == "4",
        "the chain's last frame",
    )
    assert page.find("[data-testid=step-counter]").text.endswith("5 / 5")
    assert page.canvas("[data-testid=process-canvas]") != first
    assert page.find("[data-testid=play]").text.endswith("Play"), "the timeline stops at its end"
    page.screenshot("gibbs")


def test_an_error_from_the_api_is_shown_politely(page, server):
    vae = run_id(server, "vae-2d")
    page.open(view="samples", run=vae, n=1000)
    notice = page.wait(lambda: page.find("[data-testid=notice-error]"), "the server's refusal")
    assert notice.text.startswith("Could not draw these samples: ") and "256" in notice.text
