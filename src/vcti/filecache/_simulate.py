"""The replay machinery: policies by name, limits, and the two simulation modes.

See :mod:`vcti.filecache.replay` for what the modes mean; this module keeps no second
implementation of eviction: every victim comes from the policy's own state or order,
through the walk that the cache's eviction uses (:mod:`vcti.filecache._victims`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from ._entry import CacheEntry
from ._sizes import format_size, parse_size
from ._trace import Trace
from ._victims import candidates, evict_until, is_stateful, policy_name
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

if TYPE_CHECKING:
    from ._config import CacheManagerConfig

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_POINTS",
    "POLICY_NAMES",
    "ReplaySettings",
    "Result",
    "check_limit",
    "expand_limit",
    "make_policy",
    "parse_limit",
    "result_warnings",
    "simulate",
    "trace_warnings",
]

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


def _library_default(name: str) -> object:
    from ._config import CacheManagerConfig  # noqa: PLC0415 - the config imports the policies

    (found,) = [f for f in dataclasses.fields(CacheManagerConfig) if f.name == name]
    return found.default


@dataclass(frozen=True)
class ReplaySettings:
    """How the deployed mode runs the cache: :class:`CacheManagerConfig`'s settings.

    The defaults are the library's (:meth:`library_defaults`).

    Attributes:
        interval: seconds of trace time between two background cycles.
        evict_to: an eviction goes down to ``evict_to x`` the limit (the config's
            ``evict_to`` as a share of ``evict_above``).
        prompt_eviction: a miss whose fill takes the total above the limit (or the free
            space under ``min_free``) runs a cycle at once, as the library does.
        max_age: seconds; a model not used for longer is evicted at the next cycle.
        min_free: keep this much of the disk free: bytes (int) or a share of
            ``disk_size`` (float); needs ``disk_size``, which a trace does not record.
        disk_size: the size of the filesystem the cache lives on, for ``min_free``.
        prompt_delay: seconds from the fill that crosses the limit to the eviction it
            calls for. 0: done before the next request (a fill in the leader's own
            process wakes it at once); fills published by other processes reach it
            through the journal, gathered for up to 0.1 s; and a burst of requests faster
            than the cycle itself (tens of ms on a local disk) finds the cache over its
            limit for that long, and misses less than predicted.
    """

    interval: float = 60.0
    evict_to: float = 1.0
    prompt_eviction: bool = True
    max_age: float | None = None
    min_free: int | float | None = None
    disk_size: int | None = None
    prompt_delay: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.interval, (int, float)) and 0 < self.interval < float("inf")):
            raise ValueError(f"interval must be positive: {self.interval}")
        if not 0 <= self.evict_to <= 1:
            raise ValueError(f"evict_to must be between 0 and 1: {self.evict_to}")
        if self.max_age is not None and not 0 < self.max_age < float("inf"):
            raise ValueError(f"max_age must be positive: {self.max_age}")
        if (self.min_free is None) != (self.disk_size is None):
            raise ValueError("min_free needs disk_size (the filesystem's size), and only it")
        if self.min_free is not None:
            if isinstance(self.min_free, float) and not 0 < self.min_free < 1:
                raise ValueError(f"a min_free share must be in (0, 1): {self.min_free}")
            if self.min_free <= 0:
                raise ValueError(f"min_free must be positive: {self.min_free}")
        if not 0 <= self.prompt_delay < float("inf"):
            raise ValueError(f"prompt_delay must not be negative: {self.prompt_delay}")
        if self.disk_size is not None and self.disk_size <= 0:
            raise ValueError(f"disk_size must be positive: {self.disk_size}")

    @classmethod
    def library_defaults(cls) -> ReplaySettings:
        """The settings of a :class:`CacheManagerConfig` given only its limit."""
        return cls(
            interval=float(_library_default("interval")),  # type: ignore[arg-type]
            prompt_eviction=bool(_library_default("prompt_eviction")),
            max_age=_library_default("max_age"),  # type: ignore[arg-type]
            min_free=_library_default("min_free"),  # type: ignore[arg-type]
        )

    @classmethod
    def from_config(
        cls, config: CacheManagerConfig, disk_size: int | None = None
    ) -> ReplaySettings:
        """The settings of ``config`` (its ``min_free`` only with ``disk_size``)."""
        return cls(
            interval=config.interval,
            evict_to=config.target / config.evict_above,
            prompt_eviction=config.prompt_eviction,
            max_age=config.max_age,
            min_free=config.min_free if disk_size is not None else None,
            disk_size=disk_size if config.min_free is not None else None,
        )

    @property
    def floor(self) -> int:
        """Bytes to keep free on the disk (0: no floor)."""
        if self.min_free is None or self.disk_size is None:
            return 0
        if isinstance(self.min_free, float):
            return int(self.min_free * self.disk_size)
        return self.min_free


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
        peak_overshoot_bytes: how far above the limit the cache went before an eviction
            brought it back (always 0 in exact mode).
        warnings: why this result may not mean much (empty when it does).
    """

    policy: str
    limit_bytes: int
    misses: int
    miss_bytes: int
    object_miss_ratio: float
    byte_miss_ratio: float
    cost_miss_ratio: float | None
    peak_overshoot_bytes: int
    warnings: tuple[str, ...] = ()


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


