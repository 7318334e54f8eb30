"""OpenTelemetryObserver, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from vcti.filecache import CacheManagerConfig, LocalStorage, __version__
from vcti.filecache.exceptions import KeyValidationError
from vcti.filecache.observers import OpenTelemetryObserver

T0 = 1_700_000_000.0


def named(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans called ``name``, in the order they ended."""
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def assert_error(span: ReadableSpan, error_type: str, message: str) -> None:
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == error_type
    exceptions = [e for e in span.events if e.name == "exception"]
    assert len(exceptions) == 1
    assert exceptions[0].attributes is not None
    assert exceptions[0].attributes["exception.message"] == message


class FailingPolicy:
    """A policy whose order() raises."""

    name = "failing"

    def order(self, entries):
        raise RuntimeError("no order")


class BrokenWalk(LocalStorage):
    """LocalStorage whose walk raises (not an OSError) while ``broken`` is set."""

    broken = False

    def iter_stamped_models(self, prefix="", onerror=None):
        if self.broken:
            raise RuntimeError("walk failed")
        return super().iter_stamped_models(prefix, onerror)

    def read_changes(self, cursor):  # what a scan reads first, changes or not
        if self.broken:
            raise RuntimeError("walk failed")
        return super().read_changes(cursor)


def ticking_clock():
    """A clock that moves one second per call, so access times never tie."""
    ticks = itertools.count()
    return lambda: T0 + next(ticks)


def fill(cache, key: str, size: int = 1000) -> None:
    with cache.model(key) as m:
        Path(m.path, "data.bin").write_bytes(b"x" * size)


def test_scripted_sequence(tracing, script):
    tracer = tracing.provider.get_tracer("test")
    run = script(
        [OpenTelemetryObserver(tracer_provider=tracing.provider)],
        around=lambda: tracer.start_as_current_span("request"),
    )
    spans = tracing.exporter.get_finished_spans()
    (request,) = named(spans, "request")
    ours = [s for s in spans if s is not request]
    assert {s.name for s in ours} == {"filecache.scan", "filecache.evict", "filecache.model"}
    for span in ours:
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "vcti.filecache"
        assert span.instrumentation_scope.version == __version__
        assert span.attributes is not None
        assert span.attributes["filecache.cache"] == run.root

    models = named(spans, "filecache.model")
    assert [(s.attributes["filecache.key"], s.attributes["filecache.hit"]) for s in models] == [
        ("a", False),
        ("b", False),
        ("a", True),
        ("a", True),
        ("c", False),
        ("d", False),
    ]
    assert {parent_id(s) for s in models} == {span_id(request)}
    for span in models:
        fill_duration = span.attributes.get("filecache.fill_duration_seconds")
        if span.attributes["filecache.hit"]:
            assert fill_duration is None
        else:
            assert isinstance(fill_duration, float)
            assert fill_duration >= 0
    failed = models[4]
    assert_error(failed, "RuntimeError", "boom")
    for span in models[:4] + models[5:]:
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in span.attributes

    scans = named(spans, "filecache.scan")
    assert [
        (
            s.attributes["filecache.entries"],
            s.attributes["filecache.size"],
            s.attributes["filecache.overage"],
            s.attributes["filecache.limit"],
        )
        for s in scans
    ] == [
        (0, 0, 0, 2500),
        (2, 2000, 0, 2500),
        (2, 3000, 500, 2500),
        (3, 3000, 500, 2500),
        (1, 1000, 0, 2500),
        (2, 2000, 0, 2500),  # the last cycle, as the cache closes
    ]
    # The background scans are root spans; the others nest where they ran: inside the
    # model context of a (hit), inside the fill of d, then in the request.
    assert [parent_id(s) for s in scans] == [
        None,
        span_id(models[2]),
        span_id(models[5]),
        span_id(request),
        span_id(request),
        None,
    ]
    assert scans[0].context.trace_id != request.context.trace_id
    for span in scans[:4]:
        assert span.status.status_code is StatusCode.UNSET
    assert_error(
        scans[4],
        "PermissionError",
        "[Errno 13] Permission denied: " + repr(str(Path(run.root, "a"))),
    )

    (evict,) = named(spans, "filecache.evict")
    assert parent_id(evict) == span_id(request)
    assert evict.status.status_code is StatusCode.UNSET
    assert dict(evict.attributes) == {
        "filecache.cache": run.root,
        "filecache.policy": "lru",
        "filecache.trigger": "manual",
        "filecache.entries": 3,
        "filecache.size": 3000,
        "filecache.overage": 500,
        "filecache.limit": 2500,
        "filecache.evicted.count": 1,
        "filecache.evicted.size": 1000,
        "filecache.reason": "size",
    }
    assert [(e.name, dict(e.attributes)) for e in evict.events] == [
        (
            "filecache.entry.evicted",
            {
                "filecache.key": "b",
                "filecache.size": 1000,
                "filecache.idle_seconds": 1200.0,
                "filecache.reason": "size",
            },
        )
    ]
    # The evict span runs after the scan it starts from, inside the request.
    assert scans[3].end_time <= evict.start_time <= evict.end_time <= request.end_time


