"""CacheManagerConfig and its validation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .observers.base import CacheObserver
from .policies.base import EvictionPolicy
from .policies.lru import LruPolicy


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of bytes, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


@dataclass(frozen=True)
class CacheManagerConfig:
    """How a cache is managed: its limit, eviction policy, cycle interval and observers.

    Args:
        evict_above: the limit in bytes; the manager evicts when the total is above it.
        policy: orders models for eviction (default :class:`LruPolicy`).
        interval: seconds between two background cycles.
        observer: one :class:`CacheObserver`, a sequence of them, or None.
        evict_to: evict down to this many bytes (default ``evict_above``); a lower
            value frees some headroom at each eviction.
        lock_timeout: seconds to wait for another process's fill of the same model
            before taking it over or giving up.
        full_scan_every: every how many background cycles the scan measures every model
            (1: always; the default, 60, is hourly at the default interval). In between,
            a scan skips what did not change: nothing at all when the backend's generation
            says no process changed the cache through the library, else every model whose
            stamps did not change. The full scan catches what these miss (a file rewritten
            in place, a change in a subfolder of a model, changes made behind the
            library's back).
        clock: returns epoch seconds; used for access times (tests pass a fake clock).

    Raises:
        TypeError: a value has the wrong type.
        ValueError: a value is out of range (negative size, ``evict_to > evict_above``,
            ``interval <= 0``).
    """

    evict_above: int
    policy: EvictionPolicy = field(default_factory=LruPolicy)
    interval: float = 60.0
    observer: CacheObserver | Sequence[CacheObserver] | None = None
    evict_to: int | None = None
    lock_timeout: float = 600.0
    full_scan_every: int = 60
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_size("evict_above", self.evict_above)
        if self.evict_to is not None:
            _check_size("evict_to", self.evict_to)
            if self.evict_to > self.evict_above:
                raise ValueError(
                    f"evict_to ({self.evict_to}) must not be greater than "
                    f"evict_above ({self.evict_above})"
                )
        if isinstance(self.policy, type) or not isinstance(self.policy, EvictionPolicy):
            raise TypeError(
                "policy must be an EvictionPolicy instance (with 'name' and 'order'), "
                f"not {type(self.policy).__name__}"
            )
        for name in ("interval", "lock_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
            if not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive finite number of seconds, got {value}")
        if isinstance(self.full_scan_every, bool) or not isinstance(self.full_scan_every, int):
            raise TypeError("full_scan_every must be an int number of cycles")
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

    @property
    def target(self) -> int:
        """The size an eviction run goes down to: ``evict_to``, else ``evict_above``."""
        return self.evict_above if self.evict_to is None else self.evict_to
