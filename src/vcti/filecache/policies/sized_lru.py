"""Least recently used, larger models first among equals (1.0's ``SizedLruPolicy``)."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry
from ._state import PriorityState, decode, encode, select


class SizedLruPolicy:
    """Evict the model whose last access is oldest first; ties: the larger model first.

    This is vcti-file-cache 1.0's ``SizedLruPolicy``. The ordering by idle time x size
    that earlier versions of this package gave this name is :class:`IdleSizePolicy`.
    """

    name = "sized-lru"
    #: Its state only indexes what order() computes from the entries: the manager uses
    #: order(); the exact replay uses the state, for speed.
    history = False

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Oldest ``last_access`` first; ties: larger ``size`` first."""
        return sorted(entries, key=lambda e: (e.last_access, -e.size, e.key))

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> SizedLruState:
        """Last accesses, empty or as :meth:`SizedLruState.dump` wrote them."""
        return SizedLruState(data)

    def __repr__(self) -> str:
        return "SizedLruPolicy()"


class SizedLruState(PriorityState):
    """A heap of models by (last access, -size)."""

    policy = SizedLruPolicy.name

    def __init__(self, data: bytes | None = None) -> None:
        super().__init__()
        if data is not None:
            self._load_items(decode(self.policy, data))

    def insert(self, entry: CacheEntry) -> None:
        """Track a new model at its last access."""
        self._set(entry.key, (entry.last_access, -entry.size))

    def access(self, entry: CacheEntry, count: int) -> None:
        """Move the model to its latest access."""
        self.insert(entry)

    def dump(self) -> bytes:
        """The last accesses, in eviction order."""
        return encode(self.policy, seq=self._seq, items=self._dump_items())
