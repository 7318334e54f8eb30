"""StatsObserver: the in-process summary of a cache, with the standard library alone."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from vcti.filecache import CacheManagerConfig, FileCache
from vcti.filecache.observers import CacheStats, StatsObserver

from ..helpers import wait_for


def fill(cache: FileCache, key: str, size: int) -> bool:
    with cache.model(key) as model:
        if model.new:
            Path(model.path, "data.bin").write_bytes(b"x" * size)
        return bool(model.new)


def test_counts_and_totals_follow_the_cache(tmp_path: Path) -> None:
    stats = StatsObserver()
    empty = stats.stats()
    assert (empty.lookups, empty.hit_ratio, empty.entries, empty.size) == (0, None, None, None)
    config = CacheManagerConfig(
        evict_above=10_000, interval=3600, prompt_eviction=False, observer=stats
    )
    with FileCache(config, root=tmp_path) as cache:
        # The cycle at start first: ending late, it would report the empty root it saw.
        wait_for(lambda: cache.manager.cycles >= 1)
        cache.manager.run_once()
        assert (stats.stats().entries, stats.stats().size) == (0, 0)
        for key in ("a", "b", "a", "a", "c"):
            fill(cache, key, 1000)
        with cache.model("d") as model:
            try:
                with cache.model("e"):
                    raise RuntimeError("the post-processing failed")
            except RuntimeError:
                pass
            Path(model.path, "data.bin").write_bytes(b"x" * 500)
        now = stats.stats()
        assert (now.hits, now.misses, now.fills, now.fill_failures) == (2, 5, 4, 1)
        assert now.hit_ratio == 2 / 7
        assert (now.entries, now.size) == (4, 3500)  # no scan since the first
        assert cache.evict(evict_above=2000) == ["b", "a"]
        after = stats.stats()
        assert (after.evictions, after.evicted_bytes) == (2, 2000)
        assert (after.entries, after.size) == (2, 1500)
    stats.reset()
    assert (stats.stats().hits, stats.stats().evictions, stats.stats().entries) == (0, 0, 2)
    assert isinstance(stats.stats(), CacheStats)
    assert "hits=0" in repr(stats)


def test_counts_are_exact_under_threads(tmp_path: Path) -> None:
    stats = StatsObserver()
    config = CacheManagerConfig(evict_above=10**9, interval=3600, observer=stats)
    with FileCache(config, root=tmp_path) as cache:
        fill(cache, "shared", 10)

        def hit() -> None:
            for _ in range(200):
                fill(cache, "shared", 10)

        threads = [threading.Thread(target=hit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert (stats.stats().hits, stats.stats().misses) == (1600, 1)


def test_hooks_before_attach_do_nothing() -> None:
    stats = StatsObserver()
    stats.on_size_update("/nowhere/a", 10)
    assert stats.stats().entries is None


def test_it_needs_no_exporter() -> None:
    code = (
        "import sys\n"
        "from vcti.filecache.observers import StatsObserver\n"
        "StatsObserver().stats()\n"
        "assert not {'prometheus_client', 'structlog', 'opentelemetry'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
