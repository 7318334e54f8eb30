"""Scans of one storage root: sizes, metadata, and the written-behind accesses.

A scan lists the models, reads their metadata and measures their sizes, doing as little
as the backend's capabilities allow. With :class:`~vcti.filecache.storage.base.StampedStorage`
it reuses the last scan when the root's generation did not change, and otherwise
measures only the models whose stamps changed; a size recorded in a model's metadata
under a stamp that still holds is trusted by a process that never measured it. Opening a
model clears its recorded stamp (the context may have changed its files), so the next
scan measures it again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, TypeVar

from ._coord import Coordinator
from ._entry import CacheEntry, CacheSnapshot, VerifyReport
from ._meta import Meta, MetaUpdate
from ._observers import ObserverGroup
from .exceptions import MetadataError
from .storage.base import (
    AdoptingStorage,
    BulkMeasuringStorage,
    BulkMetadataStorage,
    CacheStorage,
    FreeSpaceStorage,
    JournaledStorage,
    RequestJournal,
    SharedStorage,
    StampedStorage,
)

if TYPE_CHECKING:
    from ._config import CacheManagerConfig
    from .observers.base import CacheObserver


class _Known:
    """What a scan remembers of a model.

    ``entry`` is its entry without this process's unwritten accesses: a cycle that
    touches a few models hands out the same entry objects for all the others, instead of
    building one per model (a long stretch of Python that hits in other threads would
    wait for). The metadata record is kept only when the entry and the stamp cannot give
    it back (its recorded size is not the one measured under the current stamp): for
    most models it is rebuilt when needed, which saves about 180 bytes a model.
    """

    __slots__ = ("_meta", "data_stamp", "entry", "meta_stamp")

    def __init__(
        self, data_stamp: Hashable, meta_stamp: Hashable, meta: Meta, entry: CacheEntry
    ) -> None:
        self.data_stamp = data_stamp
        self.meta_stamp = meta_stamp
        self.entry = entry
        current = meta.size == entry.size and meta.stamp == stamp_text(data_stamp)
        self._meta = None if current else meta

    @property
    def size(self) -> int:
        """The model's bytes."""
        return self.entry.size

    @property
    def meta(self) -> Meta:
        """The model's metadata record as this scan read or wrote it."""
        if self._meta is not None:
            return self._meta
        entry = self.entry
        return Meta(
            entry.access_count,
            entry.last_access,
            entry.created,
            entry.fill_seconds,
            entry.version,
            entry.size,
            stamp_text(self.data_stamp),
        )


#: Outside the leader's cycle, fewer models than this are measured and written here; more,
#: in one batch away from this process (the leader's process only: one measuring process a
#: root). The leader's cycle sends even a few away: it runs beside the server's hits.
_BULK_MIN = 64

#: Models a batch takes at most: what is read, measured and written for them is held
#: only while the batch is worked on.
_CHUNK = 512

_T = TypeVar("_T")


