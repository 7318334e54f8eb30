"""Observer hooks, and an observer that writes to stdlib logging."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._config import CacheManagerConfig
    from .._entry import AdoptionReport, CacheSnapshot, EvictionResult
    from ..storage.base import CacheStorage, PeerRequest


#: Every ``context`` the core passes to ``on_error``.
ERROR_CONTEXTS = (
    "adopt",
    "cycle",
    "evict",
    "leader",
    "metadata",
    "observer",
    "pin",
    "policy",
    "scan",
    "sweep",
)


class CacheObserver:
    """Receives the events of a cache; every hook is a no-op, override what you need.

    Hooks run synchronously in the thread that caused the event (the caller's thread for
    ``model()`` and manual ``evict()``, the manager's thread for background cycles), so
    they should be quick. An exception raised by a hook is caught, logged and passed to
    the ``on_error`` hook of the other observers with the context ``"observer"``; it never
    reaches the caller and never stops the manager.
    """

    def on_attach(self, storage: CacheStorage, config: CacheManagerConfig) -> None:
        """A user of this observer (a FileCache, a CacheManager) opened ``storage``."""

    def on_manager_start(self, root: str) -> None:
        """The background manager for ``root`` started."""

    def on_manager_stop(self, root: str) -> None:
        """The background manager for ``root`` stopped."""

    def on_leader_change(self, is_leader: bool) -> None:
        """This process became (True) or stopped being (False) the one that scans and evicts."""

    def on_model_open(self, key: str) -> None:
        """``model(key)`` was entered; the lookup starts."""

    def on_access(self, key: str, hit: bool) -> None:
        """The lookup of ``key`` found a published model (hit) or will fill it (miss)."""

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        """A fill of ``key`` ended: published (``error`` is None) or discarded."""

    def on_model_close(
        self, key: str, hit: bool, duration: float, error: BaseException | None
    ) -> None:
        """The ``model(key)`` context exited after ``duration`` seconds."""

    def on_scan_start(self) -> None:
        """A scan of the root starts."""

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        """A scan ended with ``snapshot`` after ``duration`` seconds."""

    def on_evict_start(self, snapshot: CacheSnapshot, policy: str, trigger: str) -> None:
        """An eviction run starts (``trigger`` is ``"manual"`` or ``"background"``)."""

    def on_evict(self, path: str) -> None:
        """The model at ``path`` (full path or URI) was removed."""

    def on_evict_end(self, result: EvictionResult) -> None:
        """An eviction run ended; ``result`` lists what went."""

    def on_size_update(self, path: str, size: int) -> None:
        """A model's recorded size changed to ``size`` (the first measurement included).

        ``path`` is the model's path relative to the root (its key), as in 1.0.
        """

    def on_cycle_complete(self, total_size: int, entry_count: int) -> None:
        """A background cycle (or ``run_once()``) ended in the process that leads the root."""

    def on_peer_requests(self, requests: Sequence[PeerRequest]) -> None:
        """Lookups other processes served, as the process that leads the root learnt of them.

        Called in the leader's cycle, before ``on_cycle_complete``, with what the other
        processes recorded since its last cycle, in the order they recorded it (a miss
        when its fill published, hits when they were written behind, about an
        ``interval`` after them). Only on storage that records them
        (:class:`~vcti.filecache.storage.base.RequestJournal`: a local root), and only
        for observers that override this hook.
        """

    def on_adopt(self, report: AdoptionReport) -> None:
        """Models of a root written by vcti-file-cache 1.0 were adopted as the root opened."""

    def on_error(self, error: Exception, context: str) -> None:
        """Something failed in the cache; ``context`` says where (``"scan"``, ``"evict"`` ...)."""


class LoggingObserver(CacheObserver):
    """Writes cache events to a stdlib logger, with 1.0's lines at 1.0's levels.

    1.0's four events keep its exact lines: ``Evicted ab/model1`` (at ``level``,
    ``INFO``; the path relative to the root of a cache the observer is attached to),
    ``Size update ab/model1 → 123456789 bytes`` and ``Cycle complete: 5 entries, 100.0 MB
    total`` (``DEBUG``; MB is bytes / 1024**2), and ``CONTEXT: MESSAGE`` for errors
    (``WARNING``). Fills, scans, eviction runs and the manager's start and stop are
    logged at ``level``, adoptions at ``WARNING``.

    Args:
        logger: the logger to use; default ``logging.getLogger("vcti.filecache")``.
        level: the level of routine events.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger if logger is not None else logging.getLogger("vcti.filecache")
        self.level = level
        self._roots: tuple[str, ...] = ()  # "ROOT/" of each storage attached to

    def on_attach(self, storage: CacheStorage, config: CacheManagerConfig) -> None:
        prefix = storage.path("x")[:-1]  # what a key follows in a model's path
        if prefix not in self._roots:
            self._roots = (*self._roots, prefix)

    def on_manager_start(self, root: str) -> None:
        self.logger.log(self.level, "cache manager started for %s", root)

    def on_manager_stop(self, root: str) -> None:
        self.logger.log(self.level, "cache manager stopped for %s", root)

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        if error is None:
            self.logger.log(self.level, "filled model %s in %.3fs", key, duration)
        else:
            self.logger.log(self.level, "fill of model %s failed: %r", key, error)

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        self.logger.log(
            self.level,
            "scan: %d models, %d of %d bytes, %.3fs",
            snapshot.entry_count,
            snapshot.total_size,
            snapshot.evict_above,
            duration,
        )

    def on_evict(self, path: str) -> None:
        for prefix in self._roots:
            if path.startswith(prefix):
                path = path[len(prefix) :]
                break
        self.logger.log(self.level, "Evicted %s", path)

    def on_evict_end(self, result: EvictionResult) -> None:
        self.logger.log(
            self.level,
            "%s eviction (%s): %d models, %d bytes in %.3fs",
            result.trigger,
            result.policy,
            len(result.entries),
            result.bytes_freed,
            result.duration,
        )

    def on_size_update(self, path: str, size: int) -> None:
        self.logger.debug("Size update %s \u2192 %d bytes", path, size)

    def on_cycle_complete(self, total_size: int, entry_count: int) -> None:
        self.logger.debug(
            "Cycle complete: %d entries, %.1f MB total", entry_count, total_size / 1024**2
        )

    def on_adopt(self, report: AdoptionReport) -> None:
        self.logger.warning(
            "adopted %d models of a vcti-file-cache 1.0 root; %d problems: %s",
            len(report.models),
            len(report.problems),
            "; ".join(report.problems) or "none",
        )

    def on_error(self, error: Exception, context: str) -> None:
        self.logger.warning("%s: %s", context, error)
