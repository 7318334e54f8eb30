"""The storage protocols: what a backend must do, and what it may do to help the core.

A backend stores model directories under keys and locks them against other threads,
processes or hosts. Everything built on that (walks, totals, eviction order, pin counts
between threads, write-behind of accesses) lives in the core, not in the backend.

Required, for every backend:

- :class:`CacheStorage`: stage, publish, discard and remove models; pin them; lock a
  fill; list and measure models; read and update their metadata record.

Optional capabilities, each a protocol layered on :class:`CacheStorage`. The manager
checks each one once, with ``isinstance``, when it is created for a storage; each
docstring says what the manager does with it and without it:

- :class:`SharedStorage`: several processes or hosts use one root (leader election,
  sweeping of leftovers, a check of the backend's own bookkeeping).
- :class:`LeasedStorage`: locks are leases that lapse unless renewed (S3), so the core
  must watch for a lost pin or a lost leadership.
- :class:`StampedStorage`: cheap per-model stamps and a root-wide generation counter, so
  that a scan skips what did not change.
- :class:`JournaledStorage`: a record of which models changed, so that a cycle touches
  only those, and the leader hears of other processes' publishes at once.
- :class:`RequestJournal`: that record also tells the lookups each process served, so
  that the leader's what-if simulations see the requests of every process.
- :class:`BulkMeasuringStorage`: measures many models at once, away from this process,
  so that a full walk does not slow the hits of its other threads.
- :class:`BulkMetadataStorage`: reads and writes many models' metadata, and walks the
  whole root, in batches away from this process, so that the leader's cycles do not
  slow them either.
- :class:`FreeSpaceStorage`: the free space of the filesystem under the root
  (``min_free``).
- :class:`PolicyStateStorage`: a place for an eviction policy's state, so that it
  survives restarts and changes of leader.
- :class:`AdoptingStorage`: takes over a root written by vcti-file-cache 1.0.

Backends written for vcti-file-cache 1.0 have their own protocol,
:class:`~vcti.filecache.storage.v1.StorageV1`; ``FileCache(storage=...)`` recognises one
by its methods and wraps it in :class:`~vcti.filecache.storage.v1.StorageV1Adapter`.

The shared test suites in :mod:`vcti.filecache.testing` check each protocol: a backend's
test class inherits the suites of the protocols it implements.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .._entry import AdoptionReport

__all__ = [
    "AdoptingStorage",
    "BulkMeasuringStorage",
    "BulkMetadataStorage",
    "CacheStorage",
    "ChangeWatch",
    "Changes",
    "FreeSpaceStorage",
    "JournaledStorage",
    "LeaseLock",
    "LeasedStorage",
    "Lock",
    "PeerRequest",
    "PolicyStateStorage",
    "RequestJournal",
    "SharedStorage",
    "StampedStorage",
]


@runtime_checkable
class Lock(Protocol):
    """A held lock (a pin, a fill lock or the leader lock); ``release()`` gives it up."""

    def release(self) -> None:
        """Give the lock up. Calling it twice is harmless."""
        ...


@runtime_checkable
class LeaseLock(Lock, Protocol):
    """A lock that can be lost while held: a lease its backend could not renew in time."""

    @property
    def lost(self) -> bool:
        """True once another process or host may have taken the lock over."""
        ...


@runtime_checkable
class CacheStorage(Protocol):
    """Where a cache keeps its model directories: the protocol every backend implements.

    A missing model or object raises ``FileNotFoundError``; other failures raise
    ``OSError``. Keys given to a backend are already validated by the core. A model is
    *published* when it is complete and visible under its key; a fill in progress is
    *staged* somewhere no reader looks.
    """

    if TYPE_CHECKING:

        @property
        def root(self) -> str:
            """The root as a path or URI; it names the cache in metrics and logs."""
            ...

    else:
        # At run time a plain annotation, not a property: a class that subclasses the
        # protocol explicitly may still assign its own ``root`` (1.0's backends did).
        root: str

    def path(self, key: str) -> str:
        """Return the full path or URI of the model ``key``."""
        ...

    def open(self) -> None:
        """Create the root's layout if needed and reclaim leftovers nobody holds.

        Called once per process before anything else. A leftover that cannot be
        reclaimed must not make it fail.
        """
        ...

    def iter_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[str]:
        """Yield the key of every published model (at or below ``prefix``).

        Unreadable folders are passed to ``onerror`` and skipped; folders that vanish
        during the walk are skipped silently.
        """
        ...

    def is_model(self, key: str) -> bool:
        """Return True if ``key`` is a published model."""
        ...

    def exists(self, key: str) -> bool:
        """Return True if anything (a model or a folder of models) is stored at ``key``."""
        ...

    def model_size(self, key: str) -> int:
        """Return the bytes of the files in model ``key``, the cache's own files excluded."""
        ...

    def staging_size(self) -> int:
        """Return the bytes of fills in progress or left over."""
        ...

    def staged_size(self, staged: str) -> int:
        """Return the bytes of the files of one staged fill (what :meth:`stage` returned)."""
        ...

    def read_record(self, key: str) -> bytes:
        """Return the stored metadata record of model ``key`` (at most a few KiB)."""
        ...

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        """Replace the metadata of model ``key`` with ``update(current)``, atomically.

        ``current`` is None when the metadata is missing. No other process updates the
        same model's metadata in between.
        """
        ...

    def pin(self, key: str) -> Lock | None:
        """Protect the published model ``key`` against removal, in every process.

        Returns None when ``key`` is not a published model.
        """
        ...

    def lock_fill(self, key: str, timeout: float) -> Lock:
        """Take the fill lock of ``key``, waiting for another process's fill to end.

        Raises:
            LockTimeoutError: the lock was not free within ``timeout`` seconds.
        """
        ...

    def stage(self, key: str) -> str:
        """Create an empty private staging area for a fill of ``key``; return its path."""
        ...

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        """Make the staged fill visible as model ``key`` in one atomic step.

        Raises:
            FileExistsError: something else is already stored at ``key``, or a model
                is published at an ancestor of ``key`` or below it.
        """
        ...

    def discard(self, staged: str) -> None:
        """Remove a staged fill that will not be published."""
        ...

    def remove(self, key: str) -> bool:
        """Remove model ``key`` unless it is pinned; return False when it is pinned.

        The model disappears at once (a reader never sees it half-deleted); its data is
        deleted afterwards.
        """
        ...


