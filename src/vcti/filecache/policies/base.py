"""The eviction policy protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .._entry import CacheEntry


@runtime_checkable
class EvictionPolicy(Protocol):
    """Decides which models go first when the cache is over its limit.

    A policy only orders entries; the manager keeps the size bookkeeping, skips models
    that are open, and stops as soon as the cache is within budget.
    """

    @property
    def name(self) -> str:
        """A short, stable name, used in metrics and logs (``"lru"``)."""
        ...

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Return ``entries`` sorted so that the first one is evicted first."""
        ...
