"""Pins, fills and recorded accesses of one storage root in this process.

The per-key coordination behind ``model()``: threads of this process count their pins
here (the backend's pin is taken once per opener), openers of a missing model wait for
one fill, a model being removed is not pinned meanwhile, and accesses are counted in
memory until the manager writes them behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._keys import ancestors, is_nested
from ._meta import Meta
from .exceptions import KeyValidationError, LockTimeoutError, MetadataError, PinLostError
from .storage.base import CacheStorage, LeasedStorage, Lock


class Busy(Exception):
    """The key is being filled or removed in this process (``acquire(wait=False)``)."""


class Cancelled(Exception):
    """The waiting was cancelled (the asyncio task that waited was)."""


#: How long one wait for another process's fill lock lasts before a cancellation is seen.
_WAIT_SLICE = 0.2


@dataclass
class Lease:
    """What ``acquire`` hands to a ``model()`` context: a pin (hit) or a fill (miss).

    ``replaces`` is set for a fill that refreshes a published model of another version:
    it is published once the old one is no longer open.
    """

    key: str
    hit: bool
    lock: Lock
    staged: str | None = None
    replaces: bool = False


class Coordinator:
    """Pins and fills of one root in this process, and the accesses not yet written."""

    def __init__(self, storage: CacheStorage) -> None:
        self.storage = storage
        self._leased = isinstance(storage, LeasedStorage)
        self._reset()

    def _reset(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self._idle_callbacks: dict[str, list[Callable[[], None]]] = {}
        self._pins: dict[str, int] = {}
        self._filling: set[str] = set()
        self._evicting: set[str] = set()
        self._pending: dict[str, tuple[int, float]] = {}

    def after_fork(self) -> None:
        """Forget what belongs to the parent: its pins, fills and accesses to write."""
        self._reset()

    # -- pins and fills -----------------------------------------------------------------

    def acquire(
        self,
        key: str,
        clock: Callable[[], float],
        timeout: float,
        version: str | None = None,
        *,
        wait: bool = True,
        cancel: threading.Event | None = None,
    ) -> Lease:
        """Pin the published model ``key``, or become the one that fills it.

        With ``version``, a published model of another version is not a hit: it is
        refilled, and replaced once nobody has it open. With ``wait`` False, a key that
        this process is filling or removing raises :class:`Busy` at once (an asyncio
        caller waits for it on its loop, see :meth:`when_idle`); ``cancel`` ends a wait
        for another process's fill with :class:`Cancelled`.

        Raises:
            KeyValidationError: ``key`` is nested inside (or around) another model.
            LockTimeoutError: another fill of ``key`` took longer than ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.cond:
                if not wait and (key in self._filling or key in self._evicting):
                    raise Busy(key)
                self._wait_idle(key, deadline)
                self._pins[key] = self._pins.get(key, 0) + 1
            pin: Lock | None = None
            try:
                pin = self.storage.pin(key)
                stale = pin is not None and not self._current(key, version)
            except BaseException:
                if pin is not None:
                    pin.release()
                self._unpin(key)
                raise
            if pin is not None and not stale:
                self._record(key, clock())
                return Lease(key, hit=True, lock=pin)
            if pin is not None:
                pin.release()
            with self.cond:
                self._unpin_locked(key)
                self.cond.notify_all()
                if key in self._filling or key in self._evicting:
                    continue
                self._check_filling_conflict(key)
                self._filling.add(key)
            try:
                return self._begin_fill(key, clock, deadline, version, cancel)
            except BaseException:
                self._end_fill(key)
                raise

    def _current(self, key: str, version: str | None) -> bool:
        """True if the published model ``key`` is of ``version`` (any, when None)."""
        if version is None:
            return True
        try:
            return Meta.decode(self.storage.read_record(key)).version == version
        except (FileNotFoundError, MetadataError):
            return False

    def _begin_fill(
        self,
        key: str,
        clock: Callable[[], float],
        deadline: float,
        version: str | None,
        cancel: threading.Event | None,
    ) -> Lease:
        fill_lock = self._lock_fill(key, deadline, cancel)
        try:
            # Another process may have published the model while we waited for its lock.
            pin = self.storage.pin(key)
            if pin is not None:
                if self._current(key, version):
                    fill_lock.release()
                    with self.cond:
                        self._pins[key] = self._pins.get(key, 0) + 1
                        self._filling.discard(key)
                        self.cond.notify_all()
                        callbacks = self._take_idle_callbacks(key)
                    for callback in callbacks:  # asyncio waiters, as _end_fill wakes them
                        callback()
                    self._record(key, clock())
                    return Lease(key, hit=True, lock=pin)
                pin.release()
                replaces = True
            else:
                replaces = False
            self._check_storage_conflict(key, replaces)
            staged = self.storage.stage(key)
            return Lease(key, hit=False, lock=fill_lock, staged=staged, replaces=replaces)
        except BaseException:
            fill_lock.release()
            raise

    def _lock_fill(self, key: str, deadline: float, cancel: threading.Event | None) -> Lock:
        """The fill lock of ``key``, waited for in slices so that a cancellation is seen."""
        if cancel is None:
            return self.storage.lock_fill(key, max(0.0, deadline - time.monotonic()))
        while True:
            if cancel.is_set():
                raise Cancelled(key)
            remaining = deadline - time.monotonic()
            try:
                return self.storage.lock_fill(key, max(0.0, min(remaining, _WAIT_SLICE)))
            except LockTimeoutError:
                if remaining <= _WAIT_SLICE:
                    raise

    def release(self, lease: Lease) -> None:
        """Unpin a hit.

        Raises:
            PinLostError: the backend's pin lapsed while the model was open.
        """
        lost = self._leased and bool(getattr(lease.lock, "lost", False))
        try:
            lease.lock.release()
        finally:
            self._unpin(lease.key)
        if lost:
            raise PinLostError(
                f"the pin of {lease.key!r} lapsed while the model was open: it may have been "
                "evicted meanwhile, and what was read from it may be incomplete"
            )

    def finish_fill(self, lease: Lease, meta: Meta | None, timeout: float) -> None:
        """Publish a fill (``meta`` given) or discard it (``meta`` None), then wake waiters.

        A fill that replaces a model of another version waits (up to ``timeout``) until
        nobody has the old one open, removes it and publishes in its place; the fill
        lock keeps other openers waiting meanwhile.

        Raises:
            LockTimeoutError: the old model stayed open for ``timeout`` seconds.
        """
        assert lease.staged is not None
        try:
            if meta is None:
                self.storage.discard(lease.staged)
                return
            try:
                if lease.replaces:
                    self._remove_old(lease.key, time.monotonic() + timeout)
                self.storage.publish(lease.key, lease.staged, meta.encode())
            except BaseException as exc:
                self.storage.discard(lease.staged)
                nested = self.nesting_error(lease.key) if isinstance(exc, FileExistsError) else None
                if nested is not None:  # another process published around it meanwhile
                    raise nested from exc
                raise
        finally:
            try:
                lease.lock.release()
            finally:
                self._end_fill(lease.key)

    def _remove_old(self, key: str, deadline: float) -> None:
        delay = 0.001
        while True:
            with self.cond:
                while self._pins.get(key):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise LockTimeoutError(f"the old version of {key!r} stayed open")
                    self.cond.wait(remaining)
            try:
                if self.storage.remove(key):
                    return
            except FileNotFoundError:
                return
            if time.monotonic() >= deadline:
                raise LockTimeoutError(f"the old version of {key!r} stayed open in another process")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _wait_idle(self, key: str, deadline: float) -> None:
        while key in self._filling or key in self._evicting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(f"another thread has been filling {key!r} for too long")
            self.cond.wait(remaining)

    def _unpin(self, key: str) -> None:
        with self.cond:
            self._unpin_locked(key)
            self.cond.notify_all()

    def _unpin_locked(self, key: str) -> None:
        count = self._pins[key] - 1
        if count:
            self._pins[key] = count
        else:
            del self._pins[key]

    def _end_fill(self, key: str) -> None:
        with self.cond:
            self._filling.discard(key)
            self.cond.notify_all()
            callbacks = self._take_idle_callbacks(key)
        for callback in callbacks:
            callback()

    def when_idle(self, key: str, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (from any thread) once ``key`` is no longer filled or removed here.

        Returns:
            False, without registering it, if the key is idle already.
        """
        with self.cond:
            if key not in self._filling and key not in self._evicting:
                return False
            self._idle_callbacks.setdefault(key, []).append(callback)
            return True

    def _take_idle_callbacks(self, key: str) -> list[Callable[[], None]]:
        if key in self._filling or key in self._evicting:
            return []
        return self._idle_callbacks.pop(key, [])

    def _check_filling_conflict(self, key: str) -> None:
        for other in self._filling:
            if is_nested(key, other) or is_nested(other, key):
                raise KeyValidationError(
                    f"model key {key!r} overlaps {other!r}, which is being filled"
                )

    def _check_storage_conflict(self, key: str, replaces: bool) -> None:
        for prefix in ancestors(key):
            if self.storage.is_model(prefix):
                raise KeyValidationError(f"model key {key!r} is inside the model {prefix!r}")
        if self.storage.exists(key):
            for inner in self.storage.iter_models(prefix=key):
                if inner != key or not replaces:
                    raise KeyValidationError(f"model key {key!r} contains the model {inner!r}")

    def nesting_error(self, key: str) -> KeyValidationError | None:
        """Why ``key`` cannot be published as it nests with another model, if it does."""
        try:
            self._check_storage_conflict(key, replaces=True)
        except KeyValidationError as exc:
            return exc
        except OSError:
            return None
        return None

    def pinned(self) -> frozenset[str]:
        """Keys of the models open in this process now."""
        with self.cond:
            return frozenset(self._pins)

    def is_busy(self, key: str) -> bool:
        """True if ``key`` is open, being filled or being removed in this process."""
        with self.cond:
            return bool(self._pins.get(key)) or key in self._filling or key in self._evicting

    # -- removal ------------------------------------------------------------------------

    def try_remove(self, key: str, remove: Callable[[], bool]) -> bool:
        """Run ``remove`` for ``key`` unless it is busy in this process; return its result.

        Nobody in this process pins ``key`` while ``remove`` runs.
        """
        with self.cond:
            if self._pins.get(key) or key in self._filling or key in self._evicting:
                return False
            self._evicting.add(key)
        try:
            removed = remove()
        finally:
            with self.cond:
                self._evicting.discard(key)
                self.cond.notify_all()
                callbacks = self._take_idle_callbacks(key)
            for callback in callbacks:
                callback()
        if removed:
            with self.cond:
                self._pending.pop(key, None)
        return removed

    def wait_unpinned(self, key: str, deadline: float) -> bool:
        """Wait until nobody in this process has ``key`` open or fills it; False on timeout."""
        with self.cond:
            while self._pins.get(key) or key in self._filling or key in self._evicting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
        return True

    # -- accesses (write-behind) --------------------------------------------------------

    def _record(self, key: str, now: float) -> None:
        with self.cond:
            count, last = self._pending.get(key, (0, now))
            self._pending[key] = (count + 1, max(last, now))

    def pending(self) -> dict[str, tuple[int, float]]:
        """A copy of the accesses not yet written: key -> (count, last access)."""
        with self.cond:
            return dict(self._pending)

    def take_pending(self) -> dict[str, tuple[int, float]]:
        """Take the accesses not yet written (they are forgotten here)."""
        with self.cond:
            pending, self._pending = self._pending, {}
        return pending

    def restore_pending(self, key: str, count: int, last: float) -> None:
        """Put back accesses that could not be written, for the next attempt."""
        with self.cond:
            old_count, old_last = self._pending.get(key, (0, last))
            self._pending[key] = (old_count + count, max(old_last, last))

    def has_pending(self) -> bool:
        """True if some accesses are not written yet."""
        with self.cond:
            return bool(self._pending)
