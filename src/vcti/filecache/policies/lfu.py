"""Least frequently used."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry


class LfuPolicy:
    """Evict the model opened the fewest times first; ties go to the least recent."""

    name = "lfu"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Lowest ``access_count`` first, then oldest ``last_access``."""
        return sorted(entries, key=lambda e: (e.access_count, e.last_access, e.key))

    def __repr__(self) -> str:
        return "LfuPolicy()"
