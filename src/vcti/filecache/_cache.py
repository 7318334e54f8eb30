"""FileCache and ModelDir: what users hold."""

from __future__ import annotations

import enum
import math
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from ._config import CacheManagerConfig
from ._coord import Busy
from ._entry import CacheEntry, CacheSnapshot, VerifyReport
from ._keys import validate_key
from ._meta import Meta
from ._observers import ObserverGroup
from ._runtime import Attachment, Runtime
from ._scanner import stamp_text
from ._victims import check_policy
from .exceptions import CacheClosedError, PinLostError
from .storage.base import CacheStorage, StampedStorage
from .storage.local import LocalStorage
from .storage.v1 import as_storage

if TYPE_CHECKING:
    from ._aio import AsyncModelDir
    from ._coord import Lease
    from ._manager import CacheManager

#: A ModelDir built directly (1.0 style) uses these.
_DEFAULT_LOCK_TIMEOUT = 600.0


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class ModelDir:
    """One model directory; a context manager that opens it.

    ``cache.model(key)`` returns one; 1.0's ``ModelDir(storage, rel_path)`` builds one
    directly (it uses this process's manager of the storage, no observers and the
    default lock timeout). Entering counts one access and pins the model; a missing model
    is filled in a private staging area and published when the context exits normally.

    Attributes:
        key: the model key (its path relative to the root).
        path: where to read and write the model's files (``str``): the published model,
            except inside a context that fills it, where it is the private staging area;
            after that context, the published model again. Also usable as
            ``os.PathLike``.
        new: None before the context is entered; True inside (and after) a context
            that filled the model, False for one that found it.

    Raises:
        KeyValidationError: ``rel_path`` is not a valid key; a path that escapes the root
            says "outside cache root" (also a ``ValueError``).
    """

    __slots__ = (
        "_announced",
        "_clock",
        "_config",
        "_group",
        "_lease",
        "_runtime",
        "_standalone",
        "_started",
        "_timeout",
        "_version",
        "key",
        "new",
        "path",
    )

    def __init__(self, storage: object, rel_path: str) -> None:
        backend = as_storage(storage)
        key = validate_key(rel_path)
        self._bind(Runtime.for_storage(backend), key, None, ObserverGroup(()), None)
        self._standalone = True

    @classmethod
    def _for_cache(cls, cache: FileCache, key: str, version: str | None) -> ModelDir:
        model = object.__new__(cls)
        model._bind(cache._runtime, key, cache._config, cache._attachment.group, version)
        return model

    def _bind(
        self,
        runtime: Runtime,
        key: str,
        config: CacheManagerConfig | None,
        group: ObserverGroup,
        version: str | None,
    ) -> None:
        self._runtime = runtime
        self._config = config
        self._group = group
        self._version = version
        self._clock: Callable[[], float] = time.time if config is None else config.now
        self._timeout = _DEFAULT_LOCK_TIMEOUT if config is None else config.lock_timeout
        self._standalone = False
        self._lease: Lease | None = None
        self._announced = False  # on_model_open was emitted for the current attempt
        self._started = 0.0
        self.key = key
        self.path = runtime.storage.path(key)
        self.new: bool | None = None

    @property
    def exists(self) -> bool:
        """True if the model is published (False inside the context that fills it)."""
        if self._lease is not None and not self._lease.hit:
            return False
        return self._runtime.storage.is_model(self.key)

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"ModelDir(key={self.key!r}, path={self.path!r}, new={self.new})"

    # -- the context --------------------------------------------------------------------

    def __enter__(self) -> ModelDir:
        return self._enter()

    def _enter(self, *, wait: bool = True, cancel: threading.Event | None = None) -> ModelDir:
        """Enter the context; see ``Coordinator.acquire`` for ``wait`` and ``cancel``."""
        if self._lease is not None:
            raise RuntimeError(f"the ModelDir of {self.key!r} is already open")
        if self._standalone:
            self._runtime.ensure_open(self._group)
        key = self.key
        group = self._group
        if not self._announced:  # an asyncio caller may come back after Busy
            self._announced = True
            self._started = time.perf_counter()
            if group:
                group.emit("on_model_open", key)
        started = self._started
        try:
            lease = self._runtime.coord.acquire(
                key, self._clock, self._timeout, self._version, wait=wait, cancel=cancel
            )
        except Busy:
            raise  # not an attempt: the caller waits for the key, then tries again
        except BaseException as exc:
            self._announced = False
            if group:
                group.emit("on_model_close", key, False, time.perf_counter() - started, exc)
            raise
        self._lease = lease
        if group:
            try:
                group.emit("on_access", key, lease.hit)
            except BaseException as exc:  # Ctrl-C in an observer: release all on the way out
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
        self.new = not lease.hit
        if lease.staged is not None:
            self.path = lease.staged
        elif self._runtime.leased:
            # Where a pin's files are can depend on the pin (S3: the attempt pinned, which
            # a refill does not touch); the backend tells this thread right after it.
            self.path = self._runtime.storage.path(key)
        return self

    def _abandon(self, error: BaseException) -> None:
        """The caller gave up before the model was entered (a cancelled asyncio task)."""
        if self._lease is None and self._announced:
            self._announced = False
            if self._group:
                duration = time.perf_counter() - self._started
                self._group.emit("on_model_close", self.key, False, duration, error)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._lease
        if lease is None:
            return
        self._lease = None
        self._announced = False
        group = self._group
        error = exc
        try:
            if lease.hit:
                self._release(lease, exc)
            else:
                self._finish_fill(lease, exc)
        except BaseException as failure:
            error = failure if exc is None else exc
            raise
        finally:
            if self._standalone and not self._runtime.is_running:
                self._runtime.flush()  # no manager thread to write the access behind
            if group:
                duration = time.perf_counter() - self._started
                group.emit("on_model_close", self.key, lease.hit, duration, error)

    def _release(self, lease: Lease, exc: BaseException | None) -> None:
        try:
            self._runtime.coord.release(lease)
        except PinLostError as lost:
            self._group.error(lost, "pin")
            if exc is None:
                raise  # otherwise the context's own error goes on

    def _finish_fill(self, lease: Lease, exc: BaseException | None) -> None:
        runtime = self._runtime
        group = self._group
        published = runtime.storage.path(self.key)
        if exc is not None:
            try:
                runtime.coord.finish_fill(lease, None, self._timeout)
            finally:
                self.path = published
                if group:
                    group.emit("on_fill", self.key, time.perf_counter() - self._started, exc)
            return
        assert lease.staged is not None
        size, stamp = _measure(runtime.storage, lease.staged)
        now = self._clock()
        if self._config is not None and group:
            _check_clock(self._config, group)
        fill_seconds = time.perf_counter() - self._started
        meta = Meta(1, now, now, fill_seconds, self._version, size, stamp)
        ahead = 0
        try:
            if self._config is not None:
                ahead = runtime.make_room(self._config, size)
            runtime.coord.finish_fill(lease, meta, self._timeout)
        except BaseException as failure:
            runtime.unreserve(ahead)
            self.path = published
            if group:
                group.emit("on_fill", self.key, time.perf_counter() - self._started, failure)
            raise
        self.path = published
        if group:
            group.emit("on_fill", self.key, fill_seconds, None)
            if size is not None:
                group.emit("on_size_update", self.key, size)
        if self._config is not None:
            runtime.note_publish(self._config, size, ahead)


