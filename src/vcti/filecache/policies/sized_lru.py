"""Size-weighted least recently used."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .._entry import CacheEntry
from ._select import select_in_order


class SizedLruPolicy:
    """Evict the model with the largest ``idle time x size`` first.

    Large models that have not been used for a while go before small ones of the same
    age, so one eviction frees more space while touching fewer models.

    Args:
        clock: returns the current time in epoch seconds (tests pass a fake clock).
    """

    name = "sized-lru"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Largest ``(now - last_access) * size`` first; ties: oldest first."""
        now = self._clock()

        def weight(entry: CacheEntry) -> tuple[float, float, str]:
            idle = max(0.0, now - entry.last_access)
            return (-idle * entry.size, entry.last_access, entry.key)

        return sorted(entries, key=weight)

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: entries in this policy's order until ``required_free`` bytes."""
        return select_in_order(self.order(entries), required_free)

    def __repr__(self) -> str:
        return "SizedLruPolicy()"
