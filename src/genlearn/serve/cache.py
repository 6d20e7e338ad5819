"""What the explorer keeps in memory: the served runs' models, loaded on first use and kept within
a memory limit (least recently used first out), the data sets the views read, and the answers
already given (a view is a pure function of the run's files and its query, so an answer is kept
by both and never goes stale).

Every use of torch goes through one lock, `COMPUTE`: the samplers seed the process's global RNG
for the duration of a draw (`viz.samples`), and loading a model seeds it too, so two draws at
once in two threads would disturb each other's numbers. One lock makes every answer the one a
lone request gets; torch's own threads (bounded by `genlearn serve`) work inside it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch

from genlearn.serve.catalog import RunEntry

COMPUTE = threading.RLock()
MODEL_MEMORY = 2 * 2**30  # bytes of parameters and buffers kept loaded
ANSWER_MEMORY = 128 * 2**20  # bytes of answers kept


def model_bytes(model: torch.nn.Module) -> int:
    """The memory a loaded model holds: its parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in chain(model.parameters(), model.buffers()))


@dataclass
class Loaded:
    """A loaded run: its model, the identity of the files it came from, its size in bytes, and
    what the views computed once from it (the latent plane, say)."""

    model: Any
    identity: tuple[int, ...]
    size: int
    derived: dict[str, Any] = field(default_factory=dict)


class Models:
    """The served runs' models, loaded on first use (under `COMPUTE`) and kept while their
    parameters and buffers fit in `limit` bytes, least recently used evicted first (the one in
    use always stays). A run whose files changed is loaded again."""

    def __init__(self, load: Callable[[RunEntry], Any], limit: int = MODEL_MEMORY):
        self._load, self.limit = load, limit
        self._entries: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run: RunEntry) -> Loaded:
        with self._lock:
            found = self._entries.get(run.id)
            if found is not None and found.identity == run.identity:
                self._entries.move_to_end(run.id)
                return found
        with COMPUTE:
            with self._lock:  # loaded by another thread meanwhile?
                found = self._entries.get(run.id)
                if found is not None and found.identity == run.identity:
                    return found
            model = self._load(run)
            loaded = Loaded(model, run.identity, model_bytes(model))
            with self._lock:
                self._entries[run.id] = loaded
                self._entries.move_to_end(run.id)
                self._evict()
            return loaded

    def _evict(self) -> None:
        while len(self._entries) > 1 and sum(e.size for e in self._entries.values()) > self.limit:
            self._entries.popitem(last=False)

    def loaded(self) -> list[str]:
        """The ids of the runs loaded now, least recently used first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Answers:
    """Answers already given, by key (the run's identity and the normalised query), kept within
    `limit` bytes, least recently used evicted first."""

    def __init__(self, limit: int = ANSWER_MEMORY):
        self.limit = limit
        self._entries: OrderedDict[Any, tuple[bytes, dict[str, str]]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bytes, dict[str, str]] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Any, body: bytes, headers: dict[str, str]) -> None:
        if len(body) > self.limit:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self._size -= len(old[0]) if old else 0
            self._entries[key] = (body, headers)
            self._size += len(body)
            while self._size > self.limit:
                _, (dropped, _) = self._entries.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


class DataSets:
    """The data sets the views read (held-out images for the latent view and the chains' data
    start, training images for the nearest neighbour), loaded once per data set under
    `COMPUTE`. Always the pinned data of genlearn's cache: a run's `data_dir` is not followed
    (the explorer reads nothing a run's files point at)."""

    def __init__(self) -> None:
        self._sets: dict[str, Any] = {}
        self._references: dict[str, Any] = {}

    def of(self, config: Any) -> Any:
        from genlearn import data as datasets

        with COMPUTE:
            if config.dataset not in self._sets:
                pinned = dataclasses.replace(config, data_dir="", train_limit=0)
                self._sets[config.dataset] = datasets.load(pinned, train=False)
            return self._sets[config.dataset]

    def training_images(self, config: Any) -> Any:
        """Every training image of the run's data set (intensities), as the `nearest` metric
        compares samples with: composed once and kept where the data set composes them."""
        with COMPUTE:
            if config.dataset not in self._references:
                self._references[config.dataset] = self.of(config).all_train_images()
            return self._references[config.dataset]
