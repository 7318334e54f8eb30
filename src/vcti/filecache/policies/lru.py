"""Least recently used."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry


class LruPolicy:
    """Evict the model whose last access is oldest first."""

    name = "lru"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Oldest ``last_access`` first; ties: larger model first."""
        return sorted(entries, key=lambda e: (e.last_access, -e.size, e.key))

    def __repr__(self) -> str:
        return "LruPolicy()"
