"""The limit holds under load and faults: hot threads, other processes, a stuck helper.

Every bound asserted here is a behaviour (how far over its limit the root may get, that a
call returns at all), with generous deadlines; the figures under load are the
``pressure`` benchmark's.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage
from vcti.filecache._coord import Coordinator
from vcti.filecache._observers import ObserverGroup
from vcti.filecache._runtime import PRESSURE_MARGIN
from vcti.filecache._scanner import Scanner
from vcti.filecache.testing import RecordingObserver

from .helpers import disk_total, finish, kill, lines, spawn, wait_for
from .storage.test_worker import measuring_processes

MODEL = 50_000
LIMIT = 20 * MODEL


def fill_loop(cache: FileCache, prefix: str, stop: threading.Event, keys: int = 300) -> None:
    """Open ``keys`` models in turn, filling those that are missing, until ``stop``."""
    while not stop.is_set():
        for n in range(keys):
            with cache.model(f"{prefix}/m{n}") as model:
                if model.new:
                    Path(model.path, "data.bin").write_bytes(b"x" * MODEL)
            if stop.is_set():
                return


@pytest.fixture
def sampler(tmp_path: Path) -> Iterator[Callable[[], int]]:
    """Sample the root's bytes on disk (user files) every 20 ms; call it for the peak."""
    root = tmp_path / "cache"
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # a folder evicted under the walk
                peak[0] = max(peak[0], disk_total(root))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    yield lambda: peak[0]
    stop.set()
    thread.join()


