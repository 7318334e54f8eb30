"""Filesystem primitives for the local backend, safe against what a user or operator leaves.

Nothing here follows a symlink: trees are measured and deleted without following them,
and the cache's own small files are opened with ``O_NOFOLLOW``. Deleting a tree that
holds read-only folders (a fill that copied a read-only source) makes them writable
first, as ``rm -rf`` cannot without ``CAP_DAC_OVERRIDE``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import sys
import uuid
import weakref
from collections.abc import Callable

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


class FdLock:
    """A held ``flock`` on an open file descriptor; closing it drops the lock.

    A forked child closes its copies of every descriptor at once (the parent's locks
    stay held by the parent), so that a child never holds a pin, a fill or the
    leadership of its parent.
    """

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        _held.add(self)

    def release(self) -> None:
        """Drop the lock (closing the descriptor). Calling it twice is harmless."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        # A lock whose holder is gone is released, as a closed file would be.
        self.release()


_held: weakref.WeakSet[FdLock] = weakref.WeakSet()


def _forget_in_child() -> None:
    # A lock belongs to the open file description, which the parent shares: closing the
    # child's descriptor leaves the parent's lock in place.
    for lock in list(_held):
        lock.release()


os.register_at_fork(after_in_child=_forget_in_child)


def open_dir(path: str) -> int:
    """Open the directory ``path`` (not a symlink to one) for locking or ``*at`` calls."""
    return os.open(path, _OPEN_DIR)


def lock_dir(path: str, *, exclusive: bool, wait: bool) -> FdLock | None:
    """``flock`` the directory ``path``; None if ``wait`` is False and another holds it.

    Raises:
        FileNotFoundError: ``path`` is missing (or not a directory, or a symlink).
    """
    try:
        fd = open_dir(path)
    except (NotADirectoryError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise FileNotFoundError(errno.ENOENT, "no such directory", path) from exc
        raise
    return _flock(fd, exclusive=exclusive, wait=wait)


def lock_file(path: str) -> FdLock | None:
    """Try to ``flock`` the regular file ``path`` exclusively, creating it if needed.

    Something other than a regular file there (a directory, a symlink) is removed first.
    Returns None while another holds the lock.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO, errno.EWOULDBLOCK):
            raise
        remove_entry(path)
        fd = os.open(path, flags, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device: not ours to lock
        os.close(fd)
        remove_entry(path)
        return lock_file(path)
    return _flock(fd, exclusive=True, wait=False)


def _flock(fd: int, *, exclusive: bool, wait: bool) -> FdLock | None:
    operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    if not wait:
        operation |= fcntl.LOCK_NB
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return FdLock(fd)


def same_file(fd: int, path: str) -> bool:
    """True if ``path`` (not followed) is still the file open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def read_regular(path: str, limit: int) -> bytes:
    """Return the content of the small regular file ``path``.

    It is opened without following a symlink and without blocking (a FIFO in its place
    must not hang the caller), and read only if it is a regular file of at most
    ``limit`` bytes.

    Raises:
        FileNotFoundError: nothing is at ``path``.
        ValueError: something other than such a file is there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("a symlink, not a file") from None
        if exc.errno in (errno.ENXIO, errno.EWOULDBLOCK):
            raise ValueError("a socket or FIFO, not a file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"larger than {limit} bytes")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def write_atomic(target: str, data: bytes) -> None:
    """Replace ``target`` with a file holding ``data`` (a new file renamed over it).

    Whatever was at ``target`` is replaced; a directory there is deleted first.
    """
    tmp = f"{target}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        try:
            os.replace(tmp, target)
        except IsADirectoryError:
            remove_entry(target)
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def tree_size(top: str, skip: str | None = None) -> int:
    """Bytes of the regular files below ``top``, never following symlinks.

    ``skip`` names an entry of ``top`` itself to leave out. Entries that vanish during
    the walk are ignored; ``FileNotFoundError`` is raised only when ``top`` is missing.
    """
    total = 0
    stack = [top]
    first = True
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            if first:
                raise FileNotFoundError(errno.ENOENT, "no such directory", top) from None
            continue
        first = False
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not (skip is not None and folder == top and entry.name == skip):
                            stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
    return total


def remove_entry(path: str) -> None:
    """Remove whatever is at ``path`` (a file, a symlink, a tree) without following links."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def rmtree(path: str) -> None:
    """Delete the tree ``path`` without following symlinks; what is already gone is fine.

    A tree holding folders without write (or read) permission is made deletable first,
    so a read-only copy inside a model never blocks its eviction.
    """
    try:
        _rmtree(path)
    except PermissionError:
        _make_deletable(path)
        _rmtree(path)


def _rmtree(path: str) -> None:
    def ignore_missing(func: Callable[..., object], name: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=ignore_missing)
    else:
        shutil.rmtree(path, onerror=lambda f, n, info: ignore_missing(f, n, info[1]))


def _make_deletable(top: str) -> None:
    """Give the owner rwx on every directory of the tree (never through a symlink)."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                continue
            if st.st_mode & 0o700 != 0o700:
                os.chmod(folder, stat.S_IMODE(st.st_mode) | 0o700)
            with os.scandir(folder) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            continue


def make_movable(folder: str) -> None:
    """Give the owner write permission on ``folder`` so that it can be renamed away.

    Moving a directory to another parent rewrites its ``..`` entry, which needs write
    permission on the directory itself.
    """
    st = os.stat(folder, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        os.chmod(folder, stat.S_IMODE(st.st_mode) | 0o700)
