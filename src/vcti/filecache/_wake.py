"""The manager thread's alarm clock: set by this process, or by a watched descriptor."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import weakref

from .storage.base import ChangeWatch


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Wake:
    """A :class:`threading.Event` that a thread can also wait on next to a :class:`ChangeWatch`.

    :meth:`set` wakes the waiter at once, wherever it waits. The pipe that lets
    ``select`` see it is made on the first wait next to a watch, and closed with the
    object.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._pipe: tuple[int, int] | None = None
        self._pipe_lock = threading.Lock()

    def _fds(self) -> tuple[int, int]:
        with self._pipe_lock:
            if self._pipe is None:
                r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                self._pipe = (r, w)
                # Not at interpreter exit: a daemon thread may still be waiting on them.
                weakref.finalize(self, _close, r, w).atexit = False
            return self._pipe

    def set(self) -> None:
        """Wake the waiter (this process's publish over the limit, a stop)."""
        self._event.set()
        pipe = self._pipe
        if pipe is not None:
            with contextlib.suppress(OSError):  # full: a byte is already waiting
                os.write(pipe[1], b"!")

    def clear(self) -> None:
        """Forget earlier calls of :meth:`set`."""
        self._event.clear()
        pipe = self._pipe
        if pipe is not None:
            with contextlib.suppress(OSError):
                while os.read(pipe[0], 4096):
                    pass

    def is_set(self) -> bool:
        """True if :meth:`set` was called since the last :meth:`clear`."""
        return self._event.is_set()

    def wait(self, timeout: float, watch: ChangeWatch | None = None) -> bool | None:
        """Sleep until set (True), ``watch`` is readable (None) or ``timeout`` passed (False)."""
        if watch is None:
            return self._event.wait(timeout)
        r, _ = self._fds()
        if self._event.is_set():
            return True
        ready, _, _ = select.select([r, watch.fileno()], [], [], timeout)
        if self._event.is_set():
            return True
        return None if ready else False