def test_hot_threads_cannot_run_the_root_away_from_its_limit(
    tmp_path: Path, sampler: Callable[[], int]
) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=LIMIT, interval=0.2, observer=recorder)
    stop = threading.Event()
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        threads = [
            threading.Thread(target=fill_loop, args=(cache, f"t{i}", stop)) for i in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(60)
        wait_for(lambda: disk_total(tmp_path / "cache") <= LIMIT, timeout=30)
    # Each filling thread may stand one model over the margin, while its publish waits.
    assert sampler() <= LIMIT * (1 + PRESSURE_MARGIN) + 3 * MODEL
    # The load did reach the limit: eviction ran (the 20 ms samples may all fall between
    # a publish over the limit and its prompt eviction).
    assert recorder.calls("on_evict")
    assert recorder.errors() == []


def test_another_processes_publishes_wait_for_the_leaders_eviction(
    tmp_path: Path, sampler: Callable[[], int]
) -> None:
    config = CacheManagerConfig(evict_above=LIMIT, interval=3600)
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        wait_for(lambda: cache.manager.is_leader)
        args = {"root": str(tmp_path / "cache"), "limit": LIMIT, "interval": 3600}
        procs = [
            spawn("publish", **args, prefix=f"p{i}", count=60, size=MODEL, pause=0.0)
            for i in range(2)
        ]
        for proc in procs:
            finish(proc)
        wait_for(lambda: disk_total(tmp_path / "cache") <= LIMIT, timeout=30)
    assert sampler() <= LIMIT * (1 + PRESSURE_MARGIN) + 2 * MODEL


def _leader_elsewhere(tmp_path: Path) -> subprocess.Popen[str]:
    """A process that leads the root (and never evicts: its own limit is 1 GB)."""
    root, ready, log = tmp_path / "cache", tmp_path / "ready", tmp_path / "events.log"
    leader = spawn("lead", root=str(root), ready=str(ready), log=str(log), interval=3600)
    wait_for(lambda: len(lines(ready)) == 1)
    return leader


def _publish(cache: FileCache, keys: range, size: int = MODEL) -> None:
    for n in keys:
        with cache.model(f"here/m{n}") as model:
            Path(model.path, "data.bin").write_bytes(b"x" * size)


def test_publishes_that_wait_take_the_lead_from_a_leader_that_died(tmp_path: Path) -> None:
    leader = _leader_elsewhere(tmp_path)
    config = CacheManagerConfig(evict_above=LIMIT, interval=3600)
    try:
        with FileCache(root=tmp_path / "cache", config=config) as cache:
            assert not cache.manager.is_leader
            kill(leader)
            # Past the limit and its margin, each publish waits for eviction: with no
            # leader left, this process's own cycle takes the lead and evicts.
            _publish(cache, range(3 * LIMIT // MODEL))
            assert cache.manager.is_leader
            wait_for(lambda: disk_total(tmp_path / "cache") <= LIMIT, timeout=30)
    finally:
        kill(leader)


def test_the_last_process_out_leaves_the_root_within_its_limit(tmp_path: Path) -> None:
    leader = _leader_elsewhere(tmp_path)
    config = CacheManagerConfig(evict_above=LIMIT, interval=3600)
    try:
        cache = FileCache(root=tmp_path / "cache", config=config).open()
        try:
            assert not cache.manager.is_leader
            # Over the limit, within back-pressure's margin: no publish waits, and the
            # leader (whose own limit is far away) evicts nothing.
            _publish(cache, range(LIMIT // MODEL + 1))
            assert disk_total(tmp_path / "cache") > LIMIT
            kill(leader)
        finally:
            cache.close()  # the leader has gone: this process's last cycle evicts
        assert disk_total(tmp_path / "cache") <= LIMIT
    finally:
        kill(leader)


def _stop_for(pids: list[int], seconds: float) -> None:
    """Keep the processes ``pids`` stopped (SIGSTOP) for ``seconds``, then let them go."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # killed by the cache meanwhile
            os.kill(pid, signal.SIGCONT)


def _call_everything(cache: FileCache, *, seconds: float, slowest: dict[str, float]) -> None:
    """Call each public method again and again for ``seconds``; the slowest of each."""

    def timed(name: str, call: Callable[[], object]) -> None:
        started = time.monotonic()
        call()
        slowest[name] = max(slowest.get(name, 0.0), time.monotonic() - started)

    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        timed("entries", cache.entries)
        timed("snapshot", cache.snapshot)
        timed("evict", cache.evict)
        timed("flush", cache.manager.flush)
        timed("run_once", cache.manager.run_once)
        with cache.model(f"mine/m{n}") as model:
            Path(model.path, "f").write_bytes(b"y")
        timed("remove", lambda n=n: cache.remove(f"mine/m{n}"))
        n += 1


def test_a_stopped_measuring_process_holds_up_no_call_and_no_eviction(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cache"
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=LIMIT, interval=0.2, observer=recorder)
    slowest: dict[str, float] = {}
    cache = FileCache(root=root, config=config).open()
    try:
        wait_for(lambda: cache.manager.is_leader)
        with cache.model("first") as model:
            Path(model.path, "f").write_bytes(b"y")
        cache.manager.run_once()
        assert len(measuring_processes()) == 1  # the leader's
        stopped = measuring_processes()
        stopper = threading.Thread(target=_stop_for, args=(stopped, 30))
        stopper.start()
        stop = threading.Event()
        filler = threading.Thread(target=fill_loop, args=(cache, "here", stop, 60))
        filler.start()
        other = spawn(
            "publish",
            root=str(root),
            limit=LIMIT,
            interval=0.2,
            prefix="other",
            count=40,
            size=MODEL,
            pause=0.05,
        )
        _call_everything(cache, seconds=30, slowest=slowest)
        stopper.join()
        stop.set()
        filler.join(60)
        out = json.loads(finish(other))
        assert out["slowest"] < 10
        wait_for(lambda: disk_total(root) <= LIMIT, timeout=30)
    finally:
        started = time.monotonic()
        cache.close()
        slowest["close"] = time.monotonic() - started
        for pid in measuring_processes():
            os.kill(pid, signal.SIGKILL)
    assert stopped  # the leader's measuring process was stopped
    assert max(slowest.values()) < 10, slowest
    stalls = [e for e, c in recorder.errors() if c in ("scan", "metadata", "evict")]
    assert any("no sign of life" in str(e) for e in stalls)
    assert {c for _, c in recorder.errors()} <= {"scan", "metadata", "evict"}


def test_a_measuring_process_killed_again_and_again(
    tmp_path: Path, sampler: Callable[[], int]
) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=LIMIT, interval=0.2, observer=recorder)
    killed = 0
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        stop = threading.Event()
        filler = threading.Thread(target=fill_loop, args=(cache, "k", stop, 100))
        filler.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = measuring_processes()
            assert len(pids) <= 1
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            time.sleep(0.2)
        stop.set()
        filler.join(60)
        wait_for(lambda: disk_total(tmp_path / "cache") <= LIMIT, timeout=30)
        cycles = cache.manager.cycles
        wait_for(lambda: cache.manager.cycles > cycles + 2)  # the manager goes on
    assert killed >= 3
    assert sampler() <= LIMIT * (1 + PRESSURE_MARGIN) + MODEL
    assert recorder.errors()  # each death was reported
    assert {c for _, c in recorder.errors()} <= {"scan", "metadata", "evict"}


def _pool_worker(root: str) -> int:
    config = CacheManagerConfig(evict_above=10**9, interval=0.5)
    with FileCache(root=root, config=config) as cache:
        for _ in range(3):
            for n in range(200):
                with cache.model(f"shared/m{n}"):
                    pass
        time.sleep(1.5)  # a few cycles, each writing its 200 accesses
    return os.getpid()


def _descendant_measuring_processes() -> int:
    """Measuring processes anywhere below this process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    count, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    count += b"vcti.filecache.storage._worker" in f.read()
            except OSError:
                continue
    return count


def test_a_fork_pool_has_one_measuring_process_per_root(tmp_path: Path) -> None:
    root = str(tmp_path / "cache")
    with FileCache(root=root, config=CacheManagerConfig(evict_above=10**9)) as cache:
        for n in range(200):
            with cache.model(f"shared/m{n}") as model:
                Path(model.path, "f").write_bytes(b"z")
    context = multiprocessing.get_context("fork")
    most = 0
    with context.Pool(20) as pool:
        result = pool.map_async(_pool_worker, [root] * 20)
        while not result.ready():
            most = max(most, _descendant_measuring_processes())
            time.sleep(0.05)
        assert len(set(result.get(120))) >= 2  # several workers took part
    assert most <= 1
    with FileCache(root=root, config=CacheManagerConfig(evict_above=10**9)) as cache:
        counts = {e.key: e.access_count for e in cache.entries()}
    assert sum(counts.values()) == 200 + 20 * 3 * 200  # every access written


def test_a_journal_truncated_in_place_and_regrown_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    recorder = RecordingObserver()
    config = CacheManagerConfig(
        evict_above=1_000_000, interval=3600, full_scan_every=None, observer=recorder
    )
    with FileCache(root=root, config=config) as cache:
        for n in range(3):
            with cache.model(f"m{n}") as model:
                Path(model.path, "f").write_bytes(b"a" * 10_000)
        cache.manager.run_once()
        journal = root / ".filecache" / "journal"
        os.truncate(journal, 0)  # ": > journal", logrotate's copytruncate
        other = LocalStorage(root)
        for n in range(4):  # another process's publishes grow it back past the cursor
            staged = other.stage(f"big{n}")
            Path(staged, "f").write_bytes(b"b" * 1_000_000)
            other.publish(
                f"big{n}", staged, b'{"version":1,"access_count":1,"last_access":1.0,"created":1.0}'
            )
        snapshot = cache.manager.run_once()
        assert snapshot is not None
    truncated = [e for e, c in recorder.errors() if c == "scan"]
    assert any("truncated" in str(e) for e in truncated)
    assert disk_total(root) <= 1_000_000  # the walk counted them, and eviction ran


def test_a_half_written_journal_line_is_read_when_it_is_whole(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "cache")
    storage.open()
    cursor = storage.read_changes(None).cursor
    journal = tmp_path / "cache" / ".filecache" / "journal"
    line = b'["p","some/key",42,"0a1b2c.7"]\n'
    with open(journal, "ab") as f:  # another process is still writing this line
        f.write(line[:13])
    half = storage.read_changes(cursor)
    assert (half.keys, half.published, half.error) == (frozenset(), 0, None)
    with open(journal, "ab") as f:
        f.write(line[13:])
    whole = storage.read_changes(half.cursor)
    assert (whole.keys, whole.published, whole.error) == (frozenset({"some/key"}), 42, None)


def test_a_read_racing_a_remove_and_a_refill_reports_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    config = CacheManagerConfig(evict_above=10**9)
    with FileCache(root=root, config=config) as cache, cache.model("k") as model:
        Path(model.path, "f").write_bytes(b"old")

    class Racing(LocalStorage):
        raced = False

        def read_record(self, key: str) -> bytes:
            if key == "k" and not Racing.raced:
                Racing.raced = True
                other = LocalStorage(root)  # another process removes and fills again
                assert other.remove("k")
                staged = other.stage("k")
                Path(staged, "f").write_bytes(b"new!")
                other.publish(
                    "k", staged, b'{"version":1,"access_count":1,"last_access":5.0,"created":5.0}'
                )
                raise FileNotFoundError(key)
            return super().read_record(key)

    recorder = RecordingObserver()
    storage = Racing(root)
    storage.open()
    # A process's first scan, which reads every model's record (no manager thread of
    # its own has read them first).
    scanner = Scanner(storage, Coordinator(storage), lambda: False)
    config = CacheManagerConfig(evict_above=10**9, observer=recorder)
    snapshot = scanner.scan(ObserverGroup((recorder,)), config)
    assert Racing.raced
    assert [(e.key, e.size, e.created) for e in snapshot.entries] == [("k", 4, 5.0)]
    assert recorder.errors() == []


def test_a_clock_that_returns_nan_is_reported_and_the_fill_stands(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(
        evict_above=10**9, interval=3600, clock=lambda: math.nan, observer=recorder
    )
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        with cache.model("m") as model:
            Path(model.path, "f").write_bytes(b"x")
        with cache.model("m"):
            pass
        cache.manager.run_once()
        entry = cache.get_entry("m")
    assert entry is not None
    assert entry.access_count == 2
    assert math.isfinite(entry.last_access)
    assert [(type(e), c) for e, c in recorder.errors()] == [(ValueError, "metadata")]
    assert "nan" in str(recorder.errors()[0][0])


def test_a_forked_child_writes_its_accesses_when_it_exits(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=10**9, interval=3600)
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        with cache.model("m"):
            pass

        def child() -> None:
            for _ in range(3):
                with cache.model("m"):
                    pass

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(60)
        assert process.exitcode == 0
        cache.manager.run_once()
        entry = cache.get_entry("m")
    assert entry is not None
    assert entry.access_count == 4
