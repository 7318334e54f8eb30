"""GreedyDual-Size-Frequency."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry
from ._state import GreedyDualState, drain, safe_size, select

#: libCacheSim's GDSF scales frequency / size by a million; the same arithmetic gives the
#: same floating-point priorities, hence the same ties.
_SCALE = 1.0e6


class GdsfPolicy:
    """GreedyDual-Size-Frequency: evict the lowest ``L + frequency / size`` first.

    Small models that are used often stay; large ones used once go first. ``L``, the
    priority of the last model evicted, ages everything that is not used again, so that
    a model popular long ago does not stay for ever. Frequency counts from 1 at insert and
    is forgotten on eviction; equal priorities go first in, first out. This is
    libCacheSim's ``GDSF``, decision for decision.
    """

    name = "gdsf"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """The order of a fresh state given ``entries``: lowest ``access_count / size`` first.

        Ties go to the model created first.
        """
        return drain(self.new_state(), entries)

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """1.0's selection: :meth:`order` until ``required_free`` bytes are selected."""
        return select(self.order, entries, required_free)

    def new_state(self, data: bytes | None = None) -> GdsfState:
        """Frequencies and the aging clock ``L``, fresh or as :meth:`GdsfState.dump` wrote."""
        return GdsfState(data)

    def __repr__(self) -> str:
        return "GdsfPolicy()"


class GdsfState(GreedyDualState):
    """A heap of models by ``L + frequency x 1e6 / size``, and the aging clock ``L``."""

    policy = GdsfPolicy.name

    def _priority(self, entry: CacheEntry, freq: int) -> float:
        return freq * _SCALE / safe_size(entry)

    def dump(self) -> bytes:
        """``L``, the priorities in eviction order, and the frequencies."""
        return self._dump()
