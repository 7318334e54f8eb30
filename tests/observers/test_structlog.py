"""StructlogObserver, checked with structlog.testing.capture_logs()."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from structlog.testing import LogCapture, capture_logs

from vcti.filecache.observers import StructlogObserver
from vcti.filecache.observers.structlog import add_trace_ids


def fill(cache, key: str, size: int = 1000) -> None:
    with cache.model(key) as m:
        Path(m.path, "data.bin").write_bytes(b"x" * size)


def test_scripted_sequence(script):
    with capture_logs() as logs:
        run = script([StructlogObserver()])
    assert {e["cache"] for e in logs} == {run.root}
    assert [e["event"] for e in logs] == [
        "filecache.manager.started",
        "filecache.leader.changed",
        "filecache.scan.completed",
        "filecache.model.opened",  # a (fill)
        "filecache.model.opened",  # b (fill)
        "filecache.model.opened",  # a (hit)
        "filecache.scan.completed",
        "filecache.model.opened",  # a (hit)
        "filecache.model.opened",  # c (fill)
        "filecache.fill.failed",
        "filecache.model.opened",  # d (fill)
        "filecache.scan.completed",
        "filecache.scan.completed",  # evict() scans first
        "filecache.entry.evicted",
        "filecache.eviction.completed",
        "filecache.error",
        "filecache.scan.completed",
        "filecache.scan.completed",  # the last cycle, as the cache closes
        "filecache.manager.stopped",
        "filecache.leader.changed",
    ]

    def events(name: str) -> list[dict]:
        return [e for e in logs if e["event"] == name]

    levels = {e["event"]: e["log_level"] for e in logs}
    assert levels == {
        "filecache.manager.started": "info",
        "filecache.manager.stopped": "info",
        "filecache.leader.changed": "info",
        "filecache.scan.completed": "info",
        "filecache.model.opened": "debug",
        "filecache.fill.failed": "warning",
        "filecache.entry.evicted": "info",
        "filecache.eviction.completed": "info",
        "filecache.error": "error",
    }
    assert [e["is_leader"] for e in events("filecache.leader.changed")] == [True, False]
    assert [(e["key"], e["hit"]) for e in events("filecache.model.opened")] == [
        ("a", False),
        ("b", False),
        ("a", True),
        ("a", True),
        ("c", False),
        ("d", False),
    ]
    scans = events("filecache.scan.completed")
    assert [
        (e["size_bytes"], e["limit_bytes"], e["overage_bytes"], e["entries"]) for e in scans
    ] == [
        (0, 2500, 0, 0),
        (2000, 2500, 0, 2),
        (3000, 2500, 500, 2),
        (3000, 2500, 500, 3),
        (1000, 2500, 0, 1),
        (2000, 2500, 0, 2),  # the last cycle, as the cache closes
    ]
    for e in scans:
        assert isinstance(e["duration_s"], float)
        assert e["duration_s"] >= 0
    (failed,) = events("filecache.fill.failed")
    assert (failed["key"], failed["error"]) == ("c", "RuntimeError('boom')")
    (evicted,) = events("filecache.entry.evicted")
    assert {k: v for k, v in evicted.items() if k not in ("event", "log_level")} == {
        "cache": run.root,
        "key": "b",
        "size_bytes": 1000,
        "idle_s": 1200.0,
        "access_count": 1,
        "policy": "lru",
        "reason": "size",
    }
    (eviction,) = events("filecache.eviction.completed")
    duration = eviction.pop("duration_s")
    assert isinstance(duration, float)
    assert duration >= 0
    assert eviction == {
        "event": "filecache.eviction.completed",
        "log_level": "info",
        "cache": run.root,
        "count": 1,
        "bytes": 1000,
        "policy": "lru",
        "trigger": "manual",
        "reason": "size",
        "skipped_pinned": 0,
    }
    (error,) = events("filecache.error")
    assert error["context"] == "scan"
    assert isinstance(error["exc_info"], PermissionError)
    assert error["exc_info"].filename == str(Path(run.root, "a"))


class ByKey:
    """Evicts in key order."""

    name = "by-key"

    def order(self, entries):
        return sorted(entries, key=lambda e: e.key)


def test_background_eviction_reports_skipped_models(open_cache):
    with capture_logs() as logs:
        cache = open_cache([StructlogObserver()], policy=ByKey())
        for key in ("a", "b", "c"):
            fill(cache, key)
        with cache.model("a"):  # the first in line, but open
            cache.manager.run_once()
    evicted = [e["key"] for e in logs if e["event"] == "filecache.entry.evicted"]
    (eviction,) = [e for e in logs if e["event"] == "filecache.eviction.completed"]
    assert evicted == ["b"]
    assert (eviction["trigger"], eviction["policy"], eviction["count"]) == (
        "background",
        "by-key",
        1,
    )
    assert eviction["skipped_pinned"] == 1


@pytest.mark.parametrize("reason", ["size", "free_space", "age"])
def test_evicted_events_say_why(tmp_path: Path, reason: str):
    from vcti.filecache import CacheEntry, CacheManagerConfig, EvictionResult, LocalStorage

    observer = StructlogObserver()
    storage = LocalStorage(tmp_path)
    observer.on_attach(storage, CacheManagerConfig(evict_above=1))
    entries = (CacheEntry("a", 10, 2, 100.0, 50.0), CacheEntry("b", 20, 1, 150.0, 60.0))
    with capture_logs() as logs:
        observer.on_evict_end(
            EvictionResult(entries, 30, "lru", "background", 1000.0, 0.5, 0, reason=reason)
        )
    assert [(e["event"], e.get("key"), e["reason"]) for e in logs] == [
        ("filecache.entry.evicted", "a", reason),
        ("filecache.entry.evicted", "b", reason),
        ("filecache.eviction.completed", None, reason),
    ]


def test_given_logger_is_used(open_cache):
    with capture_logs() as logs:
        logger = structlog.get_logger("custom").bind(service="post-processing")
        cache = open_cache([StructlogObserver(logger=logger)])
        fill(cache, "a")
    opened = [e for e in logs if e["event"] == "filecache.model.opened"]
    assert opened == [
        {
            "event": "filecache.model.opened",
            "log_level": "debug",
            "service": "post-processing",
            "cache": cache.storage.root,
            "key": "a",
            "hit": False,
        }
    ]


def test_structlog_is_never_configured(open_cache, capsys):
    before = structlog.get_config()
    was_configured = structlog.is_configured()
    cache = open_cache([StructlogObserver()])
    fill(cache, "a")
    assert structlog.is_configured() == was_configured
    assert structlog.get_config() == before
    # With whatever configuration the application has (here structlog's default).
    assert "filecache.model.opened" in capsys.readouterr().out


def test_add_trace_ids_inside_and_outside_a_span(tracing):
    tracer = tracing.provider.get_tracer("test")
    assert add_trace_ids(None, "info", {"event": "outside"}) == {"event": "outside"}
    with tracer.start_as_current_span("request") as span:
        context = span.get_span_context()
        event = add_trace_ids(None, "info", {"event": "inside"})
        explicit = add_trace_ids(None, "info", {"event": "bound", "trace_id": "mine"})
    assert event == {
        "event": "inside",
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }
    assert len(event["trace_id"]) == 32
    assert len(event["span_id"]) == 16
    assert explicit["trace_id"] == "mine"
    assert explicit["span_id"] == f"{context.span_id:016x}"


def test_cache_events_carry_the_request_trace(tracing, open_cache):
    from vcti.filecache.observers import OpenTelemetryObserver

    tracer = tracing.provider.get_tracer("test")
    capture = LogCapture()
    logger = structlog.wrap_logger(None, processors=[add_trace_ids, capture])
    cache = open_cache(
        [OpenTelemetryObserver(tracer_provider=tracing.provider), StructlogObserver(logger)]
    )
    capture.entries.clear()  # the background thread's events: outside any span
    with tracer.start_as_current_span("request") as request:
        fill(cache, "a")
    cache.snapshot()
    trace_id = f"{request.get_span_context().trace_id:032x}"
    opened, scanned = capture.entries
    assert (opened["event"], opened["trace_id"]) == ("filecache.model.opened", trace_id)
    # Inside model(), the current span is the filecache.model span.
    (model,) = [s for s in tracing.exporter.get_finished_spans() if s.name == "filecache.model"]
    assert opened["span_id"] == f"{model.context.span_id:016x}"
    assert scanned["event"] == "filecache.scan.completed"
    assert "trace_id" not in scanned
