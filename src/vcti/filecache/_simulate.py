"""The replay machinery: policies by name, limits, and the two simulation modes.

See :mod:`vcti.filecache.replay` for what the modes mean; this module keeps no second
implementation of eviction: every victim comes from the policy's own state or order,
through the walk that the cache's eviction uses (:mod:`vcti.filecache._victims`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from ._entry import CacheEntry
from ._sizes import parse_size
from ._trace import Trace
from ._victims import Tracker, candidates, evict_until, is_stateful, keeps_history, policy_name
from .policies import (
    CostAwarePolicy,
    EvictionPolicy,
    GdsfPolicy,
    IdleSizePolicy,
    LargestFirstPolicy,
    LfuPolicy,
    LruPolicy,
    SievePolicy,
    SizedLruPolicy,
)
from .policies.base import PolicyState

__all__ = ["DEFAULT_LIMITS", "POLICY_NAMES", "Result", "make_policy", "parse_limit", "simulate"]

#: The built-in policies by name, each made with the replay's clock.
_FACTORIES: dict[str, Callable[[Callable[[], float]], EvictionPolicy]] = {
    LruPolicy.name: lambda clock: LruPolicy(),
    LfuPolicy.name: lambda clock: LfuPolicy(),
    SizedLruPolicy.name: lambda clock: SizedLruPolicy(),
    IdleSizePolicy.name: IdleSizePolicy,
    GdsfPolicy.name: lambda clock: GdsfPolicy(),
    CostAwarePolicy.name: lambda clock: CostAwarePolicy(),
    SievePolicy.name: lambda clock: SievePolicy(),
    LargestFirstPolicy.name: lambda clock: LargestFirstPolicy(),
}

#: The GreedyDual policies: in exact mode a new object is inserted before the eviction
#: and competes with the cached ones (libCacheSim's GDSF does so: a large object used
#: once may be evicted at once, raising ``L``); the other policies evict first.
_INSERT_FIRST = frozenset({GdsfPolicy.name, CostAwarePolicy.name})

#: The names :func:`replay` accepts, in the order it reports them by default.
POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)

#: The limits replayed when none are given: shares of the trace's unique bytes.
DEFAULT_LIMITS: tuple[str, ...] = ("1%", "5%", "10%", "25%")


@dataclass(frozen=True)
class Result:
    """What one policy did at one limit on one trace (a ``--json`` result).

    Attributes:
        policy: the policy's name.
        limit_bytes: the cache size replayed.
        misses: requests that missed.
        miss_bytes: the bytes of those requests.
        object_miss_ratio: ``misses / requests``.
        byte_miss_ratio: ``miss_bytes`` over the bytes of all requests.
        cost_miss_ratio: the cost of the missed requests over the cost of all requests,
            each request costing its key's first known cost; None without costs.
        peak_overshoot_bytes: how far above the limit the cache went between two cycles
            (always 0 in exact mode).
    """

    policy: str
    limit_bytes: int
    misses: int
    miss_bytes: int
    object_miss_ratio: float
    byte_miss_ratio: float
    cost_miss_ratio: float | None
    peak_overshoot_bytes: int


def parse_limit(text: str | int, unique_bytes: int) -> int:
    """Return the limit in bytes: a size (``"50G"``, ``1000``) or ``"N%"`` of ``unique_bytes``.

    ``N%`` is ``int(N / 100 x unique_bytes)``.

    Raises:
        ValueError: ``text`` is neither.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"limit must not be negative: {text}")
        return text
    stripped = str(text).strip()
    if stripped.endswith("%"):
        number = stripped[:-1].strip()
        try:
            share = Fraction(number)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"invalid limit {text!r} (expected a size or N%)") from None
        if share < 0:
            raise ValueError(f"limit must not be negative: {text!r}")
        return int(share / 100 * unique_bytes)
    return parse_size(stripped)


def make_policy(name: str, clock: Callable[[], float]) -> EvictionPolicy:
    """Return a new built-in policy by ``name``; a clock-driven one reads ``clock``.

    Raises:
        ValueError: ``name`` is not a built-in policy.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICY_NAMES)})")
    return factory(clock)


class _Clock:
    """The replay's clock: the trace's time (deployed) or the request index (exact)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _remove(entry: CacheEntry) -> bool:
    # A replayed cache has no open models: every candidate is removed.
    return True


