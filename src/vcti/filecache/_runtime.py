"""The runtime of one storage root in this process: lifecycle, cycles, leadership.

There is one :class:`Runtime` per root per process. It owns the root's coordination
(:mod:`._coord`), scans (:mod:`._scanner`) and evictions (:mod:`._evictor`), the
background thread, and the leadership. ``FileCache`` talks to it; users see it through
its public face, :class:`~vcti.filecache.CacheManager`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ._coord import Coordinator
from ._entry import CacheEntry, CacheSnapshot, EvictionResult, VerifyReport
from ._evictor import Evictor
from ._meta import Meta
from ._observers import ObserverGroup, background, callback_error
from ._peers import PeerRequests
from ._scanner import Scanner, make_entry
from ._wake import Wake
from .exceptions import LockTimeoutError, MetadataError
from .storage.base import (
    AdoptingStorage,
    BulkMetadataStorage,
    CacheStorage,
    ChangeWatch,
    FreeSpaceStorage,
    JournaledStorage,
    LeasedStorage,
    Lock,
    SharedStorage,
)

if TYPE_CHECKING:
    from ._config import CacheManagerConfig
    from ._manager import CacheManager

log = logging.getLogger("vcti.filecache")

#: Seconds between two looks of the leader at the journal, for publishes in other
#: processes that call for a cycle before the interval is up (where the backend cannot
#: wake it when the journal is written).
_WATCH_INTERVAL = 0.25
#: Seconds the leader lets changes gather after its watch wakes it, before it reads them.
_WATCH_COALESCE = 0.1

#: A publish that leaves the root more than this fraction of ``evict_above`` over the
#: limit waits for the eviction it calls for before it returns (back-pressure).
PRESSURE_MARGIN = 0.05
#: Seconds such a publish waits at most; it also stops waiting once two cycles have ended
#: without bringing the total under the limit (what eviction could do, it did: the rest
#: is open).
PRESSURE_WAIT = 5.0
#: Seconds between two looks at the total while a publish waits.
_PRESSURE_POLL = 0.02
#: Seconds between two wake-ups of its own manager's thread by a publish that waits in a
#: process that does not lead (its cycle takes the lead if the leader has gone).
_KNOCK = 0.5
#: Seconds ``close()`` waits for the manager's thread to end its last cycle.
CLOSE_WAIT = 5.0


@dataclass(eq=False)
class Attachment:
    """One user of the root in this process: a FileCache, or a 1.0-style ``acquire``."""

    config: CacheManagerConfig
    group: ObserverGroup


class _SoleLeader:
    """The leadership of a backend that serves one process: always held."""

    def release(self) -> None:
        pass


class Runtime:
    """Everything this process does for one storage root."""

    _registry: ClassVar[weakref.WeakValueDictionary[str, Runtime]] = weakref.WeakValueDictionary()
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, storage: CacheStorage) -> None:
        from ._manager import CacheManager  # noqa: PLC0415 - the public face imports us

        self.storage = storage
        self._shared = storage if isinstance(storage, SharedStorage) else None
        self._leased = isinstance(storage, LeasedStorage)
        #: Locks are leases (S3): pins can lapse, and a pin says where its files are.
        self.leased = self._leased
        self._adopting = storage if isinstance(storage, AdoptingStorage) else None
        self._journal = storage if isinstance(storage, JournaledStorage) else None
        self._disk = storage if isinstance(storage, FreeSpaceStorage) else None
        self._batch = storage if isinstance(storage, BulkMetadataStorage) else None
        self.coord = Coordinator(storage)
        self.scanner = Scanner(storage, self.coord, lambda: self._leader is not None)
        self.evictor = Evictor(storage, self.coord)
        self._peers = PeerRequests(storage)  # other processes' lookups, for the leader's observers
        self.manager: CacheManager = CacheManager._of(self)
        self._setup_process()
        self._opened = False
        self._cycles = 0
        self._background_scans = 0
        self._attached: list[Attachment] = []
        self._acquired: list[Attachment] = []

    def _setup_process(self) -> None:
        """The state that belongs to one process (set again in a forked child)."""
        self._life_lock = threading.RLock()
        self._lead_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = Wake()
        self._leader: Lock | None = None
        self._watch: ChangeWatch | None = None  # the leader's watch on the journal
        self._watch_failed = False
        self._estimate: int | None = None  # the total after the last cycle, plus publishes
        self._ahead = 0  # bytes of fills let through here and not yet published (or failed)
        self._left = 0  # the total the last cycle led here left the root at
        self._orphan: threading.Thread | None = None  # a thread close() stopped waiting for
        self._ended: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self._cycled = threading.Condition()  # notified at the end of each leader's cycle
        self._cycles_led = 0
        self._waiting = 0  # bytes of the publishes waiting for room (back-pressure)
        self._watched: object = None  # where the watch read the journal up to
        self._final: tuple[ObserverGroup, CacheManagerConfig] | None = None

    def __repr__(self) -> str:
        return f"<Runtime {self.storage.root!r}>"

    @classmethod
    def for_storage(cls, storage: CacheStorage) -> Runtime:
        """Return this process's runtime for the root of ``storage``, creating it once."""
        with cls._registry_lock:
            runtime = cls._registry.get(storage.root)
            if runtime is None:
                runtime = cls(storage)
                cls._registry[storage.root] = runtime
            return runtime

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def cycles(self) -> int:
        """Cycles completed in this process."""
        return self._cycles

    @property
    def is_leader(self) -> bool:
        """True while this process scans and evicts the root."""
        return self._leader is not None

    def attach(self, attachment: Attachment, *, acquired: bool = False) -> None:
        """Register a user of the root; the first one opens it and starts the thread.

        Raises:
            ValueError: the config asks for something the backend cannot do.
            OSError: the root could not be opened (nothing is registered then).
        """
        _check_supported(self.storage, attachment.config)
        with self._life_lock:
            if not self._attached:
                self._opened = False  # the first user opens (and sweeps) the root again
            self.ensure_open(attachment.group)
            self._attached.append(attachment)
            if acquired:
                self._acquired.append(attachment)
            if self._thread is None:
                self._start()

    def detach(self, attachment: Attachment | None = None) -> bool:
        """Unregister a user (the last one ``acquire``\\ d if None); the last stops the thread.

        Returns:
            False if there was no such user.
        """
        with self._life_lock:
            if attachment is None:
                if not self._acquired:
                    return False
                attachment = self._acquired.pop()
            elif attachment in self._acquired:
                self._acquired.remove(attachment)
            if attachment not in self._attached:
                return False
            group, config = self._context()
            self._attached.remove(attachment)
            if self._attached:
                return True
            self._final = (group, config)  # the thread runs the last cycle with these
            self._stop.set()
            self._wake.set()
            thread, self._thread = self._thread, None
            _running.discard(self)
        if thread is None:
            self._final_cycle(group, config)
        elif thread is not threading.current_thread():
            thread.join(CLOSE_WAIT)
            with self._life_lock:
                stuck = thread.is_alive() and thread not in self._ended
                if stuck:
                    self._orphan = thread
            if stuck:
                # Its last cycle is stuck (a backend that does not answer): it resigns and
                # ends the measuring process itself when it gets out; the next open here
                # starts a thread of its own.
                group.error(
                    TimeoutError(
                        f"the manager's last cycle did not end within {CLOSE_WAIT:g} s; "
                        "closed without waiting for it"
                    ),
                    "cycle",
                )
                return True
        self._end_here(group)
        return True

    def _end_here(self, group: ObserverGroup) -> None:
        """Give up the leadership and end the measuring process (the last user is gone)."""
        self._resign(group)
        if self._batch is not None:
            self._batch.close()

    def ensure_open(self, group: ObserverGroup) -> None:
        """Open the storage once per process: layout, 1.0 adoption, a first sweep."""
        with self._life_lock:
            if self._opened:
                return
            self.storage.open()
            self._opened = True
        if self._adopting is not None:
            try:
                report = self._adopting.adopt_v1()
            except OSError as exc:
                group.error(exc, "adopt")
            else:
                if report:
                    log.warning(
                        "adopted %d models of a vcti-file-cache 1.0 root at %s (%d left alone)",
                        len(report.models),
                        self.storage.root,
                        len(report.problems),
                    )
                    group.emit("on_adopt", report)
        self._sweep(group)

    def _start(self) -> None:
        self._stop = threading.Event()
        self._wake = Wake()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._stop,),
            name=f"vcti-filecache-manager {self.storage.root}",
            daemon=True,
        )
        self._thread.start()
        _running.add(self)

    def flush(self) -> None:
        """Write the accesses recorded in memory now."""
        with self._life_lock:
            group = self._context()[0] if self._attached else ObserverGroup(())
        self.scanner.flush(group)

    def _context(self) -> tuple[ObserverGroup, CacheManagerConfig]:
        """The observers and config of the background cycle: those of the first user."""
        first = self._attached[0]
        return first.group, first.config

    def _run(self, stop: threading.Event) -> None:
        with self._life_lock:
            if not self._attached:
                return
            group, config = self._context()
        with background():
            group.emit("on_manager_start", self.storage.root)
            try:
                while not stop.is_set():
                    self._wake.clear()
                    self.cycle("background")
                    with self._life_lock:
                        if not self._attached:
                            break
                        _, config = self._context()
                    self._wait(group, config)
                if self._final is not None:
                    self._final_cycle(*self._final)
            except Exception as exc:  # the last cycle's failure is reported like any other
                group.error(exc, "cycle")
            finally:
                self._unwatch()
                group.emit("on_manager_stop", self.storage.root)
                with self._life_lock:
                    me = threading.current_thread()
                    orphaned = self._orphan is me and not self._attached
                    if self._orphan is me:
                        self._orphan = None
                    self._ended.add(me)
                if orphaned:
                    self._end_here(group)  # close() stopped waiting for this thread

    def _wait(self, group: ObserverGroup, config: CacheManagerConfig) -> None:
        """Wait for the next cycle: ``interval`` seconds, or less if it is needed sooner.

        This process's publishes wake the thread directly (:meth:`note_publish`). With a
        journal, the leader also watches it for publishes by other processes that take
        the total over the limit, or the free space under ``min_free``: it sleeps until
        the journal is written where the backend can say so (inotify), and otherwise
        reads it a few times a second.
        """
        deadline = time.monotonic() + config.interval
        watching = self._journal is not None and config.prompt_eviction and self._leader is not None
        if watching:
            watch = self._watch_journal(group)
            if watch is not None:
                watch.clear()  # then one read: what was written since the cycle's read
                if self._crossed(config):
                    return
        else:
            watch = None
            self._unwatch()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if watch is not None:
                woke = self._wake.wait(remaining, watch)
                if woke is None:
                    # A burst of changes (an eviction, many fills) is read in one go, at
                    # most a few times a second, not once per line written.
                    rest = max(0.0, deadline - time.monotonic())
                    woke = self._wake.wait(min(_WATCH_COALESCE, rest))
                    watch.clear()  # before reading: a write after it wakes us again
            else:
                woke = self._wake.wait(min(remaining, _WATCH_INTERVAL) if watching else remaining)
            if woke:
                return
            if watching and self._leader is not None and self._crossed(config):
                return

    def _watch_journal(self, group: ObserverGroup) -> ChangeWatch | None:
        """The leader's watch on the journal, set up once (None: read it periodically)."""
        if self._watch is None and not self._watch_failed and self._journal is not None:
            try:
                self._watch = self._journal.watch_changes()
            except OSError as exc:
                self._watch_failed = True  # reported once; the journal is read periodically
                group.error(exc, "leader")
        return self._watch

    def _unwatch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def _crossed(self, config: CacheManagerConfig) -> bool:
        """True if publishes recorded since the last look call for a cycle now."""
        with self._cycled:
            return self._catch_up() and self._over(config)

    def _catch_up(self) -> bool:
        """Count the other processes' publishes recorded since the last look (with
        ``_cycled`` held): True if there were any. The leader's thread looks between its
        cycles, and a publish of its process looks before it is let through, so that a
        long cycle (a measuring process starting) does not leave the estimate behind."""
        assert self._journal is not None
        changes = self._journal.read_changes(self._watched)
        self._watched = changes.cursor
        elsewhere = changes.published - changes.published_here  # this process's: counted
        if elsewhere <= 0 or self._estimate is None:
            return False
        self._estimate += elsewhere
        return True

    def _over(self, config: CacheManagerConfig) -> bool:
        """True if the estimated total is above the limit, or the free space low."""
        if self._estimate is not None and self._estimate + self._ahead > config.evict_above:
            return True
        if config.min_free is not None and self._disk is not None:
            try:
                free, total = self._disk.disk_usage()
            except OSError:
                return False
            return free < config.min_free_bytes(total)
        return False

    def _final_cycle(
        self, group: ObserverGroup | None = None, config: CacheManagerConfig | None = None
    ) -> None:
        """The last cycle at shutdown: write accesses; the leader scans and evicts once more."""
        if group is None or config is None:
            return
        with background():
            self.scanner.flush(group)
            if self._leader is not None or self._left_over(config):
                self._cycle_body(group, config, "background")
            self.evictor.save(group)

    def _left_over(self, config: CacheManagerConfig) -> bool:
        """True if the root is over its limit as this process leaves it (back-pressure's
        total): the leader may have left before this process's last publishes, so this
        one leads for a last cycle if nobody else does."""
        if not config.prompt_eviction or self._journal is None or self._shared is None:
            return False
        try:
            with self._cycled:
                probe = self._pressure()
        except OSError:
            return False
        return probe is not None and probe[0] > config.evict_above

    def after_fork(self) -> None:
        """In a forked child: a fresh runtime state, and a thread of its own if in use."""
        self._unwatch()  # the parent's descriptor, copied into this process
        self.coord.after_fork()
        self.scanner.after_fork()
        self.evictor.after_fork()
        self._setup_process()
        if self._attached:
            self._start()

    # -- cycles -------------------------------------------------------------------------

    def cycle(self, trigger: str, *, full: bool = False) -> CacheSnapshot | None:
        """Write accesses, then (as leader) sweep, scan and evict; None if another leads."""
        with self._life_lock:
            if not self._attached:
                return None
            group, config = self._context()
        # With a journal, the leader's scan writes the accesses of the models it measures
        # with their sizes (one metadata update each); the others are written after it.
        late = self._journal is not None
        try:
            if not late:
                self.scanner.flush(group)
            return self._cycle_body(group, config, trigger, full=full)
        except BaseException as exc:
            error = callback_error(exc)
            if error is None:
                raise
            group.error(error, "cycle")  # the thread survives anything a cycle raises
            return None
        finally:
            if late:  # what was opened during the scan; the leader's, away from this process
                self.scanner.flush(group, away=self._leader is not None)
            self._cycles += 1

    def _cycle_body(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        trigger: str,
        *,
        full: bool = False,
    ) -> CacheSnapshot | None:
        if not self._lead(group):
            return None
        try:
            return self._led_cycle(group, config, trigger, full=full)
        finally:
            with self._cycled:  # publishes held back wait for this
                self._cycles_led += 1
                self._cycled.notify_all()

    def _led_cycle(
        self, group: ObserverGroup, config: CacheManagerConfig, trigger: str, *, full: bool
    ) -> CacheSnapshot:
        self._peers.deliver(group)  # before the sweep, which may rotate the journal
        self._sweep(group)
        every = config.full_scan_every
        # A process's first cycle trusts the sizes recorded under stamps that still hold,
        # like any first scan (a restart is no reason to walk every file); the full walk
        # comes every ``every`` cycles after it.
        count = self._background_scans
        full = full or (every is not None and count > 0 and count % every == 0)
        self._background_scans += 1
        snapshot = self.scanner.scan(group, config, full=full, write_accesses=True)
        self.evictor.sync(config.policy, snapshot.entries, group)
        with self._cycled:
            waiting = self._waiting
        # Publishes waiting: fills come faster than cycles. Those publishes are counted
        # already (a scan counts the fills being staged); evict the margin's worth more,
        # so that the fills that follow them do not each wait for a cycle of their own.
        target = max(0, config.target - int(config.evict_above * PRESSURE_MARGIN))
        _, snapshot = self.evictor.evict(
            group, config, config.policy, trigger, snapshot, target=target if waiting else None
        )
        self.evictor.save(group)
        estimate = snapshot.total_size
        if self._journal is not None:
            # Publishes since the scan read the journal are not in the snapshot: counted
            # now, and from here on by the watch.
            since = self._journal.read_changes(self.scanner.cursor)
            estimate += since.published
        with self._cycled:
            if self._journal is not None:
                self._watched = since.cursor
            self._estimate = estimate
            self._left = snapshot.total_size
        if self._journal is not None:
            try:  # for the publishes of the other processes (back-pressure)
                self._journal.record_total(snapshot.total_size, self.scanner.cursor)
            except OSError as exc:
                group.error(exc, "cycle")
        group.emit("on_cycle_complete", snapshot.total_size, snapshot.entry_count)
        return snapshot

    def make_room(self, config: CacheManagerConfig, size: int | None) -> int:
        """Before a fill of ``size`` bytes publishes: wait until the root has room for it.

        A publish into a root that is over ``evict_above`` and that it would leave more than
        :data:`PRESSURE_MARGIN` over first waits, up to :data:`PRESSURE_WAIT` seconds (or
        two cycles that leave the root over its limit), for the eviction (the leader's
        cycle, in this process or another), so that however many threads and processes fill,
        the total cannot run away from the limit while the manager's thread waits for the
        interpreter lock (back-pressure). A leader's cycle that finds publishes of its
        process waiting evicts a margin below its target (see :meth:`_led_cycle`). In the
        leader's process the check and the counting of the fill are one step, so threads
        that publish at once cannot all pass it; other processes go by the total the leader
        recorded and what was published since, and wake their own manager's thread now and
        then, which takes the lead if the leader has gone.

        Returns the bytes counted ahead for this fill, which :meth:`note_publish` (or
        :meth:`unreserve`, if the publish fails) takes back.
        """
        if not config.prompt_eviction or size is None:
            return 0
        if self._leader is None and (self._journal is None or self._shared is None):
            return 0  # no total to go by
        if threading.current_thread() is self._thread:
            return 0
        allowed = config.evict_above + int(config.evict_above * PRESSURE_MARGIN)
        deadline = time.monotonic() + PRESSURE_WAIT
        marker: object = None
        turns = 0
        knock = 0.0
        while True:
            with self._cycled:
                probe = self._pressure()
                # A root within its limit has no eviction to wait for: this publish calls
                # for it (prompt eviction), and leaves the root at most its size over.
                if probe is None or probe[0] <= config.evict_above or probe[0] + size <= allowed:
                    self._ahead += size
                    return size
                if marker is None:
                    marker = probe[1]
                elif probe[1] != marker:  # a cycle ended and the root is still full
                    if probe[2] > config.evict_above:
                        turns += 1  # it could not evict down to the limit: the rest is open
                    marker = probe[1]
                if turns >= 2 or time.monotonic() >= deadline:
                    self._ahead += size
                    return size
                if self._leader is not None or time.monotonic() >= knock:
                    # The leader's cycle makes room; another process's does, unless that
                    # process has gone: this one's cycle then takes the lead.
                    knock = time.monotonic() + _KNOCK
                    self._wake.set()
                self._waiting += size  # the leader's cycle makes room for it
                try:
                    self._cycled.wait(_PRESSURE_POLL)
                finally:
                    self._waiting -= size

    def unreserve(self, ahead: int) -> None:
        """Take back what :meth:`make_room` counted ahead for a fill that did not publish."""
        if ahead:
            with self._cycled:
                self._ahead -= ahead

    def note_publish(self, config: CacheManagerConfig, size: int | None, ahead: int = 0) -> None:
        """A fill of ``size`` bytes was published here: run a cycle now if it is needed.

        What :meth:`make_room` counted ahead for it becomes part of the estimate (the
        watch on the journal counts the other processes' publishes only).
        """
        with self._cycled:
            self._ahead -= ahead
            if size is not None and self._leader is not None and self._estimate is not None:
                self._estimate += size
        if (
            config.prompt_eviction
            and size is not None
            and self._leader is not None
            and self._over(config)
        ):
            self._wake.set()

    def _pressure(self) -> tuple[int, object, int] | None:
        """The root's estimated total, what changes when a cycle ends, and the total the last
        cycle left (None: unknown)."""
        if self._leader is not None and self._estimate is not None:
            if self._journal is not None:
                self._catch_up()
            return self._estimate + self._ahead, self._cycles_led, self._left
        if self._journal is None:
            return None
        # A process that does not lead, or has just taken the lead and not yet cycled:
        # the total the last leader recorded.
        recorded = self._journal.recorded_total()
        if recorded is None:
            return None
        total, cursor = recorded
        changes = self._journal.read_changes(cursor)
        if changes.keys is None and changes.error is not None:
            return None  # the journal was lost or damaged since: no telling
        return total + changes.published, recorded, total  # (rotated: published since)

    def _sweep(self, group: ObserverGroup) -> None:
        if self._shared is None:
            return
        try:
            self._shared.sweep()
        except OSError as exc:
            group.error(exc, "sweep")

    def _lead(self, group: ObserverGroup) -> bool:
        # One attempt at a time: two threads of this process trying at once would each
        # open the lock, and the second would fail against the first.
        with self._lead_lock:
            lost: Lock | None = None
            if self._leader is not None:
                if not (self._leased and getattr(self._leader, "lost", False)):
                    return True
                lost, self._leader = self._leader, None  # a lease that lapsed: announce once
                with self._cycled:
                    self._estimate = None
            if lost is not None:
                group.emit("on_leader_change", False)
                lost.release()
            if self._shared is None:
                self._leader = _SoleLeader()
            else:
                try:
                    self._leader = self._shared.try_lead()
                except OSError as exc:
                    group.error(exc, "leader")
                    return False
                if self._leader is None:
                    return False
        self._peers.restart()
        group.emit("on_leader_change", True)
        return True

    def _resign(self, group: ObserverGroup) -> None:
        with self._lead_lock:
            leader, self._leader = self._leader, None
        with self._cycled:
            self._estimate = None  # another process's cycles change the total from here on
        if leader is not None:
            group.emit("on_leader_change", False)  # before the release: never two leaders
            leader.release()

    # -- what FileCache asks ------------------------------------------------------------

    def scan(
        self, group: ObserverGroup, config: CacheManagerConfig, *, repair: bool = True
    ) -> CacheSnapshot:
        """One scan of the root, in this thread."""
        return self.scanner.scan(group, config, repair=repair)

    def evict(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        policy: object,
        *,
        limit: int | None = None,
        target: int | None = None,
    ) -> list[EvictionResult]:
        """A manual eviction run, in this thread."""
        snapshot = self.scanner.scan(group, config)
        results, _ = self.evictor.evict(
            group, config, policy, "manual", snapshot, limit=limit, target=target
        )
        if self._leader is not None:
            self.evictor.save(group)
        return results

    def verify(
        self, group: ObserverGroup, config: CacheManagerConfig, repair: bool
    ) -> VerifyReport:
        """Check (and with ``repair`` fix) the root."""
        return self.scanner.verify(group, config, repair)

    def remove(self, key: str, timeout: float) -> bool:
        """Remove model ``key``, waiting up to ``timeout`` for it to be closed everywhere.

        Returns:
            True if it was removed, False if it did not exist.

        Raises:
            LockTimeoutError: it stayed open (or being filled) for ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            if not self.coord.wait_unpinned(key, deadline):
                raise LockTimeoutError(f"model {key!r} stayed open for more than {timeout}s")
            gone = False

            def remove() -> bool:
                nonlocal gone
                try:
                    return self.storage.remove(key)
                except FileNotFoundError:
                    gone = True
                    return False

            if self.coord.try_remove(key, remove):
                self.scanner.forget({key})
                return True
            if gone:
                return False
            if time.monotonic() >= deadline:
                raise LockTimeoutError(f"model {key!r} stayed open for more than {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def clear(self, group: ObserverGroup) -> int:
        """Remove every model not open; return how many were removed."""
        removed: set[str] = set()
        for key in list(self.storage.iter_models(onerror=lambda e: group.error(e, "scan"))):

            def remove(key: str = key) -> bool:
                try:
                    return self.storage.remove(key)
                except FileNotFoundError:
                    return False

            try:
                if self.coord.try_remove(key, remove):
                    removed.add(key)
            except OSError as exc:
                group.error(exc, "evict")
        self.scanner.forget(removed)
        return len(removed)

    def get_entry(self, key: str, clock: Callable[[], float]) -> CacheEntry | None:
        """The entry of ``key`` from its metadata, or None; counts no access."""
        if not self.storage.is_model(key):
            return None
        try:
            meta = Meta.decode(self.storage.read_record(key))
        except FileNotFoundError:
            if not self.storage.is_model(key):
                return None
            now = clock()
            meta = Meta(0, now, now)
        except MetadataError:
            now = clock()
            meta = Meta(0, now, now)
        size = meta.size
        if size is None or meta.stamp is None:
            try:
                size = self.storage.model_size(key)
            except FileNotFoundError:
                return None
        count, last = self.coord.pending().get(key, (0, meta.last_access))
        return make_entry(key, size, meta.add(count, last))


def _check_supported(storage: CacheStorage, config: CacheManagerConfig) -> None:
    if config.min_free is not None and not isinstance(storage, FreeSpaceStorage):
        raise ValueError(
            f"min_free needs a backend that can tell its free space; {type(storage).__name__} "
            "cannot (use evict_above alone)"
        )


_running: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Another thread of the parent may have held the registry's lock at the fork.
    Runtime._registry_lock = threading.Lock()
    for runtime in list(Runtime._registry.values()):
        runtime.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _flush_at_exit() -> None:
    """Write recorded accesses of caches that were never closed (best effort)."""
    for runtime in list(_running):
        try:
            runtime.flush()
        except Exception:
            log.exception("could not write the recorded accesses of %s", runtime.storage.root)


# Before the interpreter joins its threads at exit: at a normal exit, and also at the end
# of a child that multiprocessing forked (it leaves with os._exit, which skips atexit).
_before_thread_shutdown = getattr(threading, "_register_atexit", None)
if _before_thread_shutdown is not None:
    _before_thread_shutdown(_flush_at_exit)
else:  # pragma: no cover - an interpreter without the hook: a normal exit only
    atexit.register(_flush_at_exit)
