"""The size and model count of a root as one process knows them between two scans."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._entry import CacheSnapshot


@dataclass(frozen=True)
class Totals:
    """Bytes and models of a root, and its limit, at one moment."""

    size: int
    entries: int
    evict_above: int

    @property
    def overage(self) -> int:
        """Bytes above the limit (0 when within it)."""
        return max(0, self.size - self.evict_above)


class LiveTotals:
    """The last scan of a root, plus the publishes and evictions seen in this process since.

    A scan sets the totals; a model's new size (``on_size_update``: a publish, or a scan's
    measurement) and an eviction change them at once, so that exporters need not wait an
    interval for the next scan. A process that has not scanned the root (another process
    leads it) knows no totals: its changes reach the totals at the leader's next scan.

    Args:
        path: the function that gives a model's full path (``CacheStorage.path``), the
            form in which ``on_size_update`` names a model.
    """

    def __init__(self, path: Callable[[str], str]) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._snapshot: CacheSnapshot | None = None
        self._sizes: dict[str, int] | None = None  # path -> size, built on first change
        self._totals: Totals | None = None
        self._scanning = threading.local()

    def scan_started(self) -> None:
        """A scan starts in this thread: its own size updates wait for its snapshot."""
        self._scanning.active = True

    def scanned(self, snapshot: CacheSnapshot) -> Totals:
        """A scan (or an eviction run's view) of the whole root: the new baseline."""
        self._scanning.active = False
        totals = Totals(snapshot.total_size, snapshot.entry_count, snapshot.evict_above)
        with self._lock:
            self._snapshot, self._sizes, self._totals = snapshot, None, totals
        return totals

    def resized(self, path: str, size: int) -> Totals | None:
        """Model ``path`` now holds ``size`` bytes (a new model when it was not known).

        Returns None, changing nothing, while this thread scans: the scan's snapshot,
        which has the size, replaces the totals when it ends.
        """
        if getattr(self._scanning, "active", False):
            return None
        with self._lock:
            sizes = self._known()
            if sizes is None or self._totals is None:
                return None
            old = sizes.get(path)
            sizes[path] = size
            current = self._totals
            self._totals = Totals(
                current.size + size - (old or 0),
                current.entries + (old is None),
                current.evict_above,
            )
            return self._totals

    def removed(self, keys: Iterable[str]) -> Totals | None:
        """The models ``keys`` were evicted."""
        with self._lock:
            sizes = self._known()
            if sizes is None or self._totals is None:
                return None
            size, entries = self._totals.size, self._totals.entries
            for key in keys:
                old = sizes.pop(self._path(key), None)
                if old is not None:
                    size, entries = size - old, entries - 1
            self._totals = Totals(size, entries, self._totals.evict_above)
            return self._totals

    def _known(self) -> dict[str, int] | None:
        # Built on the first change after a scan rather than at every scan: most
        # intervals see few changes, and a large root has many models.
        if self._sizes is None and self._snapshot is not None:
            self._sizes = {self._path(e.key): e.size for e in self._snapshot.entries}
        return self._sizes
