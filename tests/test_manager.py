"""CacheManager: the per-root singleton, its thread, its cycle and its resilience."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from vcti.filecache import (
    CacheEntry,
    CacheManagerConfig,
    CacheObserver,
    CacheSnapshot,
    EvictionResult,
    FileCache,
    LocalStorage,
    LruPolicy,
)
from vcti.filecache.testing import MemoryStorage, RecordingObserver

from .conftest import MakeCache
from .helpers import Backend, FakeClock, fill, wait_for


def manager_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vcti-filecache-manager")]


def test_one_manager_per_root(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=100, interval=3600)
    a = FileCache(root=tmp_path / "one", config=config)
    b = FileCache(storage=LocalStorage(tmp_path / "one"), config=config)
    c = FileCache(root=tmp_path / "two", config=config)
    assert a.manager is b.manager
    assert a.manager is not c.manager


def test_thread_starts_with_the_first_cache_and_stops_with_the_last(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=100, interval=3600)
    a = FileCache(root=tmp_path, config=config)
    b = FileCache(root=tmp_path, config=config)
    assert not a.manager.is_running
    a.open()
    assert a.manager.is_running
    (thread,) = [t for t in manager_threads() if str(tmp_path) in t.name]
    assert thread.daemon
    b.open()
    a.close()
    assert b.manager.is_running
    b.close()
    assert not thread.is_alive()  # stopped and joined, not abandoned
    assert not b.manager.is_running


def test_background_eviction_within_one_interval(backend: Backend, clock: FakeClock) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=250, interval=0.2, observer=recorder, clock=clock)
    with FileCache(storage=backend.storage, config=config) as cache:
        for key in ("a", "b", "c", "d"):
            fill(backend, cache, key, 100)
            clock.advance(1)

        def evicted() -> list[str]:
            results = [args[0] for args in recorder.calls("on_evict_end")]
            return [e.key for r in results for e in r.entries]

        wait_for(lambda: len(evicted()) == 2)
        assert sorted(backend.storage.iter_models()) == ["c", "d"]
        results = [args[0] for args in recorder.calls("on_evict_end")]
        assert [e.key for r in results for e in r.entries] == ["a", "b"]
        assert all(r.trigger == "background" and r.policy == "lru" for r in results)
    names = recorder.names()
    assert names[0] == "on_attach"
    assert "on_manager_start" in names
    assert names.index("on_manager_stop") > names.index("on_manager_start")
    assert recorder.calls("on_leader_change") == [(True,), (False,)]


def test_run_once_runs_one_cycle(make_cache: MakeCache, backend: Backend, clock: FakeClock) -> None:
    cache = make_cache(evict_above=150)
    for key in ("a", "b"):
        fill(backend, cache, key, 100)
        clock.advance(1)
    snapshot = cache.manager.run_once()
    assert isinstance(snapshot, CacheSnapshot)
    assert [e.key for e in snapshot.entries] == ["b"]
    assert snapshot.total_size == 100
    assert not snapshot.is_over_limit


def test_hooks_of_a_fill_a_hit_and_a_manual_eviction(backend: Backend, clock: FakeClock) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(
        evict_above=50, interval=3600, observer=[recorder], clock=clock, prompt_eviction=False
    )
    with FileCache(storage=backend.storage, config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        del recorder.events[:]
        fill(backend, cache, "m", 100)
        with cache.model("m"):
            pass
        removed = cache.evict()
    names = recorder.names()
    assert names[:9] == [
        "on_model_open",
        "on_access",
        "on_fill",
        "on_size_update",  # the fill's size, measured as it is published
        "on_model_close",
        "on_model_open",
        "on_access",
        "on_model_close",
        "on_scan_start",
    ]
    assert recorder.calls("on_access") == [("m", False), ("m", True)]
    ((key, duration, error),) = recorder.calls("on_fill")
    assert (key, error) == ("m", None)
    assert duration >= 0
    (snapshot, policy, trigger) = recorder.calls("on_evict_start")[0]
    assert (snapshot.total_size, policy, trigger) == (100, "lru", "manual")
    assert recorder.calls("on_evict") == [(backend.storage.path("m"),)]
    (result,) = recorder.calls("on_evict_end")[0]
    assert isinstance(result, EvictionResult)
    assert [e.key for e in result.entries] == removed
    assert result.bytes_freed == 100
    assert result.started_at - result.entries[0].last_access == 0


def test_failed_fill_hooks(make_cache: MakeCache) -> None:
    recorder = RecordingObserver()
    cache = make_cache(observer=recorder)
    with pytest.raises(ValueError, match="boom"), cache.model("m"):
        raise ValueError("boom")
    ((key, _, error),) = recorder.calls("on_fill")
    assert key == "m"
    assert isinstance(error, ValueError)
    ((key, hit, _, error),) = recorder.calls("on_model_close")
    assert (key, hit, type(error)) == ("m", False, ValueError)


class RaisingPolicy:
    name = "raising"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        raise RuntimeError("policy bug")


def test_a_raising_policy_does_not_kill_the_thread(backend: Backend) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(
        evict_above=10, interval=0.05, policy=RaisingPolicy(), observer=recorder
    )
    with FileCache(storage=backend.storage, config=config) as cache:
        fill(backend, cache, "m", 100)
        wait_for(lambda: len([e for e in recorder.errors() if e[1] == "policy"]) >= 3)
        assert cache.manager.is_running
        error, _ = recorder.errors()[0]
        assert str(error) == "policy bug"
        with pytest.raises(RuntimeError, match="policy bug"):
            cache.evict()  # a manual call reports and raises: it is the caller's policy
        assert cache.evict(policy=LruPolicy()) == ["m"]


def test_a_policy_returning_strangers_is_reported(make_cache: MakeCache, backend: Backend) -> None:
    class Stranger:
        name = "stranger"

        def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
            return [CacheEntry("not-there", 1, 1, 1.0, 1.0)]

    recorder = RecordingObserver()
    cache = make_cache(evict_above=10, observer=recorder, policy=Stranger())
    fill(backend, cache, "m", 100)
    assert cache.manager.run_once() is not None
    ((error, context),) = recorder.errors()
    assert context == "policy"
    assert "unknown entry" in str(error)
    assert backend.storage.is_model("m")


class ExplodingObserver(CacheObserver):
    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        raise RuntimeError("observer bug")

    def on_access(self, key: str, hit: bool) -> None:
        raise RuntimeError("observer bug on the access path")


def test_a_raising_observer_does_not_kill_the_thread(backend: Backend) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(
        evict_above=10**6, interval=0.05, observer=[ExplodingObserver(), recorder]
    )
    with FileCache(storage=backend.storage, config=config) as cache:
        fill(backend, cache, "m", 1)  # the caller never sees the observer's error
        wait_for(lambda: len(recorder.calls("on_scan_end")) >= 3)
        assert cache.manager.is_running
        contexts = {context for _, context in recorder.errors()}
        assert contexts == {"observer"}
        messages = {str(error) for error, _ in recorder.errors()}
        assert messages == {"observer bug", "observer bug on the access path"}


class FailingScanStorage(MemoryStorage):
    def model_size(self, key: str) -> int:
        if key == "broken":
            raise PermissionError(13, "Permission denied", key)
        return super().model_size(key)


def test_a_storage_error_is_reported_and_the_cycle_goes_on() -> None:
    recorder = RecordingObserver()
    storage = FailingScanStorage()
    config = CacheManagerConfig(evict_above=10**6, interval=0.05, observer=recorder)
    with FileCache(storage=storage, config=config) as cache:
        for key in ("broken", "fine"):
            with cache.model(key) as model:
                storage.write_file(f"{model.path}/f", b"x")
        wait_for(lambda: len(recorder.errors()) >= 3)
        assert cache.manager.is_running
        assert {type(e) for e, _ in recorder.errors()} == {PermissionError}
        assert {c for _, c in recorder.errors()} == {"scan"}
        assert [e.key for e in cache.entries()] == ["fine"]


def test_vanishing_models_are_not_errors() -> None:
    class Vanishing(MemoryStorage):
        def model_size(self, key: str) -> int:
            raise FileNotFoundError(2, "gone", key)

    recorder = RecordingObserver()
    storage = Vanishing()
    config = CacheManagerConfig(evict_above=10**6, interval=3600, observer=recorder)
    with FileCache(storage=storage, config=config) as cache:
        with cache.model("m"):
            pass
        assert cache.entries() == []
    assert recorder.errors() == []


def test_background_cycles_use_the_first_open_cache_config(tmp_path: Path) -> None:
    first, second = RecordingObserver(), RecordingObserver()
    with (
        FileCache(root=tmp_path, config=CacheManagerConfig(evict_above=1, observer=first)) as a,
        FileCache(root=tmp_path, config=CacheManagerConfig(evict_above=1, observer=second)) as b,
    ):
        assert a.manager is b.manager
        a.manager.run_once()
        with b.model("m"):
            pass
    assert first.calls("on_scan_end")
    assert not second.calls("on_scan_end")
    assert second.calls("on_access") == [("m", False)]
    assert not first.calls("on_access")
