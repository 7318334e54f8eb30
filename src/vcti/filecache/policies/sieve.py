"""SIEVE (Zhang et al., NSDI 2024): a FIFO queue with a moving hand and visited bits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .._entry import CacheEntry
from ._state import decode, drain, encode, field, select


class SievePolicy:
    """SIEVE: simple, scan-resistant, O(1) per event.

    Models queue in the order they arrive; an access only sets the model's *visited*
    bit. To evict, a hand moves from the oldest model towards the newest (and wraps
    around), clearing visited bits, and evicts the first model not visited since the
    hand last passed. Models read once by a batch job leave quickly, while the ones
    used again survive without being moved. This is libCacheSim's ``Sieve``.

    A model kept because it is open is passed over like a visited one.
    """

    name = "sieve"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """The order of a fresh state given ``entries``, the oldest created at the hand.

        The models not accessed since they were published (``access_count <= 1``) go
        first, oldest first, then the others, oldest first.
        """
        return drain(self.new_state(), entries)

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> SieveState:
        """The queue, visited bits and hand, fresh or as :meth:`SieveState.dump` wrote."""
        return SieveState(data)

    def __repr__(self) -> str:
        return "SievePolicy()"


class SieveState:
    """The SIEVE queue as a doubly linked list over keys, from the oldest (tail) up."""

    def __init__(self, data: bytes | None = None) -> None:
        # newer[k] is the key inserted after k (None at the head), older[k] the one before.
        self._newer: dict[str, str | None] = {}
        self._older: dict[str, str | None] = {}
        self._visited: dict[str, bool] = {}
        self._head: str | None = None  # newest
        self._tail: str | None = None  # oldest
        self._hand: str | None = None  # None: start at the tail
        self._pending: str | None = None
        if data is not None:
            self._load(data)

    def _load(self, data: bytes) -> None:
        record = decode(SievePolicy.name, data)
        queue = field(record, "queue", list)
        for row in queue:
            if not (
                isinstance(row, list)
                and len(row) == 2
                and isinstance(row[0], str)
                and isinstance(row[1], bool)
            ):
                raise ValueError(f"bad model in policy state: {row!r}")
            if row[0] in self._visited:
                raise ValueError(f"model {row[0]!r} twice in policy state")
            self._append_newest(row[0], row[1])
        hand = record.get("hand")
        if hand is not None and hand not in self._visited:
            raise ValueError(f"bad 'hand' in policy state: {hand!r}")
        self._hand = hand

    def _append_newest(self, key: str, visited: bool) -> None:
        self._older[key] = self._head
        self._newer[key] = None
        if self._head is None:
            self._tail = key
        else:
            self._newer[self._head] = key
        self._head = key
        self._visited[key] = visited

    def _unlink(self, key: str) -> None:
        newer = self._newer.pop(key)
        older = self._older.pop(key)
        del self._visited[key]
        if self._hand == key:
            self._hand = newer
        if newer is None:
            self._head = older
        else:
            self._older[newer] = older
        if older is None:
            self._tail = newer
        else:
            self._newer[older] = newer

    def insert(self, entry: CacheEntry) -> None:
        """A new model joins at the head; it counts as visited if opened since publishing."""
        if entry.key in self._visited:
            self._visited[entry.key] = True
        else:
            self._append_newest(entry.key, entry.access_count > 1)

    def access(self, entry: CacheEntry, count: int) -> None:
        """Mark the model visited."""
        if entry.key in self._visited:
            self._visited[entry.key] = True
        else:
            self.insert(entry)

    def forget(self, key: str) -> None:
        """Stop tracking ``key``; the hand moves on if it pointed at it."""
        if key in self._visited:
            self._unlink(key)

    def victims(self) -> Iterator[str]:
        """Move the hand, clearing visited bits, and yield each unvisited model it meets."""
        visited, newer = self._visited, self._newer
        passed: set[str] = set()  # yielded and kept this walk
        while len(passed) < len(visited):
            key = self._hand if self._hand is not None else self._tail
            assert key is not None  # the queue is not empty
            while visited[key] or key in passed:
                visited[key] = False
                following = newer[key]
                key = self._tail if following is None else following
                assert key is not None
            self._hand = newer[key]
            self._pending = key
            yield key
            if self._pending is not None:
                passed.add(key)
                self._pending = None

    def evicted(self, key: str) -> None:
        """The key just yielded was evicted."""
        if self._pending == key:
            self._pending = None
        self.forget(key)

    def dump(self) -> bytes:
        """The queue from the oldest, with visited bits, and the hand."""
        queue: list[list[object]] = []
        key = self._tail
        while key is not None:
            queue.append([key, self._visited[key]])
            key = self._newer[key]
        return encode(SievePolicy.name, queue=queue, hand=self._hand)

    def __len__(self) -> int:
        return len(self._visited)
