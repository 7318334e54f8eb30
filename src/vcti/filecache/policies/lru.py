"""Least recently used."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry
from ._select import select_in_order


class LruPolicy:
    """Evict the model whose last access is oldest first."""

    name = "lru"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Oldest ``last_access`` first; ties: larger model first."""
        return sorted(entries, key=lambda e: (e.last_access, -e.size, e.key))

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: entries in this policy's order until ``required_free`` bytes."""
        return select_in_order(self.order(entries), required_free)

    def __repr__(self) -> str:
        return "LruPolicy()"
