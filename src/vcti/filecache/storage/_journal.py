"""The change journal of a local root: one line per change, appended by every process.

``ROOT/.filecache/journal`` holds one JSON line per change made through the library:
``["p", KEY, SIZE]`` a publish of SIZE bytes, ``["r", KEY]`` a removal, ``["m", KEY]`` a
metadata write (accesses written behind, a size recorded, a record rebuilt). A line is
appended with one ``write`` on an ``O_APPEND`` descriptor, which a local filesystem does
whole, so processes never interleave lines, and a process killed while writing leaves at
worst an incomplete last line, which readers wait for and then skip as damaged.

A reader keeps a cursor (the file's inode and an offset) and reads only what was
appended since. The leader starts a new file (an atomic rename) once the old one is
large; a reader whose cursor names the old inode then knows nothing of what changed and
walks every model once. A journal that is missing, damaged or not a regular file is
reported and means the same: a full walk, until the next change recreates it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Hashable

from . import _fs
from .base import Changes

#: A new file once the journal is this large (about 20,000 changes).
ROTATE_BYTES = 1 << 20

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class Journal:
    """Appends changes to, and reads them from, one journal file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def record(self, kind: str, key: str, size: int | None = None) -> None:
        """Append one change; a failure removes the file, so readers walk instead."""
        item: list[object] = [kind, key] if size is None else [kind, key, size]
        line = (json.dumps(item, separators=(",", ":")) + "\n").encode()
        try:
            try:
                fd = os.open(self.path, _FLAGS, 0o644)
            except OSError as exc:
                if exc.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO):
                    raise
                _fs.remove_entry(self.path)  # a folder, a link or a FIFO in its place
                fd = os.open(self.path, _FLAGS, 0o644)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EINVAL, "not a regular file", self.path)
                if os.write(fd, line) != len(line):
                    raise OSError(errno.EIO, "short write", self.path)
            finally:
                os.close(fd)
        except OSError:
            # The change itself is done; if it cannot be recorded, readers must learn that
            # they missed something: no journal means a full walk.
            with contextlib.suppress(OSError):
                _fs.remove_entry(self.path)

    def generation(self) -> Hashable:
        """The file's identity and size: it changes with every change (None: no file).

        Raises:
            OSError: something other than a regular file is in its place.
        """
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise OSError(
                errno.EINVAL, "not a regular file; scans walk until it is replaced", self.path
            )
        return st.st_ino, st.st_size

    def rotate_if_large(self) -> None:
        """Start a new file once this one is large (the leader does, at its sweep)."""
        with contextlib.suppress(OSError):
            st = os.stat(self.path, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_size > ROTATE_BYTES:
                _fs.write_atomic(self.path, b"")

    def read(self, cursor: object | None) -> Changes:
        """What changed since ``cursor``; see :class:`~.base.Changes`."""
        if isinstance(cursor, tuple) and cursor[0] is not None:
            # The leader looks a few times a second: when the file is the same one, no
            # longer than at the cursor, one stat says that nothing changed.
            try:
                st = os.stat(self.path, follow_symlinks=False)
            except OSError:
                st = None  # reported below
            if st is not None and stat.S_ISREG(st.st_mode) and (st.st_ino, st.st_size) == cursor:
                return Changes(cursor, frozenset())
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if cursor is None or cursor == (None, 0):
                # No change was ever recorded: nothing to know (the first read walks).
                return Changes((None, 0), None if cursor is None else frozenset())
            return self._lost(FileNotFoundError(errno.ENOENT, "the journal is missing", self.path))
        except OSError as exc:
            return self._lost(exc)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return self._lost(OSError(errno.EINVAL, "the journal is not a file", self.path))
            inode, offset = cursor if isinstance(cursor, tuple) else (None, 0)
            if inode is None and cursor is not None:
                inode = st.st_ino  # no file at the last read: all of this one is new
            if cursor is None or inode != st.st_ino:
                # The first read, or a new file (rotated): what changed before is unknown.
                return Changes((st.st_ino, st.st_size), None)
            if st.st_size < offset:
                return self._lost(
                    OSError(errno.EINVAL, "the journal was truncated", self.path), st.st_ino
                )
            os.lseek(fd, offset, os.SEEK_SET)
            data = _read_all(fd, st.st_size - offset)
        finally:
            os.close(fd)
        end = data.rfind(b"\n") + 1  # an incomplete last line is read next time
        keys, published, damaged = _parse(data[:end])
        cursor = (st.st_ino, offset + end)
        if damaged:
            error = OSError(errno.EINVAL, f"{damaged} damaged lines in the journal", self.path)
            return Changes(cursor, None, published, error)
        return Changes(cursor, frozenset(keys), published)

    def _lost(self, error: OSError, inode: object = None) -> Changes:
        return Changes((inode, 0), None, 0, error)


def _parse(data: bytes) -> tuple[set[str], int, int]:
    """The keys and published bytes of complete lines, and how many lines were damaged."""
    keys: set[str] = set()
    published = 0
    damaged = 0
    for line in data.splitlines():
        try:
            item = json.loads(line)
            kind, key = item[0], item[1]
            if not isinstance(key, str) or kind not in ("p", "r", "m"):
                raise ValueError(line)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError):
            damaged += 1
            continue
        keys.add(key)
        if kind == "p" and len(item) > 2 and isinstance(item[2], int):
            published += item[2]
    return keys, published, damaged


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
