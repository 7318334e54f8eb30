"""FileCache on S3Storage: fills, hits, failed fills, eviction order, pins and verify."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, LruPolicy
from vcti.filecache.testing import RecordingObserver

from ..helpers import FakeClock, wait_for
from .conftest import S3Env, every

MakeCache = Callable[..., FileCache]
DEAD = "d" * 16  # the attempt of a fill that died


@pytest.fixture
def make_cache(s3: S3Env) -> Iterator[MakeCache]:
    """Open FileCaches on S3 storages of the test bucket; all are closed at teardown."""
    opened: list[FileCache] = []

    def make(storage: Any = None, evict_above: int = 10**9, **kwargs: Any) -> FileCache:
        kwargs.setdefault("interval", 3600.0)
        kwargs.setdefault("prompt_eviction", False)  # evictions happen where tests ask
        config = CacheManagerConfig(evict_above=evict_above, **kwargs)
        cache = FileCache(storage=storage or s3.storage(), config=config).open()
        opened.append(cache)
        wait_for(lambda: cache.manager.cycles >= 1)
        return cache

    yield make
    for cache in reversed(opened):
        cache.close()


def fill(s3: S3Env, cache: FileCache, key: str, size: int, files: int = 1) -> None:
    with cache.model(key) as model:
        assert model.new
        for n in range(files):
            s3.put(model.path, f"part-{n}.bin", b"x" * (size // files))


def test_fill_then_hit(s3: S3Env, make_cache: MakeCache) -> None:
    cache = make_cache()
    with cache.model("runs/a/m1") as model:
        assert model.new
        # The fill's own attempt: nobody else writes there, nobody reads it before publish.
        assert re.fullmatch(
            rf"s3://{s3.bucket}/cache/runs/a/m1/\.filecache/[0-9a-f]{{16}}", model.path
        )
        filled = model.path
        assert not model.exists
        s3.put(model.path, "mesh.vtu", b"m" * 300)
        s3.put(model.path, "fields/p.bin", b"p" * 20)
    with cache.model("runs/a/m1") as model:
        assert not model.new
        assert model.exists
        assert model.path == filled
        assert s3.get(model.path, "mesh.vtu") == b"m" * 300
    assert cache.storage.path("runs/a/m1") == f"s3://{s3.bucket}/cache/runs/a/m1"
    (entry,) = cache.entries()
    assert (entry.key, entry.size, entry.access_count) == ("runs/a/m1", 320, 2)
    cache.manager.flush()
    (entry,) = cache.entries()
    assert entry.access_count == 2
    assert cache.total_size == 320


def test_a_failed_fill_leaves_nothing_visible(s3: S3Env, make_cache: MakeCache) -> None:
    recorder = RecordingObserver()
    cache = make_cache(observer=recorder)

    def failing_fill() -> None:
        with cache.model("m") as model:
            s3.put(model.path, "partial.bin", b"x" * 100)
            raise RuntimeError("solver crashed")

    with pytest.raises(RuntimeError, match="solver crashed"):
        failing_fill()
    assert cache.entries() == []
    assert not cache.storage.is_model("m")
    assert s3.object_keys("cache/m/") == []
    assert cache.snapshot().staging_size == 0
    assert recorder.errors() == []
    with cache.model("m") as model:  # the next opener fills it afresh
        assert model.new
        s3.put(model.path, "data.bin", b"y" * 10)
    assert [e.size for e in cache.entries()] == [10]


def test_eviction_follows_the_policy(s3: S3Env, make_cache: MakeCache) -> None:
    clock = FakeClock()
    recorder = RecordingObserver()
    cache = make_cache(evict_above=250, clock=clock, policy=LruPolicy(), observer=recorder)
    for key in ("a", "b", "c"):
        fill(s3, cache, key, 100, files=3)
        clock.advance(10)
    with cache.model("a"):
        pass
    cache.manager.flush()
    assert cache.evict() == ["b"]
    assert sorted(e.key for e in cache.entries()) == ["a", "c"]
    cache.storage.flush()
    assert s3.object_keys("cache/b/") == []
    assert [c[0] for c in recorder.calls("on_evict")] == [f"s3://{s3.bucket}/cache/b"]
    assert recorder.errors() == []


def test_a_pinned_model_survives_eviction(s3: S3Env, make_cache: MakeCache) -> None:
    cache = make_cache(evict_above=1, evict_to=0)
    fill(s3, cache, "held", 100)
    fill(s3, cache, "free", 100)
    with cache.model("held"):
        assert cache.evict() == ["free"]
        # Another host's eviction honours the pin object of this one.
        other = s3.storage()
        assert other.remove("held") is False
        assert other.is_model("held")
    assert cache.evict() == ["held"]
    cache.storage.flush()
    assert s3.object_keys("cache/held/") == []


def test_a_reader_waits_for_a_fill_in_another_storage(s3: S3Env, make_cache: MakeCache) -> None:
    first, second = s3.storage(), s3.storage()
    fill_lock = first.lock_fill("m", timeout=1.0)
    staged = first.stage("m")
    s3.put(staged, "data.bin", b"d" * 10)
    from vcti.filecache.exceptions import LockTimeoutError

    with pytest.raises(LockTimeoutError):
        second.lock_fill("m", timeout=0.3)
    assert second.pin("m") is None  # not visible before the marker
    first.publish("m", staged, b'{"access_count":1,"last_access":1,"created":1}')
    fill_lock.release()
    pin = second.pin("m")
    assert pin is not None
    pin.release()


def test_verify_reports_and_repairs(s3: S3Env, make_cache: MakeCache) -> None:
    cache = make_cache()
    fill(s3, cache, "good", 10)
    assert cache.verify().ok
    # A fill that died before taking a lease (or after its lease was deleted).
    s3.client.put_object(
        Bucket=s3.bucket, Key=f"cache/lost/.filecache/{DEAD}/data.bin", Body=b"z" * 7
    )
    # Unreadable metadata: rebuilt by the core, through update_meta().
    (meta,) = [k for k in s3.object_keys("cache/good/") if k.endswith(".meta")]
    s3.client.put_object(Bucket=s3.bucket, Key=meta, Body=b"{bad")
    report = cache.verify()
    assert not report.ok
    assert any("leftover fill" in p and "/cache/lost/" in p for p in report.problems)
    assert any("good" in p for p in report.problems)
    assert report.snapshot.staging_size == 7
    repaired = cache.verify(repair=True)
    assert not repaired.ok  # it lists what it found and repaired
    after = cache.verify()
    assert after.ok, after.problems
    assert s3.object_keys("cache/lost/") == []
    assert [e.key for e in cache.entries()] == ["good"]


def test_a_dead_fill_is_swept_once_its_lease_expires(s3: S3Env, make_cache: MakeCache) -> None:
    ttl = 0.5
    # What a host killed in the middle of a fill leaves: its files, and its claim on the
    # key's head (a lease naming its attempt) that nobody renews any more.
    claim = {"state": "filling", "attempt": DEAD, "holder": "dead-host", "key": "m", "ttl": ttl}
    claim["nonce"] = "n"
    s3.client.put_object(
        Bucket=s3.bucket, Key="cache/.filecache/models/m/head", Body=json.dumps(claim)
    )
    s3.client.put_object(
        Bucket=s3.bucket, Key=f"cache/m/.filecache/{DEAD}/data.bin", Body=b"x" * 50
    )
    storage = s3.storage(lease_ttl=ttl)
    cache = make_cache(storage=storage)
    assert cache.snapshot().staging_size == 50
    assert storage.sweep() == 0  # first sighting of the claim: it may be alive
    wait_for(every(0.1, lambda: storage.sweep() == 50 or not s3.object_keys("cache/m/")))
    assert s3.object_keys("cache/") == ["cache/.filecache/leader", "cache/.filecache/models/m/head"]
    assert s3.live_keys("cache/") == ["cache/.filecache/leader"]  # the dead fill's head: vacant
    assert cache.snapshot().staging_size == 0
    with cache.model("m") as model:  # and the key can be filled again
        assert model.new


def test_everyday_operations_on_s3(make_cache: MakeCache, s3: S3Env) -> None:
    cache = make_cache(lock_timeout=10.0)
    for key in ("a", "b", "c/d"):
        with cache.model(key) as model:
            s3.put(model.path, "data.bin", b"x" * 10)
    assert "a" in cache
    entry = cache.get_entry("a")
    assert entry is not None
    assert (entry.size, entry.access_count) == (10, 1)
    assert cache.get_entry("zz") is None
    assert cache.remove("a") is True
    assert "a" not in cache
    assert cache.remove("a") is False
    with cache.model("b"):
        assert cache.clear() == 1
    assert [e.key for e in cache.entries()] == ["b"]


def test_versions_on_s3(make_cache: MakeCache, s3: S3Env) -> None:
    cache = make_cache(lock_timeout=20.0)
    with cache.model("run", version="v1") as model:
        s3.put(model.path, "data.bin", b"v1")
    with cache.model("run", version="v1") as old:
        assert not old.new
        old_path = old.path
    with cache.model("run", version="v2") as model:
        assert model.new
        s3.put(model.path, "data.bin", b"v2")
    with cache.model("run", version="v2") as model:
        assert not model.new
        assert s3.get(model.path, "data.bin") == b"v2"
    assert model.path != old_path  # the refill is a new attempt


def test_min_free_is_refused_on_s3(s3: S3Env) -> None:
    config = CacheManagerConfig(evict_above=10**9, min_free=0.1)
    with pytest.raises(ValueError, match="min_free needs a backend"):
        FileCache(config, storage=s3.storage()).open()


def test_max_age_on_s3(make_cache: MakeCache, s3: S3Env) -> None:
    cache = make_cache(max_age=1.0)
    with cache.model("old") as model:
        s3.put(model.path, "data.bin", b"x")
    time.sleep(1.5)
    with cache.model("fresh") as model:
        s3.put(model.path, "data.bin", b"x")
    assert cache.evict() == ["old"]
