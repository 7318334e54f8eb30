"""What the built-in policies share: selection by order, state encoding, the victim walk.

Each built-in policy has three faces: ``order(entries)`` (the :class:`EvictionPolicy`
protocol), 1.0's ``select_evictions(entries, required_free)``, and ``new_state()`` for
event-driven use. The helpers here keep the three consistent and the states small.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._entry import CacheEntry
from .base import PolicyState

#: The version of the encoded states; a state of another version is refused.
STATE_VERSION = 1


def select(
    order: Callable[[Sequence[CacheEntry]], list[CacheEntry]],
    entries: Sequence[CacheEntry],
    required_free: int,
) -> list[CacheEntry]:
    """1.0's selection: ``order(entries)`` up to the first entry that frees enough.

    Empty input gives ``[]``; the selection stops as soon as the selected sizes reach
    ``required_free`` (so ``required_free <= 0`` selects nothing).
    """
    chosen: list[CacheEntry] = []
    freed = 0
    if not entries:
        return chosen
    for entry in order(entries):
        if freed >= required_free:
            break
        chosen.append(entry)
        freed += entry.size
    return chosen


def drain(state: PolicyState, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
    """The order a fresh ``state`` gives ``entries``, inserted oldest first, evicting none.

    This is ``order()`` for the policies whose order is their state's: what the policy
    would evict first if it had seen exactly these models appear, in creation order.
    """
    by_key = {e.key: e for e in entries}
    for entry in sorted(by_key.values(), key=lambda e: (e.created, e.key)):
        state.insert(entry)
    return [by_key[key] for key in state.victims()]


def encode(policy: str, **fields: Any) -> bytes:
    """Encode a state as compact JSON, tagged with the policy's name and the version."""
    record = {"policy": policy, "v": STATE_VERSION, **fields}
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def decode(policy: str, data: bytes) -> dict[str, Any]:
    """Decode what :func:`encode` wrote for ``policy``.

    Raises:
        ValueError: ``data`` is not a state of this policy (another policy's, another
            version's, or not JSON).
    """
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"unreadable state of policy {policy!r}: {exc}") from None
    if not isinstance(record, dict) or record.get("policy") != policy:
        raise ValueError(f"not a state of policy {policy!r}")
    if record.get("v") != STATE_VERSION:
        raise ValueError(f"state of policy {policy!r} has unknown version {record.get('v')!r}")
    return record


