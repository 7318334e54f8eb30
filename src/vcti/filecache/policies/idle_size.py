"""Largest idle time x size first."""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterator, Sequence

from .._entry import CacheEntry
from ._kinetic import KineticTournament
from ._state import decode, encode, field, select


class IdleSizePolicy:
    """Evict the model with the largest ``idle time x size`` first.

    Large models that have not been used for a while go before small ones of the same
    age, so one eviction frees more space while touching fewer models. The order moves
    with the clock, so the state sorts its models at each walk (O(n log n) a walk, O(1)
    per event).

    Args:
        clock: returns the current time in epoch seconds (tests pass a fake clock; the
            replay passes the trace's clock).
    """

    name = "idle-size"
    #: Its state only indexes what order() computes from the entries: the manager uses
    #: order(); the exact replay uses the state, for speed.
    history = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def now(self) -> float:
        """The policy's clock."""
        return self._clock()

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Largest ``(now - last_access) * size`` first; ties: oldest first."""
        now = self._clock()

        def weight(entry: CacheEntry) -> tuple[float, float, str]:
            idle = max(0.0, now - entry.last_access)
            return (-idle * entry.size, entry.last_access, entry.key)

        return sorted(entries, key=weight)

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> IdleSizeState:
        """Last accesses and sizes, empty or as :meth:`IdleSizeState.dump` wrote them."""
        return IdleSizeState(self, data)

    def __repr__(self) -> str:
        return "IdleSizePolicy()"


class IdleSizeState:
    """The models by size, each size's models oldest first, and a tournament of the oldest.

    Of models of one size, the one used longest ago weighs the most (of equal last
    accesses, the smaller key goes first, as in :meth:`IdleSizePolicy.order`): only each
    size's first model (its head, the top of a heap by ``(last access, key)``) competes,
    in a kinetic tournament by ``idle x size``. A hit on any other model, or a new model,
    changes no match. While the walks' clock is no earlier than any last access and never
    goes back (a replay, a manager's scans), a victim costs O(log sizes) amortized;
    otherwise the walk falls back to the policy's sort.
    """

    def __init__(self, policy: IdleSizePolicy, data: bytes | None = None) -> None:
        self._policy = policy
        self._models: dict[str, CacheEntry] = {}
        #: Each size's ``(last access, key)``, a heap with stale items skipped lazily.
        self._heaps: dict[int, list[tuple[float, str]]] = {}
        self._counts: dict[int, int] = {}
        self._tournament = KineticTournament()
        self._latest = -math.inf  # the latest last access tracked
        self._out: set[str] = set()  # keys yielded by the walk under way
        self._pending: str | None = None
        if data is not None:
            rows = field(decode(IdleSizePolicy.name, data), "models", list)
            for row in rows:
                if not (
                    isinstance(row, list)
                    and len(row) == 3
                    and isinstance(row[0], str)
                    and isinstance(row[1], int)
                    and isinstance(row[2], (int, float))
                ):
                    raise ValueError(f"bad model in policy state: {row!r}")
                key, size, last = row
                self.insert(CacheEntry(key, size, 1, float(last), float(last)))

    def insert(self, entry: CacheEntry) -> None:
        """Track a new model (or a new view of one: its size and last access)."""
        key, size, last = entry.key, entry.size, entry.last_access
        models, heaps = self._models, self._heaps
        old = models.get(key)
        models[key] = entry  # the old view's heap item is stale from now on
        if last > self._latest:  # noqa: PLR1730 - not max(): the replay's hot path
            self._latest = last
        old_head = False
        if old is not None:
            old_head = heaps[old.size][0] == (old.last_access, key)
            self._counts[old.size] -= 1
        self._counts[size] = self._counts.get(size, 0) + 1
        heap = heaps.get(size)
        if heap is None:
            heap = heaps[size] = []
        item = (last, key)
        heapq.heappush(heap, item)
        if old is not None and old.size != size and old_head:
            self._refresh(old.size)
        if heap[0] == item or (old_head and old is not None and old.size == size):
            self._refresh(size)

    def access(self, entry: CacheEntry, count: int) -> None:
        """Keep the model's latest view (its last access)."""
        self.insert(entry)

    def forget(self, key: str) -> None:
        """Stop tracking ``key``."""
        entry = self._models.pop(key, None)
        if entry is None:
            return
        self._counts[entry.size] -= 1
        if self._heaps[entry.size][0] == (entry.last_access, key):
            self._refresh(entry.size)

    def _refresh(self, size: int) -> None:
        """Drop the stale items on top of the size's heap; tell the tournament its head."""
        heap = self._heaps[size]
        models, out = self._models, self._out
        count = self._counts[size]
        if len(heap) > 2 * count + 64:  # stale items piled up: keep one item per model
            heap[:] = {item for item in heap if self._valid(item, size)}
            heapq.heapify(heap)
        while heap:
            last, key = heap[0]
            entry = models.get(key)
            if (
                entry is not None
                and entry.size == size
                and entry.last_access == last
                and key not in out
            ):
                self._tournament.set(size, size, last, key)
                return
            heapq.heappop(heap)
        del self._heaps[size]
        if not count:
            del self._counts[size]
        self._tournament.remove(size)

    def _valid(self, item: tuple[float, str], size: int) -> bool:
        entry = self._models.get(item[1])
        return (
            entry is not None
            and entry.size == size
            and entry.last_access == item[0]
            and item[1] not in self._out
        )

    def victims(self) -> Iterator[str]:
        """The policy's order of the tracked models, as of now; keys not evicted stay."""
        now = self._policy.now()
        tournament = self._tournament
        if now < self._latest or now < tournament.now:
            # Outside what the tournament answers: the order as order() gives it.
            for entry in self._policy.order(list(self._models.values())):
                if entry.key in self._models:
                    yield entry.key
            return
        tournament.advance(now)
        kept: list[str] = []
        out = self._out
        try:
            while (size := tournament.top()) is not None:
                key = self._heaps[size][0][1]  # type: ignore[index]
                out.add(key)
                self._refresh(size)  # type: ignore[arg-type]
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
                out.discard(key)
                model = self._models.get(key)
                if model is not None:
                    heap = self._heaps.setdefault(model.size, [])
                    item = (model.last_access, key)
                    heapq.heappush(heap, item)
                    if heap[0] == item:
                        self._refresh(model.size)
            out.clear()

    def evicted(self, key: str) -> None:
        """The key just yielded was evicted."""
        if self._pending == key:
            self._pending = None
            self._out.discard(key)
            entry = self._models.pop(key)
            self._counts[entry.size] -= 1
        else:
            self.forget(key)

    def dump(self) -> bytes:
        """Sizes and last accesses."""
        rows = [[e.key, e.size, e.last_access] for e in self._models.values()]
        return encode(IdleSizePolicy.name, models=rows)

    def __len__(self) -> int:
        return len(self._models)
