"""OpenTelemetryObserver: spans for scans, eviction runs and model() contexts.

Uses only the OpenTelemetry API: without an SDK (or a ``tracer_provider``) every span is
a no-op. Span and attribute names are a public contract.

The hooks of one scan, eviction run or ``model()`` context run in one thread, but
several run at once in different threads (and ``model()`` contexts nest), so the open
spans live in a context variable, as a stack per thread or asyncio task, never in a
field of the observer.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from .. import __version__
from .base import CacheObserver

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    from .._config import CacheManagerConfig
    from .._entry import CacheSnapshot, EvictionResult
    from ..storage.base import CacheStorage

__all__ = ["OpenTelemetryObserver"]


@dataclass(frozen=True, eq=False)
class _Open:
    """A span this module started and has not ended yet."""

    owner: OpenTelemetryObserver
    kind: str  # "scan", "evict" or "model"
    span: Span
    key: str | None = None  # the model key of a "model" span
    manual: bool = False  # an eviction run started by FileCache.evict()
    token: Token[Context] | None = None  # the context a "model" span made current


# One immutable stack per thread or task; each observer only sees its own frames.
_open_spans: ContextVar[tuple[_Open, ...]] = ContextVar("vcti_filecache_otel", default=())


def _error_type(error: BaseException) -> str:
    """The ``error.type`` attribute value: the exception's qualified class name."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _mark_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_attribute("error.type", _error_type(error))
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class OpenTelemetryObserver(CacheObserver):
    """Traces a cache with OpenTelemetry.

    Spans (attributes are prefixed ``filecache.``):

    * ``filecache.scan`` around each scan: ``cache``, ``entries``, ``size``,
      ``overage``, ``limit``.
    * ``filecache.evict`` around each eviction run, manual or background: the same
      attributes as the scan it starts from, plus ``policy``, ``trigger``, ``reason``
      (``size``, ``free_space`` or ``age``), ``evicted.count`` and ``evicted.size``, and
      one ``filecache.entry.evicted`` event per removed model (``filecache.key``,
      ``filecache.size``, ``filecache.idle_seconds``, ``filecache.reason``).
    * ``filecache.model`` around each ``model()`` context (``cache``, ``key``, ``hit``,
      and ``fill_duration_seconds`` for a fill). It is a child of the caller's current
      span and is current inside the context, so the work done there nests under it.

    A span that ends with an error records the exception, has the status ERROR and the
    attribute ``error.type``; a successful span has no status. An error reported while a
    scan or eviction run is open in the same thread marks that span.

    Args:
        tracer_provider: where the spans go; default the global tracer provider.
        trace_models: set False to trace only scans and eviction runs.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, trace_models: bool = True
    ) -> None:
        self.trace_models = trace_models
        self._tracer = trace.get_tracer(
            "vcti.filecache", __version__, tracer_provider=tracer_provider
        )
        self._cache: str | None = None

    def __repr__(self) -> str:
        return f"<OpenTelemetryObserver cache={self._cache!r}>"

    # -- the stack of open spans ----------------------------------------------------------

    def _push(self, frame: _Open) -> None:
        _open_spans.set((*_open_spans.get(), frame))

    def _find(self, kind: str, key: str | None = None) -> _Open | None:
        """The innermost open span of ``kind`` (and ``key``) that this observer started."""
        for frame in reversed(_open_spans.get()):
            if frame.owner is self and frame.kind == kind and frame.key == key:
                return frame
        return None

    def _pop(self, kind: str, key: str | None = None) -> _Open | None:
        frame = self._find(kind, key)
        if frame is not None:
            _open_spans.set(tuple(f for f in _open_spans.get() if f is not frame))
        return frame

    def _attributes(self, **values: AttributeValue) -> dict[str, AttributeValue]:
        attributes = {f"filecache.{name}": value for name, value in values.items()}
        if self._cache is not None:
            attributes["filecache.cache"] = self._cache
        return attributes

    @staticmethod
    def _snapshot_attributes(snapshot: CacheSnapshot) -> dict[str, AttributeValue]:
        return {
            "entries": snapshot.entry_count,
            "size": snapshot.total_size,
            "overage": snapshot.overage,
            "limit": snapshot.evict_above,
        }

    def _end_stale(self, kind: str) -> None:
        """End a span of ``kind`` whose end hook never came (its run raised)."""
        stale = self._pop(kind)
        if stale is not None:
            stale.span.set_status(Status(StatusCode.ERROR, f"{kind} did not finish"))
            stale.span.end()

    # -- hooks ----------------------------------------------------------------------------

    def on_attach(self, storage: CacheStorage, config: CacheManagerConfig) -> None:
        self._cache = storage.root

    def on_scan_start(self) -> None:
        self._end_stale("scan")
        span = self._tracer.start_span("filecache.scan", attributes=self._attributes())
        self._push(_Open(self, "scan", span))

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        frame = self._pop("scan")
        if frame is None:
            return
        frame.span.set_attributes(self._attributes(**self._snapshot_attributes(snapshot)))
        frame.span.end()

    def on_evict_start(self, snapshot: CacheSnapshot, policy: str, trigger: str) -> None:
        self._end_stale("evict")
        attributes = self._attributes(
            policy=policy, trigger=trigger, **self._snapshot_attributes(snapshot)
        )
        span = self._tracer.start_span("filecache.evict", attributes=attributes)
        self._push(_Open(self, "evict", span, manual=trigger == "manual"))

    def on_evict_end(self, result: EvictionResult) -> None:
        frame = self._pop("evict")
        if frame is None:
            return
        span = frame.span
        span.set_attribute("filecache.evicted.count", len(result.entries))
        span.set_attribute("filecache.evicted.size", result.bytes_freed)
        span.set_attribute("filecache.reason", result.reason)
        for entry in result.entries:
            span.add_event(
                "filecache.entry.evicted",
                {
                    "filecache.key": entry.key,
                    "filecache.size": entry.size,
                    "filecache.idle_seconds": max(0.0, result.started_at - entry.last_access),
                    "filecache.reason": result.reason,
                },
            )
        span.end()

    def on_error(self, error: Exception, context: str) -> None:
        frames = [f for f in _open_spans.get() if f.owner is self and f.kind in ("scan", "evict")]
        if not frames:
            return
        frame = frames[-1]
        _mark_error(frame.span, error)
        # These errors end the run without its end hook: a failed cycle in the
        # background thread, or a failing policy, which a manual evict() re-raises.
        if context == "cycle":
            for stale in frames:
                self._pop(stale.kind)
                stale.span.end()
        elif context == "policy" and frame.kind == "evict" and frame.manual:
            self._pop("evict")
            frame.span.end()

    def on_model_open(self, key: str) -> None:
        if not self.trace_models:
            return
        span = self._tracer.start_span("filecache.model", attributes=self._attributes(key=key))
        token = otel_context.attach(trace.set_span_in_context(span))
        self._push(_Open(self, "model", span, key=key, token=token))

    def on_access(self, key: str, hit: bool) -> None:
        frame = self._find("model", key)
        if frame is not None:
            frame.span.set_attribute("filecache.hit", hit)

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        frame = self._find("model", key)
        if frame is not None:
            frame.span.set_attribute("filecache.fill_duration_seconds", duration)

    def on_model_close(
        self, key: str, hit: bool, duration: float, error: BaseException | None
    ) -> None:
        frame = self._pop("model", key)
        if frame is None:
            return
        frame.span.set_attribute("filecache.hit", hit)
        if error is not None:
            _mark_error(frame.span, error)
        if frame.token is not None:
            otel_context.detach(frame.token)
        frame.span.end()
