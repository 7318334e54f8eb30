"""CacheManager: one per storage root per process; pins, fills, scans and eviction."""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ._entry import CacheEntry, CacheSnapshot, EvictionResult, VerifyReport
from ._keys import ancestors, is_nested
from ._meta import Meta
from ._observers import ObserverGroup
from .exceptions import KeyValidationError, LockTimeoutError, MetadataError, PinLostError

if TYPE_CHECKING:
    from ._cache import FileCache
    from ._config import CacheManagerConfig
    from .policies.base import EvictionPolicy
    from .storage.base import CacheStorage, Lock
from .storage.base import FreeSpaceStorage, LeasedStorage, SharedStorage, StampedStorage

#: What a scan remembers of a model: data stamp, size, metadata stamp, metadata.
_Known = tuple[Hashable, int, Hashable, Meta]


class _SoleLeader:
    """The leadership of a backend that serves one process: always held."""

    def release(self) -> None:
        pass


@dataclass
class _Lease:
    """What ``acquire`` hands to a ``model()`` context: a pin (hit) or a fill (miss)."""

    key: str
    hit: bool
    lock: Lock
    staged: str | None = None


class CacheManager:
    """Coordinates every FileCache on one storage root in this process.

    It counts the models open in each thread (pins), makes concurrent openers of a
    missing model wait for one fill, keeps access counts in memory until it writes them
    behind, and runs the background cycle: write accesses, scan, evict while over the
    limit. Get it from ``FileCache.manager``; there is one per root per process.
    """

    _registry: ClassVar[weakref.WeakValueDictionary[str, CacheManager]] = (
        weakref.WeakValueDictionary()
    )
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, storage: CacheStorage) -> None:
        self.storage = storage
        self._shared = storage if isinstance(storage, SharedStorage) else None
        self._stamps = storage if isinstance(storage, StampedStorage) else None
        self._leased = isinstance(storage, LeasedStorage)
        self._disk = storage if isinstance(storage, FreeSpaceStorage) else None
        self._cond = threading.Condition(threading.Lock())
        self._pins: dict[str, int] = {}
        self._filling: set[str] = set()
        self._evicting: set[str] = set()
        self._pending: dict[str, tuple[int, float]] = {}
        self._io_lock = threading.Lock()  # scans and write-behind see one consistent state
        self._evict_lock = threading.Lock()  # one eviction run at a time
        self._life_lock = threading.Lock()
        self._caches: list[FileCache] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._leader: Lock | None = None
        self._lead_lock = threading.Lock()
        self._cycles = 0
        self._known: dict[str, _Known] = {}
        self._generation: Hashable = None
        self._entries: tuple[CacheEntry, ...] = ()
        self._background_scans = 0

    def __repr__(self) -> str:
        return f"<CacheManager {self.storage.root!r} running={self.is_running}>"

    @classmethod
    def for_storage(cls, storage: CacheStorage) -> CacheManager:
        """Return this process's manager for the root of ``storage``, creating it once."""
        with cls._registry_lock:
            manager = cls._registry.get(storage.root)
            if manager is None:
                manager = cls(storage)
                cls._registry[storage.root] = manager
            return manager

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def cycles(self) -> int:
        """How many cycles (background or ``run_once``) have completed in this process."""
        return self._cycles

    @property
    def is_leader(self) -> bool:
        """True while this process is the one that scans and evicts the root."""
        return self._leader is not None

    def attach(self, cache: FileCache) -> None:
        """Register an opened FileCache; the first one starts the background thread."""
        with self._life_lock:
            first = not self._caches
            if first:
                self.storage.open()
            self._caches.append(cache)
            if first:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name=f"vcti-filecache-manager {self.storage.root}",
                    daemon=True,
                )
                self._thread.start()
                _running.add(self)

    def detach(self, cache: FileCache) -> None:
        """Unregister a closed FileCache; the last one stops and joins the thread."""
        with self._life_lock:
            if cache not in self._caches:
                return
            group, _ = self._context()
            self._caches.remove(cache)
            if self._caches:
                return
            self._stop.set()
            thread, self._thread = self._thread, None
            _running.discard(self)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._flush(group)
        self._resign(group)

    def _context(self) -> tuple[ObserverGroup, CacheManagerConfig]:
        """The observers and config of the background cycle: those of the first open cache."""
        cache = self._caches[0]
        return cache._observers, cache.config

    def _run(self, stop: threading.Event) -> None:
        with self._life_lock:
            if not self._caches:
                return
            group, config = self._context()
        group.emit("on_manager_start", self.storage.root)
        try:
            while not stop.is_set():
                self._cycle(trigger="background")
                with self._life_lock:
                    if not self._caches:
                        break
                    _, config = self._context()
                stop.wait(config.interval)
        finally:
            group.emit("on_manager_stop", self.storage.root)

    def run_once(self) -> CacheSnapshot | None:
        """Run one cycle now, in this thread: write accesses, scan, evict if over the limit.

        Returns:
            The snapshot after eviction, or None when another process leads the root
            (then this one only writes its accesses).
        """
        return self._cycle(trigger="background")

    def _cycle(self, trigger: str) -> CacheSnapshot | None:
        with self._life_lock:
            if not self._caches:
                return None
            group, config = self._context()
        try:
            self._flush(group)
            if not self._lead(group):
                return None
            self._sweep(group)
            full = self._background_scans % config.full_scan_every == 0
            self._background_scans += 1
            snapshot = self.scan(group, config, full=full)
            if not snapshot.is_over_limit:
                return snapshot
            result = self.evict(group, config, config.policy, trigger, snapshot=snapshot)
            return snapshot.without(e.key for e in result.entries)
        except Exception as exc:  # the thread must survive anything a cycle raises
            group.error(exc, "cycle")
            return None
        finally:
            self._cycles += 1

    def _sweep(self, group: ObserverGroup) -> None:
        if self._shared is None:
            return
        try:
            self._shared.sweep()
        except OSError as exc:
            group.error(exc, "sweep")

    def _lead(self, group: ObserverGroup) -> bool:
        # One attempt at a time: two threads of this process trying at once would each
        # open the lock file, and the second would fail against the first.
        with self._lead_lock:
            lost: Lock | None = None
            if self._leader is not None:
                if not (self._leased and getattr(self._leader, "lost", False)):
                    return True
                lost, self._leader = self._leader, None  # a lease that lapsed: announce once
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
        group.emit("on_leader_change", True)
        return True

    def _resign(self, group: ObserverGroup) -> None:
        with self._lead_lock:
            leader, self._leader = self._leader, None
        if leader is not None:
            group.emit("on_leader_change", False)  # before the release: never two leaders
            leader.release()

    # -- pins and fills -----------------------------------------------------------------

    def acquire(self, key: str, clock: Callable[[], float], timeout: float) -> _Lease:
        """Pin the published model ``key``, or become the one that fills it.

        Raises:
            KeyValidationError: ``key`` is nested inside (or around) another model.
            LockTimeoutError: another fill of ``key`` took longer than ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                self._wait_idle(key, deadline)
                self._pins[key] = self._pins.get(key, 0) + 1
            try:
                pin = self.storage.pin(key)
            except BaseException:
                self._unpin(key)
                raise
            if pin is not None:
                self._record(key, clock())
                return _Lease(key, hit=True, lock=pin)
            with self._cond:
                self._unpin_locked(key)
                if key in self._filling or key in self._evicting:
                    continue
                self._check_filling_conflict(key)
                self._filling.add(key)
            try:
                return self._begin_fill(key, clock, deadline)
            except BaseException:
                self._end_fill(key)
                raise

    def _begin_fill(self, key: str, clock: Callable[[], float], deadline: float) -> _Lease:
        fill_lock = self.storage.lock_fill(key, max(0.0, deadline - time.monotonic()))
        try:
            # Another process may have published the model while we waited for its lock.
            pin = self.storage.pin(key)
            if pin is not None:
                fill_lock.release()
                with self._cond:
                    self._pins[key] = self._pins.get(key, 0) + 1
                    self._filling.discard(key)
                    self._cond.notify_all()
                self._record(key, clock())
                return _Lease(key, hit=True, lock=pin)
            self._check_storage_conflict(key)
            return _Lease(key, hit=False, lock=fill_lock, staged=self.storage.stage(key))
        except BaseException:
            fill_lock.release()
            raise

    def release(self, lease: _Lease) -> None:
        """Unpin a hit.

        Raises:
            PinLostError: the backend's pin lapsed while the model was open.
        """
        lost = self._leased and bool(getattr(lease.lock, "lost", False))
        lease.lock.release()
        self._unpin(lease.key)
        if lost:
            raise PinLostError(
                f"the pin of {lease.key!r} lapsed while the model was open: it may have been "
                "evicted meanwhile, and what was read from it may be incomplete"
            )

    def finish_fill(self, lease: _Lease, meta: Meta | None) -> None:
        """Publish a fill (``meta`` given) or discard it (``meta`` None), then wake waiters."""
        assert lease.staged is not None
        try:
            if meta is None:
                self.storage.discard(lease.staged)
            else:
                try:
                    self.storage.publish(lease.key, lease.staged, meta.encode())
                except BaseException:
                    self.storage.discard(lease.staged)
                    raise
        finally:
            lease.lock.release()
            self._end_fill(lease.key)

    def _wait_idle(self, key: str, deadline: float) -> None:
        while key in self._filling or key in self._evicting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(f"another thread has been filling {key!r} for too long")
            self._cond.wait(remaining)

    def _unpin(self, key: str) -> None:
        with self._cond:
            self._unpin_locked(key)

    def _unpin_locked(self, key: str) -> None:
        count = self._pins[key] - 1
        if count:
            self._pins[key] = count
        else:
            del self._pins[key]

    def _end_fill(self, key: str) -> None:
        with self._cond:
            self._filling.discard(key)
            self._cond.notify_all()

    def _check_filling_conflict(self, key: str) -> None:
        for other in self._filling:
            if is_nested(key, other) or is_nested(other, key):
                raise KeyValidationError(
                    f"model key {key!r} overlaps {other!r}, which is being filled"
                )

    def _check_storage_conflict(self, key: str) -> None:
        for prefix in ancestors(key):
            if self.storage.is_model(prefix):
                raise KeyValidationError(f"model key {key!r} is inside the model {prefix!r}")
        if self.storage.exists(key):
            inner = next(iter(self.storage.iter_models(prefix=key)), None)
            if inner is not None:
                raise KeyValidationError(f"model key {key!r} contains the model {inner!r}")

    def pinned(self) -> frozenset[str]:
        """Keys of the models open in this process now."""
        with self._cond:
            return frozenset(self._pins)

    # -- accesses (write-behind) --------------------------------------------------------

    def _record(self, key: str, now: float) -> None:
        with self._cond:
            count, last = self._pending.get(key, (0, now))
            self._pending[key] = (count + 1, max(last, now))

    def _flush(self, group: ObserverGroup) -> None:
        with self._io_lock:
            with self._cond:
                pending, self._pending = self._pending, {}
            for key, (count, last) in pending.items():
                try:
                    self.storage.update_meta(key, _adder(count, last, group, key))
                except FileNotFoundError:
                    continue  # evicted since: its accesses go with it
                except Exception as exc:  # a failing backend must not lose the counts
                    group.error(exc, "metadata")
                    with self._cond:  # keep them for the next cycle
                        old_count, old_last = self._pending.get(key, (0, last))
                        self._pending[key] = (old_count + count, max(old_last, last))

    def flush(self) -> None:
        """Write the accesses recorded in memory to storage now."""
        with self._life_lock:
            group = self._context()[0] if self._caches else ObserverGroup(())
        self._flush(group)

    # -- scans --------------------------------------------------------------------------

    def scan(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        *,
        repair: bool = True,
        full: bool = False,
    ) -> CacheSnapshot:
        """Walk the root once and return what is there.

        Args:
            group: the observers to report to.
            config: the limit and clock of the snapshot.
            repair: report unreadable metadata and rebuild it on storage; without it,
                defaults are used in the snapshot only, and nothing is remembered.
            full: measure every model. Otherwise, where the backend offers stamps, a
                model whose stamps did not change since the last scan keeps its last size
                and metadata (accesses of this process are added in any case).
        """
        group.emit("on_scan_start")
        started = time.perf_counter()
        remember = repair
        with self._io_lock:
            with self._cond:
                pending = dict(self._pending)
            generation = self._generation_now()
            if (
                remember
                and not full
                and not pending
                and generation is not None
                and generation == self._generation
            ):
                # No process changed the cache through the library since the last scan,
                # and this one has no accesses to add: the last scan still holds.
                entries = self._entries
            else:
                entries = self._walk(group, config, pending, repair, full=full)
                if remember:
                    self._generation = generation
                    self._entries = entries
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
            taken_at=config.clock(),
            staging_size=staging,
            pinned=self.pinned(),
            disk=disk,
        )
        group.emit("on_scan_end", snapshot, time.perf_counter() - started)
        return snapshot

    def _walk(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        pending: dict[str, tuple[int, float]],
        repair: bool,
        *,
        full: bool,
    ) -> tuple[CacheEntry, ...]:
        """Every model with its size and metadata, measuring only those whose stamps
        changed since the last scan (all of them when ``full``)."""
        known = self._known if repair and not full else {}
        seen: dict[str, _Known] = {}
        entries: list[CacheEntry] = []
        for key, data_stamp, meta_stamp in self._stamped(group):
            previous = known.get(key)
            try:
                if previous is not None and data_stamp is not None and data_stamp == previous[0]:
                    size = previous[1]
                else:
                    size = self.storage.model_size(key)
                if previous is not None and meta_stamp is not None and meta_stamp == previous[2]:
                    meta = previous[3]
                else:
                    meta = self._load_meta(key, group, config.clock, repair)
            except FileNotFoundError:
                continue  # evicted or deleted during the scan
            except OSError as exc:
                group.error(exc, "scan")
                continue
            if data_stamp is not None:
                seen[key] = (data_stamp, size, meta_stamp, meta)
            if key in pending:
                meta = meta.add(*pending[key])
            entries.append(CacheEntry(key, size, meta.access_count, meta.last_access, meta.created))
        if repair:
            self._known = seen
        return tuple(entries)

    def _generation_now(self) -> Hashable:
        """The backend's change counter (None where it has none, or on failure)."""
        if self._stamps is None:
            return None
        try:
            value: Hashable = self._stamps.generation()
        except OSError:
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
        self, key: str, group: ObserverGroup, clock: Callable[[], float], repair: bool
    ) -> Meta:
        try:
            return Meta.decode(self.storage.read_meta(key))
        except MetadataError as exc:
            problem: Exception = exc
        except FileNotFoundError:
            if not self.storage.is_model(key):
                raise
            problem = MetadataError("metadata file is missing")
        if not repair:
            now = clock()
            return Meta(0, now, now)
        group.error(MetadataError(f"model {key!r}: {problem}; rebuilt with defaults"), "metadata")
        return self._rebuild_meta(key, clock)

    def _rebuild_meta(self, key: str, clock: Callable[[], float]) -> Meta:
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

    def verify(
        self, group: ObserverGroup, config: CacheManagerConfig, repair: bool
    ) -> VerifyReport:
        """Check metadata and the backend's bookkeeping against what is stored."""
        with self._io_lock:
            problems = [] if self._shared is None else self._shared.verify(repair)
            for key in list(self.storage.iter_models()):
                try:
                    Meta.decode(self.storage.read_meta(key))
                    continue
                except MetadataError as exc:
                    problems.append(f"model {key!r}: {exc}")
                except FileNotFoundError:
                    if not self.storage.is_model(key):
                        continue
                    problems.append(f"model {key!r}: metadata file is missing")
                if repair:
                    with contextlib.suppress(FileNotFoundError):
                        self._rebuild_meta(key, config.clock)
        return VerifyReport(tuple(problems), repair, self.scan(group, config, repair=False))

    # -- eviction -----------------------------------------------------------------------

    def evict(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        policy: EvictionPolicy,
        trigger: str,
        snapshot: CacheSnapshot | None = None,
    ) -> EvictionResult:
        """Evict models in ``policy`` order until the total is at or below the target."""
        with self._evict_lock:
            if snapshot is None:
                snapshot = self.scan(group, config)
            started_at = config.clock()
            if not snapshot.is_over_limit:
                return EvictionResult((), 0, policy.name, trigger, started_at, 0.0, config.target)
            group.emit("on_evict_start", snapshot, policy.name, trigger)
            started = time.perf_counter()
            evicted: list[CacheEntry] = []
            skipped: list[str] = []
            policy_error: Exception | None = None
            try:
                ordered = _checked_order(policy, snapshot)
            except Exception as exc:
                group.error(exc, "policy")
                ordered, policy_error = [], exc
            total = snapshot.total_size
            for entry in ordered:
                if total <= config.target:
                    break
                outcome = self._evict_one(entry.key, group)
                if outcome is None:
                    total -= entry.size  # already gone
                elif outcome:
                    total -= entry.size
                    evicted.append(entry)
                else:
                    skipped.append(entry.key)
            result = EvictionResult(
                entries=tuple(evicted),
                bytes_freed=sum(e.size for e in evicted),
                policy=policy.name,
                trigger=trigger,
                started_at=started_at,
                duration=time.perf_counter() - started,
                target=config.target,
                skipped_pinned=tuple(skipped),
            )
            group.emit("on_evict_end", result)
            if policy_error is not None and trigger == "manual":
                raise policy_error  # the caller's own policy: tell the caller
            return result

    def _evict_one(self, key: str, group: ObserverGroup) -> bool | None:
        """Remove one model: True if removed, False if open somewhere, None if gone."""
        with self._cond:
            if self._pins.get(key) or key in self._filling or key in self._evicting:
                return False
            self._evicting.add(key)
        try:
            removed = self.storage.remove(key)
        except FileNotFoundError:
            return None
        except OSError as exc:
            group.error(exc, "evict")
            return False
        finally:
            with self._cond:
                self._evicting.discard(key)
                self._cond.notify_all()
        if removed:
            with self._cond:
                self._pending.pop(key, None)
            group.emit("on_evict", self.storage.path(key))
        return removed


def _checked_order(policy: EvictionPolicy, snapshot: CacheSnapshot) -> list[CacheEntry]:
    """Ask the policy for an order; keep only known entries, each once."""
    known = {e.key: e for e in snapshot.entries}
    ordered = policy.order(list(snapshot.entries))
    seen: set[str] = set()
    result: list[CacheEntry] = []
    for entry in ordered:
        key = getattr(entry, "key", None)
        if not isinstance(key, str) or key not in known:
            raise TypeError(f"policy {policy.name!r} returned an unknown entry {entry!r}")
        if key not in seen:
            seen.add(key)
            result.append(known[key])
    return result


def _adder(
    count: int, last: float, group: ObserverGroup, key: str
) -> Callable[[bytes | None], bytes]:
    def add(raw: bytes | None) -> bytes:
        meta, error = Meta.read(raw, last)
        if error is not None:
            group.error(MetadataError(f"model {key!r}: {error}; rebuilt with defaults"), "metadata")
        return meta.add(count, last).encode()

    return add


_running: weakref.WeakSet[CacheManager] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Write recorded accesses of caches that were never closed (best effort)."""
    for manager in list(_running):
        manager.flush()
