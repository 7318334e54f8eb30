"""Least recently used."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

from .._entry import CacheEntry
from ._state import decode, encode, field, select


class LruPolicy:
    """Evict the model whose last access is oldest first.

    The state is a recency list (O(1) per event), the order libCacheSim's ``LRU`` keeps.
    """

    name = "lru"
    #: Its state only indexes what order() computes from the entries: the manager uses
    #: order(); the exact replay uses the state, for speed.
    history = False

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Oldest ``last_access`` first; ties: larger model first."""
        return sorted(entries, key=lambda e: (e.last_access, -e.size, e.key))

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> LruState:
        """A recency list, empty or as :meth:`LruState.dump` wrote it."""
        return LruState(data)

    def __repr__(self) -> str:
        return "LruPolicy()"


class LruState:
    """The models from least to most recently used; an insert or access moves to the end."""

    def __init__(self, data: bytes | None = None) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._pending: str | None = None
        if data is not None:
            keys = field(decode(LruPolicy.name, data), "keys", list)
            if not all(isinstance(k, str) for k in keys):
                raise ValueError("bad 'keys' in policy state")
            self._keys = OrderedDict.fromkeys(keys)

    def insert(self, entry: CacheEntry) -> None:
        """A new model is the most recently used."""
        self._keys[entry.key] = None
        self._keys.move_to_end(entry.key)

    def access(self, entry: CacheEntry, count: int) -> None:
        """An accessed model is the most recently used."""
        self.insert(entry)

    def forget(self, key: str) -> None:
        """Stop tracking ``key``."""
        self._keys.pop(key, None)

    def victims(self) -> Iterator[str]:
        """Least recently used first; keys not evicted keep their place."""
        keys = self._keys
        kept: list[str] = []
        try:
            while keys:
                key, _ = keys.popitem(last=False)
                self._pending = key
                yield key
                if self._pending is not None:
                    kept.append(key)
                    self._pending = None
        finally:
            if self._pending is not None:
                kept.append(self._pending)
                self._pending = None
            for key in reversed(kept):
                if key not in keys:
                    keys[key] = None
                    keys.move_to_end(key, last=False)

    def evicted(self, key: str) -> None:
        """The key just yielded was evicted."""
        if self._pending == key:
            self._pending = None
        else:
            self.forget(key)

    def dump(self) -> bytes:
        """The recency list, least recent first."""
        return encode(LruPolicy.name, keys=list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)
