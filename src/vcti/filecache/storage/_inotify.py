"""A watch on one folder with Linux's inotify, through ctypes (no dependency).

The leader of a local root sleeps on it between cycles instead of looking at the change
journal a few times a second: a thread that wakes four times a second costs about 2 CPU
seconds an hour for the wake-ups alone, where a descriptor that becomes readable when the
journal is written costs nothing while nothing happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys

# From <sys/inotify.h>: a file in the folder was written, created, or moved into it; the
# folder itself was deleted or moved.
_IN_MODIFY = 0x00000002
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_MASK = _IN_MODIFY | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE_SELF | _IN_MOVE_SELF


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()
#: Whether this platform has inotify.
AVAILABLE = _LIBC is not None


class FolderWatch:
    """A descriptor that becomes readable when a file in ``folder`` is written or replaced.

    Raises:
        OSError: the platform has no inotify, or the watch could not be set up (the
            per-user limit of watches, the folder missing).
    """

    def __init__(self, folder: str) -> None:
        if _LIBC is None:
            raise OSError("inotify is not available on this platform")
        fd: int = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), folder)
        if _LIBC.inotify_add_watch(fd, os.fsencode(folder), _MASK) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, os.strerror(err), folder)
        self._fd = fd

    def fileno(self) -> int:
        """The descriptor to ``select`` on."""
        return self._fd

    def clear(self) -> None:
        """Drain the events seen so far (the caller then reads what changed)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 65536):
                pass

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
