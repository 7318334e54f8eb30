"""1.0's selection, derived from an order: what every built-in policy offers."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry


def select_in_order(ordered: Sequence[CacheEntry], required_free: int) -> list[CacheEntry]:
    """The first entries of ``ordered`` whose sizes reach ``required_free`` (1.0's rule)."""
    chosen: list[CacheEntry] = []
    freed = 0
    for entry in ordered:
        if freed >= required_free:
            break
        chosen.append(entry)
        freed += entry.size
    return chosen
