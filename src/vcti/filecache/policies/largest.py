"""Largest model first (libCacheSim's ``Size``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .._entry import CacheEntry
from ._state import decode, drain, encode, field, select


class LargestFirstPolicy:
    """Evict the largest model first.

    Frees the most space per eviction and keeps the most models for a given size, which
    gives the best object hit ratio on some workloads (many small objects, a few huge
    ones read once) and the worst byte hit ratio. Models of equal size go in the order
    of a binary max-heap (the one libCacheSim's ``Size`` uses), so that a replay
    reproduces it exactly.
    """

    name = "largest"
    #: Its state only indexes what order() computes from the entries: the manager uses
    #: order(); the exact replay uses the state, for speed.
    history = False

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Largest ``size`` first (equal sizes: as the heap pops them)."""
        return drain(self.new_state(), entries)

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> LargestFirstState:
        """The size heap, empty or as :meth:`LargestFirstState.dump` wrote it."""
        return LargestFirstState(data)

    def __repr__(self) -> str:
        return "LargestFirstPolicy()"


class LargestFirstState:
    """A binary max-heap of models by size, 1-based, each model knowing its position.

    A child moves up only past a strictly smaller parent, and a parent moves down only
    below a strictly larger child (the right one if it is strictly larger than the
    left), so equal sizes keep the places the heap gave them.
    """

    def __init__(self, data: bytes | None = None) -> None:
        self._heap: list[str] = [""]  # position 0 unused
        self._pos: dict[str, int] = {}
        self._size: dict[str, int] = {}
        self._pending: str | None = None
        if data is not None:
            rows = field(decode(LargestFirstPolicy.name, data), "heap", list)
            for row in rows:
                if not (
                    isinstance(row, list)
                    and len(row) == 2
                    and isinstance(row[0], str)
                    and isinstance(row[1], int)
                    and not isinstance(row[1], bool)
                    and row[0] not in self._size
                ):
                    raise ValueError(f"bad model in policy state: {row!r}")
                self._size[row[0]] = row[1]
                self._pos[row[0]] = len(self._heap)
                self._heap.append(row[0])

    def _up(self, i: int) -> None:
        heap, pos, size = self._heap, self._pos, self._size
        moving = heap[i]
        weight = size[moving]
        while i > 1 and size[heap[i >> 1]] < weight:
            heap[i] = heap[i >> 1]
            pos[heap[i]] = i
            i >>= 1
        heap[i] = moving
        pos[moving] = i

    def _down(self, i: int) -> None:
        heap, pos, size = self._heap, self._pos, self._size
        end = len(heap)
        moving = heap[i]
        weight = size[moving]
        while True:
            child = i << 1
            if child >= end:
                break
            if child + 1 < end and size[heap[child]] < size[heap[child + 1]]:
                child += 1
            if not weight < size[heap[child]]:
                break
            heap[i] = heap[child]
            pos[heap[i]] = i
            i = child
        heap[i] = moving
        pos[moving] = i

    def _push(self, key: str, size: int) -> None:
        self._size[key] = size
        self._pos[key] = len(self._heap)
        self._heap.append(key)
        self._up(len(self._heap) - 1)

    def _take(self, key: str) -> None:
        """Take ``key`` out of the heap (its size stays until it is evicted or forgotten)."""
        i = self._pos.pop(key)
        last = self._heap.pop()
        if last != key:
            self._heap[i] = last
            self._pos[last] = i
            if self._size[key] < self._size[last]:
                self._up(i)
            else:
                self._down(i)

    def insert(self, entry: CacheEntry) -> None:
        """Place a new model by its size."""
        if entry.key in self._pos:
            self.access(entry, 0)
        else:
            self._push(entry.key, entry.size)

    def access(self, entry: CacheEntry, count: int) -> None:
        """Re-place the model if its size changed (an access alone changes nothing)."""
        i = self._pos.get(entry.key)
        if i is None:
            self.insert(entry)
            return
        old = self._size[entry.key]
        self._size[entry.key] = entry.size
        if old < entry.size:
            self._up(i)
        else:
            self._down(i)

    def forget(self, key: str) -> None:
        """Stop tracking ``key``."""
        if key in self._pos:
            self._take(key)
        self._size.pop(key, None)

    def victims(self) -> Iterator[str]:
        """Pop the largest model, again and again; the ones not evicted go back at the end."""
        heap = self._heap
        kept: list[str] = []
        try:
            while len(heap) > 1:
                key = heap[1]
                self._take(key)
                self._pending = key
                yield key
                if self._pending is not None:
                    kept.append(key)
                    self._pending = None
        finally:
            if self._pending is not None:
                kept.append(self._pending)
                self._pending = None
            for key in kept:
                if key in self._size and key not in self._pos:
                    self._push(key, self._size[key])

    def evicted(self, key: str) -> None:
        """The key just yielded was evicted."""
        if self._pending == key:
            self._pending = None
            self._size.pop(key, None)
        else:
            self.forget(key)

    def dump(self) -> bytes:
        """The heap, position by position."""
        return encode(
            LargestFirstPolicy.name, heap=[[key, self._size[key]] for key in self._heap[1:]]
        )

    def __len__(self) -> int:
        return len(self._pos)
