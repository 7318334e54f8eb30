"""PrometheusObserver and start_metrics_server, checked through real scrapes."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from vcti.filecache import (
    CacheManagerConfig,
    CacheObserver,
    FileCache,
    LocalStorage,
    __version__,
)
from vcti.filecache.observers import PrometheusObserver, start_metrics_server
from vcti.filecache.observers.base import ERROR_CONTEXTS

from ..metric_contract import GAUGES, HISTOGRAMS, PLAIN_COUNTERS, POLICY_COUNTERS

T0 = 1_700_000_000.0


@dataclass
class Scrape:
    """One exposition, parsed."""

    text: str

    @property
    def samples(self) -> list[Sample]:
        return [s for f in text_string_to_metric_families(self.text) for s in f.samples]

    def series(self, name: str, **labels: str) -> list[Sample]:
        """Samples called ``name`` whose labels include ``labels``."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def get(self, name: str, **labels: str) -> float:
        """The value of the one sample called ``name`` with ``labels``."""
        found = self.series(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {found}"
        return found[0].value


def promtool_check(text: str) -> None:
    """``promtool check metrics`` must accept ``text`` without a word."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: the exposition cannot be linted", pytrace=False)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), text


@pytest.fixture
def serve() -> Iterator[Callable[[CollectorRegistry], Callable[[], Scrape]]]:
    """``serve(registry)`` starts a metrics server on a free port; returns a scraper."""
    servers = []

    def start(registry: CollectorRegistry) -> Callable[[], Scrape]:
        server, thread = start_metrics_server(0, registry=registry)
        servers.append((server, thread))
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"

        def scrape() -> Scrape:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200
                return Scrape(response.read().decode())

        return scrape

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_every_series_reads_zero_once_attached(tmp_path: Path, registry, serve):
    observer = PrometheusObserver(registry=registry)
    storage = LocalStorage(tmp_path)
    observer.on_attach(storage, CacheManagerConfig(evict_above=5000, interval=30))
    scrape = serve(registry)()
    cache = storage.root

    expected = dict.fromkeys(GAUGES + PLAIN_COUNTERS, 0.0)
    expected["filecache_limit_bytes"] = 5000.0
    expected["filecache_scan_interval_seconds"] = 30.0
    for name, value in expected.items():
        assert scrape.get(name, cache=cache) == value, name
    for name in POLICY_COUNTERS:
        assert scrape.get(name, cache=cache, policy="lru") == 0.0
    for name in HISTOGRAMS:
        assert scrape.get(f"{name}_count", cache=cache) == 0.0
        assert scrape.get(f"{name}_bucket", cache=cache, le="+Inf") == 0.0
    errors = scrape.series("filecache_errors_total", cache=cache)
    assert {s.labels["context"]: s.value for s in errors} == dict.fromkeys(ERROR_CONTEXTS, 0.0)
    assert scrape.get("filecache_build_info") == 1.0
    assert scrape.series("filecache_build_info")[0].labels == {
        "cache": cache,
        "version": __version__,
        "storage": "LocalStorage",
        "policy": "lru",
    }
    assert not [s for s in scrape.samples if s.name.endswith("_created")]
    promtool_check(scrape.text)


def test_scripted_sequence(registry, serve, script):
    scrape_now = serve(registry)
    scrapes: dict[str, Scrape] = {}

    def checkpoint(name, cache):
        scrapes[name] = scrape_now()

    run = script([PrometheusObserver(registry=registry)], checkpoint)
    assert list(scrapes) == ["started", "pinned", "staging", "evicted", "scan_error", "closed"]
    for scrape in scrapes.values():
        promtool_check(scrape.text)
        assert not [s for s in scrape.samples if s.name.endswith("_created")]
        assert {s.labels["cache"] for s in scrape.samples} == {run.root}

    def metric(name: str) -> str:
        full = f"filecache_{name}"
        if full in GAUGES or name.endswith(("_count", "_sum")):
            return full
        return f"{full}_total"

    def check(point: str, **expected: float) -> None:
        scrape = scrapes[point]
        for name, value in expected.items():
            labels = {"policy": "lru"} if name in ("evictions", "evicted_bytes") else {}
            found = scrape.get(metric(name), cache=run.root, **labels)
            assert found == pytest.approx(value), (point, name)

    check(
        "started",
        size_bytes=0,
        entries=0,
        overage_bytes=0,
        pinned_entries=0,
        staging_bytes=0,
        limit_bytes=2500,
        scan_interval_seconds=3600,
        manager_leader=1,
        last_scan_success_timestamp_seconds=T0,
        scans=1,
        lookups=0,
        hits=0,
        fills=0,
        fill_failures=0,
        evictions=0,
        evicted_bytes=0,
        scan_duration_seconds_count=1,
    )
    check(
        "pinned",
        lookups=3,
        hits=1,
        fills=2,
        scans=2,
        size_bytes=2000,
        entries=2,
        pinned_entries=1,
        staging_bytes=0,
        overage_bytes=0,
        last_scan_success_timestamp_seconds=T0 + 200,
        fill_duration_seconds_count=2,
    )
    check(
        "staging",
        lookups=6,
        hits=2,
        fills=3,
        fill_failures=1,
        scans=3,
        size_bytes=3000,
        entries=2,
        staging_bytes=1000,
        overage_bytes=500,
        pinned_entries=0,
        last_scan_success_timestamp_seconds=T0 + 300,
        fill_duration_seconds_count=2,
    )
    check(
        "evicted",
        fills=4,
        fill_failures=1,
        fill_duration_seconds_count=3,
        scans=4,
        evictions=1,
        evicted_bytes=1000,
        # The eviction left 2 models: the gauges show it before the next scan.
        size_bytes=2000,
        entries=2,
        overage_bytes=0,
        staging_bytes=0,
        last_scan_success_timestamp_seconds=T0 + 1300,
        eviction_duration_seconds_count=1,
        evicted_entry_idle_seconds_count=1,
        evicted_entry_idle_seconds_sum=1200,
    )
    evicted = scrapes["evicted"]
    idle_buckets = {
        s.labels["le"]: s.value
        for s in evicted.series("filecache_evicted_entry_idle_seconds_bucket", cache=run.root)
    }
    assert (idle_buckets["900.0"], idle_buckets["1800.0"], idle_buckets["+Inf"]) == (0, 1, 1)
    assert sum(s.value for s in evicted.series("filecache_errors_total")) == 0
    check(
        "scan_error",
        scans=5,
        size_bytes=1000,
        entries=1,
        # That scan had an error: the last success stays the one before.
        last_scan_success_timestamp_seconds=T0 + 1300,
        scan_duration_seconds_count=5,
    )
    errors = scrapes["scan_error"].series("filecache_errors_total", cache=run.root)
    assert sum(s.value for s in errors) == 1
    assert scrapes["scan_error"].get("filecache_errors_total", context="scan") == 1
    # The last cycle, as the cache closes, scans once more.
    check("closed", manager_leader=0, lookups=6, hits=2, evictions=1, scans=6)
    info = scrapes["closed"].series("filecache_build_info")
    assert [(s.labels, s.value) for s in info] == [
        (
            {
                "cache": run.root,
                "version": __version__,
                "storage": "FlakyStorage",
                "policy": "lru",
            },
            1.0,
        )
    ]


def test_caches_and_registries_share_a_process(tmp_path: Path, open_cache, serve):
    first, second = CollectorRegistry(), CollectorRegistry()
    a = open_cache([PrometheusObserver(registry=first)])
    b = open_cache([PrometheusObserver(registry=first, cache_name="models-b")])
    c = open_cache([PrometheusObserver(registry=second)])
    # A second cache on a's root, with its own observer: they share the series.
    also_a = FileCache(
        root=a.storage.root,
        config=CacheManagerConfig(evict_above=2500, observer=PrometheusObserver(registry=first)),
    )
    with also_a:
        for cache, count in ((a, 1), (b, 2), (c, 3), (also_a, 4)):
            for i in range(count):
                with cache.model(f"m{i}"):
                    pass
    in_first = serve(first)()
    in_second = serve(second)()
    lookups = {s.labels["cache"]: s.value for s in in_first.series("filecache_lookups_total")}
    assert lookups == {a.storage.root: 5, "models-b": 2}
    lookups = {s.labels["cache"]: s.value for s in in_second.series("filecache_lookups_total")}
    assert lookups == {c.storage.root: 3}
    assert len(in_first.series("filecache_size_bytes")) == 2
    assert len(in_second.series("filecache_size_bytes")) == 1
    promtool_check(in_first.text)
    promtool_check(in_second.text)


def test_default_registry_and_headline_config(tmp_path: Path):
    from prometheus_client import REGISTRY
    from structlog.testing import capture_logs

    from vcti.filecache.observers import OpenTelemetryObserver, StructlogObserver

    config = CacheManagerConfig(
        evict_above=50 * 1024**3,
        observer=[PrometheusObserver(), OpenTelemetryObserver(), StructlogObserver()],
    )
    with capture_logs() as logs, FileCache(root=tmp_path, config=config) as cache, cache.model("m"):
        pass
    assert [e["key"] for e in logs if e["event"] == "filecache.model.opened"] == ["m"]
    scrape = Scrape(generate_latest(REGISTRY).decode())
    assert scrape.get("filecache_lookups_total", cache=str(tmp_path)) == 1
    assert scrape.get("filecache_limit_bytes", cache=str(tmp_path)) == 50 * 1024**3


def test_an_observer_failure_is_counted(open_cache, registry):
    class Broken(CacheObserver):
        def on_access(self, key, hit):
            raise RuntimeError("broken observer")

    cache = open_cache([Broken(), PrometheusObserver(registry=registry)])
    with cache.model("m"):
        pass
    scrape = Scrape(generate_latest(registry).decode())
    assert scrape.get("filecache_errors_total", cache=cache.storage.root, context="observer") == 1
    assert scrape.get("filecache_lookups_total", cache=cache.storage.root) == 1


def test_background_eviction(open_cache, registry):
    cache = open_cache([PrometheusObserver(registry=registry)], evict_above=1500)
    for key in ("a", "b"):
        with cache.model(key) as m:
            Path(m.path, "data.bin").write_bytes(b"x" * 1000)
    assert cache.manager.run_once() is not None
    scrape = Scrape(generate_latest(registry).decode())
    root = cache.storage.root
    assert scrape.get("filecache_evictions_total", cache=root, policy="lru") == 1
    assert scrape.get("filecache_evicted_bytes_total", cache=root, policy="lru") == 1000
    assert scrape.get("filecache_size_bytes", cache=root) == 1000
    assert scrape.get("filecache_entries", cache=root) == 1


def test_the_gauges_follow_publishes_and_evictions_at_once(open_cache, registry):
    # An hour between scans: every change below shows without one.
    cache = open_cache([PrometheusObserver(registry=registry)], evict_above=2500)
    root = cache.storage.root
    scans = Scrape(generate_latest(registry).decode()).get("filecache_scans_total", cache=root)

    def gauges(scanned: float = scans) -> tuple[float, float, float]:
        scrape = Scrape(generate_latest(registry).decode())
        assert scrape.get("filecache_scans_total", cache=root) == scanned
        return (
            scrape.get("filecache_entries", cache=root),
            scrape.get("filecache_size_bytes", cache=root),
            scrape.get("filecache_overage_bytes", cache=root),
        )

    assert gauges() == (0, 0, 0)
    for count, key in enumerate(("a", "b", "c"), start=1):
        with cache.model(key) as m:
            Path(m.path, "data.bin").write_bytes(b"x" * 1000)
        assert gauges() == (count, count * 1000, max(0, count * 1000 - 2500))
    with cache.model("b", version="2") as m:  # a refill replaces the model: same count
        assert m.new
        Path(m.path, "data.bin").write_bytes(b"x" * 400)
    assert gauges() == (3, 2400, 0)
    assert cache.evict(evict_above=1500) == ["a"]  # scans, then evicts
    assert gauges(scans + 1) == (2, 1400, 0)


def test_background_thread_updates_the_metrics(open_cache, registry):
    cache = open_cache([PrometheusObserver(registry=registry)], evict_above=1500, interval=0.05)
    for key in ("a", "b"):
        with cache.model(key) as m:
            Path(m.path, "data.bin").write_bytes(b"x" * 1000)
    root = cache.storage.root
    deadline = time.monotonic() + 60
    while True:
        scrape = Scrape(generate_latest(registry).decode())
        if scrape.get("filecache_evictions_total", cache=root, policy="lru") >= 1:
            break
        assert time.monotonic() < deadline, "the background thread did not evict"
        time.sleep(0.01)
    assert scrape.get("filecache_evicted_bytes_total", cache=root, policy="lru") == 1000
    assert scrape.get("filecache_manager_leader", cache=root) == 1


class FixedDisk(LocalStorage):
    """LocalStorage on a filesystem of known free space and size."""

    def __init__(self, root: str | os.PathLike[str], free: int, total: int) -> None:
        super().__init__(root)
        self.free, self.total = free, total

    def disk_usage(self) -> tuple[int, int]:
        return self.free, self.total


def test_filesystem_gauges_follow_the_scans(tmp_path: Path, open_cache, registry):
    storage = FixedDisk(tmp_path / "cache", free=3000, total=10000)
    cache = open_cache([PrometheusObserver(registry=registry)], storage=storage)
    root = storage.root
    scrape = Scrape(generate_latest(registry).decode())
    assert scrape.get("filecache_filesystem_free_bytes", cache=root) == 3000
    assert scrape.get("filecache_filesystem_size_bytes", cache=root) == 10000
    storage.free = 2500
    cache.snapshot()
    scrape = Scrape(generate_latest(registry).decode())
    assert scrape.get("filecache_filesystem_free_bytes", cache=root) == 2500
    assert scrape.get("filecache_filesystem_size_bytes", cache=root) == 10000
    promtool_check(scrape.text)


def test_filesystem_gauges_measure_the_real_disk(tmp_path: Path, open_cache, registry):
    cache = open_cache([PrometheusObserver(registry=registry)])
    root = cache.storage.root
    scrape = Scrape(generate_latest(registry).decode())
    st = os.statvfs(root)
    assert scrape.get("filecache_filesystem_size_bytes", cache=root) == st.f_blocks * st.f_frsize
    free = scrape.get("filecache_filesystem_free_bytes", cache=root)
    assert 0 < free <= st.f_blocks * st.f_frsize


def test_no_filesystem_gauges_where_the_storage_cannot_tell(open_cache, registry, serve):
    from vcti.filecache.testing import MemoryStorage

    storage = MemoryStorage()
    cache = open_cache([PrometheusObserver(registry=registry)], storage=storage)
    cache.snapshot()
    scrape = serve(registry)()
    assert scrape.get("filecache_scans_total", cache=storage.root) == 2
    # Absent rather than 0: a free space of 0 would fire FileCacheDiskNearlyFull.
    assert scrape.series("filecache_filesystem_free_bytes") == []
    assert scrape.series("filecache_filesystem_size_bytes") == []
    promtool_check(scrape.text)


@pytest.mark.parametrize(("reason", "expired"), [("age", 2), ("size", 0), ("free_space", 0)])
def test_age_evictions_are_counted_as_expired_too(
    tmp_path: Path, registry, reason: str, expired: int
):
    from vcti.filecache import CacheEntry, CacheSnapshot, EvictionResult

    observer = PrometheusObserver(registry=registry)
    observer.on_attach(LocalStorage(tmp_path), CacheManagerConfig(evict_above=10))
    entries = (CacheEntry("a", 10, 2, 100.0, 50.0), CacheEntry("b", 20, 1, 150.0, 60.0))
    observer.on_evict_start(CacheSnapshot.build(entries, evict_above=10, taken_at=T0), "lru", "x")
    observer.on_evict_end(
        EvictionResult(entries, 30, "lru", "background", T0, 0.5, 0, reason=reason)
    )
    scrape = Scrape(generate_latest(registry).decode())
    root = str(tmp_path)
    assert scrape.get("filecache_expired_total", cache=root) == expired
    assert scrape.get("filecache_evictions_total", cache=root, policy="lru") == 2
    assert scrape.get("filecache_evicted_bytes_total", cache=root, policy="lru") == 30
    # No new label on the existing series.
    assert {tuple(sorted(s.labels)) for s in scrape.series("filecache_evictions_total")} == {
        ("cache", "policy")
    }
    assert [s.labels for s in scrape.series("filecache_expired_total")] == [{"cache": root}]


def test_a_cache_that_only_measures_exports_no_limit(open_cache, registry, serve):
    cache = open_cache([PrometheusObserver(registry=registry, export_limit=False)])
    with cache.model("a") as m:
        Path(m.path, "data.bin").write_bytes(b"x" * 3000)  # over the configured limit
    cache.snapshot()
    scrape = serve(registry)()
    root = cache.storage.root
    assert scrape.get("filecache_size_bytes", cache=root) == 3000
    assert scrape.series("filecache_limit_bytes") == []
    assert scrape.series("filecache_overage_bytes") == []
    promtool_check(scrape.text)


def test_hooks_before_attach_do_nothing(registry):
    from vcti.filecache import CacheSnapshot, EvictionResult

    observer = PrometheusObserver(registry=registry)
    snapshot = CacheSnapshot.build([], evict_above=1, taken_at=T0)
    observer.on_leader_change(True)
    observer.on_access("m", True)
    observer.on_fill("m", 1.0, None)
    observer.on_scan_start()
    observer.on_scan_end(snapshot, 0.1)
    observer.on_evict_start(snapshot, "lru", "manual")
    observer.on_evict_end(EvictionResult((), 0, "lru", "manual", T0, 0.1, 1))
    observer.on_error(OSError("x"), "scan")
    assert generate_latest(registry) == b""


# -- multiprocess mode ---------------------------------------------------------------------

WORKER = """
import contextlib
import json
import sys
import time
from pathlib import Path

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage
from vcti.filecache.observers import PrometheusObserver, start_metrics_server

role = json.loads(sys.argv[1])


class FixedDisk(LocalStorage):
    def disk_usage(self):
        return role["free"], role["total"]


class Discard(Exception):
    pass


def open_cache(root, name=None):
    config = CacheManagerConfig(
        evict_above=role["limit"],
        interval=role["interval"],
        clock=lambda: role["clock"],
        observer=PrometheusObserver(cache_name=name),
    )
    return FileCache(storage=FixedDisk(root), config=config)


def command(word):
    assert sys.stdin.readline() == word + "\\n"


def say(*words):
    print(*words, flush=True)


command("open")
caches = [open_cache(role["root"]).open()]
if role["pair"]:
    caches.append(open_cache(role["pair"], name="pair").open())
while any(cache.manager.cycles < 1 for cache in caches):  # the first cycle took the lead
    time.sleep(0.01)
main = caches[0]
if role["serve"]:
    server, thread = start_metrics_server(0)
    say("port", server.server_port)
say("opened", "leader" if main.manager.is_leader else "follower")

command("scan")
for key in role["fill"]:
    with main.model(key) as m:
        Path(m.path, "data.bin").write_bytes(b"x" * 100)
if role["evict"]:
    main.evict()
with contextlib.ExitStack() as pins:
    for key in role["pins"]:
        pins.enter_context(main.model(key))
    with contextlib.suppress(Discard), main.model(role["name"] + "/staging") as m:
        Path(m.path, "data.bin").write_bytes(b"x" * role["staging"])
        main.snapshot()
        raise Discard
say("scanned")

command("close")
for cache in caches:
    cache.close()
say("closed")
"""


class Worker:
    """A worker process running WORKER in one role, driven line by line."""

    def __init__(self, role: dict[str, object], env: dict[str, str], stderr: Path) -> None:
        self.name = str(role["name"])
        self.stderr_path = stderr
        self._stderr: IO[str] = stderr.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(role)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def expect(self, word: str) -> str:
        line = self._lines.get(timeout=120)
        assert line is not None, f"worker {self.name} died: {self.stderr_path.read_text()}"
        assert line.split()[0] == word, line
        return line

    def ask(self, command: str, answer: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.expect(answer)

    def stop(self) -> None:
        try:
            self.proc.wait(timeout=10)  # a worker told to close exits by itself
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc.wait(timeout=60)
        self._reader.join(timeout=60)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


# Three workers on one root, each with its own configuration and view of the disk, scan
# one after the other while the root changes: A first, then B, then C. Each gauge's
# documented mode is then the only one that gives the expected value: C's measurements
# (the most recent) lie strictly between A's and B's, so "mostrecent" differs from "max",
# "min" and "sum"; A holds the largest interval and the latest scan time, so marking A dead
# tells the "live" modes from the others; the pins (1, 3, 2) and two leaders under one
# label tell "livesum" from "livemax". Models are 100 bytes.
#
# B opens first and leads the root; its limit is above anything published, so no cycle
# of it ever evicts. A publishes exactly its limit (never above), C evicts by hand.
ROLES: dict[str, dict[str, object]] = {
    "B": {
        "limit": 2000, "interval": 3600, "clock": T0 + 100, "free": 9000, "total": 20000,
        "fill": ["B/m0", "B/m1", "B/m2", "B/m3"], "pins": ["B/m0", "B/m1", "B/m2"],
        "staging": 500, "evict": False, "pair": None, "serve": True,
    },
    "A": {
        "limit": 200, "interval": 7200, "clock": T0 + 300, "free": 3000, "total": 10000,
        "fill": ["A/m0", "A/m1"], "pins": ["A/m0"],
        "staging": 100, "evict": False, "pair": "pair-one", "serve": False,
    },
    "C": {
        "limit": 550, "interval": 5400, "clock": T0 + 200, "free": 6000, "total": 15000,
        "fill": [], "pins": ["A/m0", "A/m1"],
        "staging": 120, "evict": True, "pair": "pair-two", "serve": False,
    },
}  # fmt: skip

# What each scan saw: (A, B, C).
#   size     300 = 2 models + 100 staging; 1100 = 6 models + 500; 620 = 5 models + 120
#   entries  2, 6, 5 (C evicted one model down to its limit 550)
#   overage  100 (limit 200), 0 (limit 2000), 70 (limit 550)
#   pinned   1, 3, 2
EXPECTED_LIVE = {
    # mostrecent: C's scan
    "filecache_size_bytes": 620,
    "filecache_entries": 5,
    "filecache_staging_bytes": 120,
    "filecache_overage_bytes": 70,
    "filecache_limit_bytes": 550,
    "filecache_filesystem_free_bytes": 6000,
    "filecache_filesystem_size_bytes": 15000,
    # livesum: 1 + 3 + 2 pins; one leader of the root
    "filecache_pinned_entries": 6,
    "filecache_manager_leader": 1,
    # livemax: A's interval
    "filecache_scan_interval_seconds": 7200,
    # max: A's scan, the latest by its clock though not the last one made
    "filecache_last_scan_success_timestamp_seconds": T0 + 300,
}
# A closed and marked dead: the "live" gauges lose A; the others keep what A set.
EXPECTED_WITHOUT_A = {
    **EXPECTED_LIVE,
    "filecache_pinned_entries": 5,
    "filecache_scan_interval_seconds": 5400,
}
LIVE_ONLY = (
    "filecache_pinned_entries",
    "filecache_manager_leader",
    "filecache_scan_interval_seconds",
    "filecache_build_info",
)


def check_merged(exposition: Scrape, root: str, expected: dict[str, float]) -> None:
    """One series per cache (no pid label) with the expected values; counters summed."""
    promtool_check(exposition.text)
    assert not [s for s in exposition.samples if s.name.endswith("_created")]
    assert not [s for s in exposition.samples if "pid" in s.labels]
    for name, value in expected.items():
        assert exposition.get(name, cache=root) == value, name
    # Counters: A 4 lookups (2 fills, 1 pin, 1 discarded fill), B 8, C 3 (no fill, 2 pins).
    assert exposition.get("filecache_lookups_total", cache=root) == 15
    assert exposition.get("filecache_hits_total", cache=root) == 6
    assert exposition.get("filecache_fills_total", cache=root) == 9
    assert exposition.get("filecache_fill_failures_total", cache=root) == 3
    assert exposition.get("filecache_fill_duration_seconds_count", cache=root) == 6
    assert exposition.get("filecache_evictions_total", cache=root, policy="lru") == 1
    assert exposition.get("filecache_evicted_bytes_total", cache=root, policy="lru") == 100


def test_multiprocess_mode_pins_each_gauge_mode(tmp_path: Path):
    multiproc_dir = tmp_path / "multiproc"
    multiproc_dir.mkdir()
    root = str(tmp_path / "cache")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    workers = {}
    for name, role in ROLES.items():
        pair = None if role["pair"] is None else str(tmp_path / str(role["pair"]))
        settings = {**role, "name": name, "root": root, "pair": pair}
        workers[name] = Worker(settings, env, tmp_path / f"{name}.err")

    def collect() -> Scrape:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(multiproc_dir))
        return Scrape(generate_latest(registry).decode())

    try:
        port = int(workers["B"].ask("open", "port").split()[1])
        assert workers["B"].expect("opened") == "opened leader"
        for name in ("A", "C"):
            assert workers[name].ask("open", "opened") == "opened follower"
        for name in ("A", "B", "C"):  # the order the scans must be made in
            workers[name].ask("scan", "scanned")

        scrape = collect()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            served = Scrape(response.read().decode())
        for exposition in (scrape, served):
            check_merged(exposition, root, EXPECTED_LIVE)
            # A leads one root and C another, both labelled "pair": the sum shows the 2
            # leaders that the "no leader / two leaders" checks rely on, not the max.
            assert exposition.get("filecache_manager_leader", cache="pair") == 2
            # One series per label set, 1 from each of the 3 workers: the max, not the sum.
            assert exposition.get("filecache_build_info", cache=root) == 1

        workers["A"].ask("close", "closed")
        assert workers["A"].proc.wait(timeout=60) == 0
        # What the process manager does when a worker exits (the gunicorn hook).
        mark_process_dead(workers["A"].proc.pid, path=str(multiproc_dir))
        without_a = collect()
        check_merged(without_a, root, EXPECTED_WITHOUT_A)
        assert without_a.get("filecache_manager_leader", cache="pair") == 1
        assert without_a.get("filecache_build_info", cache=root) == 1

        for name in ("B", "C"):
            workers[name].ask("close", "closed")
            assert workers[name].proc.wait(timeout=60) == 0
            mark_process_dead(workers[name].proc.pid, path=str(multiproc_dir))
        dead = collect()
        for name in LIVE_ONLY:
            assert dead.series(name) == [], name
        # B, the leader, ran a last cycle as it closed: its scan is the most recent one.
        after_close = {k: v for k, v in EXPECTED_LIVE.items() if k not in LIVE_ONLY}
        after_close.update(
            {
                "filecache_size_bytes": 500,  # 5 models, no fill in progress any more
                "filecache_entries": 5,
                "filecache_staging_bytes": 0,
                "filecache_overage_bytes": 0,
                "filecache_limit_bytes": 2000,
                "filecache_filesystem_free_bytes": 9000,
                "filecache_filesystem_size_bytes": 20000,
            }
        )
        check_merged(dead, root, after_close)
    finally:
        for worker in workers.values():
            worker.stop()
    for worker in workers.values():
        assert worker.proc.returncode == 0, worker.stderr_path.read_text()
