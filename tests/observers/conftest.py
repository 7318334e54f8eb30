"""Fixtures for the exporter tests: private registries and providers, and one script.

The script drives a real FileCache on LocalStorage through every kind of event, so each
exporter test asserts what its exporter made of the same, known sequence.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from vcti.filecache import CacheManagerConfig, CacheObserver, FileCache, LocalStorage

from ..helpers import FakeClock

T0 = 1_700_000_000.0
MODEL_BYTES = 1000
LIMIT = 2500


class FlakyStorage(LocalStorage):
    """LocalStorage whose ``model_size`` fails with PermissionError for chosen keys."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self.failing: set[str] = set()

    def model_size(self, key: str) -> int:
        if key in self.failing:
            raise PermissionError(errno.EACCES, "Permission denied", self.path(key))
        return super().model_size(key)

    def model_sizes(self, keys: Sequence[str]) -> dict[str, int]:
        # A batch leaves out what it cannot measure; the scan then measures it alone.
        return super().model_sizes([key for key in keys if key not in self.failing])


class FirstScan(CacheObserver):
    """Sets ``done`` when a scan ends (put it last: the others have seen the scan then)."""

    def __init__(self) -> None:
        self.done = threading.Event()

    def on_scan_end(self, snapshot: object, duration: float) -> None:
        self.done.set()


def _open_and_wait(cache: FileCache, first_scan: FirstScan) -> FileCache:
    """Open ``cache`` and wait for the background thread's first cycle to end.

    That cycle starts as soon as the cache opens; with a long interval it is also the
    last one, so the rest of a test runs without the background thread.
    """
    cache.open()
    assert first_scan.done.wait(timeout=60), "the first background scan did not end"
    return cache


@dataclass
class ScriptRun:
    """What the script did, for the assertions."""

    root: str
    cache: FileCache
    storage: FlakyStorage
    clock: FakeClock
    checkpoints: list[str] = field(default_factory=list)


Checkpoint = Callable[[str, FileCache], None]


def write_model(path: str, size: int = MODEL_BYTES) -> None:
    with open(os.path.join(path, "data.bin"), "wb") as f:
        f.write(b"x" * size)


def fail_fill(cache: FileCache, key: str) -> None:
    """Fill ``key`` and raise RuntimeError("boom") inside the context."""
    with cache.model(key) as m:
        write_model(m.path)
        raise RuntimeError("boom")


def run_script(
    root: str,
    observers: list[CacheObserver],
    checkpoint: Checkpoint | None = None,
    around: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> ScriptRun:
    """Drive one cache through every kind of event; call ``checkpoint`` on the way.

    Sequence (clock in seconds after T0; every model is 1000 bytes; limit 2500, LRU):

    * open; the background thread scans the empty root and leads ("started").
    * t=0 fill a; t=100 fill b; t=200 open a (hit) and scan inside it ("pinned":
      2 models, a pinned); t=250 open a (hit).
    * fill c, which raises RuntimeError("boom") inside the context.
    * t=300 fill d, and scan inside the fill ("staging": 2 models + 1000 staging bytes).
    * t=1300 ``cache.evict()``: a scan (3 models, 3000 bytes), then b goes (the least
      recently used, idle 1200 s) ("evicted": 2 models, 2000 bytes).
    * t=1400 a scan in which ``model_size("a")`` raises PermissionError ("scan_error":
      1 model, 1000 bytes).
    * close ("closed").

    Lookups 6 (hits 2), fills 4 (1 failed), scans 5 (1 with an error), 1 eviction.
    ``around`` wraps everything between open and close (a request span, say).
    """
    clock = FakeClock(T0)
    storage = FlakyStorage(root)
    first_scan = FirstScan()
    config = CacheManagerConfig(
        evict_above=LIMIT,
        interval=3600,
        observer=[*observers, first_scan],
        clock=clock,
        prompt_eviction=False,
    )
    cache = FileCache(config=config, storage=storage)
    run = ScriptRun(root=storage.root, cache=cache, storage=storage, clock=clock)

    def check(name: str) -> None:
        run.checkpoints.append(name)
        if checkpoint is not None:
            checkpoint(name, cache)

    _open_and_wait(cache, first_scan)
    try:
        check("started")
        with around():
            with cache.model("a") as m:
                write_model(m.path)
            clock.advance(100)
            with cache.model("b") as m:
                write_model(m.path)
            clock.advance(100)
            with cache.model("a"):
                cache.snapshot()
                check("pinned")
            clock.advance(50)
            with cache.model("a"):
                pass
            with pytest.raises(RuntimeError, match="boom"):
                fail_fill(cache, "c")
            clock.advance(50)
            with cache.model("d") as m:
                write_model(m.path)
                cache.snapshot()
                check("staging")
            clock.advance(1000)
            evicted = cache.evict()
            assert evicted == ["b"]
            check("evicted")
            clock.advance(100)
            storage.failing.add("a")
            # An empty new file changes a's stamps, and a metadata write (what another
            # process's written-behind accesses do) records a change of a in the
            # journal: the next scan measures a again.
            (Path(storage.path("a")) / "touched").write_bytes(b"")
            storage.update_meta("a", lambda raw: raw or b"")
            snapshot = cache.snapshot()
            storage.failing.clear()
            assert [e.key for e in snapshot.entries] == ["d"]
            check("scan_error")
    finally:
        cache.close()
    check("closed")
    return run


@pytest.fixture
def script(tmp_path: Path) -> Callable[..., ScriptRun]:
    """``script(observers, checkpoint=None, around=nullcontext)``: see :func:`run_script`."""

    def run(
        observers: list[CacheObserver],
        checkpoint: Checkpoint | None = None,
        around: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> ScriptRun:
        return run_script(str(tmp_path / "cache"), observers, checkpoint, around)

    return run


OpenCache = Callable[..., FileCache]


@pytest.fixture
def open_cache(tmp_path: Path) -> Iterator[OpenCache]:
    """``open_cache(observers, storage=None, **config)``: an open cache, its first scan done.

    The storage defaults to a LocalStorage in a fresh folder of ``tmp_path``; ``config``
    defaults to ``evict_above=LIMIT, interval=3600``. Every cache is closed at teardown.
    """
    caches: list[FileCache] = []

    def make(
        observers: list[CacheObserver], storage: LocalStorage | None = None, **config: object
    ) -> FileCache:
        if storage is None:
            storage = LocalStorage(tmp_path / f"cache{len(caches)}")
        first_scan = FirstScan()
        settings: dict[str, object] = {
            "evict_above": LIMIT,
            "interval": 3600,
            "prompt_eviction": False,
            **config,
        }
        cache = FileCache(
            config=CacheManagerConfig(observer=[*observers, first_scan], **settings),
            storage=storage,
        )
        caches.append(cache)
        return _open_and_wait(cache, first_scan)

    yield make
    for cache in caches:
        cache.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A private Prometheus registry."""
    return CollectorRegistry()


@dataclass
class Tracing:
    """A private tracer provider whose finished spans are kept in memory."""

    provider: TracerProvider
    exporter: InMemorySpanExporter


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """A private TracerProvider with an InMemorySpanExporter (never the global one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, exporter)
    provider.shutdown()
