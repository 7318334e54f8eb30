"""Largest idle time x size first."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from .._entry import CacheEntry
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
    """The last access and size of each model, ordered by the policy at each walk."""

    def __init__(self, policy: IdleSizePolicy, data: bytes | None = None) -> None:
        self._policy = policy
        self._models: dict[str, CacheEntry] = {}
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
                self._models[key] = CacheEntry(key, size, 1, float(last), float(last))

    def insert(self, entry: CacheEntry) -> None:
        """Track a new model."""
        self._models[entry.key] = entry

    def access(self, entry: CacheEntry, count: int) -> None:
        """Keep the model's latest view (its last access)."""
        self._models[entry.key] = entry

    def forget(self, key: str) -> None:
        """Stop tracking ``key``."""
        self._models.pop(key, None)

    def victims(self) -> Iterator[str]:
        """The policy's order of the tracked models, as of now."""
        for entry in self._policy.order(list(self._models.values())):
            if entry.key in self._models:
                yield entry.key

    def evicted(self, key: str) -> None:
        """The key just yielded was evicted."""
        self.forget(key)

    def dump(self) -> bytes:
        """Sizes and last accesses."""
        rows = [[e.key, e.size, e.last_access] for e in self._models.values()]
        return encode(IdleSizePolicy.name, models=rows)

    def __len__(self) -> int:
        return len(self._models)
