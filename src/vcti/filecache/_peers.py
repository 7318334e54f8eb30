"""The leader's reading of the lookups other processes served, for the observers that ask.

Architecture invariant: only the process that leads the root reads them, once per cycle,
with a cursor of its own (the scan's and the watch's stay as they are); a process that
becomes the leader starts from the journal's end, so that no lookup reaches two leaders'
observers.
"""

from __future__ import annotations

import threading

from ._observers import ObserverGroup
from .observers.base import CacheObserver
from .storage.base import CacheStorage, RequestJournal


def _wants_requests(group: ObserverGroup) -> bool:
    """True if an observer of ``group`` overrides ``on_peer_requests``."""
    default = CacheObserver.on_peer_requests
    return any(type(o).on_peer_requests is not default for o in group.observers)


class PeerRequests:
    """Hands the lookups other processes recorded to the leader's observers, each cycle."""

    def __init__(self, storage: CacheStorage) -> None:
        self._journal = storage if isinstance(storage, RequestJournal) else None
        self._cursor: object = None
        self._lock = threading.Lock()

    def restart(self) -> None:
        """This process just became the leader: read from the journal's end."""
        # A fresh lock too: a forked child must lead again first, and the parent's lock
        # may have been held by another thread at the fork.
        self._lock = threading.Lock()
        self._cursor = None

    def deliver(self, group: ObserverGroup) -> None:
        """Read what was recorded since the last cycle; pass the lookups to ``group``."""
        if self._journal is None or not _wants_requests(group):
            return
        with self._lock:  # a cycle in another thread (run_once) reads after this one
            try:
                changes = self._journal.read_peer_requests(self._cursor)
            except OSError as exc:
                group.error(exc, "leader")
                return
            self._cursor = changes.cursor
            if changes.requests:
                group.emit("on_peer_requests", changes.requests)
