"""TraceObserver: one CSV line per lookup, safe to share between processes, rotated."""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage
from vcti.filecache._meta import Meta
from vcti.filecache.observers import TraceObserver
from vcti.filecache.observers.trace import TRACE_HEADER
from vcti.filecache.replay import read_trace


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def open_cache(root: Path, observer: TraceObserver) -> FileCache:
    config = CacheManagerConfig(evict_above=2**40, interval=3600, observer=observer)
    return FileCache(config=config, root=root)


def fill(cache: FileCache, key: str, size: int, seconds: float = 0.0) -> None:
    with cache.model(key) as model:
        if model.new:
            time.sleep(seconds)
            Path(model.path, "data.bin").write_bytes(b"x" * size)


def test_one_line_per_lookup_with_size_cost_and_hit(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    observer = TraceObserver(trace)
    before = time.time()
    with open_cache(tmp_path / "root", observer) as cache:
        fill(cache, "runs/a", 1000, seconds=0.05)
        fill(cache, "runs/a", 1000)
        fill(cache, "b,c", 10)  # a key that needs quoting
    assert trace.read_text().startswith(TRACE_HEADER)
    lines = rows(trace)
    assert [(r["key"], r["size"], r["hit"]) for r in lines] == [
        ("runs/a", "1000", "0"),
        ("runs/a", "1000", "1"),
        ("b,c", "10", "0"),
    ]
    assert float(lines[0]["cost"]) >= 0.05  # from entering model() to publishing
    assert float(lines[1]["cost"]) == float(lines[0]["cost"])  # the fill's cost, on a hit
    assert all(before <= float(r["time"]) <= time.time() for r in lines)
    assert read_trace(trace).keys == ["runs/a", "runs/a", "b,c"]
    assert observer.failed_writes == 0


def test_a_hit_reads_size_and_cost_from_the_metadata(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = CacheManagerConfig(evict_above=2**40, interval=3600)
    with FileCache(config=config, root=root) as cache:
        fill(cache, "m", 300)
    storage = LocalStorage(root)
    storage.open()

    def record(raw: bytes | None) -> bytes:
        assert raw is not None
        meta = Meta.decode(raw)
        return Meta(meta.access_count, meta.last_access, meta.created, 42.5, size=300).encode()

    storage.update_meta("m", record)
    trace = tmp_path / "trace.csv"
    with open_cache(root, TraceObserver(trace)) as cache:
        fill(cache, "m", 0)
    (line,) = rows(trace)
    assert (line["key"], line["size"], line["cost"], line["hit"]) == ("m", "300", "42.500", "1")


def test_a_hit_without_a_recorded_cost_leaves_it_empty(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = CacheManagerConfig(evict_above=2**40, interval=3600)
    with FileCache(config=config, root=root) as cache:
        fill(cache, "m", 300)
    storage = LocalStorage(root)
    storage.open()
    storage.update_meta("m", lambda raw: Meta(1, 0.0, 0.0).encode())  # as an old version wrote
    trace = tmp_path / "trace.csv"
    with open_cache(root, TraceObserver(trace)) as cache:
        fill(cache, "m", 0)
    (line,) = rows(trace)
    assert (line["size"], line["cost"], line["hit"]) == ("300", "", "1")  # the size is measured
    assert read_trace(trace).costs == [None]


def test_hash_keys_writes_a_stable_hash(tmp_path: Path) -> None:
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    for trace in (one, two):
        with open_cache(tmp_path / trace.stem, TraceObserver(trace, hash_keys=True)) as cache:
            fill(cache, "secret/project", 5)
            fill(cache, "other", 5)
    keys = [r["key"] for r in rows(one)]
    assert keys == [r["key"] for r in rows(two)]
    assert len(set(keys)) == 2
    assert all(len(k) == 16 and "secret" not in k for k in keys)


def test_a_failed_fill_writes_no_line(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    with open_cache(tmp_path / "root", TraceObserver(trace)) as cache:
        with pytest.raises(RuntimeError), cache.model("m"):
            raise RuntimeError("extraction failed")
        fill(cache, "m", 7)
    assert [(r["key"], r["size"], r["hit"]) for r in rows(trace)] == [("m", "7", "0")]


def test_a_failing_write_is_logged_and_counted_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    observer = TraceObserver("/dev/full")  # every write fails with ENOSPC
    missing = TraceObserver(tmp_path / "no" / "such" / "dir.csv")
    with caplog.at_level(logging.WARNING, logger="vcti.filecache"):
        with open_cache(tmp_path / "root", observer) as cache:
            fill(cache, "m", 1)
            fill(cache, "m", 1)
        with open_cache(tmp_path / "root2", missing) as cache:
            fill(cache, "m", 1)
    assert observer.failed_writes == 2
    assert missing.failed_writes == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "vcti.filecache"]
    assert sum("a line was not written" in m for m in messages) == 3
    assert any("No space left on device" in m for m in messages)


def test_rotation_keeps_backups_and_each_file_replays(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    observer = TraceObserver(trace, max_bytes=200, backups=2)
    with open_cache(tmp_path / "root", observer) as cache:
        for n in range(30):
            fill(cache, f"m{n % 7}", 10)
    files = sorted(p.name for p in tmp_path.glob("trace.csv*") if not p.name.endswith(".lock"))
    assert files == ["trace.csv", "trace.csv.1", "trace.csv.2"]
    total = 0
    for name in files:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(TRACE_HEADER.encode())
        assert len(data) <= 200
        total += len(rows(tmp_path / name))
    assert 0 < total < 30  # older lines rotated out
    whole = read_trace([tmp_path / "trace.csv.2", tmp_path / "trace.csv.1", trace])
    assert whole.requests == total
    assert observer.failed_writes == 0


def _worker(root: str, trace: str, worker: int, lookups: int) -> None:
    observer = TraceObserver(trace, max_bytes=None)
    with open_cache(Path(root), observer) as cache:
        for n in range(lookups):
            fill(cache, f"w{worker}/m{n % 5}", 10 + worker)
    assert observer.failed_writes == 0


def test_processes_appending_to_one_file_never_interleave(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    ctx = multiprocessing.get_context("fork")
    workers = [
        ctx.Process(target=_worker, args=(str(tmp_path / "root"), str(trace), w, 200))
        for w in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    text = trace.read_text()
    assert text.count(TRACE_HEADER) == 1
    lines = rows(trace)
    assert len(lines) == 4 * 200
    for w in range(4):
        mine = [r for r in lines if r["key"].startswith(f"w{w}/")]
        assert len(mine) == 200
        assert {r["size"] for r in mine} == {str(10 + w)}
        assert sum(r["hit"] == "0" for r in mine) == 5
    assert read_trace(trace).requests == 800


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        TraceObserver(tmp_path / "t.csv", max_bytes=5)
    with pytest.raises(ValueError, match="backups"):
        TraceObserver(tmp_path / "t.csv", backups=-1)
    assert not os.path.exists(tmp_path / "t.csv")


def test_it_imports_the_standard_library_alone() -> None:
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "from vcti.filecache.observers import TraceObserver\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    top = set(json.loads(result.stdout))
    foreign = {m for m in top if m not in sys.stdlib_module_names and m != "vcti"}
    assert foreign == set()
