"""Least frequently used."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry
from ._select import select_in_order


class LfuPolicy:
    """Evict the model opened the fewest times first; ties go to the least recent."""

    name = "lfu"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Lowest ``access_count`` first, then oldest ``last_access``."""
        return sorted(entries, key=lambda e: (e.access_count, e.last_access, e.key))

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: entries in this policy's order until ``required_free`` bytes."""
        return select_in_order(self.order(entries), required_free)

    def __repr__(self) -> str:
        return "LfuPolicy()"
