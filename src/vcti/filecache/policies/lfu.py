"""Least frequently used."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry
from ._state import PriorityState, decode, encode, select


class LfuPolicy:
    """Evict the model opened the fewest times first; ties go to the least recent.

    The state counts accesses from 1 at insert and forgets a count on eviction, with ties
    to the model whose count last changed longest ago: libCacheSim's ``LFU``.
    """

    name = "lfu"
    #: Its state only indexes what order() computes from the entries: the manager uses
    #: order(); the exact replay uses the state, for speed.
    history = False

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Lowest ``access_count`` first, then oldest ``last_access``."""
        return sorted(entries, key=lambda e: (e.access_count, e.last_access, e.key))

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> LfuState:
        """Access counts, empty or as :meth:`LfuState.dump` wrote them."""
        return LfuState(data)

    def __repr__(self) -> str:
        return "LfuPolicy()"


class LfuState(PriorityState):
    """A heap of models by (access count, when the count last changed)."""

    policy = LfuPolicy.name

    def __init__(self, data: bytes | None = None) -> None:
        super().__init__()
        if data is not None:
            self._load_items(decode(self.policy, data))

    def insert(self, entry: CacheEntry) -> None:
        """A new model counts its accesses so far (at least 1)."""
        self._set(entry.key, max(1, entry.access_count))

    def access(self, entry: CacheEntry, count: int) -> None:
        """``count`` more accesses."""
        item = self._items.get(entry.key)
        if item is None:
            self.insert(entry)
        else:
            self._set(entry.key, item[0] + count)

    def dump(self) -> bytes:
        """The counts, in eviction order."""
        return encode(self.policy, seq=self._seq, items=self._dump_items())
