"""StatsObserver: hits, misses, fills, evictions and bytes, in process, without Prometheus."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._totals import LiveTotals, Totals
from .base import CacheObserver

if TYPE_CHECKING:
    from .._config import CacheManagerConfig
    from .._entry import CacheSnapshot, EvictionResult
    from ..storage.base import CacheStorage

__all__ = ["CacheStats", "StatsObserver"]


@dataclass(frozen=True)
class CacheStats:
    """What one process saw of a cache since its :class:`StatsObserver` was attached.

    Attributes:
        hits: ``model()`` lookups that found a published model.
        misses: lookups that filled the model (or waited for another fill).
        fills: fills that published a model.
        fill_failures: fills that ended without a published model.
        evictions: models this process removed by eviction.
        evicted_bytes: bytes those models held.
        entries: models in the cache as this process knows them (its last scan, plus its
            publishes and evictions since), or None before this process scanned the root
            (another process leads it).
        size: bytes in the cache, fills in progress included, known as ``entries`` is.
        taken_at: epoch seconds when these figures were read.
    """

    hits: int
    misses: int
    fills: int
    fill_failures: int
    evictions: int
    evicted_bytes: int
    entries: int | None
    size: int | None
    taken_at: float

    @property
    def lookups(self) -> int:
        """Hits plus misses."""
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float | None:
        """Hits per lookup, or None before the first lookup."""
        return self.hits / self.lookups if self.lookups else None


class StatsObserver(CacheObserver):
    """Counts a cache's hits, misses, fills and evictions in this process.

    The in-process summary that diskcache's ``cache.stats()`` gives, with the standard
    library alone: add it to the config's observers and call :meth:`stats`. Counts are
    of this process since the cache opened (or :meth:`reset`); use one observer per cache.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: LiveTotals | None = None
        self._known: Totals | None = None
        self._hits = self._misses = self._fills = self._failures = 0
        self._evictions = self._evicted_bytes = 0

    def __repr__(self) -> str:
        return f"<StatsObserver {self.stats()}>"

    def stats(self) -> CacheStats:
        """Return the counts and totals now."""
        with self._lock:
            known = self._known
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                fills=self._fills,
                fill_failures=self._failures,
                evictions=self._evictions,
                evicted_bytes=self._evicted_bytes,
                entries=None if known is None else known.entries,
                size=None if known is None else known.size,
                taken_at=time.time(),
            )

    def reset(self) -> None:
        """Set the counts back to 0 (the totals stay: they describe the cache)."""
        with self._lock:
            self._hits = self._misses = self._fills = self._failures = 0
            self._evictions = self._evicted_bytes = 0

    def on_attach(self, storage: CacheStorage, config: CacheManagerConfig) -> None:
        self._totals = LiveTotals(storage.path)

    def on_access(self, key: str, hit: bool) -> None:
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                self._fills += 1
            else:
                self._failures += 1

    def on_scan_start(self) -> None:
        if self._totals is not None:
            self._totals.scan_started()

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        if self._totals is not None:
            self._set(self._totals.scanned(snapshot))

    def on_evict_start(self, snapshot: CacheSnapshot, policy: str, trigger: str) -> None:
        if self._totals is not None:
            self._set(self._totals.scanned(snapshot))

    def on_size_update(self, path: str, size: int) -> None:
        if self._totals is not None:
            self._set(self._totals.resized(path, size))

    def on_evict_end(self, result: EvictionResult) -> None:
        with self._lock:
            self._evictions += len(result.entries)
            self._evicted_bytes += result.bytes_freed
        if self._totals is not None:
            self._set(self._totals.removed(e.key for e in result.entries))

    def _set(self, totals: Totals | None) -> None:
        if totals is not None:
            with self._lock:
                self._known = totals