@pytest.mark.parametrize("reason", ["size", "free_space", "age"])
def test_evicted_events_say_why(tracing, tmp_path: Path, reason: str):
    from vcti.filecache import CacheEntry, CacheSnapshot, EvictionResult

    observer = OpenTelemetryObserver(tracer_provider=tracing.provider)
    observer.on_attach(LocalStorage(tmp_path), CacheManagerConfig(evict_above=1))
    entries = (CacheEntry("a", 10, 2, 100.0, 50.0), CacheEntry("b", 20, 1, 150.0, 60.0))
    observer.on_evict_start(
        CacheSnapshot.build(entries, evict_above=1, taken_at=999.0), "lru", "background"
    )
    observer.on_evict_end(
        EvictionResult(entries, 30, "lru", "background", 1000.0, 0.5, 0, reason=reason)
    )
    (evict,) = tracing.exporter.get_finished_spans()
    assert evict.attributes["filecache.reason"] == reason
    assert [
        (e.name, e.attributes["filecache.key"], e.attributes["filecache.reason"])
        for e in evict.events
    ] == [
        ("filecache.entry.evicted", "a", reason),
        ("filecache.entry.evicted", "b", reason),
    ]


def test_models_are_not_traced_when_switched_off(tracing, open_cache):
    observer = OpenTelemetryObserver(tracer_provider=tracing.provider, trace_models=False)
    cache = open_cache([observer])
    fill(cache, "a")
    cache.snapshot()
    spans = tracing.exporter.get_finished_spans()
    assert [s.name for s in spans] == ["filecache.scan", "filecache.scan"]


def test_nested_models_pair_and_contain_the_work(tracing, open_cache):
    tracer = tracing.provider.get_tracer("test")
    cache = open_cache([OpenTelemetryObserver(tracer_provider=tracing.provider)])
    tracing.exporter.clear()
    with cache.model("outer"), cache.model("inner"):
        with tracer.start_as_current_span("work"):
            pass
        with pytest.raises(KeyError), cache.model("innermost"):
            raise KeyError("k")
    with tracer.start_as_current_span("after"):
        pass
    spans = tracing.exporter.get_finished_spans()
    work, innermost, inner, outer, after = spans
    assert [s.name for s in spans] == [
        "work",
        "filecache.model",
        "filecache.model",
        "filecache.model",
        "after",
    ]
    assert [s.attributes["filecache.key"] for s in (innermost, inner, outer)] == [
        "innermost",
        "inner",
        "outer",
    ]
    assert parent_id(outer) is None
    assert parent_id(inner) == span_id(outer)
    assert parent_id(work) == span_id(inner)
    assert parent_id(innermost) == span_id(inner)
    assert parent_id(after) is None  # every context was detached
    assert_error(innermost, "KeyError", "'k'")
    assert inner.status.status_code is StatusCode.UNSET
    assert outer.status.status_code is StatusCode.UNSET


def test_threads_keep_their_own_spans(tracing, open_cache):
    tracer = tracing.provider.get_tracer("test")
    cache = open_cache([OpenTelemetryObserver(tracer_provider=tracing.provider)])
    for i in range(8):
        fill(cache, f"shared{i}", size=10)
    tracing.exporter.clear()
    barrier = threading.Barrier(8, timeout=60)
    errors: list[BaseException] = []

    def request(i: int) -> None:
        try:
            with tracer.start_as_current_span(f"request{i}"), cache.model(f"shared{i}"):
                barrier.wait()  # every thread has a model open now
                with cache.model(f"own{i}"):
                    barrier.wait()
                    cache.snapshot()
                    barrier.wait()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    spans = tracing.exporter.get_finished_spans()
    by_id = {span_id(s): s for s in spans}
    for i in range(8):
        (req,) = named(spans, f"request{i}")
        own = [s for s in spans if s.attributes.get("filecache.key") == f"own{i}"]
        shared = [s for s in spans if s.attributes.get("filecache.key") == f"shared{i}"]
        assert len(own) == len(shared) == 1
        assert parent_id(shared[0]) == span_id(req)
        assert parent_id(own[0]) == span_id(shared[0])
        assert shared[0].attributes["filecache.hit"] is True
        assert own[0].attributes["filecache.hit"] is False
    for scan in named(spans, "filecache.scan"):
        parent = by_id[parent_id(scan)]
        assert parent.attributes["filecache.key"].startswith("own")
    assert len(named(spans, "filecache.scan")) == 8
    assert len(named(spans, "filecache.model")) == 16