#: Sizes a range gives when it does not say how many.
DEFAULT_POINTS = 16


def expand_limit(text: str | int, unique_bytes: int) -> list[int]:
    """The limits in bytes that ``text`` stands for: one, or a range's log-spaced sizes.

    A range is ``LOW..HIGH`` or ``LOW..HIGH:N`` (each end a size or ``N%``): ``N`` sizes
    (default 16) spaced evenly on a log scale from ``LOW`` to ``HIGH``, both included.

    Raises:
        ValueError: an end is neither a size nor ``N%``, ``N`` is below 2, or
            ``LOW > HIGH``.
    """
    if isinstance(text, int) or ".." not in str(text):
        return [parse_limit(text, unique_bytes)]
    low_text, _, rest = str(text).partition("..")
    high_text, colon, count_text = rest.partition(":")
    try:
        points = int(count_text) if colon else DEFAULT_POINTS
    except ValueError:
        raise ValueError(f"invalid range {text!r}: the count after ':' is not a number") from None
    if points < 2:
        raise ValueError(f"invalid range {text!r}: at least 2 sizes")
    low, high = parse_limit(low_text, unique_bytes), parse_limit(high_text, unique_bytes)
    if low > high:
        raise ValueError(f"invalid range {text!r}: the low end is above the high end")
    if low == high:
        return [low]
    start = max(low, 1)
    ratio = high / start
    sizes = [round(start * ratio ** (i / (points - 1))) for i in range(points)]
    sizes[0], sizes[-1] = low, high
    return list(dict.fromkeys(sizes))


def check_limit(text: str | int) -> None:
    """Raise ValueError unless ``text`` is a limit or a range (see :func:`expand_limit`)."""
    if isinstance(text, str) and ".." in text:
        expand_limit(text, 10**12)  # any trace's unique bytes: only the syntax is checked
        return
    parse_limit(text, 0)


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


def _entry_maker() -> Callable[[str, int, int, float, float, float | None], CacheEntry]:
    """A maker of entries at some 40% of the dataclass's cost: the replay's hot path.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; the
    slots' own descriptors set them without that detour. Only for the replay's entries,
    whose fields the replay itself computed.
    """
    new = object.__new__
    setters = {f.name: getattr(CacheEntry, f.name).__set__ for f in dataclasses.fields(CacheEntry)}
    set_key, set_size, set_count = setters["key"], setters["size"], setters["access_count"]
    set_last, set_created = setters["last_access"], setters["created"]
    set_fill, set_version = setters["fill_seconds"], setters["version"]

    def make(  # noqa: PLR0917 - CacheEntry's own positional fields
        key: str, size: int, count: int, last: float, created: float, fill: float | None
    ) -> CacheEntry:
        entry = new(CacheEntry)
        set_key(entry, key)
        set_size(entry, size)
        set_count(entry, count)
        set_last(entry, last)
        set_created(entry, created)
        set_fill(entry, fill)
        set_version(entry, None)
        return entry

    return make