def _check_clock(config: CacheManagerConfig, group: ObserverGroup) -> None:
    """Report a clock that gives no finite number (the system time is used instead)."""
    value = config.clock()
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        group.error(
            ValueError(f"the configured clock returned {value!r}; the system time was used"),
            "metadata",
        )


def _measure(storage: CacheStorage, staged: str) -> tuple[int | None, str | None]:
    """The size of a fill about to be published, and the stamp it will have (if known)."""
    try:
        size = storage.staged_size(staged)
        stamp = storage.staged_stamp(staged) if isinstance(storage, StampedStorage) else None
    except OSError:
        return None, None  # publish reports what is wrong with the staging area
    return size, stamp_text(stamp)


class FileCache:
    """A directory-level cache: one directory per model, under one root.

    Args:
        config: the limit, policy, interval and observers (may be positional).
        storage: where models live: any :class:`CacheStorage`, or a backend written for
            vcti-file-cache 1.0 (wrapped in an adapter). It wins over ``root``.
        root: shorthand for ``storage=LocalStorage(root)``.

    Raises:
        TypeError: ``config`` or ``storage`` has the wrong type, or neither ``storage``
            nor ``root`` was given.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`open` and
    :meth:`close`. The first FileCache opened on a root starts the root's background
    manager in this process; the last one closed stops it.
    """

    def __init__(
        self,
        config: CacheManagerConfig,
        storage: object | None = None,
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(config, CacheManagerConfig):
            raise TypeError(f"config must be a CacheManagerConfig, not {type(config).__name__}")
        if storage is not None:
            backend = as_storage(storage)
        elif root is not None:
            backend = LocalStorage(root)
        else:
            raise TypeError("FileCache needs storage= (a CacheStorage) or root= (a folder)")
        self._storage = backend
        self._config = config
        self._attachment = Attachment(config, ObserverGroup(config.observers))
        self._runtime = Runtime.for_storage(backend)
        self._state = _State.NEW
        self._state_lock = threading.Lock()

    def __repr__(self) -> str:
        limit = self._config.evict_above / 1024**3
        return (
            f"FileCache(storage={self._storage!r}, evict_above={limit:.1f} GB, "
            f"state={self._state.value})"
        )

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> FileCache:
        """Open the cache (what entering the ``with`` block does); returns self.

        Raises:
            CacheClosedError: the cache was already closed.
            ValueError: the config asks what the backend cannot do (``min_free`` on S3).
        """
        with self._state_lock:
            if self._state is _State.OPEN:
                return self
            if self._state is _State.CLOSED:
                raise CacheClosedError("this FileCache is closed; create a new one")
            self._attachment.group.emit("on_attach", self._storage, self._config)
            self._runtime.attach(self._attachment)
            self._state = _State.OPEN
        return self

    def close(self) -> None:
        """Close the cache (what leaving the ``with`` block does); closing twice is harmless.

        Accesses recorded in memory are written; the last cache closed on a root runs a
        last cycle and stops its background thread.
        """
        with self._state_lock:
            was_open = self._state is _State.OPEN
            self._state = _State.CLOSED
        if was_open:
            self._runtime.detach(self._attachment)
            self._runtime.flush()

    def __enter__(self) -> FileCache:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> FileCache:
        import asyncio  # noqa: PLC0415 - only async users pay for it

        return await asyncio.to_thread(self.open)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import asyncio  # noqa: PLC0415

        await asyncio.to_thread(self.close)

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise CacheClosedError(
                f"this FileCache is {self._state.value}; use it inside 'with FileCache(...)' "
                "or call open() first"
            )

    # -- models -------------------------------------------------------------------------

    def model(
        self, key: str | None = None, *, path: str | None = None, version: str | None = None
    ) -> ModelDir:
        """Return the model ``key`` as a context manager that opens it, creating it if needed.

        Entering counts one access. While the context is open the model is pinned:
        nothing evicts it, in any process. A missing model is filled in a private
        staging area (``ModelDir.new`` is True) and published in one step when the
        context exits normally; if the context raises, the fill is discarded and the
        exception propagates. Other openers of the same key wait for the fill and then
        see the complete model. Files are protected from eviction only while the context
        is open.

        Args:
            key: the model key (1.0 called it ``path``; ``path=`` works too).
            version: what the model must have been filled for (the source file's mtime
                or hash, say). A published model of another version is a miss: it is
                filled again and replaces the old one atomically once every context that
                holds the old one has closed.

        Raises:
            KeyValidationError: ``key`` is malformed, reserved, or nested inside or
                around another model (also a ``ValueError``).
            LockTimeoutError: another fill of ``key`` did not end within
                ``config.lock_timeout`` seconds (raised when the context is entered).
            CacheClosedError: the cache is not open.
        """
        self._check_open()
        return ModelDir._for_cache(self, self._key(key, path), _check_version(version))

    def amodel(self, key: str, *, version: str | None = None) -> AsyncModelDir:
        """:meth:`model` for asyncio: ``async with cache.amodel(key) as model:``.

        Same semantics, but waiting for another fill, pinning, publishing and discarding
        run off the event loop, and cancelling the task releases everything it held.
        """
        from ._aio import AsyncModelDir  # noqa: PLC0415 - asyncio only for async users

        return AsyncModelDir(self.model(key, version=version))

    @staticmethod
    def _key(key: str | None, path: str | None) -> str:
        if key is not None and path is not None:
            raise TypeError("give the model key once (key or path=), not both")
        chosen = key if key is not None else path
        if chosen is None:
            raise TypeError("model() needs a key")
        return validate_key(chosen)

    def entries(self) -> list[CacheEntry]:
        """Return every published model, from one scan."""
        return self.snapshot().entries

    def snapshot(self) -> CacheSnapshot:
        """Scan the root once and return its state."""
        self._check_open()
        return self._runtime.scan(self._attachment.group, self._config)

    def evict(
        self,
        policy: object | None = None,
        *,
        evict_above: int | None = None,
        evict_to: int | None = None,
    ) -> list[str]:
        """Evict now what a background cycle would: see :class:`CacheManager`.

        Models idle for longer than ``max_age`` go; then, if the total is above
        ``evict_above`` (or the free space below ``min_free``), models in policy order
        until it is at or below ``evict_to``. Open models are skipped. Runs in this
        thread.

        Args:
            policy: overrides ``config.policy`` for this call.
            evict_above: overrides the config's limit for this call; here
                ``evict_above=0`` is allowed and means "evict everything not open".
            evict_to: overrides the config's target for this call (default
                ``evict_above``).

        Returns:
            The keys (paths relative to the root) of the removed models, in order.

        Raises:
            ValueError: a negative limit, or ``evict_to`` above ``evict_above``.
        """
        self._check_open()
        if policy is not None:
            check_policy(policy)
        chosen = policy if policy is not None else self._config.policy
        limit, target = self._limits(evict_above, evict_to)
        results = self._runtime.evict(
            self._attachment.group, self._config, chosen, limit=limit, target=target
        )
        return [entry.key for result in results for entry in result.entries]

    def _limits(self, evict_above: int | None, evict_to: int | None) -> tuple[int, int]:
        """The limit and target of one eviction run: the config's, or the ones given."""
        if evict_above is None:
            limit, default_target = self._config.evict_above, self._config.target
        else:
            limit = default_target = evict_above
        target = default_target if evict_to is None else evict_to
        for name, value in (("evict_above", limit), ("evict_to", target)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int of bytes, got {value!r}")
        if target > limit:
            raise ValueError(f"evict_to ({target}) must not be greater than evict_above ({limit})")
        return limit, target

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check that the cache's bookkeeping agrees with what is stored, like ``fsck``.

        Finds unreadable or missing metadata, leftovers of interrupted fills and deletes,
        unexpected entries in the cache's own folders, models nested in models, folders
        it cannot read, and 1.0 models not adopted yet. With ``repair``, fixes what can
        be fixed without losing user data (metadata is rebuilt with defaults, leftovers
        are deleted); nested models are only reported.
        """
        self._check_open()
        return self._runtime.verify(self._attachment.group, self._config, repair)

    def remove(self, key: str) -> bool:
        """Remove the model ``key``, waiting for every context that holds it to close.

        Returns:
            True if it was removed, False if it did not exist.

        Raises:
            KeyValidationError: ``key`` is malformed.
            LockTimeoutError: it stayed open for ``config.lock_timeout`` seconds.
        """
        self._check_open()
        return self._runtime.remove(validate_key(key), self._config.lock_timeout)

    def clear(self) -> int:
        """Remove every model that is not open; return how many were removed."""
        self._check_open()
        return self._runtime.clear(self._attachment.group)

    def get_entry(self, key: str) -> CacheEntry | None:
        """Return the model's entry, or None if it does not exist; no access is counted."""
        self._check_open()
        return self._runtime.get_entry(validate_key(key), self._config.now)

    def __contains__(self, key: object) -> bool:
        """``key in cache``: True if the model ``key`` is published; no access is counted."""
        self._check_open()
        if not isinstance(key, str):
            return False
        return self._storage.is_model(validate_key(key))

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
        return self._runtime.manager

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


def _check_version(version: object) -> str | None:
    if version is not None and not isinstance(version, str):
        raise TypeError(f"version must be a str, not {type(version).__name__}")
    return version
