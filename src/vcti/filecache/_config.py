"""CacheManagerConfig and its validation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._victims import check_policy
from .observers.base import CacheObserver
from .policies.base import EvictionPolicy, EvictionPolicyV1
from .policies.lru import LruPolicy


def _check_size(name: str, value: object, *, positive: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of bytes, not {type(value).__name__}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")  # 1.0's words
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value}")
    return float(value)


def _check_min_free(value: object) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return
    if isinstance(value, float) and 0.0 < value < 1.0:
        return
    raise ValueError(
        "min_free must be a positive int (bytes) or a float strictly between 0 and 1 "
        f"(a fraction of the filesystem's size), got {value!r}"
    )


@dataclass(frozen=True)
class CacheManagerConfig:
    """How a cache is managed: its limit, eviction policy, cycle interval and observers.

    Args:
        evict_above: the limit in bytes (positive); the manager evicts when the total is
            above it.
        policy: chooses models for eviction (default :class:`LruPolicy`): any object
            with ``order()`` or 1.0's ``select_evictions()``.
        interval: seconds between two background cycles.
        observer: one :class:`CacheObserver`, a sequence of them, or None.
        evict_to: evict down to this many bytes (default ``evict_above``); a lower
            value frees some headroom at each eviction.
        lock_timeout: seconds to wait for another process's fill of the same model
            before taking it over or giving up.
        full_scan_every: every how many background cycles the scan measures every model
            (1: always; the default, 60, is hourly at the default interval; None: never,
            for caches only ever written through the library). In between, a scan skips
            what did not change: nothing at all when the backend's generation says no
            process changed the cache through the library, else every model whose stamps
            did not change and that nobody opened. The full scan catches changes made
            behind the library's back.
        clock: returns epoch seconds; used for access times (tests pass a fake clock).
        min_free: keep at least this much of the filesystem under the root free: an
            ``int`` is bytes, a ``float`` strictly between 0 and 1 a fraction of the
            filesystem's size. The manager also evicts while less is free. Only for
            backends that can tell their free space (local storage); refused elsewhere.
        max_age: seconds; a model not opened for longer is evicted at the next cycle,
            whatever the total.
        prompt_eviction: run a cycle as soon as a publish pushes the total above
            ``evict_above`` (or the free space below ``min_free``), instead of waiting
            for the next one; and hold back a publish into a root over its limit that
            would leave it more than 5% over, up to 5 s, until eviction makes room
            (default True).

    Raises:
        TypeError: a value has the wrong type.
        ValueError: a value is out of range (``evict_above <= 0``, a negative
            ``evict_to``, ``evict_to > evict_above``, ``interval <= 0``, ``min_free``
            not a positive int nor a float in (0, 1), ``max_age <= 0``).
    """

    evict_above: int
    policy: EvictionPolicy | EvictionPolicyV1 = field(default_factory=LruPolicy)
    interval: float = 60.0
    observer: CacheObserver | Sequence[CacheObserver] | None = None
    evict_to: int | None = None
    lock_timeout: float = 600.0
    full_scan_every: int | None = 60
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    min_free: int | float | None = None
    max_age: float | None = None
    prompt_eviction: bool = True

    def __post_init__(self) -> None:
        _check_size("evict_above", self.evict_above, positive=True)
        if self.evict_to is not None:
            _check_size("evict_to", self.evict_to)
            if self.evict_to > self.evict_above:
                raise ValueError(
                    f"evict_to ({self.evict_to}) must not be greater than "
                    f"evict_above ({self.evict_above})"
                )
        check_policy(self.policy)
        _check_seconds("interval", self.interval)
        _check_seconds("lock_timeout", self.lock_timeout)
        if self.max_age is not None:
            _check_seconds("max_age", self.max_age)
        if self.min_free is not None:
            _check_min_free(self.min_free)
        if not isinstance(self.prompt_eviction, bool):
            raise TypeError("prompt_eviction must be a bool")
        if self.full_scan_every is not None:
            if isinstance(self.full_scan_every, bool) or not isinstance(self.full_scan_every, int):
                raise TypeError("full_scan_every must be an int number of cycles or None")
            if self.full_scan_every < 1:
                raise ValueError(f"full_scan_every must be at least 1, got {self.full_scan_every}")
        if not callable(self.clock):
            raise TypeError("clock must be callable")
        object.__setattr__(self, "observer", self._normalize_observers(self.observer))

    @staticmethod
    def _normalize_observers(
        value: CacheObserver | Sequence[CacheObserver] | None,
    ) -> CacheObserver | tuple[CacheObserver, ...] | None:
        if value is None or isinstance(value, CacheObserver):
            return value
        candidate: object = value
        if isinstance(candidate, (str, bytes)) or not isinstance(candidate, Sequence):
            raise TypeError(
                "observer must be a CacheObserver, a sequence of them or None, "
                f"not {type(value).__name__}"
            )
        items = tuple(candidate)
        for item in items:
            if not isinstance(item, CacheObserver):
                raise TypeError(
                    f"every observer must be a CacheObserver, not {type(item).__name__}"
                )
        return items

    @property
    def observers(self) -> tuple[CacheObserver, ...]:
        """The configured observers as a tuple (empty when there are none)."""
        if self.observer is None:
            return ()
        if isinstance(self.observer, CacheObserver):
            return (self.observer,)
        return tuple(self.observer)

    def now(self) -> float:
        """The clock's time; the system's when the clock gives no finite number.

        Times go into every model's metadata: a NaN or an infinity there would make the
        record unreadable (a clock that returns one is reported when a fill publishes).
        """
        value = self.clock()
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        return time.time()

    def min_free_bytes(self, filesystem_size: int) -> int:
        """``min_free`` in bytes for a filesystem of ``filesystem_size`` bytes (0: none)."""
        if self.min_free is None:
            return 0
        if isinstance(self.min_free, float):
            return int(self.min_free * filesystem_size)
        return self.min_free

    @property
    def target(self) -> int:
        """The size an eviction run goes down to: ``evict_to``, else ``evict_above``."""
        return self.evict_above if self.evict_to is None else self.evict_to
