"""Fan-out of events to a group of observers, each isolated from the others."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .observers.base import CacheObserver

log = logging.getLogger("vcti.filecache")


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
            except Exception as exc:
                self._observer_failed(observer, hook, exc)

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
            except Exception:
                log.exception("observer %r failed in on_error", observer)
