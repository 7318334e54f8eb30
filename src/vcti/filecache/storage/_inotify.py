"""A watch on one folder with Linux's inotify, through ctypes (no dependency).

The leader of a local root sleeps on it between cycles instead of looking at the change
journal a few times a second: a thread that wakes four times a second costs about 3 CPU
seconds an hour for the wake-ups alone, where a descriptor that becomes readable when the
journal is written costs nothing while nothing happens.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

# From <sys/inotify.h>: a file in the folder was written, created, or moved into it; the
# folder itself was deleted or moved.
_IN_MODIFY = 0x00000002
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_MASK = _IN_MODIFY | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE_SELF | _IN_MOVE_SELF
_IN_IGNORED = 0x00008000  # the watch was removed (its folder deleted)
_GONE = _IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library's inotify calls, loaded on first use (None: not on this platform)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # noqa: PLC0415 - only a leader watching a journal needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own C library
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


def _errno() -> int:
    import ctypes  # noqa: PLC0415

    return ctypes.get_errno()


def available() -> bool:
    """Whether this platform has inotify."""
    return _libc() is not None


class FolderWatch:
    """A descriptor that becomes readable when a file in ``folder`` is written or replaced.

    Raises:
        OSError: the platform has no inotify, or the watch could not be set up (the
            per-user limit of watches, the folder missing).
    """

    def __init__(self, folder: str) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("inotify is not available on this platform")
        fd: int = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = _errno()
            raise OSError(err, os.strerror(err), folder)
        self._fd = fd
        self._folder = os.fsencode(folder)
        if not self._add():
            err = _errno()
            os.close(fd)
            raise OSError(err, os.strerror(err), folder)
        self._lost = False

    def _add(self) -> bool:
        libc = _libc()
        assert libc is not None
        return bool(libc.inotify_add_watch(self._fd, self._folder, _MASK) >= 0)

    def fileno(self) -> int:
        """The descriptor to ``select`` on."""
        return self._fd

    def clear(self) -> None:
        """Drain the events seen so far (the caller then reads what changed).

        A folder that was deleted or moved away is watched again at its path once it is
        there again (a root wiped and recreated); until then, only the caller's own timer
        wakes it.
        """
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self._fd, 65536):
                offset = 0
                while offset + _EVENT.size <= len(data):
                    _, mask, _, length = _EVENT.unpack_from(data, offset)
                    offset += _EVENT.size + length
                    if mask & _GONE:
                        self._lost = True
        if self._lost and self._add():
            self._lost = False

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