@runtime_checkable
class SharedStorage(CacheStorage, Protocol):
    """A root that several processes (or hosts) use at once.

    With it, the manager scans and evicts only while ``try_lead()`` gives it the leader
    lock, sweeps leftovers at every cycle it leads, and ``FileCache.verify()`` adds the
    backend's own findings. Without it, the backend serves one process: that process
    always leads, nothing is swept after ``open()``, and ``verify()`` checks metadata only.
    """

    def try_lead(self) -> Lock | None:
        """Try to become the one process that scans and evicts; None when another is."""
        ...

    def sweep(self) -> int:
        """Reclaim leftovers of interrupted fills and deletes that nobody holds.

        Something the backend does not recognise in its own folders is removed or skipped
        and reported by raising ``OSError`` after the rest is done, never by stopping
        half-way.

        Returns:
            The bytes reclaimed.
        """
        ...

    def verify(self, repair: bool) -> list[str]:
        """Check the backend's own bookkeeping (not the metadata records) for drift.

        Returns one line per problem found; with ``repair``, fixes what can be fixed
        without losing user data.
        """
        ...


@runtime_checkable
class LeasedStorage(CacheStorage, Protocol):
    """A backend whose pins and locks are leases that lapse unless renewed (S3).

    Every lock it returns is a :class:`LeaseLock`. With it, the manager checks the
    leader lock's ``lost`` at every cycle (and announces the loss once, with
    ``on_leader_change(False)``), and a ``model()`` context whose pin was lost raises
    :class:`~vcti.filecache.PinLostError` when it exits, after reporting it to
    ``on_error(error, "pin")``. Without it, a lock is held until it is released.
    """

    @property
    def lease_ttl(self) -> float:
        """Seconds after which a lease that was not renewed may be taken over."""
        ...


@runtime_checkable
class StampedStorage(CacheStorage, Protocol):
    """Cheap change detection: per-model stamps and a root-wide generation counter.

    With it, a scan that finds the generation unchanged (and has no accesses of its own
    to add) reuses the last scan, and otherwise measures only the models whose stamps
    changed; a size recorded in a model's metadata under a stamp that still holds is
    trusted by a new process. Every ``full_scan_every``-th background cycle measures
    every model anyway. Without it, every scan measures every model.
    """

    def generation(self) -> Hashable:
        """A value that changes whenever any process changes the cache through the library.

        None when unknown (then every scan walks).
        """
        ...

    def iter_stamped_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[tuple[str, Hashable, Hashable]]:
        """Yield ``(key, data_stamp, meta_stamp)`` for every published model.

        ``data_stamp`` changes when the model's files change in a way the backend can
        see cheaply, ``meta_stamp`` with every write of its metadata; either may be None
        (unknown: the model is measured). Stamps must be equal across processes for an
        unchanged model.
        """
        ...

    def staged_stamp(self, staged: str) -> Hashable:
        """The ``data_stamp`` the staged fill will have once published, as it is now."""
        ...


