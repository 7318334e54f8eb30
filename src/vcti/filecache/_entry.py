"""Value objects: what a scan sees and what an eviction did."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One model directory as the cache last saw it.

    Attributes:
        key: the model key, a relative ``/``-separated path.
        size: bytes of the files in the model (the cache's own files excluded).
        access_count: how many times the model was opened.
        last_access: epoch seconds of the last open.
        created: epoch seconds when the model was published.
    """

    key: str
    size: int
    access_count: int
    last_access: float
    created: float


@dataclass(frozen=True)
class CacheSnapshot:
    """The state of a cache root from one scan.

    Attributes:
        entries: every published model.
        total_size: bytes of all models plus bytes of fills in progress.
        entry_count: ``len(entries)``.
        evict_above: the configured limit in bytes.
        is_over_limit: ``total_size > evict_above``.
        overage: ``max(0, total_size - evict_above)``.
        taken_at: epoch seconds when the scan ended.
        staging_size: bytes of fills in progress (included in ``total_size``).
        pinned: keys of the models open at the time of the scan.
    """

    entries: tuple[CacheEntry, ...]
    total_size: int
    entry_count: int
    evict_above: int
    is_over_limit: bool
    overage: int
    taken_at: float
    staging_size: int = 0
    pinned: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(
        cls,
        entries: Iterable[CacheEntry],
        *,
        evict_above: int,
        taken_at: float,
        staging_size: int = 0,
        pinned: Iterable[str] = (),
    ) -> CacheSnapshot:
        """Build a snapshot, deriving the totals from ``entries``."""
        items = tuple(entries)
        total = sum(e.size for e in items) + staging_size
        return cls(
            entries=items,
            total_size=total,
            entry_count=len(items),
            evict_above=evict_above,
            is_over_limit=total > evict_above,
            overage=max(0, total - evict_above),
            taken_at=taken_at,
            staging_size=staging_size,
            pinned=frozenset(pinned),
        )

    def without(self, keys: Iterable[str]) -> CacheSnapshot:
        """Return this snapshot with the given keys removed and the totals recomputed."""
        gone = set(keys)
        return CacheSnapshot.build(
            (e for e in self.entries if e.key not in gone),
            evict_above=self.evict_above,
            taken_at=self.taken_at,
            staging_size=self.staging_size,
            pinned=self.pinned - gone,
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
    """

    entries: tuple[CacheEntry, ...]
    bytes_freed: int
    policy: str
    trigger: str
    started_at: float
    duration: float
    target: int
    skipped_pinned: tuple[str, ...] = ()


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
