"""StructlogObserver: cache events as structlog events, and a trace-ids processor.

The observer never configures structlog: the application decides the processors and
the output. Event names and fields are a public contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import structlog
from opentelemetry import trace

from .base import CacheObserver

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

    from .._config import CacheManagerConfig
    from .._entry import CacheSnapshot, EvictionResult
    from ..storage.base import CacheStorage

__all__ = ["StructlogObserver", "add_trace_ids"]


class _Logger(Protocol):
    """The part of a structlog bound logger this observer uses."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


class StructlogObserver(CacheObserver):
    """Logs cache events with structlog; every event carries ``cache`` (the storage root).

    ======================================  =======  ============================================
    event                                   level    fields
    ======================================  =======  ============================================
    ``filecache.manager.started``           info
    ``filecache.manager.stopped``           info
    ``filecache.leader.changed``            info     is_leader
    ``filecache.scan.completed``            info     size_bytes, limit_bytes, overage_bytes,
                                                     entries, duration_s
    ``filecache.entry.evicted``             info     key, size_bytes, idle_s, access_count,
                                                     policy, reason (one per evicted model)
    ``filecache.eviction.completed``        info     count, bytes, policy, trigger, reason,
                                                     duration_s, skipped_pinned
    ``filecache.fill.failed``               warning  key, error
    ``filecache.error``                     error    context, exc_info
    ``filecache.model.opened``              debug    key, hit
    ======================================  =======  ============================================

    ``reason`` says why a run evicted: ``"size"`` (the total was above the limit),
    ``"free_space"`` (the filesystem had less than ``min_free`` free) or ``"age"`` (idle
    for longer than ``max_age``).

    Args:
        logger: a structlog logger; default ``structlog.get_logger("vcti.filecache")``.
    """

    def __init__(self, logger: _Logger | None = None) -> None:
        # Lazy proxy: it follows the configuration current at each call, so the
        # application may configure structlog after creating the observer.
        self.logger: _Logger = (
            logger if logger is not None else structlog.get_logger("vcti.filecache")
        )
        self._cache: str | None = None

    def __repr__(self) -> str:
        return f"<StructlogObserver cache={self._cache!r}>"

    def on_attach(self, storage: CacheStorage, config: CacheManagerConfig) -> None:
        self._cache = storage.root

    def on_manager_start(self, root: str) -> None:
        self.logger.info("filecache.manager.started", cache=self._cache or root)

    def on_manager_stop(self, root: str) -> None:
        self.logger.info("filecache.manager.stopped", cache=self._cache or root)

    def on_leader_change(self, is_leader: bool) -> None:
        self.logger.info("filecache.leader.changed", cache=self._cache, is_leader=is_leader)

    def on_access(self, key: str, hit: bool) -> None:
        self.logger.debug("filecache.model.opened", cache=self._cache, key=key, hit=hit)

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        if error is not None:
            self.logger.warning(
                "filecache.fill.failed", cache=self._cache, key=key, error=repr(error)
            )

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        self.logger.info(
            "filecache.scan.completed",
            cache=self._cache,
            size_bytes=snapshot.total_size,
            limit_bytes=snapshot.evict_above,
            overage_bytes=snapshot.overage,
            entries=snapshot.entry_count,
            duration_s=duration,
        )

    def on_evict_end(self, result: EvictionResult) -> None:
        for entry in result.entries:
            self.logger.info(
                "filecache.entry.evicted",
                cache=self._cache,
                key=entry.key,
                size_bytes=entry.size,
                idle_s=max(0.0, result.started_at - entry.last_access),
                access_count=entry.access_count,
                policy=result.policy,
                reason=result.reason,
            )
        self.logger.info(
            "filecache.eviction.completed",
            cache=self._cache,
            count=len(result.entries),
            bytes=result.bytes_freed,
            policy=result.policy,
            trigger=result.trigger,
            reason=result.reason,
            duration_s=result.duration,
            skipped_pinned=len(result.skipped_pinned),
        )

    def on_error(self, error: Exception, context: str) -> None:
        self.logger.error("filecache.error", cache=self._cache, context=context, exc_info=error)


def add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: add the ids of the current OpenTelemetry span, if there is one.

    ``trace_id`` (32 hex digits) and ``span_id`` (16 hex digits) are written as trace
    backends show them, so a log line leads to its trace. Ids already in the event are
    kept. Put it before the renderer::

        structlog.configure(processors=[..., add_trace_ids, structlog.processors.JSONRenderer()])
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict
