"""CacheManager: the public face of a root's manager in this process, and run_eviction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._entry import CacheEntry, CacheSnapshot, VerifyReport
from ._observers import ObserverGroup
from ._runtime import Attachment, Runtime
from ._victims import candidates, evict_until
from .observers.base import CacheObserver
from .storage.v1 import as_storage

if TYPE_CHECKING:
    from ._config import CacheManagerConfig
    from .storage.base import CacheStorage


class CacheManager:
    """The manager of one storage root in this process: its background cycle and leadership.

    There is one per root per process (``a.manager is b.manager`` for two caches on one
    root). Its daemon thread starts when the first user of the root opens it (a
    ``FileCache``, or :meth:`acquire`) and stops, after a last cycle, when the last one
    closes. Each cycle writes the accesses recorded in memory; in the one process that
    leads the root it then sweeps leftovers, scans, and evicts (models idle for longer
    than ``max_age``, then while the total is above the limit or the free space below
    ``min_free``). A process forked after a cache was opened gets a manager of its own.

    Get the root's shared one from ``FileCache.manager`` or :meth:`acquire`, or build one
    as 1.0 allowed: ``CacheManager(storage, config)`` is a handle of its own on the same
    per-root runtime, and one more counted user of it, exactly like :meth:`acquire` (the
    thread starts if it was not running; ``run_once()``, ``cycles`` and the others act on
    the root's runtime). :meth:`stop` (or leaving ``with``) ends that use; the thread
    stops, after a last cycle, when the root's last user in the process is gone. The
    background cycle runs with the config and observers of the root's first user.

    Args:
        storage: the root's backend (a backend written for 1.0 too).
        config: the limit, policy and observers this user brings.
    """

    __slots__ = ("_attachment", "_runtime")

    _runtime: Runtime
    _attachment: Attachment | None

    def __init__(self, storage: object, config: CacheManagerConfig) -> None:
        runtime, attachment = _attach(storage, config, acquired=False)
        self._runtime = runtime
        self._attachment = attachment

    @classmethod
    def _of(cls, runtime: Runtime) -> CacheManager:
        manager = object.__new__(cls)
        manager._runtime = runtime
        manager._attachment = None
        return manager

    def __repr__(self) -> str:
        return f"<CacheManager {self.storage.root!r} running={self.is_running}>"

    def stop(self) -> None:
        """End the use that building this manager began (idempotent).

        On the shared manager (``FileCache.manager``, :meth:`acquire`) it does nothing:
        ``FileCache.close()`` and :meth:`release` end those uses.
        """
        attachment, self._attachment = self._attachment, None
        if attachment is not None:
            self._runtime.detach(attachment)

    def __enter__(self) -> CacheManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- 1.0's reference-counted singleton ----------------------------------------------

    @classmethod
    def acquire(cls, storage: object, config: CacheManagerConfig) -> CacheManager:
        """Start using the root's manager with ``config`` (counted); return it.

        The first user of a root in this process opens it and starts the background
        thread; each :meth:`acquire` needs one :meth:`release`. ``storage`` may be a
        backend written for 1.0.
        """
        runtime, _ = _attach(storage, config, acquired=True)
        return runtime.manager

    @classmethod
    def release(cls, storage: object) -> None:
        """Stop using the root's manager (the last user stops its thread after a last cycle).

        Raises:
            RuntimeError: ``storage`` was not :meth:`acquire`\\ d.
        """
        root = as_storage(storage).root
        runtime = Runtime._registry.get(root)
        if runtime is None or not runtime.detach(None):
            raise RuntimeError(f"the manager of {root!r} was not acquired")

    # -- read-only looks (the command line) ---------------------------------------------

    @classmethod
    def inspect(cls, storage: CacheStorage, config: CacheManagerConfig) -> CacheSnapshot:
        """Scan a root once without opening it: no sweep, no thread, nothing written.

        A model with unreadable metadata is shown with defaults (no accesses, times now)
        and left as it is; errors go to ``config``'s observers.
        """
        runtime = Runtime.for_storage(storage)
        return runtime.scan(ObserverGroup(config.observers), config, repair=False)

    @classmethod
    def check(cls, storage: CacheStorage, config: CacheManagerConfig) -> VerifyReport:
        """``FileCache.verify()`` without opening the root: report, change nothing."""
        runtime = Runtime.for_storage(storage)
        return runtime.verify(ObserverGroup(config.observers), config, repair=False)

    # -- state --------------------------------------------------------------------------

    @property
    def storage(self) -> CacheStorage:
        """The root's storage backend."""
        return self._runtime.storage

    @property
    def is_running(self) -> bool:
        """True while the background thread runs."""
        return self._runtime.is_running

    @property
    def cycles(self) -> int:
        """How many cycles (background or ``run_once``) have completed in this process."""
        return self._runtime.cycles

    @property
    def is_leader(self) -> bool:
        """True while this process is the one that scans and evicts the root."""
        return self._runtime.is_leader

    def run_once(self, *, full: bool = False) -> CacheSnapshot | None:
        """Run one cycle now, in this thread: write accesses, sweep, scan, evict.

        Args:
            full: measure every model (the walk that otherwise runs every
                ``full_scan_every`` cycles), to take in changes made behind the library's
                back.

        Returns:
            The snapshot after eviction, or None when another process leads the root
            (then this one only writes its accesses) or nobody uses the root.
        """
        return self._runtime.cycle("background", full=full)

    def flush(self) -> None:
        """Write the accesses recorded in memory to storage now."""
        self._runtime.flush()


def _attach(
    storage: object, config: CacheManagerConfig, *, acquired: bool
) -> tuple[Runtime, Attachment]:
    """Register one more user of the root of ``storage`` with ``config``, as a FileCache does."""
    runtime = Runtime.for_storage(as_storage(storage))
    attachment = Attachment(config, ObserverGroup(config.observers))
    attachment.group.emit("on_attach", runtime.storage, config)
    runtime.attach(attachment, acquired=acquired)
    return runtime, attachment


def run_eviction(
    storage: object,
    entries: Sequence[CacheEntry],
    evict_above: int,
    policy: object,
    observer: CacheObserver | Sequence[CacheObserver] | None = None,
) -> list[str]:
    """Evict from ``entries`` down to ``evict_above`` with ``policy`` (1.0's function).

    If the entries' total is not above ``evict_above``, nothing happens. Otherwise the
    policy is asked for ``total - evict_above`` bytes, each model it selects is deleted
    (a model open in this process, or pinned in another, is kept and the policy asked
    again), ``on_evict(path)`` is called for each, and a failed delete is reported as
    ``on_error(error, "evict")`` and skipped.

    Returns:
        The keys (paths relative to the root) of the removed models, in order.
    """
    observers: tuple[CacheObserver, ...]
    if observer is None:
        observers = ()
    elif isinstance(observer, CacheObserver):
        observers = (observer,)
    else:
        observers = tuple(observer)
    group = ObserverGroup(observers)
    backend = as_storage(storage)
    items = list(entries)
    required = sum(e.size for e in items) - evict_above
    if required <= 0:
        return []
    runtime = Runtime.for_storage(backend)
    return [
        e.key
        for e in evict_until(
            candidates(policy, items, required),
            required,
            lambda e: runtime.evictor.evict_one(e, group, backend),
        ).removed
    ]
