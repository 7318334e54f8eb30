"""Everyday operations: remove, clear, ``in``, get_entry, max_age and versions (local, memory)."""

from __future__ import annotations

import threading
import time

import pytest

from vcti.filecache import CacheManagerConfig, KeyValidationError, LockTimeoutError
from vcti.filecache.testing import RecordingObserver

from .conftest import MakeCache
from .helpers import Backend, FakeClock, fill, wait_for


def test_remove_waits_for_the_model_to_be_closed(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache(lock_timeout=5.0)
    fill(backend, cache, "m", 10)
    assert "m" in cache
    released = threading.Event()

    def hold() -> None:
        with cache.model("m"):
            released.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    wait_for(lambda: "m" in cache.snapshot().pinned)
    threading.Timer(0.3, released.set).start()
    assert cache.remove("m") is True  # waited for the holder to leave
    holder.join()
    assert "m" not in cache
    assert cache.remove("m") is False  # nothing to remove
    assert cache.entries() == []


def test_remove_gives_up_after_the_lock_timeout(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache(lock_timeout=0.3)
    fill(backend, cache, "m", 10)
    with cache.model("m"), pytest.raises(LockTimeoutError):
        cache.remove("m")
    assert "m" in cache


def test_remove_refuses_a_malformed_key(make_cache: MakeCache) -> None:
    cache = make_cache()
    for key in ("", "/abs", "a/../b", "a/.filecache"):
        with pytest.raises(KeyValidationError):
            cache.remove(key)
    with pytest.raises(KeyValidationError):
        cache.get_entry("a//b")
    assert 42 not in cache  # type: ignore[operator]


def test_clear_removes_what_is_not_open(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache()
    for key in ("a", "b", "c/d"):
        fill(backend, cache, key, 10)
    with cache.model("b"):
        assert cache.clear() == 2
        assert [e.key for e in cache.entries()] == ["b"]
    assert cache.clear() == 1
    assert cache.entries() == []


def test_get_entry_counts_no_access_and_creates_nothing(
    make_cache: MakeCache, backend: Backend, clock: FakeClock
) -> None:
    cache = make_cache()
    assert cache.get_entry("missing") is None
    assert "missing" not in cache
    assert cache.entries() == []
    fill(backend, cache, "m", 42)
    entry = cache.get_entry("m")
    assert entry is not None
    assert (entry.key, entry.size, entry.access_count) == ("m", 42, 1)
    assert entry.fill_seconds is not None
    assert cache.get_entry("m") == entry  # looking is not an access
    with cache.model("m"):
        pass
    again = cache.get_entry("m")
    assert again is not None
    assert again.access_count == 2  # accesses not written yet are counted


def test_max_age_evicts_idle_models_whatever_the_total(
    make_cache: MakeCache, backend: Backend, clock: FakeClock
) -> None:
    recorder = RecordingObserver()
    cache = make_cache(max_age=3600.0, observer=recorder)
    fill(backend, cache, "old", 10)
    fill(backend, cache, "open-old", 10)
    with cache.model("open-old"):  # opened long ago, and still open (a long read)
        clock.advance(3000)
        fill(backend, cache, "recent", 10)
        clock.advance(1000)  # old, open-old: 4000 s idle; recent: 1000 s
        snapshot = cache.manager.run_once()
    assert snapshot is not None
    assert sorted(e.key for e in snapshot.entries) == ["open-old", "recent"]
    (result,) = [args[0] for args in recorder.calls("on_evict_end")]
    assert (result.reason, result.policy) == ("age", "max-age")
    assert [e.key for e in result.entries] == ["old"]
    assert result.skipped_pinned == ("open-old",)
    clock.advance(10)
    assert cache.evict() == ["open-old"]  # closed now, still too old
    with pytest.raises(ValueError, match="max_age"):
        CacheManagerConfig(evict_above=1, max_age=0)


def test_a_model_of_another_version_is_refilled(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache()
    with cache.model("run", version="mtime-1") as model:
        assert model.new
        backend.write(model.path, "data.bin", b"one")
    with cache.model("run", version="mtime-1") as model:
        assert not model.new
    with cache.model("run") as model:  # no version asked: any will do
        assert not model.new
    with cache.model("run", version="mtime-2") as model:
        assert model.new  # the source changed: a miss
        backend.write(model.path, "data.bin", b"two")
    with cache.model("run", version="mtime-2") as model:
        assert not model.new
        assert backend.read(model.path, "data.bin") == b"two"
    entry = cache.get_entry("run")
    assert entry is not None
    assert entry.version == "mtime-2"
    with pytest.raises(TypeError, match="version"):
        cache.model("run", version=2)  # type: ignore[arg-type]


def test_readers_of_the_old_version_keep_it_until_they_close(
    make_cache: MakeCache, backend: Backend
) -> None:
    cache = make_cache(lock_timeout=10.0)
    with cache.model("run", version="v1") as model:
        backend.write(model.path, "data.bin", b"v1")
    reading = threading.Event()
    done = threading.Event()
    seen: list[bytes] = []

    def read_old() -> None:
        with cache.model("run", version="v1") as old:
            reading.set()
            time.sleep(0.5)  # the refill finishes meanwhile, and waits for this reader
            seen.append(backend.read(old.path, "data.bin"))
        done.set()

    reader = threading.Thread(target=read_old)
    reader.start()
    reading.wait(10)
    with cache.model("run", version="v2") as model:
        backend.write(model.path, "data.bin", b"v2")
    assert done.is_set()  # published only once the old one was closed
    reader.join()
    assert seen == [b"v1"]
    with cache.model("run", version="v2") as model:
        assert backend.read(model.path, "data.bin") == b"v2"
    assert [e.key for e in cache.entries()] == ["run"]