def test_background_eviction(tracing, open_cache):
    cache = open_cache(
        [OpenTelemetryObserver(tracer_provider=tracing.provider)], clock=ticking_clock()
    )
    for key in ("a", "b", "c"):
        fill(cache, key)
    tracing.exporter.clear()
    cache.manager.run_once()
    scan, evict = tracing.exporter.get_finished_spans()
    assert (scan.name, evict.name) == ("filecache.scan", "filecache.evict")
    assert parent_id(scan) is None
    assert parent_id(evict) is None
    assert evict.attributes["filecache.trigger"] == "background"
    assert evict.attributes["filecache.evicted.count"] == 1
    assert evict.attributes["filecache.evicted.size"] == 1000
    assert [e.attributes["filecache.key"] for e in evict.events] == ["a"]


def test_manual_evict_nests_in_the_request(tracing, open_cache):
    tracer = tracing.provider.get_tracer("test")
    cache = open_cache(
        [OpenTelemetryObserver(tracer_provider=tracing.provider)], clock=ticking_clock()
    )
    for key in ("a", "b", "c"):
        fill(cache, key)
    tracing.exporter.clear()
    with tracer.start_as_current_span("request") as request:
        assert cache.evict() == ["a"]
    scan, evict, _ = tracing.exporter.get_finished_spans()
    assert parent_id(scan) == parent_id(evict) == request.get_span_context().span_id
    assert evict.attributes["filecache.trigger"] == "manual"


def test_failing_policy_marks_the_eviction(tracing, open_cache):
    cache = open_cache([OpenTelemetryObserver(tracer_provider=tracing.provider)])
    for key in ("a", "b", "c"):
        fill(cache, key)
    tracing.exporter.clear()
    # A manual run re-raises: the span still ends, with the error.
    with pytest.raises(RuntimeError, match="no order"):
        cache.evict(policy=FailingPolicy())
    # A background run goes on with nothing to evict.
    background = open_cache(
        [OpenTelemetryObserver(tracer_provider=tracing.provider)], policy=FailingPolicy()
    )
    for key in ("a", "b", "c"):
        fill(background, key)
    background.manager.run_once()
    evicts = named(tracing.exporter.get_finished_spans(), "filecache.evict")
    assert [s.attributes["filecache.trigger"] for s in evicts] == ["manual", "background"]
    for span in evicts:
        assert span.attributes["filecache.policy"] == "failing"
        assert_error(span, "RuntimeError", "no order")
    assert "filecache.evicted.count" not in evicts[0].attributes
    assert evicts[1].attributes["filecache.evicted.count"] == 0


def test_failed_cycle_ends_the_scan(tmp_path, tracing, open_cache):
    storage = BrokenWalk(tmp_path / "broken")
    cache = open_cache([OpenTelemetryObserver(tracer_provider=tracing.provider)], storage=storage)
    tracing.exporter.clear()
    storage.broken = True
    assert cache.manager.run_once() is None
    (scan,) = tracing.exporter.get_finished_spans()
    assert scan.name == "filecache.scan"
    assert_error(scan, "RuntimeError", "walk failed")
    # A manual scan that raises has no hook to end its span: the next scan ends it.
    with pytest.raises(RuntimeError, match="walk failed"):
        cache.snapshot()
    assert len(tracing.exporter.get_finished_spans()) == 1
    storage.broken = False
    cache.snapshot()
    _, stale, scan = tracing.exporter.get_finished_spans()
    assert stale.status.status_code is StatusCode.ERROR
    assert stale.status.description == "scan did not finish"
    assert scan.status.status_code is StatusCode.UNSET


def test_failed_lookup_is_an_error(tracing, open_cache):
    cache = open_cache([OpenTelemetryObserver(tracer_provider=tracing.provider)])
    fill(cache, "a")
    tracing.exporter.clear()
    with pytest.raises(KeyValidationError):
        fill(cache, "a/b")
    (span,) = tracing.exporter.get_finished_spans()
    assert span.attributes["filecache.key"] == "a/b"
    assert span.attributes["filecache.hit"] is False
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "vcti.filecache.exceptions.KeyValidationError"


def test_global_provider_by_default(open_cache):
    # No SDK configured globally: the spans are no-ops and nothing breaks.
    cache = open_cache([OpenTelemetryObserver()])
    fill(cache, "a")
    cache.evict()