#: A new entry: ``make_entry(key, size, access_count, last_access, created, fill_seconds)``.
make_entry = _entry_maker()


def _remove(entry: CacheEntry) -> bool:
    # A replayed cache has no open models: every candidate is removed.
    return True


def simulate(
    trace: Trace,
    policy: EvictionPolicy | str,
    limit: int,
    *,
    exact: bool = False,
    interval: float | None = None,
    evict_to: float | None = None,
    settings: ReplaySettings | None = None,
) -> Result:
    """Replay ``trace`` through one policy at one limit.

    Args:
        trace: from :func:`read_trace`.
        policy: a policy object (a stateful one gets a fresh state) or a built-in name.
        limit: the cache size in bytes.
        exact: libCacheSim's conventions instead of the deployed cache's.
        interval, evict_to: deployed mode: override these two of ``settings``.
        settings: deployed mode: the cache's settings (default: the library's).
    """
    settings = settings or ReplaySettings()
    if interval is not None or evict_to is not None:
        settings = dataclasses.replace(
            settings,
            interval=settings.interval if interval is None else interval,
            evict_to=settings.evict_to if evict_to is None else evict_to,
        )
    run = _Run(trace, policy, limit)
    if exact:
        run.exact()
    else:
        run.deployed(settings)
    total_bytes = trace.total_bytes
    total_cost = trace.total_cost
    return Result(
        policy=policy_name(run.policy),
        limit_bytes=limit,
        misses=round(run.misses),
        miss_bytes=round(run.miss_bytes),
        object_miss_ratio=run.misses / trace.total_requests if trace.total_requests else 0.0,
        byte_miss_ratio=run.miss_bytes / total_bytes if total_bytes else 0.0,
        cost_miss_ratio=(
            None if not trace.has_costs else (run.miss_cost / total_cost if total_cost else 0.0)
        ),
        peak_overshoot_bytes=round(run.overshoot),
        warnings=result_warnings(trace, limit, round(run.overshoot)),
    )


def result_warnings(trace: Trace, limit: int, overshoot: int) -> tuple[str, ...]:
    """Why a result may not mean much: the limit or the overshoot against the trace."""
    found: list[str] = []
    if trace.largest > limit:
        found.append(
            f"the limit ({format_size(limit)}) is smaller than the largest object "
            f"({format_size(trace.largest)})"
        )
    if overshoot > limit:
        found.append(
            f"the cache went {format_size(overshoot)} over its limit of {format_size(limit)}: "
            "the disk must hold more than twice the limit"
        )
    return tuple(found)


def trace_warnings(trace: Trace, settings: ReplaySettings, exact: bool) -> list[str]:
    """Why a whole trace's deployed results may not mean much."""
    if exact or not trace.times:
        return []
    span = trace.times[-1] - trace.times[0]
    if span >= settings.interval:
        return []
    if settings.prompt_eviction and settings.max_age is None:
        return []
    return [
        f"the trace spans {span:g} s, less than one cycle ({settings.interval:g} s): "
        + (
            "no background cycle ran, so nothing was evicted"
            if not settings.prompt_eviction
            else "no background cycle ran, so max_age evicted nothing"
        )
    ]


