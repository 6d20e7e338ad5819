"""Screenshots of the explorer's views for README and docs: `genlearn serve` on the given
directories (default zoo/), each view opened in headless Chromium as a student would leave it (a
sample hovered, a point decoded, a timeline half played), saved as docs/img/serve/VIEW.png.

    python benchmarks/screenshots.py                   # the zoo's runs
    python benchmarks/screenshots.py runs --out /tmp/shots

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`) and
Selenium (`pip install -e '.[dev]'`); nothing is downloaded. A view no served run offers is left
out (and said so).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 120  # seconds: a zoo model's first load and its answer
SIZE = (1440, 900)


@contextmanager
def serving(directories: list[str]) -> Iterator[str]:
    """`genlearn serve DIR ... --port 0` in its own process: its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "genlearn", "serve", *directories, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        said, deadline = "", time.monotonic() + WAIT
        while "http://" not in said and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                said += proc.stdout.readline()
        address = re.search(r"http://[^/\s]+", said)
        if address is None:
            sys.exit(f"error: genlearn serve did not start: {said.strip()}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield address.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver, a fresh profile, nothing downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        sys.exit(
            "error: the screenshots need Chromium and its driver: apt-get install chromium chromium-driver"
        )
    with tempfile.TemporaryDirectory(prefix="genlearn-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={SIZE[0]},{SIZE[1]}",
            "--force-device-scale-factor=1",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        width, height = SIZE  # the page's own size, whatever the window's frame takes
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            yield driver
        finally:
            driver.quit()


class Shooter:
    """Opens views on the explorer and saves what the browser shows."""

    def __init__(self, driver: Any, base: str, out: Path):
        self.driver, self.base, self.out = driver, base, out
        self.runs = json.loads(urllib.request.urlopen(f"{base}/api/runs", timeout=WAIT).read())

    def run(
        self,
        view: str | None = None,
        prefer: tuple[str, ...] = (),
        test: Callable[[dict], bool] | None = None,
    ):
        """A served run offering `view` (and passing `test`), the first of the `prefer`red models
        that is served, else any; None when there is none."""
        offered = [r for r in self.runs if (view is None or view in r["views"]) and (test is None or test(r))]
        ranked = sorted(
            offered, key=lambda r: prefer.index(r["model"]) if r["model"] in prefer else len(prefer)
        )
        return ranked[0] if ranked else None

    def model(self, name: str) -> dict | None:
        """The first served run of the registered model `name`."""
        return next((r for r in self.runs if r["model"] == name), None)

    def open(self, **params: Any) -> None:
        self.driver.get(
            f"{self.base}/?{urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})}"
        )

    def wait(self, script: str, what: str) -> Any:
        """Waits until the page's `script` (a JS expression) is truthy."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            value = self.driver.execute_script(f"try {{ return {script}; }} catch (e) {{ return null; }}")
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}")

    def images_loaded(self) -> None:
        self.wait(
            "[...document.images].every(i => !i.getAttribute('src') || (i.complete && i.naturalWidth > 0))"
            " && !document.querySelector('.loading')",
            "the pictures",
        )

    def save(self, name: str) -> None:
        time.sleep(0.3)  # a last paint
        from PIL import Image

        path = self.out / f"{name}.png"
        shot = Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB")
        shot.save(path, optimize=True)  # lossless, smaller than the browser's own encoding
        print(f"wrote {path}")

    def hover(self, css: str, fx: float, fy: float, click: bool = False) -> None:
        from selenium.webdriver import ActionChains
        from selenium.webdriver.common.by import By

        el = self.driver.find_element(By.CSS_SELECTOR, css)
        w, h = el.size["width"], el.size["height"]
        chain = ActionChains(self.driver).move_to_element_with_offset(
            el, int((fx - 0.5) * w), int((fy - 0.5) * h)
        )
        (chain.click() if click else chain).perform()


def shoot(s: Shooter) -> None:
    s.open()
    s.wait("document.querySelectorAll('[data-testid=run-card]').length > 0", "the gallery")
    s.images_loaded()
    s.wait("document.querySelector('[data-testid=compare] table')", "the table")
    s.save("gallery")

    run = s.run(view="scores", prefer=("vae", "draw", "rbm", "dcgan"), test=lambda r: not r["conditions"])
    if run:
        s.open(view="samples", run=run["id"], n=36, scores=1)
        s.wait("document.querySelectorAll('.cell').length === 36", "the grid")
        s.images_loaded()
        s.hover(".cell[data-index='14']", 0.5, 0.5)
        s.wait("document.querySelector('[data-testid=nearest]')", "the nearest image")
        s.save("samples")

    run = s.run(view="samples", test=lambda r: "labels" in r["conditions"])
    if run:
        s.open(view="samples", run=run["id"], labels="0-9", per=10)
        s.wait("document.querySelector('[data-testid=samples-grid]').dataset.key", "the labelled grid")
        s.images_loaded()
        s.save("labels")

    run = s.run(view="samples", test=lambda r: "captions" in r["conditions"])
    if run:
        example = run["conditions"]["captions"]["examples"][0]
        s.open(view="samples", run=run["id"], caption=example)
        s.wait("document.querySelector('[data-testid=samples-grid]').dataset.key", "the caption's grid")
        s.images_loaded()
        box = s.driver.find_element("css selector", "[data-testid=caption]")
        box.send_keys(" zebra")  # the unknown word marked, nothing sent
        s.wait("document.querySelector('[data-unknown]')", "the unknown word")
        s.save("caption")

    run = s.run(view="manifold") or s.run(view="latent")
    if run:
        s.open(view="latent", run=run["id"])
        s.wait("document.querySelector('[data-testid=latent-plane][data-ready]')", "the latent plane")
        s.hover("[data-testid=latent-plane]", 0.3, 0.35, click=True)
        s.hover("[data-testid=latent-plane]", 0.7, 0.6, click=True)
        s.wait(
            "document.querySelector('[data-testid=strip]') && !document.querySelector('[data-testid=strip]').hidden",
            "the strip",
        )
        s.hover("[data-testid=latent-plane]", 0.55, 0.4)
        s.wait("document.querySelector('[data-testid=decoded]').dataset.z", "the decoded image")
        s.images_loaded()
        s.save("latent")

    for kind, name in (
        ("canvas", "process-draw"),
        ("alignment", "process-aligndraw"),
        ("pyramid", "process-lapgan"),
        ("gibbs", "gibbs"),
    ):
        run = s.run(view="process", test=lambda r, k=kind: r["process"] == k)
        if run is None:
            print(f"no served run shows a {kind} process: {name}.png left out")
            continue
        extra = (
            {"steps": 200, "every": 10, "n": 16}
            if kind == "gibbs"
            else {"n": 16}
            if kind != "alignment"
            else {}
        )
        s.open(view="process", run=run["id"], **extra)
        frames = s.wait(
            "document.querySelector('[data-testid=process-canvas][data-ready]') && Number(document.querySelector('[data-testid=scrubber]').max) + 1",
            "the timeline",
        )
        middle = frames - 1 if kind in ("pyramid", "gibbs") else int(frames * 0.6)
        s.driver.execute_script(
            "const r = document.querySelector('[data-testid=scrubber]'); r.value = arguments[0];"
            "r.dispatchEvent(new Event('input')); r.dispatchEvent(new Event('change'));",
            middle,
        )
        s.save(name)

    pair = [s.model(m) for m in ("cgan", "lapgan-conditional")]
    if not all(pair):
        pair = [s.model(m) for m in ("draw", "draw-noattn")]
    if not all(pair):  # any two runs of images
        pair = [r for r in s.runs if r["image_shape"] and r["image_shape"][1] == 28][:2]
    if len(pair) == 2 and all(pair):
        labels = "0-9" if all("labels" in r["conditions"] for r in pair) else None
        s.open(view="side", runs=",".join(r["id"] for r in pair), labels=labels, per=4 if labels else None)
        s.wait("document.querySelectorAll('[data-testid=side-grid][src]').length === 2", "both runs")
        s.images_loaded()
        s.save("side")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "directories", nargs="*", default=["zoo"], help="directories of runs to serve (default zoo)"
    )
    parser.add_argument("--out", default="docs/img/serve", help="where the PNGs go (default docs/img/serve)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with serving(args.directories) as base, chromium() as driver:
        shoot(Shooter(driver, base, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