def _chunks(items: list[_T]) -> Iterator[list[_T]]:
    """``items`` in lists of at most ``_CHUNK``."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def make_entry(key: str, size: int, meta: Meta) -> CacheEntry:
    """The entry of model ``key`` of ``size`` bytes, from its metadata record."""
    return CacheEntry(
        key,
        size,
        meta.access_count,
        meta.last_access,
        meta.created,
        meta.fill_seconds,
        meta.version,
    )


def stamp_text(stamp: Hashable) -> str | None:
    """A data stamp as recorded in metadata (None: no stamp, never trusted)."""
    return None if stamp is None else str(stamp)


class Scanner:
    """Scans one root and writes this process's recorded accesses behind."""

    def __init__(
        self, storage: CacheStorage, coord: Coordinator, leading: Callable[[], bool]
    ) -> None:
        self.storage = storage
        self.coord = coord
        #: True while this process leads the root: only the leader's work goes away from
        #: the process (on a local root, one measuring process for the root).
        self._leading = leading
        # False once work sent away failed in the current cycle: the rest of the cycle is
        # done here (one stalled helper costs a cycle one deadline, not one per batch).
        self._away_ok = True
        self._stamps = storage if isinstance(storage, StampedStorage) else None
        self._shared = storage if isinstance(storage, SharedStorage) else None
        self._disk = storage if isinstance(storage, FreeSpaceStorage) else None
        self._journal = storage if isinstance(storage, JournaledStorage) else None
        self._requests = storage if isinstance(storage, RequestJournal) else None
        self._bulk = storage if isinstance(storage, BulkMeasuringStorage) else None
        self._batch = storage if isinstance(storage, BulkMetadataStorage) else None
        self._adopting = storage if isinstance(storage, AdoptingStorage) else None
        self.io_lock = threading.Lock()  # scans and write-behind see one consistent state
        self._known: dict[str, _Known] = {}
        self._generation: Hashable = None
        self._entries: tuple[CacheEntry, ...] = ()
        self._cursor: object = None  # where this process read the journal up to
        self._complete = False  # _known holds every model (a walk was made)
        self._retry: set[str] = set()  # models a scan could not measure: tried again
        self._taken: dict[str, tuple[int, float]] | None = None  # accesses the scan writes

    @property
    def cursor(self) -> object:
        """Where the last scan read the journal up to (None before the first)."""
        return self._cursor

    def after_fork(self) -> None:
        """A forked child starts with its own lock (the parent's may be held)."""
        self.io_lock = threading.Lock()

    # -- accesses (write-behind) --------------------------------------------------------

    def flush(self, group: ObserverGroup, *, away: bool = False) -> None:
        """Write the accesses recorded in memory as increments of each model's count.

        ``away``: in one batch away from this process, where the backend can (the
        leader's cycle, beside the server's hits).
        """
        with self.io_lock:
            self._write_accesses(group, self.coord.take_pending(), away=away)

    def _write_accesses(
        self, group: ObserverGroup, pending: dict[str, tuple[int, float]], *, away: bool = False
    ) -> None:
        updates = [(key, MetaUpdate(accesses=accesses)) for key, accesses in pending.items()]
        for key, result in self._update_all(group, updates, away=away):
            count, last = pending[key]
            if isinstance(result, FileNotFoundError):
                # Evicted since: its accesses go with it, but they were lookups all the same.
                if self._requests is not None:
                    self._requests.record_hits(key, count, last)
                continue
            if isinstance(result, Exception):  # a failing backend must not lose the counts
                group.error(result, "metadata")
                self.coord.restore_pending(key, count, last)
                continue
            _, error = Meta.read(result[0], last)
            if error is not None:
                group.error(
                    MetadataError(f"model {key!r}: {error}; rebuilt with defaults"), "metadata"
                )

    def _update_all(
        self, group: ObserverGroup, updates: list[tuple[str, MetaUpdate]], *, away: bool
    ) -> Iterator[tuple[str, tuple[bytes | None, bytes] | Exception]]:
        """Run metadata updates: the record each was given and wrote, or what stopped it.

        With ``away`` (or many of them), in batches away from this process where the
        backend can, a chunk at a time; what a batch did not reach (it failed, reported)
        runs here.
        """
        many = away or len(updates) >= _BULK_MIN
        batch = self._batch if many and self._away_ok and self._leading() else None
        for chunk in _chunks(updates):
            done: set[str] = set()
            if batch is not None:
                try:
                    for key, result in batch.update_metas(chunk):
                        done.add(key)
                        yield key, result
                except OSError as exc:
                    group.error(exc, "metadata")
                    self._away_ok = False
                    batch = None
            for key, update in chunk:
                if key not in done:
                    yield key, self._update_here(key, update)

    def _update_here(self, key: str, update: MetaUpdate) -> tuple[bytes | None, bytes] | Exception:
        done: list[tuple[bytes | None, bytes]] = []

        def run(raw: bytes | None) -> bytes:
            done.append((raw, update(raw)))
            return done[-1][1]

        try:
            self.storage.update_meta(key, run)
        except Exception as exc:
            return exc
        return done[-1]

    # -- scans --------------------------------------------------------------------------

    def scan(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        *,
        repair: bool = True,
        full: bool = False,
        write_accesses: bool = False,
    ) -> CacheSnapshot:
        """Walk the root once and return what is there.

        Args:
            group: the observers to report to.
            config: the limit and clock of the snapshot.
            repair: report unreadable metadata and rebuild it, record measured sizes;
                without it, nothing is written or remembered (a read-only look).
            full: measure every model.
            write_accesses: also write this process's accesses (the leader's cycle, with
                a journal): a model opened here is measured, and its accesses and size
                written in one metadata update rather than two.
        """
        group.emit("on_scan_start")
        started = time.perf_counter()
        with self.io_lock:
            if write_accesses:
                self._away_ok = True  # a new cycle tries its helper again
            taking = write_accesses and repair and self._journal is not None
            pending = self.coord.take_pending() if taking else self.coord.pending()
            self._taken = pending if taking else None
            try:
                entries = self._scan(group, config, pending, repair=repair, full=full)
            finally:
                self._taken = None
                if taking:
                    self._write_accesses(group, pending, away=True)  # those not yet written
            try:
                staging = self.storage.staging_size()
            except OSError as exc:
                group.error(exc, "scan")
                staging = 0
        disk: tuple[int, int] | None = None
        if self._disk is not None:
            try:
                disk = self._disk.disk_usage()
            except OSError as exc:
                group.error(exc, "scan")
        snapshot = CacheSnapshot.build(
            entries,
            evict_above=config.evict_above,
            taken_at=config.now(),
            staging_size=staging,
            pinned=self.coord.pinned(),
            disk=disk,
        )
        group.emit("on_scan_end", snapshot, time.perf_counter() - started)
        return snapshot

    def _scan(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        pending: dict[str, tuple[int, float]],
        *,
        repair: bool,
        full: bool,
    ) -> tuple[CacheEntry, ...]:
        if not repair:
            return self._walk(group, config, pending, repair, full=full)
        if self._journal is not None:
            return self._journaled(group, config, pending, full=full)
        return self._counted(group, config, pending, full=full)

    def _counted(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        pending: dict[str, tuple[int, float]],
        *,
        full: bool,
    ) -> tuple[CacheEntry, ...]:
        """A scan that remembers, for backends with a generation counter (or nothing)."""
        generation = self._generation_now(group)
        if not full and not pending and generation is not None and generation == self._generation:
            # No process changed the cache through the library since the last scan, and
            # this one has no accesses to add: the last scan still holds.
            return self._entries
        entries = self._walk(group, config, pending, True, full=full)
        self._generation = generation
        self._entries = entries
        return entries

    def _journaled(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        pending: dict[str, tuple[int, float]],
        *,
        full: bool,
    ) -> tuple[CacheEntry, ...]:
        """A scan that reads the journal and touches only the models that changed.

        A walk is needed when this process knows nothing yet (its first scan, or the
        journal was rotated) and, measuring every model, when the journal is damaged or
        missing (reported) or a full walk is due.
        """
        assert self._journal is not None
        changes = self._journal.read_changes(self._cursor)
        self._cursor = changes.cursor
        if changes.error is not None:
            group.error(changes.error, "scan")
            full = True
        if full or changes.keys is None or not self._complete:
            entries = self._walk(group, config, pending, True, full=full)
            self._complete = True
        elif changes.keys or pending or self._retry:
            retry, self._retry = self._retry, set()
            # Many keys are taken a chunk at a time: what a chunk reads, measures and
            # writes is held only while it is worked on.
            for chunk in _chunks(list(changes.keys | pending.keys() | retry)):
                self._refresh(group, config, set(chunk), pending)
            entries = self._entries_from_known(pending)
        else:
            return self._entries  # nothing changed anywhere, nothing to add here
        self._entries = entries
        return entries

    def _refresh(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        keys: AbstractSet[str],
        pending: dict[str, tuple[int, float]],
    ) -> None:
        """Bring what is known of ``keys`` up to date (forgetting those that are gone)."""
        found: list[tuple[str, Hashable, Hashable]] = []
        read: dict[str, bytes | Exception] = {}
        # The leader's cycle reads the stamps and records away from this process too.
        away = self._taken is not None and self._batch is not None and bool(keys) and self._away_ok
        if away and self._read_away(group, keys, found, read):
            keys = set()
        for key in keys:
            try:
                if self._stamps is not None:
                    item = next(self._stamps.iter_stamped_models(prefix=key), None)
                else:
                    item = (key, None, None) if self.storage.is_model(key) else None
            except OSError as exc:
                self._failed(group, key, exc)
                continue
            if item is None or item[0] != key:
                self._known.pop(key, None)
            else:
                found.append(item)
        for key, data_stamp, meta_stamp, meta, size in self._measured(
            group, config, found, self._known, pending, full=False, repair=True, read=read
        ):
            self._known[key] = _Known(data_stamp, meta_stamp, meta, make_entry(key, size, meta))

    def _read_away(
        self,
        group: ObserverGroup,
        keys: AbstractSet[str],
        found: list[tuple[str, Hashable, Hashable]],
        read: dict[str, bytes | Exception],
    ) -> bool:
        """Stamps and records of ``keys`` in one batch, into ``found`` and ``read``.

        Returns False if the batch failed (reported; nothing added).
        """
        assert self._batch is not None
        try:
            items = list(self._batch.read_metas(list(keys)))
        except OSError as exc:
            group.error(exc, "scan")
            self._away_ok = False
            return False
        for key, stamps, record in items:
            if stamps is None:
                self._known.pop(key, None)
                continue
            found.append((key, *stamps))
            if record is not None:
                read[key] = record
        return True

    def _failed(self, group: ObserverGroup, key: str, error: OSError) -> None:
        """A model that could not be measured: left out of this scan, tried at the next."""
        group.error(error, "scan")
        self._known.pop(key, None)
        self._retry.add(key)

    def _entries_from_known(self, pending: dict[str, tuple[int, float]]) -> tuple[CacheEntry, ...]:
        if not pending:  # the leader's cycle wrote them all: one tight pass over the models
            return tuple([known.entry for known in self._known.values()])
        entries: list[CacheEntry] = []
        for key, known in self._known.items():
            if key in pending:
                entries.append(make_entry(key, known.size, known.meta.add(*pending[key])))
            else:
                entries.append(known.entry)
        return tuple(entries)

    def forget(self, keys: set[str]) -> None:
        """Drop removed models from what the last scan remembers."""
        with self.io_lock:
            for key in keys:
                self._known.pop(key, None)
            self._entries = tuple(e for e in self._entries if e.key not in keys)

    def _walk(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        pending: dict[str, tuple[int, float]],
        repair: bool,
        *,
        full: bool,
    ) -> tuple[CacheEntry, ...]:
        """Every model with its size and metadata, measuring only what may have changed."""
        known = self._known if repair else {}  # a full walk re-measures, reads changed metadata
        seen: dict[str, _Known] = {}
        entries: list[CacheEntry] = []
        stamped: Iterable[tuple[str, Hashable, Hashable]] = self._stamped(group)
        sizes: dict[str, int] = {}
        walked = self._walk_away(group) if full and self._taken is not None else None
        if walked is not None:  # the leader's full walk: stamps and sizes in one pass away
            stamped = [(key, data_stamp, meta_stamp) for key, data_stamp, meta_stamp, _ in walked]
            sizes = {key: size for key, _, _, size in walked if size is not None}
        for key, data_stamp, meta_stamp, meta, size in self._measured(
            group, config, stamped, known, pending, full=full, repair=repair, sizes=sizes
        ):
            entry = make_entry(key, size, meta)
            if data_stamp is not None or self._journal is not None:
                seen[key] = _Known(data_stamp, meta_stamp, meta, entry)
            entries.append(
                make_entry(key, size, meta.add(*pending[key])) if key in pending else entry
            )
        if repair:
            self._known = seen
        return tuple(entries)

    def _walk_away(
        self, group: ObserverGroup
    ) -> list[tuple[str, Hashable, Hashable, int | None]] | None:
        """Every model's stamps and size, listed and measured in one batch away from here.

        None where the backend cannot, or the batch failed (reported).
        """
        if self._batch is None or not self._away_ok:
            return None
        try:
            walked, errors = self._batch.walk_models()
        except OSError as exc:
            group.error(exc, "scan")
            self._away_ok = False
            return None
        for error in errors:
            group.error(error, "scan")
        return walked

    def _measured(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        stamped: Iterable[tuple[str, Hashable, Hashable]],
        known: dict[str, _Known],
        pending: dict[str, tuple[int, float]],
        *,
        full: bool,
        repair: bool,
        read: dict[str, bytes | Exception] | None = None,
        sizes: dict[str, int] | None = None,
    ) -> Iterator[tuple[str, Hashable, Hashable, Meta, int]]:
        """``(key, data stamp, meta stamp, metadata, size)`` of each model of ``stamped``.

        ``read`` holds records already read (or why they could not be), and ``sizes``
        sizes already measured, by key.

        Sizes that cannot be reused are measured together, in one batch where the backend
        can measure away from this process; a model that is gone is left out, one that
        cannot be read is reported and left out.
        """
        rows: list[tuple[str, Hashable, Hashable, Meta, int | None]] = []
        for key, data_stamp, meta_stamp in stamped:
            try:
                meta, size = self._reusable(
                    group,
                    config,
                    key,
                    stamps=(data_stamp, meta_stamp),
                    previous=known.get(key),
                    remeasure=full or key in pending,
                    repair=repair,
                    read=None if read is None else read.get(key),
                )
            except FileNotFoundError:
                continue  # evicted or deleted during the scan
            except OSError as exc:
                self._failed(group, key, exc)
                continue
            rows.append((key, data_stamp, meta_stamp, meta, size))
        away = self._taken is not None  # the leader's cycle, beside the server's hits
        sizes = dict(sizes or ())
        unknown = [row[0] for row in rows if row[4] is None and row[0] not in sizes]
        sizes.update(self._sizes(unknown, group, away=away))
        measured: list[tuple[str, Hashable, Hashable, Meta, int]] = []
        updates: list[tuple[str, MetaUpdate]] = []
        for key, data_stamp, meta_stamp, meta, size in rows:
            if size is not None:
                yield key, data_stamp, meta_stamp, meta, size
                continue
            new_size = sizes.get(key)
            if new_size is None:
                continue  # gone, or reported
            if new_size != meta.size:
                group.emit("on_size_update", key, new_size)
            update = self._size_update(key, meta, new_size, data_stamp, repair=repair)
            if update is not None:
                updates.append((key, update))
            measured.append((key, data_stamp, meta_stamp, meta, new_size))
        written = dict(self._update_all(group, updates, away=away)) if updates else {}
        yield from self._recorded(group, measured, written)

    def _recorded(
        self,
        group: ObserverGroup,
        measured: list[tuple[str, Hashable, Hashable, Meta, int]],
        written: dict[str, tuple[bytes | None, bytes] | Exception],
    ) -> Iterator[tuple[str, Hashable, Hashable, Meta, int]]:
        """The measured models, with the records written for them (and what failed)."""
        for key, data_stamp, meta_stamp, meta, size in measured:
            result = written.get(key)
            if result is None:
                yield key, data_stamp, meta_stamp, meta, size
                continue
            if not isinstance(result, Exception) or isinstance(result, FileNotFoundError):
                if self._taken is not None:
                    self._taken.pop(key, None)  # written (or gone): not the write-behind's
                if not isinstance(result, Exception):
                    yield key, data_stamp, None, Meta.decode(result[1]), size  # stamp: next scan
            elif self._taken is not None and key in self._taken:
                # Like a failed write-behind: reported, the accesses kept for the next
                # cycle (not tried again in this one), the model still in the snapshot.
                group.error(result, "metadata")
                self.coord.restore_pending(key, *self._taken.pop(key))
                yield key, data_stamp, None, meta, size
            elif isinstance(result, OSError):
                self._failed(group, key, result)
            else:
                raise result

    def _sizes(self, keys: list[str], group: ObserverGroup, *, away: bool) -> dict[str, int]:
        """Measure ``keys``: in one batch away from this process where the backend can.

        What the batch could not measure is measured here, one by one, so that a model
        that is gone is left out and one that cannot be read is reported.
        """
        sizes: dict[str, int] = {}
        many = away or len(keys) >= _BULK_MIN
        if self._bulk is not None and keys and many and self._away_ok and self._leading():
            try:
                sizes = self._bulk.model_sizes(keys)
            except OSError as exc:
                group.error(exc, "scan")  # the batch failed as a whole: measured here
                self._away_ok = False
        for key in keys:
            if key in sizes:
                continue
            try:
                sizes[key] = self.storage.model_size(key)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._failed(group, key, exc)
        return sizes

    def _reusable(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        key: str,
        *,
        stamps: tuple[Hashable, Hashable],
        previous: _Known | None,
        remeasure: bool,
        repair: bool,
        read: bytes | Exception | None = None,
    ) -> tuple[Meta, int | None]:
        """The metadata of one model, and its size if it need not be measured (else None).

        ``read`` is its record if it was read already (or the error reading it gave).

        A size is reused when the model's stamps did not change since this process
        measured it, or (in a process that never did) when the metadata records it under
        the current data stamp.
        """
        data_stamp, meta_stamp = stamps
        if previous is not None and meta_stamp is not None and meta_stamp == previous.meta_stamp:
            meta = previous.meta
        else:
            meta = self._load_meta(key, group, config.now, repair, read)
        if (
            not remeasure
            and previous is not None
            and data_stamp is not None
            and data_stamp == previous.data_stamp
            and meta_stamp == previous.meta_stamp
        ):
            return meta, previous.size
        stamp = stamp_text(data_stamp)
        if not remeasure and meta.size is not None and stamp is not None and meta.stamp == stamp:
            return meta, meta.size
        return meta, None

    def _size_update(
        self, key: str, meta: Meta, size: int, data_stamp: Hashable, *, repair: bool
    ) -> MetaUpdate | None:
        """What to write after measuring a model: its size, with the accesses this cycle
        took for it (then they are no longer the write-behind's); None: nothing to write.
        """
        if not repair:
            return None
        stamp = stamp_text(data_stamp)
        taken = self._taken
        if taken is not None and key in taken:
            # measured after the contexts closed: one write for both
            return MetaUpdate(accesses=taken[key], measured=(size, stamp), fallback=meta)
        if size != meta.size or meta.stamp != stamp:
            return MetaUpdate(measured=(size, stamp), fallback=meta)
        return None

    def _generation_now(self, group: ObserverGroup) -> Hashable:
        """The backend's change counter (None where it has none, or on failure)."""
        if self._stamps is None:
            return None
        try:
            value: Hashable = self._stamps.generation()
        except OSError as exc:
            group.error(exc, "scan")
            return None
        return value

    def _stamped(self, group: ObserverGroup) -> Iterator[tuple[str, Hashable, Hashable]]:
        """Every model with its stamps; ``(key, None, None)`` from backends without them."""

        def onerror(error: OSError) -> None:
            group.error(error, "scan")

        if self._stamps is not None:
            yield from self._stamps.iter_stamped_models(onerror=onerror)
            return
        for key in list(self.storage.iter_models(onerror=onerror)):
            yield key, None, None

    def _load_meta(
        self,
        key: str,
        group: ObserverGroup,
        clock: Callable[[], float],
        repair: bool,
        read: bytes | Exception | None = None,
    ) -> Meta:
        try:
            if isinstance(read, Exception):
                raise read
            return Meta.decode(self.storage.read_record(key) if read is None else read)
        except MetadataError as exc:
            problem: Exception = exc
        except FileNotFoundError:
            if not self.storage.is_model(key):
                raise
            try:  # removed and filled again since the read: the new model's record
                return Meta.decode(self.storage.read_record(key))
            except FileNotFoundError:
                if not self.storage.is_model(key):
                    raise
                problem = MetadataError("metadata file is missing")
            except MetadataError as exc:
                problem = exc
        if not repair:
            now = clock()
            return Meta(0, now, now)
        group.error(MetadataError(f"model {key!r}: {problem}; rebuilt with defaults"), "metadata")
        return self.rebuild_meta(key, clock)

    def rebuild_meta(self, key: str, clock: Callable[[], float]) -> Meta:
        """Replace unreadable metadata with defaults (count 0, times now); return the result.

        A record that another process repaired in the meantime is kept as it is.
        """
        result: list[Meta] = []

        def rebuild(raw: bytes | None) -> bytes:
            meta, _ = Meta.read(raw, clock())
            result.append(meta)
            return meta.encode()

        self.storage.update_meta(key, rebuild)
        return result[-1]

    # -- checks -------------------------------------------------------------------------

    def verify(
        self, group: ObserverGroup, config: CacheManagerConfig, repair: bool
    ) -> VerifyReport:
        """Check metadata and the backend's bookkeeping against what is stored."""
        problems: list[str] = []
        listing = _Collecting(group.observers)
        with self.io_lock:
            if self._adopting is not None:
                plan = self._adopting.plan_v1()
                problems.extend(f"1.0 model to adopt: {key!r}" for key in plan.models)
                problems.extend(plan.problems)
            if self._shared is not None:
                problems.extend(self._shared.verify(repair))
            for key in list(self.storage.iter_models(onerror=lambda e: listing.error(e, "scan"))):
                try:
                    Meta.decode(self.storage.read_record(key))
                    continue
                except MetadataError as exc:
                    problems.append(f"model {key!r}: {exc}")
                except FileNotFoundError:
                    if not self.storage.is_model(key):
                        continue
                    problems.append(f"model {key!r}: metadata file is missing")
                except OSError as exc:
                    problems.append(f"model {key!r}: metadata cannot be read: {exc}")
                    continue
                if repair:
                    with contextlib.suppress(FileNotFoundError):
                        self.rebuild_meta(key, config.now)
        snapshot = self.scan(listing, config, repair=False)
        problems.extend(f"cannot read part of the root: {error}" for error in listing.errors)
        return VerifyReport(tuple(problems), repair, snapshot)


class _Collecting(ObserverGroup):
    """Observers, plus the list of errors reported to them (what a check found)."""

    __slots__ = ("errors",)

    def __init__(self, observers: tuple[CacheObserver, ...]) -> None:
        super().__init__(observers)
        self.errors: list[Exception] = []

    def error(self, error: Exception, context: str) -> None:
        self.errors.append(error)
        super().error(error, context)