def field(record: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``record[name]`` if it is of ``kind``.

    Raises:
        ValueError: it is missing or of another type.
    """
    value = record.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"bad {name!r} in policy state: {value!r}")
    return value


#: A heap item: (priority, sequence number, key). The sequence number breaks ties first
#: in, first out, and makes every item unique, so keys are never compared.
Item = tuple[Any, int, str]


class PriorityState:
    """A min-heap of keys by priority, with lazy deletion: O(log n) per event.

    Subclasses compute the priority of an insert or an access; the lowest priority is
    evicted first, ties in the order the priorities were set. :meth:`victims` pops the
    heap; a key the caller does not evict is pushed back when the walk ends.
    """

    #: The policy's name, which tags its encoded state.
    policy = ""

    def __init__(self) -> None:
        self._heap: list[Item] = []
        self._items: dict[str, Item] = {}
        self._seq = 0
        self._pending: Item | None = None

    # -- what subclasses use -------------------------------------------------------------

    def _set(self, key: str, priority: Any) -> None:
        self._seq += 1
        item = (priority, self._seq, key)
        self._items[key] = item
        heapq.heappush(self._heap, item)
        if len(self._heap) > 2 * len(self._items) + 64:
            # Stale items (superseded priorities, forgotten keys) would otherwise pile up.
            self._heap = list(self._items.values())
            heapq.heapify(self._heap)

    def _on_evicted(self, item: Item) -> None:
        """Called when the item just yielded is evicted (GreedyDual ages its clock here)."""

    # -- PolicyState ---------------------------------------------------------------------

    def forget(self, key: str) -> None:
        """Stop tracking ``key`` (its heap item goes stale)."""
        self._items.pop(key, None)

    def victims(self) -> Iterator[str]:
        """Yield keys lowest priority first; keys not evicted are pushed back at the end."""
        kept: list[Item] = []
        heap, items = self._heap, self._items
        try:
            while heap:
                item = heapq.heappop(heap)
                if items.get(item[2]) is not item:
                    continue  # stale
                self._pending = item
                yield item[2]
                if self._pending is not None:
                    kept.append(self._pending)
                    self._pending = None
        finally:
            if self._pending is not None:
                kept.append(self._pending)
                self._pending = None
            for item in kept:
                if items.get(item[2]) is item:
                    heapq.heappush(heap, item)

    def evicted(self, key: str) -> None:
        """The key just yielded was evicted."""
        item = self._pending
        if item is not None and item[2] == key:
            self._pending = None
            del self._items[key]
            self._on_evicted(item)
        else:
            self.forget(key)

    def __len__(self) -> int:
        return len(self._items)

    def _dump_items(self) -> list[list[Any]]:
        # In heap order of (priority, seq): a state read back makes the same decisions.
        return [[key, priority, seq] for priority, seq, key in sorted(self._items.values())]

    def _load_items(self, record: dict[str, Any]) -> None:
        items = field(record, "items", list)
        seq = field(record, "seq", int)
        for row in items:
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)):
                raise ValueError(f"bad item in policy state: {row!r}")
            key, priority, item_seq = row
            if isinstance(priority, list):
                priority = tuple(priority)
            parts = priority if isinstance(priority, tuple) else (priority,)
            if not all(_is_number(p) for p in parts) or not _is_number(item_seq):
                raise ValueError(f"bad item in policy state: {row!r}")
            if not isinstance(item_seq, int) or item_seq > seq:
                raise ValueError(f"bad item in policy state: {row!r}")
            self._items[key] = (priority, item_seq, key)
        self._heap = list(self._items.values())
        try:
            heapq.heapify(self._heap)
        except TypeError:  # a number next to a tuple
            raise ValueError(f"bad priorities in the state of policy {self.policy!r}") from None
        self._seq = seq


class GreedyDualState(PriorityState):
    """GreedyDual with frequency: a heap by ``L + priority(frequency)``, and the clock ``L``.

    Frequency counts from the accesses at insert (at least 1) and is forgotten on
    eviction; ``L`` becomes the priority of each model evicted, so that models not used
    again age. Subclasses give :meth:`_priority`, the part that grows with frequency.

    Args:
        data: what :meth:`_dump` wrote, or None for an empty state.

    Raises:
        ValueError: ``data`` is not a state of this policy.
    """

    def __init__(self, data: bytes | None = None) -> None:
        super().__init__()
        self.clock = 0.0  # L: the priority of the last model evicted
        self._freq: dict[str, int] = {}
        if data is not None:
            record = decode(self.policy, data)
            self._load_items(record)
            self.clock = float(field(record, "clock", (int, float)))
            self._load(record)
            freq = field(record, "freq", dict)
            if set(freq) != set(self._items) or not all(
                isinstance(v, int) and v > 0 for v in freq.values()
            ):
                raise ValueError("bad 'freq' in policy state")
            self._freq = dict(freq)

    def _priority(self, entry: CacheEntry, freq: int) -> float:
        """The model's priority above ``L`` at frequency ``freq``."""
        raise NotImplementedError

    def _load(self, record: dict[str, Any]) -> None:
        """Read the subclass's own fields of an encoded state."""

    def insert(self, entry: CacheEntry) -> None:
        """A new model starts with its accesses so far (at least 1)."""
        freq = max(1, entry.access_count)
        self._freq[entry.key] = freq
        self._set(entry.key, self.clock + self._priority(entry, freq))

    def access(self, entry: CacheEntry, count: int) -> None:
        """``count`` more accesses raise the model's priority from the current ``L``."""
        freq = self._freq.get(entry.key)
        if freq is None:
            self.insert(entry)
            return
        freq += count
        self._freq[entry.key] = freq
        self._set(entry.key, self.clock + self._priority(entry, freq))

    def forget(self, key: str) -> None:
        """Stop tracking ``key``."""
        super().forget(key)
        self._freq.pop(key, None)

    def _on_evicted(self, item: Item) -> None:
        self.clock = item[0]
        del self._freq[item[2]]

    def _dump(self, **more: Any) -> bytes:
        return encode(
            self.policy,
            clock=self.clock,
            seq=self._seq,
            items=self._dump_items(),
            freq=self._freq,
            **more,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def safe_size(entry: CacheEntry) -> int:
    """The entry's size for a per-byte priority: at least 1, so an empty model divides."""
    return entry.size if entry.size > 0 else 1
