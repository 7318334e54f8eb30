"""An observer that records every ``model()`` lookup as a CSV line, for ``filecache replay``."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._meta import Meta
from ..exceptions import MetadataError
from .base import CacheObserver

if TYPE_CHECKING:
    from .._config import CacheManagerConfig
    from .._entry import CacheSnapshot
    from ..storage.base import CacheStorage

__all__ = ["TRACE_HEADER", "TraceObserver"]

#: The first line of every trace file.
TRACE_HEADER = "time,key,size,cost,hit\n"

_logger = logging.getLogger("vcti.filecache")


@dataclass
class _Lookup:
    """One ``model()`` lookup in progress in one thread."""

    key: str
    time: float
    started: float
    hit: bool = False
    filled: bool = False
    cost: float | None = None


class TraceObserver(CacheObserver):
    """Append one CSV line per ``model()`` lookup to a trace file: ``time,key,size,cost,hit``.

    A line is written when the lookup's context closes, so that a miss's size and fill
    time are known: ``time`` is when the lookup started (epoch seconds), ``size`` the
    model's bytes, ``cost`` the seconds its fill took (from entering ``model()`` to
    publishing; on hits too, from the model's metadata; empty when unknown), ``hit`` 1
    or 0. A miss whose fill was not published (its context raised) writes no line. The
    file is what ``filecache replay`` reads.

    Several processes (and threads) may record into one file: the file is opened with
    ``O_APPEND`` and each line is one ``write``, so lines never interleave. When the file
    passes ``max_bytes`` it is renamed ``PATH.1`` (``PATH.1`` to ``PATH.2``, and so on,
    ``backups`` files kept) under a lock file ``PATH.lock``, and a new file is started;
    replay a rotated trace oldest first with ``filecache replay --concat PATH.2 PATH.1
    PATH``.

    A write that fails (a full disk, a missing directory) never reaches the caller: the
    line is dropped, counted in :attr:`failed_writes`, and logged as a warning on the
    ``vcti.filecache`` logger (an observer does not reach other observers' ``on_error``).

    Use one TraceObserver per cache.

    Args:
        path: the trace file; created with its header if missing.
        hash_keys: write a stable hash of each key (the first 16 hex digits of its
            SHA-256) instead of the key, so that a trace can be shared without the
            names of the models.
        max_bytes: rotate when the file would grow past this size; None never rotates.
        backups: rotated files kept (``PATH.1`` ... ``PATH.N``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        hash_keys: bool = False,
        *,
        max_bytes: int | None = 100 * 2**20,
        backups: int = 5,
    ) -> None:
        if max_bytes is not None and max_bytes < len(TRACE_HEADER):
            raise ValueError(f"max_bytes must be at least {len(TRACE_HEADER)}: {max_bytes}")
        if backups < 0:
            raise ValueError(f"backups must not be negative: {backups}")
        self.path = os.fspath(path)
        self.hash_keys = hash_keys
        self.max_bytes = max_bytes
        self.backups = backups
        #: Lines dropped because writing them failed.
        self.failed_writes = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._pid = os.getpid()
        self._local = threading.local()
        self._storage: CacheStorage | None = None
        self._sizes: dict[str, int] = {}
        self._costs: dict[str, float] = {}

    # -- hooks -----------------------------------------------------------------------------

    def on_attach(self, storage: CacheStorage, config: CacheManagerConfig) -> None:
        """Remember the storage: its metadata gives the size and cost of a hit."""
        self._storage = storage

    def on_model_open(self, key: str) -> None:
        """Start recording a lookup."""
        self._stack().append(_Lookup(key, time.time(), time.perf_counter()))

    def on_access(self, key: str, hit: bool) -> None:
        """Note whether the lookup hit."""
        lookup = self._current(key)
        if lookup is not None:
            lookup.hit = hit

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        """A published fill's cost: seconds since the lookup started."""
        lookup = self._current(key)
        if lookup is not None and error is None:
            lookup.filled = True
            lookup.cost = time.perf_counter() - lookup.started
            self._costs[key] = lookup.cost

    def on_size_update(self, path: str, size: int) -> None:
        """Keep the model's measured size (at publish, and when a scan finds it changed)."""
        self._sizes[path] = size  # the key

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        """Keep the sizes and fill times the scan saw."""
        self._sizes = {e.key: e.size for e in snapshot.entries}
        self._costs = {
            e.key: e.fill_seconds for e in snapshot.entries if e.fill_seconds is not None
        }

    def on_model_close(
        self, key: str, hit: bool, duration: float, error: BaseException | None
    ) -> None:
        """Write the lookup's line (unless it was a miss whose fill was not published)."""
        stack = self._stack()
        lookup = self._current(key)
        if lookup is None:
            return
        stack.remove(lookup)
        if not hit and not lookup.filled:
            return
        size, cost = self._size_and_cost(key, lookup)
        name = hashlib.sha256(key.encode()).hexdigest()[:16] if self.hash_keys else _csv(key)
        line = (
            f"{lookup.time:.3f},{name},{'' if size is None else size},"
            f"{'' if cost is None else f'{cost:.3f}'},{1 if hit else 0}\n"
        )
        self._write(line.encode())

    # -- lines -----------------------------------------------------------------------------

    def _stack(self) -> list[_Lookup]:
        stack: list[_Lookup] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _current(self, key: str) -> _Lookup | None:
        for lookup in reversed(self._stack()):
            if lookup.key == key:
                return lookup
        return None

    def _size_and_cost(self, key: str, lookup: _Lookup) -> tuple[int | None, float | None]:
        """The model's size and fill seconds: as seen here, else from its metadata."""
        size = self._sizes.get(key)
        cost = lookup.cost if lookup.filled else self._costs.get(key)
        storage = self._storage
        if (size is None or cost is None) and storage is not None:
            try:
                meta = Meta.decode(storage.read_record(key))
            except (OSError, MetadataError):
                meta = None
            if meta is not None:
                size = meta.size if size is None else size
                cost = meta.fill_seconds if cost is None else cost
            if size is None:
                try:
                    size = storage.model_size(key)
                except OSError:
                    size = None
            if size is not None:
                self._sizes[key] = size
            if cost is not None:
                self._costs[key] = cost
        return size, cost

    def _write(self, line: bytes) -> None:
        try:
            with self._lock:
                fd = self._open()
                if self.max_bytes is not None and os.fstat(fd).st_size + len(line) > self.max_bytes:
                    fd = self._rotate()
                if os.write(fd, line) != len(line):
                    raise OSError(errno.EIO, "short write")
        except OSError as exc:
            self.failed_writes += 1
            _logger.warning("trace %s: a line was not written: %s", self.path, exc)

    def _open(self) -> int:
        """The file's descriptor, reopened if the file was rotated or removed, or after fork."""
        fd = self._fd
        if fd is not None and self._pid == os.getpid():
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    return fd
            except FileNotFoundError:
                pass
        self._close()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            self._create()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        st = os.fstat(fd)
        self._fd, self._inode, self._pid = fd, (st.st_dev, st.st_ino), os.getpid()
        return fd

    def _create(self) -> None:
        """Create the file with its header in one step: no process sees it without one."""
        temporary = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                os.write(fd, TRACE_HEADER.encode())
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.link(temporary, self.path)
        finally:
            os.unlink(temporary)

    def _rotate(self) -> int:
        """Rotate the file, unless another process did already; return the new descriptor."""
        lock = os.open(self.path + ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            st = os.stat(self.path)
            assert self.max_bytes is not None
            if (st.st_dev, st.st_ino) == self._inode and st.st_size > len(TRACE_HEADER):
                for n in range(self.backups - 1, 0, -1):
                    older = f"{self.path}.{n}"
                    if os.path.exists(older):
                        os.replace(older, f"{self.path}.{n + 1}")
                if self.backups > 0:
                    os.replace(self.path, f"{self.path}.1")
                else:
                    os.unlink(self.path)
            return self._open()
        finally:
            os.close(lock)  # closing the descriptor releases the lock

    def _close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._inode = None

    def close(self) -> None:
        """Close the trace file (the next line reopens it)."""
        with self._lock:
            self._close()


def _csv(field: str) -> str:
    """Quote ``field`` for CSV if it needs it."""
    if any(c in field for c in ',"\r\n'):
        return '"' + field.replace('"', '""') + '"'
    return field
