"""Value objects: what a scan sees and what an eviction did."""

from __future__ import annotations

import operator
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One model directory as the cache last saw it.

    Attributes:
        key: the model key, a relative ``/``-separated path.
        size: bytes of the files in the model (the cache's own files excluded).
        access_count: how many times the model was opened.
        last_access: epoch seconds of the last open.
        created: epoch seconds when the model was published.
        fill_seconds: seconds the fill that published the model took (from entering the
            ``model()`` context to publishing), or None when unknown (a model published
            by an earlier version, or adopted from a 1.0 root).
        version: the ``version`` the model was filled for (``model(key, version=...)``),
            or None.

    The 1.0 names are here too: :attr:`path` (the key) and :attr:`age`.
    """

    key: str
    size: int
    access_count: int
    last_access: float
    created: float
    fill_seconds: float | None = None
    version: str | None = None

    @property
    def path(self) -> str:
        """The model's path relative to the root: the key (1.0's name for it)."""
        return self.key

    @property
    def age(self) -> float:
        """Seconds since the last access, on the wall clock (never negative)."""
        return max(0.0, time.time() - self.last_access)


class _ModelInfoMeta(type):
    """Makes every :class:`CacheEntry` an instance of :class:`ModelInfo`."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, CacheEntry)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, CacheEntry)


class ModelInfo(metaclass=_ModelInfoMeta):
    """1.0's name for a model as a scan sees it; builds a :class:`CacheEntry`.

    ``ModelInfo(path, size, last_access, access_count)`` takes 1.0's argument order and
    returns the equivalent ``CacheEntry`` (created at ``last_access``), and every
    ``CacheEntry`` is an instance of ``ModelInfo``, so code written for 1.0 reads
    ``entries()`` unchanged.
    """

    def __new__(  # type: ignore[misc]
        cls,
        path: str,
        size: int,
        last_access: float,
        access_count: int,
        created: float | None = None,
    ) -> CacheEntry:
        return CacheEntry(
            path, size, access_count, last_access, last_access if created is None else created
        )


#: A snapshot sums its entries' sizes in one pass of C, not a generator (a cycle
#: builds one per cycle, beside the server's hits).
_size_of = operator.attrgetter("size")


@dataclass(frozen=True)
class CacheSnapshot:
    """The state of a cache root from one scan.

    ``CacheSnapshot(entries, evict_above)`` is constructible as in 1.0; the totals are
    derived from the entries.

    Attributes:
        entries: every published model (a list, as in 1.0).
        evict_above: the configured limit in bytes.
        taken_at: epoch seconds when the scan ended.
        staging_size: bytes of fills in progress (included in ``total_size``).
        pinned: keys of the models open at the time of the scan.
        disk_free: bytes free on the filesystem under the root (available to
            unprivileged users), or None where the backend cannot tell (S3, memory).
        disk_total: the size of that filesystem, or None.
        total_size: bytes of all models plus bytes of fills in progress.
        entry_count: ``len(entries)``.
        is_over_limit: ``total_size > evict_above``.
        overage: ``max(0, total_size - evict_above)``.
    """

    entries: list[CacheEntry]
    evict_above: int
    taken_at: float = field(default_factory=time.time)
    staging_size: int = 0
    pinned: frozenset[str] = field(default_factory=frozenset)
    disk_free: int | None = None
    disk_total: int | None = None
    total_size: int = field(init=False)
    entry_count: int = field(init=False)
    is_over_limit: bool = field(init=False)
    overage: int = field(init=False)

    def __post_init__(self) -> None:
        entries = self.entries if isinstance(self.entries, list) else list(self.entries)
        total = sum(map(_size_of, entries)) + self.staging_size
        for name, value in (
            ("entries", entries),
            ("pinned", frozenset(self.pinned)),
            ("total_size", total),
            ("entry_count", len(entries)),
            ("is_over_limit", total > self.evict_above),
            ("overage", max(0, total - self.evict_above)),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def build(
        cls,
        entries: Iterable[CacheEntry],
        *,
        evict_above: int,
        taken_at: float,
        staging_size: int = 0,
        pinned: Iterable[str] = (),
        disk: tuple[int, int] | None = None,
    ) -> CacheSnapshot:
        """Build a snapshot, deriving the totals from ``entries``.

        ``disk`` is ``(free, total)`` of the filesystem, where known.
        """
        free, total = (None, None) if disk is None else disk
        return cls(
            list(entries), evict_above, taken_at, staging_size, frozenset(pinned), free, total
        )

    def without(self, keys: Iterable[str]) -> CacheSnapshot:
        """Return this snapshot with the given keys removed and the totals recomputed."""
        gone = set(keys)
        return CacheSnapshot(
            [e for e in self.entries if e.key not in gone],
            self.evict_above,
            self.taken_at,
            self.staging_size,
            self.pinned - gone,
            self.disk_free,
            self.disk_total,
        )


@dataclass(frozen=True)
class EvictionResult:
    """What one eviction run did.

    Attributes:
        entries: the removed models, in eviction order.
        bytes_freed: the sum of their sizes.
        policy: the name of the policy that ordered them.
        trigger: ``"manual"`` for ``FileCache.evict()``, ``"background"`` for the manager.
        started_at: epoch seconds when the run started (idle time of an entry is
            ``started_at - entry.last_access``).
        duration: seconds the run took.
        target: the size in bytes the run evicted down to.
        skipped_pinned: keys the policy chose that were open and so kept.
        reason: why the run evicted: ``"size"`` (the total was above the limit),
            ``"free_space"`` (the filesystem had less than ``min_free`` free) or ``"age"``
            (the models were idle for longer than ``max_age``).
    """

    entries: tuple[CacheEntry, ...]
    bytes_freed: int
    policy: str
    trigger: str
    started_at: float
    duration: float
    target: int
    skipped_pinned: tuple[str, ...] = ()
    reason: str = "size"


@dataclass(frozen=True)
class VerifyReport:
    """What ``FileCache.verify()`` found (and, with ``repair``, fixed).

    Attributes:
        problems: one line per problem found, before any repair.
        repaired: True if the check ran with ``repair=True``.
        snapshot: a scan taken after the check (and the repairs).
    """

    problems: tuple[str, ...]
    repaired: bool
    snapshot: CacheSnapshot

    @property
    def ok(self) -> bool:
        """True if nothing was found."""
        return not self.problems


@dataclass(frozen=True)
class AdoptionReport:
    """What adopting a root written by vcti-file-cache 1.0 did (or would do).

    Attributes:
        models: keys of the 1.0 models adopted (or to adopt).
        problems: one line per 1.0 folder left alone: nested in another model, not at a
            valid key, or failing to adopt.
    """

    models: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.models or self.problems)
