"""GreedyDual with the recorded fill time as the cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._entry import CacheEntry
from ._state import GreedyDualState, drain, field, safe_size, select

#: Seconds per byte assumed while no model's fill time is known (any constant gives the
#: same order when none is known: the order of frequency alone, aged by ``L``).
DEFAULT_SECONDS_PER_BYTE = 1.0 / 2**30


class CostAwarePolicy:
    """Evict what is cheapest to recompute per byte and least used: ``L + freq x cost / size``.

    ``cost`` is the model's recorded fill time (:attr:`CacheEntry.fill_seconds`), so
    that a model that took an hour to extract outlives one of the same size that took a
    minute, and ``L`` (the priority of the last model evicted) ages models that are not
    used again, as in GreedyDual-Size-Frequency.

    A model whose fill time is unknown (published by an earlier version, or adopted
    from a 1.0 root) is given the average cost per byte of the models whose fill time is
    known, so that it is neither kept nor evicted for want of a number; while no fill
    time is known at all, every model costs :data:`DEFAULT_SECONDS_PER_BYTE` and the
    policy orders by frequency alone, aged by ``L`` (LFU with dynamic aging).
    """

    name = "cost-aware"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """The order of a fresh state given ``entries``: lowest ``access_count x cost / size``.

        Ties go to the model created first.
        """
        return drain(self.new_state(), entries)

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> CostAwareState:
        """Frequencies, costs and ``L``, fresh or as :meth:`CostAwareState.dump` wrote."""
        return CostAwareState(data)

    def __repr__(self) -> str:
        return "CostAwarePolicy()"


class CostAwareState(GreedyDualState):
    """A heap of models by ``L + frequency x cost / size``, and the aging clock ``L``."""

    policy = CostAwarePolicy.name

    def __init__(self, data: bytes | None = None) -> None:
        # Sums over the models inserted with a known fill time, for the default cost.
        self._known_seconds = 0.0
        self._known_bytes = 0
        super().__init__(data)

    def _load(self, record: dict[str, Any]) -> None:
        self._known_seconds = float(field(record, "known_seconds", (int, float)))
        self._known_bytes = field(record, "known_bytes", int)

    def seconds_per_byte(self, entry: CacheEntry) -> float:
        """The model's fill seconds per byte, or the default for an unknown fill time."""
        if entry.fill_seconds is not None:
            return entry.fill_seconds / safe_size(entry)
        if self._known_bytes > 0:
            return self._known_seconds / self._known_bytes
        return DEFAULT_SECONDS_PER_BYTE

    def _priority(self, entry: CacheEntry, freq: int) -> float:
        return freq * self.seconds_per_byte(entry)

    def insert(self, entry: CacheEntry) -> None:
        """A new model starts with its accesses so far (at least 1)."""
        if entry.fill_seconds is not None:
            self._known_seconds += entry.fill_seconds
            self._known_bytes += safe_size(entry)
        super().insert(entry)

    def dump(self) -> bytes:
        """``L``, the priorities in eviction order, frequencies, and the known costs."""
        return self._dump(known_seconds=self._known_seconds, known_bytes=self._known_bytes)
