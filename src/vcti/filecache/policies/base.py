"""The eviction policy protocols.

A policy only decides who goes first; the manager keeps the size bookkeeping, skips
models that are open, and stops as soon as enough bytes are freed. It accepts three
shapes of policy, and adapts to each:

- :class:`EvictionPolicy`: a ``name`` and ``order(entries)``, every entry sorted so that
  the first is evicted first.
- :class:`EvictionPolicyV1`: 1.0's ``select_evictions(entries, required_free)``, the
  entries to evict to free at least ``required_free`` bytes. A model it selects that is
  open is kept, and the policy is asked again for the rest of the shortfall with the
  entries already tried left out.
- :class:`StatefulPolicy`: an :class:`EvictionPolicy` whose decisions depend on history
  (GreedyDual's aging clock, SIEVE's hand). It makes a :class:`PolicyState` that the
  manager keeps in step with its scans and stores with the cache, so that choosing a
  victim costs O(log n) and the history survives restarts and changes of leader.

A policy that has ``order()`` is asked for an order; one with only ``select_evictions()``
for a selection; a :class:`StatefulPolicy` is driven through its state. Every built-in
policy implements all three. ``isinstance(policy, EvictionPolicy)`` is True for any
object with ``order()`` or ``select_evictions()``; a policy without a ``name`` is
labelled with its class name in lower case.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._entry import CacheEntry

__all__ = ["EvictionPolicy", "EvictionPolicyV1", "PolicyState", "StatefulPolicy"]


@runtime_checkable
class EvictionPolicy(Protocol):
    """Decides which models go first when the cache is over its limit.

    Write one with a ``name`` and an ``order()``; the manager walks the order, skipping
    open models, until enough is freed.
    """

    if TYPE_CHECKING:

        @property
        def name(self) -> str:
            """A short, stable name, used in metrics and logs (``"lru"``)."""
            ...

    else:
        # At run time a plain annotation, not a property: a policy that subclasses the
        # protocol (as 1.0's policies did) may still assign its own ``name``.
        name: str

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Return ``entries`` sorted so that the first one is evicted first."""
        ...

    @classmethod
    def __subclasshook__(cls, other: type) -> Any:
        # Either shape is a policy: a 1.0 policy has select_evictions() and no order().
        if cls is EvictionPolicy and any(
            callable(getattr(other, method, None)) for method in ("order", "select_evictions")
        ):
            return True
        return NotImplemented


@runtime_checkable
class EvictionPolicyV1(Protocol):
    """The policy protocol of vcti-file-cache 1.0: a selection, not an order."""

    def select_evictions(self, entries: list[CacheEntry], required_free: int) -> list[CacheEntry]:
        """Return the entries to evict, in order, to free at least ``required_free`` bytes.

        Empty input gives ``[]``; the selection stops as soon as the selected sizes
        reach ``required_free``.
        """
        ...


@runtime_checkable
class PolicyState(Protocol):
    """What a :class:`StatefulPolicy` remembers about one cache, updated event by event.

    The manager tells it about new models, accesses and models that went away, then walks
    :meth:`victims`. Only keys it was told about may come out of it.
    """

    def insert(self, entry: CacheEntry) -> None:
        """A model was added (a fill was published): ``entry`` as first seen."""
        ...

    def access(self, entry: CacheEntry, count: int) -> None:
        """A known model was opened ``count`` more times; ``entry`` is its latest view."""
        ...

    def forget(self, key: str) -> None:
        """A known model went away other than by this state's eviction (removed, lost)."""
        ...

    def victims(self) -> Iterator[str]:
        """Yield keys in eviction order, lazily, each at most once.

        Between two steps the caller may call :meth:`evicted` for the key just yielded;
        a key it does not evict (the model is open) stays tracked. Closing the iterator
        early leaves the state as if the keys not evicted had never been yielded.
        """
        ...

    def evicted(self, key: str) -> None:
        """The key :meth:`victims` just yielded was evicted."""
        ...

    def dump(self) -> bytes:
        """Return the state as bytes that the policy's ``new_state`` reads back."""
        ...


@runtime_checkable
class StatefulPolicy(EvictionPolicy, Protocol):
    """A policy driven through a :class:`PolicyState` (every built-in policy is one).

    The replay's exact mode drives every such policy through its state. The manager (and
    the replay's deployed mode) does so for the policies whose choices depend on history,
    keeping the state in step with the scans and stored with the cache; a policy whose
    state only indexes what ``order()`` computes from the entries says so with a class
    attribute ``history = False``, and is asked for an order instead.
    """

    def new_state(self, data: bytes | None = None) -> PolicyState:
        """Return a fresh state, or the state that :meth:`PolicyState.dump` wrote.

        Raises:
            ValueError: ``data`` is not a state of this policy.
        """
        ...