def simulate(
    trace: Trace,
    policy: EvictionPolicy | str,
    limit: int,
    *,
    exact: bool = False,
    interval: float = 60.0,
    evict_to: float = 1.0,
) -> Result:
    """Replay ``trace`` through one policy at one limit.

    Args:
        trace: from :func:`read_trace`.
        policy: a policy object (a stateful one gets a fresh state) or a built-in name.
        limit: the cache size in bytes.
        exact: libCacheSim's conventions instead of the deployed cache's.
        interval: deployed mode: seconds of trace time between eviction cycles.
        evict_to: deployed mode: a cycle evicts down to ``evict_to x limit``.
    """
    run = _Run(trace, policy, limit)
    if exact:
        run.exact()
    else:
        run.deployed(interval, int(evict_to * limit))
    total_bytes = sum(trace.sizes)
    total_cost = sum(trace.first_cost.get(key, 0.0) for key in trace.keys)
    return Result(
        policy=policy_name(run.policy),
        limit_bytes=limit,
        misses=run.misses,
        miss_bytes=run.miss_bytes,
        object_miss_ratio=run.misses / trace.requests if trace.requests else 0.0,
        byte_miss_ratio=run.miss_bytes / total_bytes if total_bytes else 0.0,
        cost_miss_ratio=(
            None if not trace.has_costs else (run.miss_cost / total_cost if total_cost else 0.0)
        ),
        peak_overshoot_bytes=run.overshoot,
    )


class _Run:
    """One replay of a trace through a policy at a limit: the cache and its counters."""

    def __init__(self, trace: Trace, policy: EvictionPolicy | str, limit: int) -> None:
        self.clock = _Clock()
        self.policy = make_policy(policy, self.clock) if isinstance(policy, str) else policy
        self.trace = trace
        self.limit = limit
        self.cached: dict[str, CacheEntry] = {}
        self.used = 0
        self.misses = 0
        self.miss_bytes = 0
        self.miss_cost = 0.0
        self.overshoot = 0

    def _miss(self, key: str, size: int, cost: float | None) -> float | None:
        """Count a miss; return the cost the policy sees (the request's, else the key's)."""
        self.misses += 1
        self.miss_bytes += size
        known = self.trace.first_cost.get(key)
        if known is not None:
            self.miss_cost += known
        return known if cost is None else cost

    def _evict(self, required: int, state: PolicyState | None) -> list[CacheEntry]:
        """Walk the policy's candidates with the cache's own walk until ``required`` is freed."""
        cached = self.cached
        outcome = evict_until(candidates(self.policy, cached, required, state), required, _remove)
        # Dropped after the walk, which must not see its mapping change.
        for entry in outcome.removed:
            del cached[entry.key]
            self.used -= entry.size
        return outcome.removed

    def exact(self) -> None:
        """libCacheSim's conventions: a logical clock, evict before each insert."""
        policy, limit, cached = self.policy, self.limit, self.cached
        state = policy.new_state() if is_stateful(policy) else None  # type: ignore[attr-defined]
        insert_first = policy_name(policy) in _INSERT_FIRST
        trace = self.trace
        for i, (key, size, cost) in enumerate(
            zip(trace.keys, trace.sizes, trace.costs, strict=True)
        ):
            now = float(i)
            entry = cached.get(key)
            if entry is not None:
                entry = CacheEntry(
                    key, entry.size, entry.access_count + 1, now, entry.created, entry.fill_seconds
                )
                cached[key] = entry
                if state is not None:
                    state.access(entry, 1)
                continue
            fill = self._miss(key, size, cost)
            if size > limit:
                continue  # never admitted: it cannot fit even in an empty cache
            entry = CacheEntry(key, size, 1, now, now, fill)
            if insert_first:
                cached[key] = entry
                if state is not None:
                    state.insert(entry)
            required = self.used + size - limit
            if required > 0:
                self.clock.now = now
                self._evict(required, state)
            if not insert_first:
                cached[key] = entry
                if state is not None:
                    state.insert(entry)
            self.used += size

    def deployed(self, interval: float, target: int) -> None:
        """The cache as it runs: fill every miss, evict at background cycles only."""
        policy, limit, cached = self.policy, self.limit, self.cached
        tracker = Tracker(policy) if keeps_history(policy) else None  # type: ignore[arg-type]
        trace = self.trace
        next_cycle: float | None = None
        now = 0.0
        for t, key, size, cost in zip(
            trace.times, trace.keys, trace.sizes, trace.costs, strict=True
        ):
            now = max(now, t)  # lines appended by several processes may be slightly out of order
            if next_cycle is None:
                next_cycle = now + interval
            elif now >= next_cycle:
                self.clock.now = now
                self._cycle(tracker, target)
                next_cycle += interval * (1 + int((now - next_cycle) // interval))
            entry = cached.get(key)
            if entry is not None:
                cached[key] = CacheEntry(
                    key, entry.size, entry.access_count + 1, now, entry.created, entry.fill_seconds
                )
                continue
            cached[key] = CacheEntry(key, size, 1, now, now, self._miss(key, size, cost))
            self.used += size
            self.overshoot = max(self.overshoot, self.used - limit)

    def _cycle(self, tracker: Tracker | None, target: int) -> None:
        """One background cycle: bring the policy's state up to date, evict if over."""
        if tracker is not None:
            tracker.sync(list(self.cached.values()))
        if self.used <= self.limit:
            return
        removed = self._evict(self.used - target, None if tracker is None else tracker.state)
        if tracker is not None:
            tracker.evicted([e.key for e in removed])
