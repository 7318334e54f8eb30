"""GreedyDual-Size-Frequency."""

from __future__ import annotations

from collections.abc import Sequence

from .._entry import CacheEntry
from ._state import Item, PriorityState, decode, drain, encode, field, safe_size, select

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


class GdsfState(PriorityState):
    """A heap of models by ``L + frequency x 1e6 / size``, and the aging clock ``L``."""

    policy = GdsfPolicy.name

    def __init__(self, data: bytes | None = None) -> None:
        super().__init__()
        self.clock = 0.0  # L: the priority of the last model evicted
        self._freq: dict[str, int] = {}
        if data is not None:
            record = decode(self.policy, data)
            self._load_items(record)
            self.clock = float(field(record, "clock", (int, float)))
            freq = field(record, "freq", dict)
            if set(freq) != set(self._items) or not all(
                isinstance(v, int) and v > 0 for v in freq.values()
            ):
                raise ValueError("bad 'freq' in policy state")
            self._freq = dict(freq)

    def insert(self, entry: CacheEntry) -> None:
        """A new model starts with its accesses so far (at least 1)."""
        freq = max(1, entry.access_count)
        self._freq[entry.key] = freq
        self._set(entry.key, self.clock + freq * _SCALE / safe_size(entry))

    def access(self, entry: CacheEntry, count: int) -> None:
        """``count`` more accesses raise the model's priority from the current ``L``."""
        freq = self._freq.get(entry.key)
        if freq is None:
            self.insert(entry)
            return
        freq += count
        self._freq[entry.key] = freq
        self._set(entry.key, self.clock + freq * _SCALE / safe_size(entry))

    def forget(self, key: str) -> None:
        """Stop tracking ``key``."""
        super().forget(key)
        self._freq.pop(key, None)

    def _on_evicted(self, item: Item) -> None:
        self.clock = item[0]
        del self._freq[item[2]]

    def dump(self) -> bytes:
        """``L``, the priorities in eviction order, and the frequencies."""
        return encode(
            self.policy,
            clock=self.clock,
            seq=self._seq,
            items=self._dump_items(),
            freq=self._freq,
        )