@runtime_checkable
class BulkMeasuringStorage(CacheStorage, Protocol):
    """A backend that measures many models at once, away from this process.

    With it, the manager measures the models of a full walk (and of a cycle with many
    changes) in one batch, which on local storage runs in a child process: the walk does
    not hold this process's interpreter lock, so hits in its other threads keep their
    latency. Without it, models are measured one by one in the manager's thread.
    """

    def model_sizes(self, keys: Sequence[str]) -> dict[str, int]:
        """Bytes of the files of each model of ``keys`` (the cache's own files excluded).

        A model that could not be measured (gone, unreadable) is left out of the result:
        the caller measures it alone, to learn why.

        Raises:
            OSError: the batch could not be measured at all.
        """
        ...


@runtime_checkable
class BulkMetadataStorage(CacheStorage, Protocol):
    """A backend that does the leader's per-model work in batches, away from this process.

    With it, the leader's cycle reads the stamps and records of the models that changed,
    and writes their accesses and measured sizes, in batches (of up to 512 models), and
    a full walk lists, stamps and measures every model in one pass; on local storage all
    of it runs in the measuring process that also measures models (see
    :class:`BulkMeasuringStorage`), so the cycle's file work does not hold this
    process's interpreter lock. ``close()`` is called when the root's last cache in the
    process closes. Without it, one stamp, read and ``update_meta`` a model, and the full
    walk's listing, in the manager's thread.
    """

    def update_metas(
        self, updates: Sequence[tuple[str, Callable[[bytes | None], bytes]]]
    ) -> Iterator[tuple[str, tuple[bytes | None, bytes] | Exception]]:
        """Run each ``(key, update)`` as :meth:`~CacheStorage.update_meta` would, in order.

        The updates may run in another process: they must be picklable (instances of
        module-level classes, not closures). Yields, for each update, its key and either
        the record the update was given (None if there was none) with the record it
        wrote, or the exception that stopped it (``FileNotFoundError``: not a model).

        Raises:
            OSError: the batch stopped part way; the updates not yielded were not made,
                except perhaps the first of them.
            TypeError: an update cannot be sent where it would run.
        """
        ...

    def read_metas(
        self, keys: Sequence[str]
    ) -> Iterator[tuple[str, tuple[Hashable, Hashable] | None, bytes | Exception | None]]:
        """For each key, in order: its stamps, then its record as ``read_record`` reads it.

        The stamps are ``(data_stamp, meta_stamp)`` as
        :meth:`StampedStorage.iter_stamped_models` gives them (``(None, None)`` from a
        backend without stamps), or None, with no record, when the key is not a model;
        the record is its bytes or the exception reading it raised.

        Raises:
            OSError: the batch could not run (the caller reads them one by one).
        """
        ...

    def walk_models(
        self,
    ) -> tuple[list[tuple[str, Hashable, Hashable, int | None]], list[OSError]]:
        """Every published model with its stamps and size, in one pass (the full walk).

        Returns ``(key, data_stamp, meta_stamp, size)`` for each model, as
        :meth:`StampedStorage.iter_stamped_models` and ``model_size`` give them (size
        None: it could not be measured, the caller measures it alone to learn why), and
        the errors met listing the root.

        Raises:
            OSError: the walk could not run (the caller walks itself).
        """
        ...

    def close(self) -> None:
        """Release what the batches hold (a process); a later batch starts again."""
        ...


@dataclass(frozen=True, slots=True)
class PeerRequest:
    """Lookups another process served, as it recorded them in the change record.

    Either one miss: a fill of ``size`` bytes it published (``hits`` 0), looked up at
    ``time`` and filled in ``fill`` seconds; or ``hits`` hits it wrote behind (``size``
    None), the last at ``time`` and all after ``since`` (the model's last access before
    them, when the record had one).
    """

    key: str
    time: float
    hits: int = 0
    size: int | None = None
    fill: float | None = None
    since: float | None = None


@dataclass(frozen=True)
class Changes:
    """What changed in a root since a cursor (:meth:`JournaledStorage.read_changes`).

    Attributes:
        cursor: where to read from next time (opaque).
        keys: the models published, removed or written since; None when that cannot be
            known (the first read, a journal that was rotated, lost or damaged): then
            every model may have changed.
        published: bytes published since the cursor (a publish records its size).
        error: why ``keys`` is None, when something was wrong with the journal.
        requests: the lookups other processes served since the cursor, oldest recorded
            first (:meth:`RequestJournal.read_peer_requests` only; empty otherwise).
        published_here: of ``published``, the bytes this process published (0 where the
            backend cannot tell).
    """

    cursor: object
    keys: frozenset[str] | None
    published: int = 0
    error: OSError | None = None
    requests: tuple[PeerRequest, ...] = ()
    published_here: int = 0


