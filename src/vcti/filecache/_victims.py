"""Choosing what to evict: the one walk that the manager's eviction and the replay share.

:func:`candidates` adapts any policy shape (``order()``, 1.0's ``select_evictions()``, or
a :class:`~vcti.filecache.policies.base.PolicyState`) to one stream of candidates, and
:func:`evict_until` walks it, removing each candidate until enough bytes are freed.
:class:`Tracker` keeps a stateful policy's state in step with successive scans.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ._entry import CacheEntry
from .policies.base import EvictionPolicy, EvictionPolicyV1, PolicyState, StatefulPolicy

#: The models a walk may evict: a sequence, or a mapping of key to entry (not copied).
Entries = Sequence[CacheEntry] | Mapping[str, CacheEntry]

#: What removing a candidate gave: True removed, False kept (open), None already gone.
Removal = bool | None


def policy_name(policy: object) -> str:
    """The policy's ``name``, or its class name in lower case when it has none."""
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) and name else type(policy).__name__.lower()


def has_method(policy: object, method: str) -> bool:
    """True if ``policy`` implements ``method`` itself (not only a protocol's stub)."""
    for klass in type(policy).__mro__:
        if method in vars(klass):
            return klass not in (EvictionPolicy, EvictionPolicyV1, StatefulPolicy)
    return False


def check_policy(policy: object) -> None:
    """Raise ``TypeError`` unless ``policy`` is a policy instance of a shape the manager drives."""
    if isinstance(policy, type) or not (
        has_method(policy, "order") or has_method(policy, "select_evictions")
    ):
        raise TypeError(
            "policy must be an EvictionPolicy instance (with 'order' or 'select_evictions'), "
            f"not {type(policy).__name__}"
        )


def is_stateful(policy: object) -> bool:
    """True if ``policy`` can be driven through a state (the exact replay does)."""
    return has_method(policy, "new_state")


def keeps_history(policy: object) -> bool:
    """True if the manager drives ``policy`` through its state, kept across scans.

    That is a stateful policy whose choices depend on history (its ``history`` is not
    False): GreedyDual's clock, SIEVE's hand. A policy whose state only indexes what its
    ``order()`` computes from the entries is asked for an order.
    """
    return is_stateful(policy) and getattr(policy, "history", True) is not False


@dataclass
class Outcome:
    """What a walk did: removed entries in order, kept keys, keys found gone."""

    removed: list[CacheEntry] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    freed: int = 0


class Candidates:
    """The entries a policy offers for eviction, in its order, with feedback.

    Iterate it for candidates; after each, the walk tells it what became of the candidate
    (:meth:`removed`), which a selection policy needs to know the rest of its shortfall
    and a stateful policy to age. Every candidate is one of the entries given, at most
    once, so no policy can make a walk longer than the cache.
    """

    #: An unknown key is the policy's error (a user's order()); a state may also track
    #: models that are not among the entries of this walk, and those are skipped.
    strict = True

    def __init__(self, entries: Entries) -> None:
        # A mapping is used as it is: the replay walks once per miss and must not copy
        # every entry each time.
        self._known = entries if isinstance(entries, Mapping) else {e.key: e for e in entries}
        self._seen: set[str] = set()
        self.freed = 0
        #: What the walk over these candidates did so far (kept if the policy fails).
        self.outcome = Outcome()

    def __iter__(self) -> Iterator[CacheEntry]:
        # Bounded whatever the policy returns: an endless or repeating stream ends once
        # every entry was offered, or after as many useless keys as there are entries.
        useless = 0
        for key in self._keys():
            entry = self._known.get(key)
            if entry is None and self.strict:
                raise TypeError(f"the policy returned an unknown entry {key!r}")
            if entry is None or key in self._seen:
                useless += 1
                if useless > len(self._known) + 64:
                    return
                continue
            self._seen.add(key)
            yield entry
            if len(self._seen) == len(self._known):
                return

    def _keys(self) -> Iterator[str]:
        raise NotImplementedError

    def removed(self, entry: CacheEntry, outcome: Removal) -> None:
        """Record what became of ``entry``: its bytes count as freed unless it was kept."""
        if outcome is not False:
            self.freed += entry.size


def _key_of(entry: object) -> str:
    key = getattr(entry, "key", None)
    if not isinstance(key, str):
        raise TypeError(f"the policy returned {entry!r}, not an entry")
    return key


class _Ordered(Candidates):
    def __init__(self, policy: EvictionPolicy, entries: Entries) -> None:
        super().__init__(entries)
        self._policy = policy

    def _keys(self) -> Iterator[str]:
        for entry in self._policy.order(list(self._known.values())):
            yield _key_of(entry)


