"""The served runs: found under the served directories, named by ids, and nothing else.

A run is a directory holding config.toml, model.safetensors and results.json as plain files (a
finished run, or a zoo entry). The directories are walked without following symbolic links, so
a link inside a served directory (to a run elsewhere, or to `/`) leads nowhere, and a run is
reached only through the index built here: a request names an id, never a path, so `..`,
`%2e%2e`, absolute paths and links out cannot lead outside the served directories.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from genlearn import files, runs
from genlearn.errors import UserError

RUN_MARKERS = (runs.CONFIG_FILE, runs.MODEL_FILE, runs.RESULTS_FILE)
RESCAN_S = 2.0  # an unknown id rescans the directories at most this often (a run just finished)
# Directories no run lives in: skipped by the walk (a run's TensorBoard events, caches).
SKIPPED = frozenset({"tensorboard", "__pycache__", ".git", "node_modules"})


class UnknownRun(UserError):
    """An id that names no served run (HTTP 404)."""


@dataclass(frozen=True)
class Root:
    """A served directory: the name its runs' ids start with, and its path as given."""

    name: str
    path: Path


@dataclass(frozen=True)
class RunEntry:
    """A served run: its id, its directory (as the command line would name it) and the identity
    of its files (size, inode and modification time of each), which changes when the run does."""

    id: str
    path: Path
    identity: tuple[int, ...]


def roots(directories: Iterable[str | os.PathLike[str]]) -> list[Root]:
    """The served directories, each a directory that exists, named by its last component
    (`name`, `name-2`, ... when two share one); the same directory given twice is served once."""
    found: list[Root] = []
    seen: set[Path] = set()
    for given in directories:
        path = files.check_path(given, "served directory")
        if not files.is_directory(path):
            what = "is not a directory" if files.lexists(path) else "does not exist"
            raise UserError(f"{files.shown(path)} {what}; give directories holding runs")
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        base = real.name or "root"
        names = {r.name for r in found}
        name = next(
            n for k in range(1, len(found) + 2) if (n := base if k == 1 else f"{base}-{k}") not in names
        )
        found.append(Root(name, path))
    return found


def identity(run_dir: Path) -> tuple[int, ...] | None:
    """(size, inode, mtime) of each of the run's marker files, or None unless all three are
    plain files (not links): a run that is one."""
    out: list[int] = []
    for name in RUN_MARKERS:
        try:
            st = os.lstat(run_dir / name)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        out += [st.st_size, st.st_ino, st.st_mtime_ns]
    return tuple(out)


def scan(served: list[Root]) -> dict[str, RunEntry]:
    """Every run under the served directories, by id (sorted); a run reachable from two served
    directories (one inside the other) is listed once, under the first."""
    found: dict[str, RunEntry] = {}
    seen: set[tuple[int, int]] = set()
    for root in served:
        for dirpath, dirnames, _ in os.walk(root.path, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED and not d.startswith("."))
            here = Path(dirpath)
            ident = identity(here)
            if ident is None:
                continue
            st = os.stat(here)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            rel = here.relative_to(root.path).as_posix()
            run_id = root.name if rel == "." else f"{root.name}/{rel}"
            found[run_id] = RunEntry(run_id, here, ident)
    return dict(sorted(found.items()))


class Catalog:
    """The index of served runs, rescanned on demand (`refresh`) and, for an id it does not know,
    at most every RESCAN_S seconds."""

    def __init__(self, directories: Iterable[str | os.PathLike[str]]):
        self.roots = roots(directories)
        self._lock = threading.Lock()
        self._runs: dict[str, RunEntry] = {}
        self._scanned = 0.0
        self.refresh()

    def refresh(self) -> dict[str, RunEntry]:
        """Walk the served directories again; returns the runs by id."""
        found = scan(self.roots)
        with self._lock:
            self._runs, self._scanned = found, time.monotonic()
        return found

    def runs(self) -> dict[str, RunEntry]:
        with self._lock:
            return dict(self._runs)

    def get(self, run_id: str) -> RunEntry:
        """The served run `run_id`, or UnknownRun with the line `genlearn sample ID` prints for a
        directory that does not exist (ids are paths relative to where the served directories
        are). A known run is checked for changes (its files replaced: a resumed run finished)."""
        with self._lock:
            entry, stale = self._runs.get(run_id), time.monotonic() - self._scanned > RESCAN_S
        if entry is None and stale:
            entry = self.refresh().get(run_id)
        if entry is None:
            raise UnknownRun(f"run directory {run_id!r} does not exist")
        now = identity(entry.path)
        if now is None:  # removed, or replaced by something that is not a run
            self.refresh()
            raise UnknownRun(f"run directory {run_id!r} does not exist")
        if now != entry.identity:
            entry = RunEntry(entry.id, entry.path, now)
            with self._lock:
                self._runs[run_id] = entry
        return entry
