"""Fan-out of events to a group of observers, each isolated from the others."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .observers.base import CacheObserver

log = logging.getLogger("vcti.filecache")

_local = threading.local()


@contextmanager
def background() -> Iterator[None]:
    """Mark this thread as the manager's own while the block runs.

    There, anything a user callback raises, ``KeyboardInterrupt`` and ``SystemExit``
    included, is that callback's error: reported, and the manager goes on. In a caller's
    thread those two propagate (Ctrl-C must still stop a program).
    """
    _local.background = True
    try:
        yield
    finally:
        _local.background = False


def in_background() -> bool:
    """True in the manager's own thread."""
    return bool(getattr(_local, "background", False))


def callback_error(exc: BaseException) -> Exception | None:
    """``exc`` as the error of a user callback, or None when it must propagate.

    ``KeyboardInterrupt`` and ``SystemExit`` propagate in a caller's thread; in the
    manager's thread they become a ``RuntimeError`` that says what was raised.
    """
    if isinstance(exc, Exception):
        return exc
    if in_background() and isinstance(exc, (KeyboardInterrupt, SystemExit)):
        error = RuntimeError(f"a callback raised {type(exc).__name__} in the manager's thread")
        error.__cause__ = exc
        return error
    return None


class ObserverGroup:
    """Calls a hook on every observer; a failing observer never affects the caller."""

    __slots__ = ("observers",)

    def __init__(self, observers: Sequence[CacheObserver]) -> None:
        self.observers = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self.observers)

    def emit(self, hook: str, *args: Any) -> None:
        """Call ``hook(*args)`` on every observer, isolating failures."""
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except BaseException as exc:
                error = callback_error(exc)
                if error is None:
                    raise
                self._observer_failed(observer, hook, error)

    def error(self, error: Exception, context: str) -> None:
        """Report ``error`` to every observer's ``on_error``."""
        self.emit("on_error", error, context)

    def _observer_failed(self, failed: CacheObserver, hook: str, exc: Exception) -> None:
        log.error("observer %r failed in %s", failed, hook, exc_info=exc)
        if hook == "on_error":
            return
        for observer in self.observers:
            if observer is failed:
                continue
            try:
                observer.on_error(exc, "observer")
            except BaseException as again:
                if callback_error(again) is None:
                    raise
                log.exception("observer %r failed in on_error", observer)
