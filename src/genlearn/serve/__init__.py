"""`genlearn serve`: every finished run under some directories, to explore in a browser.

One static page (`serve/static/`: HTML, CSS and plain ES modules, nothing fetched from the
internet) over a JSON API (`serve/app.py`, documented in README) that the page and scripts use.
The server reads the runs and never writes into them; it binds to 127.0.0.1 unless told
otherwise. Models load on first use and stay in memory within a limit (`serve/cache.py`).

In Python, the application answers without a server (Starlette's test client):

    from starlette.testclient import TestClient
    client = TestClient(genlearn.serve.create_app(["runs"]))
    client.get("/api/runs/runs/demo-vae/samples.png?n=16&seed=3").content  # genlearn sample's bytes
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genlearn.errors import UserError

DEFAULT_DIRECTORIES = ("zoo", "runs")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# torch threads of the server. One: the server answers one request at a time, most of them small
# (a decode, a grid), and where the cores are shared a second thread waits for a core at every
# operation: a decode took 0.25 ms on one thread and 30 ms on two on this project's 2-core machine
# beside two trainings (benchmarks/bench_serve.py).
THREADS = 1

__all__ = ["DEFAULT_DIRECTORIES", "create_app", "directories", "listen", "serve"]


def create_app(directories: Iterable[str | os.PathLike[str]], **options: Any) -> Any:
    """The explorer's application (Starlette) over the runs under `directories`
    (`genlearn.serve.app.create_app`)."""
    from genlearn.serve.app import create_app as make

    return make(directories, **options)


def directories(given: Iterable[str | os.PathLike[str]] | None = None) -> list[Path]:
    """The directories to serve: those given, else zoo/ and runs/ where they exist here."""
    chosen = [Path(d) for d in given or ()]
    if chosen:
        return chosen
    chosen = [Path(d) for d in DEFAULT_DIRECTORIES if Path(d).is_dir()]
    if not chosen:
        raise UserError(
            "nothing to serve: neither zoo/ nor runs/ is here; name the directories holding runs: "
            "genlearn serve DIR ..."
        )
    return chosen


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free one), or one line saying why not."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0 to 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; give another --port (or --port 0 for any free one)" if port else ""
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(
    given: Iterable[str | os.PathLike[str]] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    announce: Any = print,
) -> None:
    """Serve the explorer until Ctrl-C (or SIGTERM), which stops it cleanly. Prints the address
    (and a warning when `host` lets other machines in); a port in use, a directory that does not
    exist or nothing to serve are one line (UserError). Meanwhile a thread loads every run's model
    and draws its gallery card, so that the gallery opens at once (`Explorer.warm`)."""
    import torch
    import uvicorn

    served = directories(given)
    app = create_app(served)
    sock = listen(host, port)
    torch.set_num_threads(THREADS)
    if host not in LOCAL_HOSTS:
        print(
            f"warning: --host {host} lets other machines reach the explorer (read-only, no password); "
            "the default 127.0.0.1 keeps it to this one",
            file=sys.stderr,
            flush=True,
        )
    count = len(app.state.explorer.catalog.runs())
    names = ", ".join(str(d) for d in served)
    announce(
        f"serving {count} run{'s' * (count != 1)} from {names} at {address(sock)} (Ctrl-C stops)", flush=True
    )
    explorer = app.state.explorer
    warming = threading.Thread(target=explorer.warm, args=(announce,), name="warm-up")
    warming.start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stopped cleanly and passed the signal on
        pass
    finally:
        sock.close()
        explorer.stopping.set()  # torch's threads must not be running when the process ends
        warming.join()
    announce("stopped", flush=True)
