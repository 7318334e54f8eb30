"""Fixtures shared by the whole suite: fresh roots, both built-in backends, a fake clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage
from vcti.filecache.testing import MemoryStorage

from .helpers import Backend, FakeClock, wait_for


@pytest.fixture(scope="session", autouse=True)
def _shared_bytecode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Let the Python processes the tests start reuse each other's compiled modules.

    Hundreds of tests run the command or a worker in a new interpreter. Where the
    environment forbids writing bytecode (PYTHONDONTWRITEBYTECODE, as many container
    images set), each of them would compile the package again; they share a bytecode
    folder of the test run's own instead, and nothing is written next to the sources.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PYTHONDONTWRITEBYTECODE")
        mp.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.mktemp("bytecode")))
        yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", LocalStorage(tmp_path / "cache"))
    return Backend("memory", MemoryStorage())


MakeCache = Callable[..., FileCache]


@pytest.fixture
def make_cache(backend: Backend, clock: FakeClock) -> Iterator[MakeCache]:
    """Open FileCaches on the backend's storage; all are closed at teardown."""
    opened: list[FileCache] = []

    def make(evict_above: int = 10**9, **kwargs: object) -> FileCache:
        kwargs.setdefault("interval", 3600.0)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("prompt_eviction", False)  # evictions happen where tests ask
        config = CacheManagerConfig(evict_above=evict_above, **kwargs)  # type: ignore[arg-type]
        cache = FileCache(storage=backend.storage, config=config).open()
        opened.append(cache)
        # Let the first background cycle (run at start) pass, so tests are deterministic.
        wait_for(lambda: cache.manager.cycles >= 1)
        return cache

    yield make
    for cache in reversed(opened):
        cache.close()