class _Selected(Candidates):
    """1.0's selections, asked again for what is left while open models are kept."""

    def __init__(self, policy: EvictionPolicyV1, entries: Entries, required: int) -> None:
        super().__init__(entries)
        self._policy = policy
        self._required = required

    def _keys(self) -> Iterator[str]:
        for _ in range(len(self._known)):  # each round tries at least one entry
            shortfall = self._required - self.freed
            remaining = [e for k, e in self._known.items() if k not in self._seen]
            if shortfall <= 0 or not remaining:
                return
            selection = self._policy.select_evictions(remaining, shortfall)
            chosen = [_key_of(e) for e in itertools.islice(selection, len(remaining))]
            fresh = [k for k in chosen if k not in self._seen]
            if not fresh:
                return
            yield from fresh


class _Tracked(Candidates):
    strict = False

    def __init__(self, state: PolicyState, entries: Entries) -> None:
        super().__init__(entries)
        self._state = state

    def _keys(self) -> Iterator[str]:
        victims = self._state.victims()
        try:
            yield from victims
        finally:
            close = getattr(victims, "close", None)
            if close is not None:
                close()

    def removed(self, entry: CacheEntry, outcome: Removal) -> None:
        super().removed(entry, outcome)
        if outcome is not False:
            self._state.evicted(entry.key)


def candidates(
    policy: object,
    entries: Entries,
    required: int,
    state: PolicyState | None = None,
) -> Candidates:
    """Adapt ``policy`` to a stream of candidates among ``entries``.

    Args:
        policy: any policy shape (see :mod:`vcti.filecache.policies.base`).
        entries: the models that may be evicted (a mapping by key is used without a
            copy; it must not change while the stream is walked).
        required: the bytes to free (what 1.0's ``select_evictions`` is asked for).
        state: the policy's state, kept in step with ``entries``, for a stateful policy.
    """
    if state is not None:
        return _Tracked(state, entries)
    if has_method(policy, "order"):
        return _Ordered(policy, entries)  # type: ignore[arg-type]
    return _Selected(policy, entries, required)  # type: ignore[arg-type]


def evict_until(
    stream: Candidates, required: int, remove: Callable[[CacheEntry], Removal]
) -> Outcome:
    """Remove candidates from ``stream`` until ``required`` bytes are freed.

    Args:
        stream: the policy's candidates.
        required: bytes to free; nothing is removed when it is 0 or less.
        remove: removes one model; True if removed, False if it is open (kept), None if
            it was already gone (its bytes count as freed).
    """
    outcome = stream.outcome
    if required <= 0:
        return outcome
    for entry in stream:
        result = remove(entry)
        stream.removed(entry, result)
        if result is None:
            outcome.gone.append(entry.key)
            outcome.freed += entry.size
        elif result:
            outcome.removed.append(entry)
            outcome.freed += entry.size
        else:
            outcome.kept.append(entry.key)
        if outcome.freed >= required:
            break
    return outcome


class Tracker:
    """A stateful policy's state, kept in step with what successive scans show.

    Scans see access counts, not single accesses: a model not seen before is inserted
    (oldest first), a higher count is that many accesses, a model no longer listed is
    forgotten. The counts last seen are stored with the state, so a new leader derives
    the accesses since the state was written.
    """

    def __init__(self, policy: StatefulPolicy, data: bytes | None = None) -> None:
        self.policy = policy
        self._counts: dict[str, int] = {}
        state_data: bytes | None = None
        if data is not None:
            header, _, state_data = data.partition(b"\n")
            try:
                counts = json.loads(header)
            except ValueError as exc:
                raise ValueError(f"unreadable state of policy {policy_name(policy)!r}") from exc
            if not isinstance(counts, dict):
                raise ValueError(f"unreadable state of policy {policy_name(policy)!r}")
            self._counts = {str(k): int(v) for k, v in counts.items()}
        self.state = policy.new_state(state_data)

    def sync(self, entries: Sequence[CacheEntry]) -> None:
        """Tell the state what changed since the last sync."""
        counts = self._counts
        current = {e.key for e in entries}
        for key in [k for k in counts if k not in current]:
            del counts[key]
            self.state.forget(key)
        # New models and accesses are told in the order they happened (by last access), so
        # that a recency order in the state agrees with the models' last accesses.
        events: list[tuple[float, str, CacheEntry, int]] = []
        for entry in entries:
            seen = counts.get(entry.key)
            if seen is None:
                events.append((entry.last_access, entry.key, entry, 0))
            elif entry.access_count > seen:
                events.append((entry.last_access, entry.key, entry, entry.access_count - seen))
            counts[entry.key] = max(entry.access_count, seen or 0)
        events.sort(key=lambda event: (event[0], event[1]))
        for _, _, entry, accesses in events:
            if accesses:
                self.state.access(entry, accesses)
            else:
                self.state.insert(entry)

    def evicted(self, keys: Sequence[str]) -> None:
        """Forget the counts of evicted models (the state already knows)."""
        for key in keys:
            self._counts.pop(key, None)

    def dump(self) -> bytes:
        """The counts and the state, for :class:`Tracker` ``(policy, data)``."""
        header = json.dumps(self._counts, separators=(",", ":")).encode()
        return header + b"\n" + self.state.dump()
