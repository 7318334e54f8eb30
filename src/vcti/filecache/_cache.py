"""FileCache and ModelDir: what users hold."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from ._config import CacheManagerConfig
from ._entry import CacheEntry, CacheSnapshot, VerifyReport
from ._keys import validate_key
from ._manager import CacheManager, _Lease
from ._meta import Meta
from ._observers import ObserverGroup
from .exceptions import CacheClosedError, PinLostError
from .policies.base import EvictionPolicy
from .storage.base import CacheStorage
from .storage.local import LocalStorage


class ModelDir:
    """One model directory, as seen inside a ``FileCache.model()`` context.

    Attributes:
        key: the model key.
        path: where to read and write the model's files: the model's own directory (or
            URI) when it exists, a private staging directory while this context fills it.
        new: True when this context creates the model (a fill); it is published when
            the context exits without an exception.
    """

    __slots__ = ("_storage", "key", "new", "path")

    def __init__(self, storage: CacheStorage, key: str, path: str, new: bool) -> None:
        self._storage = storage
        self.key = key
        self.path = path
        self.new = new

    @property
    def exists(self) -> bool:
        """True if the model is published (False inside the context that fills it)."""
        return self._storage.is_model(self.key)

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"ModelDir(key={self.key!r}, path={self.path!r}, new={self.new})"


class FileCache:
    """A directory-level cache: one directory per model, under one root.

    Args:
        config: the limit, policy, interval and observers.
        storage: where models live (any :class:`CacheStorage`).
        root: shorthand for ``storage=LocalStorage(root)``; give exactly one of the two.

    Raises:
        TypeError: ``config`` or ``storage`` has the wrong type, or both or neither of
            ``storage`` and ``root`` were given.

    Use it as a context manager (or call :meth:`open` and :meth:`close`). The first
    FileCache opened on a root starts the root's background manager in this process;
    the last one closed stops it.
    """

    def __init__(
        self,
        *,
        config: CacheManagerConfig,
        storage: CacheStorage | None = None,
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(config, CacheManagerConfig):
            raise TypeError(f"config must be a CacheManagerConfig, not {type(config).__name__}")
        if (storage is None) == (root is None):
            raise TypeError("FileCache takes exactly one of storage= or root=")
        if storage is None:
            assert root is not None
            storage = LocalStorage(root)
        elif not isinstance(storage, CacheStorage):
            raise TypeError(f"storage must be a CacheStorage, not {type(storage).__name__}")
        self._storage = storage
        self._config = config
        self._observers = ObserverGroup(config.observers)
        self._manager = CacheManager.for_storage(storage)
        self._state = "new"
        self._state_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<FileCache {self._storage!r} {self._state}>"

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> FileCache:
        """Open the cache (what entering the ``with`` block does); returns self.

        Raises:
            CacheClosedError: the cache was already closed.
        """
        with self._state_lock:
            if self._state == "open":
                return self
            if self._state == "closed":
                raise CacheClosedError("this FileCache is closed; create a new one")
            self._observers.emit("on_attach", self._storage, self._config)
            self._manager.attach(self)
            self._state = "open"
        return self

    def close(self) -> None:
        """Close the cache (what leaving the ``with`` block does); closing twice is harmless.

        Accesses recorded in memory are written; the last cache closed on a root stops
        and joins its background thread.
        """
        with self._state_lock:
            if self._state != "open":
                self._state = "closed"
                return
            self._state = "closed"
        self._manager.detach(self)
        self._manager.flush()

    def __enter__(self) -> FileCache:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._state != "open":
            raise CacheClosedError(
                f"this FileCache is {self._state}; use it inside 'with FileCache(...)' "
                "or call open() first"
            )

    # -- models -------------------------------------------------------------------------

    @contextmanager
    def model(self, key: str) -> Iterator[ModelDir]:
        """Open the model ``key``, creating it if it does not exist.

        Entering counts one access. While the context is open the model is pinned:
        nothing evicts it. A missing model is filled in a private staging directory
        (``ModelDir.new`` is True) and published in one step when the context exits
        normally; if the context raises, the fill is discarded and the exception
        propagates. Other openers of the same key wait for the fill and then see the
        complete model.

        Raises:
            KeyValidationError: ``key`` is malformed, reserved, or nested inside or
                around another model (also a ``ValueError``).
            LockTimeoutError: another fill of ``key`` did not end within
                ``config.lock_timeout`` seconds.
            CacheClosedError: the cache is not open.
        """
        self._check_open()
        key = validate_key(key)
        group = self._observers
        started = time.perf_counter()
        if group:
            group.emit("on_model_open", key)
        try:
            lease = self._manager.acquire(key, self._config.clock, self._config.lock_timeout)
        except Exception as exc:
            if group:
                group.emit("on_model_close", key, False, time.perf_counter() - started, exc)
            raise
        if group:
            group.emit("on_access", key, lease.hit)
        error: BaseException | None = None
        try:
            if lease.hit:
                try:
                    yield ModelDir(self._storage, key, self._storage.path(key), new=False)
                except BaseException:
                    try:
                        self._manager.release(lease)
                    except PinLostError as lost:
                        group.error(lost, "pin")  # the context's own error goes on
                    raise
                try:
                    self._manager.release(lease)
                except PinLostError as lost:
                    group.error(lost, "pin")
                    raise
            else:
                assert lease.staged is not None
                yield from self._fill(key, lease, group)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if group:
                group.emit("on_model_close", key, lease.hit, time.perf_counter() - started, error)

    def _fill(self, key: str, lease: _Lease, group: ObserverGroup) -> Iterator[ModelDir]:
        assert lease.staged is not None
        started = time.perf_counter()
        try:
            yield ModelDir(self._storage, key, lease.staged, new=True)
        except BaseException as exc:
            self._manager.finish_fill(lease, None)
            if group:
                group.emit("on_fill", key, time.perf_counter() - started, exc)
            raise
        now = self._config.clock()
        try:
            self._manager.finish_fill(lease, Meta(1, now, now))
        except Exception as exc:
            if group:
                group.emit("on_fill", key, time.perf_counter() - started, exc)
            raise
        if group:
            group.emit("on_fill", key, time.perf_counter() - started, None)

    def entries(self) -> list[CacheEntry]:
        """Return every published model, from one scan."""
        return list(self.snapshot().entries)

    def snapshot(self) -> CacheSnapshot:
        """Scan the root once and return its state."""
        self._check_open()
        return self._manager.scan(self._observers, self._config)

    def evict(self, policy: EvictionPolicy | None = None) -> list[CacheEntry]:
        """Evict until the total is at or below ``config.evict_to`` (if over the limit).

        Open models are skipped. Runs in this thread; the background manager does the
        same every ``config.interval`` seconds.

        Args:
            policy: overrides ``config.policy`` for this call.

        Returns:
            The removed entries, in eviction order.
        """
        self._check_open()
        if policy is not None and (
            isinstance(policy, type) or not isinstance(policy, EvictionPolicy)
        ):
            raise TypeError(f"policy must be an EvictionPolicy, not {type(policy).__name__}")
        result = self._manager.evict(
            self._observers, self._config, policy or self._config.policy, "manual"
        )
        return list(result.entries)

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check that the cache's bookkeeping agrees with what is stored, like ``fsck``.

        Finds unreadable or missing metadata, leftovers of interrupted fills and deletes,
        missing lock files and models nested in models. With ``repair``, fixes what can be
        fixed without losing user data (metadata is rebuilt with defaults, leftovers are
        deleted); nested models are only reported.
        """
        self._check_open()
        return self._manager.verify(self._observers, self._config, repair)

    # -- properties ---------------------------------------------------------------------

    @property
    def storage(self) -> CacheStorage:
        """The storage backend."""
        return self._storage

    @property
    def config(self) -> CacheManagerConfig:
        """The configuration."""
        return self._config

    @property
    def manager(self) -> CacheManager:
        """This process's manager of the root (shared by every FileCache on it)."""
        return self._manager

    @property
    def total_size(self) -> int:
        """Bytes in the cache, fills in progress included (scans)."""
        return self.snapshot().total_size

    @property
    def entry_count(self) -> int:
        """Number of published models (scans)."""
        return self.snapshot().entry_count

    @property
    def is_over_limit(self) -> bool:
        """True if the total is above ``config.evict_above`` (scans)."""
        return self.snapshot().is_over_limit

    @property
    def overage(self) -> int:
        """Bytes above ``config.evict_above``, or 0 (scans)."""
        return self.snapshot().overage