class _Run:
    """One replay of a trace through a policy at a limit: the cache and its counters.

    A weighted sample's key (``trace.weights``) stands for ``w`` keys: its misses count
    ``w`` times, and it takes ``w x`` its size of the cache's room, while the policy sees
    its true size (see :mod:`._sample`).
    """

    def __init__(self, trace: Trace, policy: EvictionPolicy | str, limit: int) -> None:
        self.clock = _Clock()
        self.policy = make_policy(policy, self.clock) if isinstance(policy, str) else policy
        #: A built-in policy's state is driven without the cache's guards (see _drain).
        self.trusted = isinstance(policy, str)
        self.trace = trace
        self.limit = limit
        self.cached: dict[str, CacheEntry] = {}
        #: The room the cached models take (their sizes, weighted in a weighted sample).
        self.used: float = 0
        self.misses: float = 0
        self.miss_bytes: float = 0
        self.miss_cost = 0.0
        self.overshoot: float = 0
        self.weights = trace.weights
        if self.weights:
            self._miss = self._weighted_miss  # type: ignore[method-assign]

    def _miss(self, key: str, size: int, cost: float | None) -> float | None:
        """Count a miss; return the cost the policy sees (the request's, else the key's)."""
        self.misses += 1
        self.miss_bytes += size
        known = self.trace.first_cost.get(key)
        if known is not None:
            self.miss_cost += known
        return known if cost is None else cost

    def _weighted_miss(self, key: str, size: int, cost: float | None) -> float | None:
        """:meth:`_miss` for a weighted sample's key: it counts as the keys it stands for."""
        weight = self.weights[key]
        self.misses += weight
        self.miss_bytes += weight * size
        known = self.trace.first_cost.get(key)
        if known is not None:
            self.miss_cost += weight * known
        return known if cost is None else cost

    def room(self, entry: CacheEntry) -> float:
        """The room ``entry`` takes in the cache: its size, times its weight if weighted."""
        return entry.size * self.weights[entry.key] if self.weights else entry.size

    def _evict(self, required: float, state: PolicyState | None) -> list[CacheEntry]:
        """Walk the policy's candidates with the cache's own walk until ``required`` is freed."""
        cached = self.cached
        if state is not None and self.trusted:
            return self._drain(required, state)
        if self.weights:
            return self._weighted_walk(required, state)
        outcome = evict_until(
            candidates(self.policy, cached, int(required), state), int(required), _remove
        )
        # Dropped after the walk, which must not see its mapping change.
        for entry in outcome.removed:
            del cached[entry.key]
            self.used -= self.room(entry)
        return outcome.removed

    def _weighted_walk(self, required: float, state: PolicyState | None) -> list[CacheEntry]:
        """The walk of :meth:`_evict` counting each victim's room, not its size.

        A key's room is at least its size (weights are at least 1), so the policy is asked
        for ``required`` bytes, at least what it must offer.
        """
        cached = self.cached
        stream = candidates(self.policy, cached, math.ceil(required), state)
        removed: list[CacheEntry] = []
        freed: float = 0
        for entry in stream:
            stream.removed(entry, True)
            removed.append(entry)
            freed += self.room(entry)
            if freed >= required:
                break
        for entry in removed:
            del cached[entry.key]
        self.used -= freed
        return removed

    def _drain(self, required: float, state: PolicyState) -> list[CacheEntry]:
        """The walk for a built-in policy's state, which tracks exactly the cached models.

        The cache's walk guards against a policy that names unknown or repeated models,
        or never ends, at some cost per victim; a built-in state cannot, and a replayed
        cache has no open models to keep, so its victims are taken as they come.
        """
        cached = self.cached
        removed: list[CacheEntry] = []
        freed: float = 0
        victims = state.victims()
        evicted = state.evicted
        weights = self.weights
        try:
            for key in victims:
                entry = cached.pop(key)
                evicted(key)
                removed.append(entry)
                freed += entry.size * weights[key] if weights else entry.size
                if freed >= required:
                    break
        finally:
            close = getattr(victims, "close", None)
            if close is not None:
                close()
        self.used -= freed
        return removed

    def exact(self) -> None:
        """libCacheSim's conventions: a logical clock, evict before each insert."""
        policy, limit, cached = self.policy, self.limit, self.cached
        state = policy.new_state() if is_stateful(policy) else None  # type: ignore[attr-defined]
        insert_first = policy_name(policy) in _INSERT_FIRST
        trace = self.trace
        weights = self.weights
        for i, (key, size, cost) in enumerate(
            zip(trace.keys, trace.sizes, trace.costs, strict=True)
        ):
            now = float(i)
            entry = cached.get(key)
            if entry is not None:
                entry = make_entry(
                    key, entry.size, entry.access_count + 1, now, entry.created, entry.fill_seconds
                )
                cached[key] = entry
                if state is not None:
                    state.access(entry, 1)
                continue
            fill = self._miss(key, size, cost)
            room = size * weights[key] if weights else size
            if room > limit:
                continue  # never admitted: it cannot fit even in an empty cache
            entry = make_entry(key, size, 1, now, now, fill)
            if insert_first:
                cached[key] = entry
                if state is not None:
                    state.insert(entry)
            required = self.used + room - limit
            if required > 0:
                self.clock.now = now
                self._evict(required, state)
            if not insert_first:
                cached[key] = entry
                if state is not None:
                    state.insert(entry)
            self.used += room

    def deployed(self, settings: ReplaySettings) -> None:
        """The cache as it runs: fill every miss; evict at cycles and, if prompt, at once."""
        policy, limit, cached = self.policy, self.limit, self.cached
        # The state sees each access as it happens (what the manager's scans tell it, in
        # order, before a cycle evicts); a policy that only orders is asked for an order
        # at each eviction.
        state = policy.new_state() if is_stateful(policy) else None  # type: ignore[attr-defined]
        cycle = _Cycle(self, settings, state)
        recency = cycle.recency
        prompt, interval, delay = settings.prompt_eviction, settings.interval, settings.prompt_delay
        trigger = cycle.trigger
        trace = self.trace
        weights = self.weights
        next_cycle: float | None = None
        due = _NEVER  # when the cycle that a fill over the limit called for runs
        now = 0.0
        overshoot: float = 0
        for t, key, size, cost in zip(
            trace.times, trace.keys, trace.sizes, trace.costs, strict=True
        ):
            now = max(now, t)  # lines appended by several processes may be slightly out of order
            if next_cycle is None:
                next_cycle = now + interval
            elif now >= due:
                cycle.run(due)
                due = _NEVER
                next_cycle = now + interval  # the manager waits a whole interval after a cycle
            elif now >= next_cycle:
                cycle.run(now)
                next_cycle += interval * (1 + int((now - next_cycle) // interval))
            entry = cached.get(key)
            if entry is not None:
                entry = make_entry(
                    key, entry.size, entry.access_count + 1, now, entry.created, entry.fill_seconds
                )
                cached[key] = entry
                if state is not None:
                    state.access(entry, 1)
                if recency is not None:
                    recency[key] = now
                    recency.move_to_end(key)
                continue
            entry = make_entry(key, size, 1, now, now, self._miss(key, size, cost))
            cached[key] = entry
            if state is not None:
                state.insert(entry)
            if recency is not None:
                recency[key] = now
            self.used += size * weights[key] if weights else size
            overshoot = max(overshoot, self.used - limit)
            if prompt and self.used > trigger and due == _NEVER:
                if delay:
                    due = now + delay
                else:
                    cycle.run(now)
                    next_cycle = now + interval
        self.overshoot = overshoot


#: No cycle pending.
_NEVER = float("inf")


class _Cycle:
    """The manager's cycle in the deployed mode: models past ``max_age``, then the limits."""

    def __init__(self, run: _Run, settings: ReplaySettings, state: PolicyState | None) -> None:
        self._run = run
        self.state = state
        self.max_age = settings.max_age
        #: Every model's last access, oldest first (kept only for ``max_age``).
        self.recency: OrderedDict[str, float] | None = (
            OrderedDict() if settings.max_age is not None else None
        )
        self.target = int(settings.evict_to * run.limit)
        self.floor = settings.floor
        self.disk = settings.disk_size or 0
        #: Above this total a cycle evicts: the limit, or less when the disk's floor is lower.
        self.trigger = min(run.limit, self.disk - self.floor) if self.floor else run.limit

    def run(self, now: float) -> None:
        """Run one cycle at trace time ``now``."""
        run, recency, state = self._run, self.recency, self.state
        run.clock.now = now
        cached = run.cached
        if recency is not None and self.max_age is not None:
            while recency:
                key, last = next(iter(recency.items()))
                if now - last <= self.max_age:
                    break
                del recency[key]
                run.used -= run.room(cached.pop(key))
                if state is not None:
                    state.forget(key)
        if run.used <= self.trigger:
            return
        required = run.used - self.target if run.used > run.limit else 0
        if self.floor:
            required = max(required, self.floor - (self.disk - run.used))
        removed = run._evict(required, state)
        if recency is not None:
            for entry in removed:
                del recency[entry.key]