class ChangeWatch(Protocol):
    """A descriptor that becomes readable when a change may have been recorded.

    Returned by :meth:`JournaledStorage.watch_changes`. A spurious wake-up is harmless
    (the caller reads the changes and finds none); a missed one is not.
    """

    def fileno(self) -> int:
        """The descriptor to ``select`` on."""
        ...

    def clear(self) -> None:
        """Forget what was signalled so far (called before reading the changes)."""
        ...

    def close(self) -> None:
        """Release the watch (idempotent)."""
        ...


@runtime_checkable
class JournaledStorage(CacheStorage, Protocol):
    """A record, kept by every process, of which models changed.

    Publishing, removing and writing metadata (accesses written behind, sizes recorded)
    each record the model's key. With it, a cycle measures only the models that changed
    since the last one (and a periodic full walk reconciles what changed behind the
    library's back), and the leader watches the record between cycles, so that a publish
    in any process that takes the total over the limit starts a cycle at once. Without
    it, a cycle walks every model's stamps (:class:`StampedStorage`) or measures every
    model, and only this process's publishes start a cycle early.
    """

    def read_changes(self, cursor: object | None) -> Changes:
        """Return what changed since ``cursor`` (None: the first read, which knows nothing)."""
        ...

    def record_total(self, total: int, cursor: object) -> None:
        """Record, for every process, that the root held ``total`` bytes at ``cursor``.

        The leader calls it after each cycle, with the cursor its scan read the record
        up to; a process that publishes adds the bytes published since (back-pressure).

        Raises:
            OSError: it could not be recorded (reported; publishes then do not wait).
        """
        ...

    def recorded_total(self) -> tuple[int, object] | None:
        """Return the last ``(total, cursor)`` recorded, or None if none can be read."""
        ...

    def watch_changes(self) -> ChangeWatch | None:
        """Return a new watch on the record, or None where the platform gives none.

        With a watch the leader sleeps between cycles until a change is recorded; without
        one it reads the record four times a second. The caller closes the watch.

        Raises:
            OSError: the platform has watches but this one could not be set up (the
                manager reports it and reads the record four times a second).
        """
        ...


@runtime_checkable
class RequestJournal(JournaledStorage, Protocol):
    """A change record that also tells which lookups each process served.

    A publish records when its fill was looked up and how long it took; a metadata write
    that adds accesses records how many, and the last one's time. The leader reads what
    the other processes recorded and passes it to the observers that simulate the cache
    (``CacheObserver.on_peer_requests``): its own lookups they see directly.
    """

    def read_peer_requests(self, cursor: object | None) -> Changes:
        """What changed since ``cursor``, with the lookups of other processes in ``requests``.

        Lookups recorded by this process (and by helpers working for it) are left out. The
        first read (``cursor`` None), and one after the record was rotated or lost, knows
        nothing of what came before it: ``keys`` is None and ``requests`` empty.
        """
        ...

    def record_hits(self, key: str, count: int, last: float) -> None:
        """Record ``count`` hits on ``key`` (the last at ``last``) that no metadata took.

        The model was removed before they were written behind: they are lookups all the
        same. A failure is not raised (the record is removed, as for any change).
        """
        ...


@runtime_checkable
class FreeSpaceStorage(CacheStorage, Protocol):
    """A backend on a filesystem whose free space can be read.

    With it, ``CacheManagerConfig(min_free=...)`` makes the manager evict while the
    free space is below ``min_free``, and the exporters report the filesystem's size and
    free space. Without it, a config with ``min_free`` is refused when the cache opens.
    """

    def disk_usage(self) -> tuple[int, int]:
        """Return ``(free, total)``: the bytes available to unprivileged users, and the size."""
        ...


@runtime_checkable
class PolicyStateStorage(CacheStorage, Protocol):
    """A place for the state of eviction policies (GreedyDual's clock, SIEVE's hand ...).

    With it, the leader writes the state of a stateful policy after each eviction run
    and a new leader (a restart, another process or host) reads it back. Without it, the
    state lives in the leader's memory and is rebuilt from the entries after a restart.
    """

    def read_state(self, name: str) -> bytes:
        """Return the state stored under ``name``.

        Raises:
            FileNotFoundError: nothing is stored under ``name``.
        """
        ...

    def write_state(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing what was there atomically."""
        ...


@runtime_checkable
class AdoptingStorage(CacheStorage, Protocol):
    """A backend that can take over a cache root written by vcti-file-cache 1.0.

    With it, the manager calls :meth:`adopt_v1` right after ``open()`` and reports what
    was adopted (``on_adopt`` and a log line), and ``verify()`` lists what
    :meth:`plan_v1` would adopt. Without it, a 1.0 root's models are invisible.
    """

    def adopt_v1(self) -> AdoptionReport:
        """Adopt the 1.0 models of the root, if it has any; crash-safe and idempotent."""
        ...

    def plan_v1(self) -> AdoptionReport:
        """Return what :meth:`adopt_v1` would adopt now, touching nothing."""
        ...
