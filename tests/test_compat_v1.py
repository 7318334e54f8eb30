"""vcti-file-cache 1.0's public interface, used as a 1.0 user would, unchanged.

Each test follows one fact of 1.0's interface (see docs/guide/migrating.md): its
names and modules, FileCache and ModelDir, ModelInfo and CacheSnapshot, the config,
policies with ``select_evictions``, ``run_eviction``, observers with ``on_size_update`` and
``on_cycle_complete``, ``CacheManager.acquire``/``release``, backends written to 1.0's
``CacheStorage`` protocol, cache roots written by 1.0, and ``fork()``.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytest

from vcti.filecache import (
    CacheManager,
    CacheManagerConfig,
    CacheObserver,
    CacheSnapshot,
    CacheStorage,
    EvictionPolicy,
    FileCache,
    LfuPolicy,
    LocalStorage,
    LoggingObserver,
    LruPolicy,
    ModelDir,
    ModelInfo,
    SizedLruPolicy,
    run_eviction,
)
from vcti.filecache.testing import RecordingObserver

from .helpers import DirectoriesV1, wait_for

# -- names and modules --------------------------------------------------------------------


def test_the_names_and_modules_of_1_0() -> None:
    import vcti.filecache as package
    from vcti.filecache import manager, storage

    for name in (
        "CacheManager",
        "CacheManagerConfig",
        "CacheObserver",
        "CacheSnapshot",
        "CacheStorage",
        "EvictionPolicy",
        "FileCache",
        "LfuPolicy",
        "LocalStorage",
        "LoggingObserver",
        "LruPolicy",
        "ModelDir",
        "ModelInfo",
        "SizedLruPolicy",
        "run_eviction",
        "__version__",
    ):
        assert name in package.__all__, name
    assert package.__version__.startswith("2.")
    assert manager.CacheManager is CacheManager
    assert manager.CacheManagerConfig is CacheManagerConfig
    assert manager.run_eviction is run_eviction
    assert storage.CacheStorage is CacheStorage
    assert storage.LocalStorage is LocalStorage
    assert storage.CACHE_META == ".cache_meta"


# -- FileCache, ModelDir, ModelInfo, CacheSnapshot ----------------------------------------


def config(**kwargs: Any) -> CacheManagerConfig:
    kwargs.setdefault("evict_above", 10**9)
    kwargs.setdefault("interval", 3600.0)
    return CacheManagerConfig(**kwargs)


def write(model: ModelDir, size: int, name: str = "data.bin") -> None:
    Path(model.path, name).write_bytes(b"x" * size)


def test_file_cache_takes_config_positionally_and_storage_wins(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        FileCache(config())
    chosen = LocalStorage(tmp_path / "chosen")
    cache = FileCache(config(evict_above=1024**3), storage=chosen, root=tmp_path / "ignored")
    assert cache.storage is chosen
    assert "evict_above=1.0 GB" in repr(cache)
    with cache, cache.model("m") as model:
        write(model, 10)
    assert (tmp_path / "chosen" / "m" / "data.bin").exists()
    assert not (tmp_path / "ignored").exists()


def test_model_entries_snapshot_and_evict_as_in_1_0(tmp_path: Path) -> None:
    with FileCache(config(evict_above=150, prompt_eviction=False), root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        model = cache.model(path="ab/cd/model_1")  # 1.0 named the argument "path"
        assert isinstance(model, ModelDir)
        assert isinstance(model.path, str)
        assert model.path == str(tmp_path / "ab" / "cd" / "model_1")
        assert model.new is None
        assert not model.exists
        with model as opened:
            assert opened is model
            assert model.new
            write(model, 100)
        assert model.exists
        assert model.path == str(tmp_path / "ab" / "cd" / "model_1")
        time.sleep(0.01)
        with cache.model("other") as other:
            write(other, 100)

        entries = cache.entries()
        assert isinstance(entries, list)
        assert all(isinstance(e, ModelInfo) for e in entries)
        first = next(e for e in entries if e.path == "ab/cd/model_1")
        assert (first.path, first.key, first.size, first.access_count) == (
            "ab/cd/model_1",
            "ab/cd/model_1",
            100,
            1,
        )
        assert 0 <= first.age < 60

        snapshot = cache.snapshot()
        assert isinstance(snapshot, CacheSnapshot)
        assert isinstance(snapshot.entries, list)
        assert (snapshot.total_size, snapshot.entry_count, snapshot.evict_above) == (200, 2, 150)
        assert snapshot.is_over_limit
        assert snapshot.overage == 50

        removed = cache.evict()
        assert removed == ["ab/cd/model_1"]  # relative paths, oldest first
        assert not (tmp_path / "ab").exists()


def test_model_info_and_snapshot_are_built_as_in_1_0() -> None:
    info = ModelInfo("a/b", 10, time.time() - 30, 4)
    assert (info.path, info.size, info.access_count) == ("a/b", 10, 4)
    assert 29 <= info.age <= 60
    assert isinstance(info, ModelInfo)
    snapshot = CacheSnapshot([info, ModelInfo("c", 5, 0.0, 1)], 12)
    assert (snapshot.total_size, snapshot.entry_count) == (15, 2)
    assert snapshot.is_over_limit
    assert snapshot.overage == 3
    assert dataclasses.is_dataclass(info)


def test_model_dir_built_directly(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    model = ModelDir(storage, "runs/42")
    assert model.path == str(tmp_path / "runs" / "42")
    assert not model.exists
    with model:
        write(model, 7)
    assert model.exists
    with ModelDir(storage, "runs/42") as again:
        assert again.new is False
        assert Path(again.path, "data.bin").read_bytes() == b"x" * 7
    with FileCache(config(), storage=storage) as cache:
        (entry,) = cache.entries()
        assert (entry.path, entry.access_count) == ("runs/42", 2)
    for escaping in ("../outside", "a/../../b", "/etc/passwd"):
        with pytest.raises(ValueError, match="outside cache root"):
            ModelDir(storage, escaping)


def test_config_is_frozen_and_validated() -> None:
    settings = CacheManagerConfig(10, LruPolicy(), 5.0, None)  # 1.0's positional order
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.evict_above = 20  # type: ignore[misc]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="evict_above must be positive"):
            CacheManagerConfig(evict_above=bad)
    for bad_interval in (0, -5.0):
        with pytest.raises(ValueError, match="interval"):
            CacheManagerConfig(evict_above=1, interval=bad_interval)


# -- policies -----------------------------------------------------------------------------


class BiggestFirst:
    """A 1.0 policy: a selection, no name, no order()."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def select_evictions(self, entries: list[ModelInfo], required_free: int) -> list[ModelInfo]:
        self.calls.append(([e.path for e in entries], required_free))
        chosen, freed = [], 0
        for entry in sorted(entries, key=lambda e: -e.size):
            if freed >= required_free:
                break
            chosen.append(entry)
            freed += entry.size
        return chosen


def test_a_select_evictions_policy_drives_eviction(tmp_path: Path) -> None:
    policy = BiggestFirst()
    assert isinstance(policy, EvictionPolicy)
    recorder = RecordingObserver()
    settings = config(evict_above=350, policy=policy, observer=recorder, prompt_eviction=False)
    with FileCache(settings, root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)  # the cycle at start is done
        for key, size in (("small", 50), ("big", 200), ("mid", 150), ("tiny", 10)):
            with cache.model(key) as model:
                write(model, size)
        with cache.model("big"):  # open: kept, and the policy is asked again
            removed = cache.evict()
        assert removed == ["mid"]
        # total 410 - limit 350: 60 bytes; then the rest of it without "big"
        assert policy.calls[0][1] == 60
        assert "big" not in policy.calls[1][0]
        (result,) = [args[0] for args in recorder.calls("on_evict_end")]
        assert result.policy == "biggestfirst"  # no name: the class name, lower case
        assert result.skipped_pinned == ("big",)


def test_select_evictions_uses_the_target_when_evict_to_is_set(tmp_path: Path) -> None:
    policy = BiggestFirst()
    settings = config(evict_above=300, evict_to=100, policy=policy, prompt_eviction=False)
    with FileCache(settings, root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for key in ("a", "b", "c", "d"):
            with cache.model(key) as model:
                write(model, 100)
        assert len(cache.evict()) == 3
        assert policy.calls[0][1] == 300  # total 400 - evict_to 100


def test_built_in_policies_take_both_shapes() -> None:
    for policy in (LruPolicy(), LfuPolicy(), SizedLruPolicy()):
        assert isinstance(policy, EvictionPolicy)
        assert policy.select_evictions([], 10) == []
        entries = [ModelInfo("a", 5, 1.0, 1), ModelInfo("b", 5, 2.0, 1)]
        assert len(policy.select_evictions(entries, 5)) == 1
        assert len(policy.select_evictions(entries, 6)) == 2


def test_run_eviction(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with FileCache(config(), storage=storage) as cache:
        for key, size in (("a", 100), ("b", 100), ("c", 100)):
            with cache.model(key) as model:
                write(model, size)
            time.sleep(0.01)
        entries = cache.entries()
    recorder = RecordingObserver()
    assert run_eviction(storage, entries, 300, LruPolicy(), recorder) == []
    assert run_eviction(storage, entries, 150, LruPolicy(), recorder) == ["a", "b"]
    assert [args[0] for args in recorder.calls("on_evict")] == [
        storage.path("a"),
        storage.path("b"),
    ]

    class Failing(LocalStorage):
        def remove(self, key: str) -> bool:
            if key == "c":
                raise PermissionError(13, "Permission denied", self.path(key))
            return super().remove(key)

    with FileCache(config(), root=tmp_path / "other") as cache:
        for key in ("c", "d"):
            with cache.model(key) as model:
                write(model, 10)
        entries = cache.entries()
    errors = RecordingObserver()
    assert run_eviction(Failing(tmp_path / "other"), entries, 1, LruPolicy(), errors) == ["d"]
    ((error, context),) = errors.errors()
    assert isinstance(error, PermissionError)
    assert context == "evict"


# -- observers ----------------------------------------------------------------------------


class SizeWatcher(CacheObserver):
    """A 1.0 observer."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.cycles: list[tuple[int, int]] = []
        self.evicted: list[str] = []

    def on_size_update(self, path: str, size: int) -> None:
        self.sizes[path] = size

    def on_cycle_complete(self, total_size: int, entry_count: int) -> None:
        self.cycles.append((total_size, entry_count))

    def on_evict(self, path: str) -> None:
        self.evicted.append(path)

    def on_error(self, error: Exception, context: str) -> None:
        raise AssertionError(f"unexpected error in {context}: {error}")


def test_observers_get_size_updates_and_cycles(tmp_path: Path) -> None:
    watcher = SizeWatcher()
    with FileCache(config(observer=watcher), root=tmp_path) as cache:
        wait_for(lambda: len(watcher.cycles) >= 1)  # the first cycle runs at start
        assert watcher.cycles[0] == (0, 0)
        with cache.model("m") as model:
            write(model, 40)
        assert watcher.sizes == {"m": 40}  # relative to the root, as in 1.0
        with cache.model("m") as model:
            write(model, 60, "more.bin")  # a rewrite through the library...
        cache.manager.run_once()  # ...is measured at the next cycle
        assert watcher.sizes == {"m": 100}
        assert watcher.cycles[-1] == (100, 1)
        cycles = len(watcher.cycles)
    assert len(watcher.cycles) == cycles + 1  # and a last one at shutdown


def test_logging_observer_writes_1_0_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="vcti.filecache")
    settings = config(
        evict_above=10, observer=LoggingObserver(), prompt_eviction=False, full_scan_every=1
    )
    with FileCache(settings, root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        with cache.model("ab/model1") as model:
            write(model, 123456789 // 10**4)
        cache.evict()
        with cache.model("ab/model2") as model:
            write(model, 5)
        cache.evict(evict_above=10**9)  # nothing to evict: the cycle below counts it
        # A model made behind the library's back, with junk metadata: a full walk finds it.
        (Path(cache.storage.path("x")) / ".filecache").mkdir(parents=True)
        (Path(cache.storage.path("x")) / ".filecache" / "meta.json").write_text("junk")
        cache.manager.run_once()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "vcti.filecache"]
    assert (logging.INFO, "Evicted ab/model1") in records
    assert (logging.DEBUG, "Size update ab/model1 \u2192 12345 bytes") in records
    assert (logging.DEBUG, "Size update ab/model2 \u2192 5 bytes") in records
    assert (logging.DEBUG, "Cycle complete: 0 entries, 0.0 MB total") in records
    errors = [text for level, text in records if level == logging.WARNING]
    assert any(text.startswith("metadata: model 'x': unreadable") for text in errors), errors
    assert not any(level >= logging.ERROR for level, _ in records)


def test_logging_observer_cycle_line_in_megabytes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vcti.filecache")
    observer = LoggingObserver()
    observer.on_cycle_complete(100 * 1024**2, 5)
    observer.on_cycle_complete(1536 * 1024, 1)
    observer.on_error(PermissionError(13, "Permission denied", "/c/m"), "evict")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "Cycle complete: 5 entries, 100.0 MB total"),
        ("DEBUG", "Cycle complete: 1 entries, 1.5 MB total"),
        ("WARNING", "evict: [Errno 13] Permission denied: '/c/m'"),
    ]


# -- the manager's reference-counted singleton --------------------------------------------


def test_acquire_and_release(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    watcher = SizeWatcher()
    settings = config(observer=watcher)
    first = CacheManager.acquire(storage, settings)
    second = CacheManager.acquire(LocalStorage(tmp_path), settings)
    assert first is second
    assert first.is_running
    wait_for(lambda: len(watcher.cycles) >= 1)
    snapshot = first.run_once()
    assert snapshot is not None
    assert snapshot.entry_count == 0
    CacheManager.release(storage)
    assert first.is_running  # counted: one user left
    cycles = len(watcher.cycles)
    CacheManager.release(storage)
    assert not first.is_running
    assert len(watcher.cycles) == cycles + 1  # a last cycle at shutdown
    with pytest.raises(RuntimeError, match="not acquired"):
        CacheManager.release(storage)


# -- backends written to 1.0's protocol ----------------------------------------------------


def fill_two_and_evict_the_older(backend: object) -> None:
    """Fill "a" and "b" through a 1.0 backend, open "a" again, evict down to one model."""
    settings = config(evict_above=150, prompt_eviction=False)
    with FileCache(settings, storage=backend) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        with cache.model("a") as model:
            assert model.new
            write(model, 100)
        time.sleep(0.01)
        with cache.model("b") as model:
            write(model, 100)
        with cache.model("a") as model:
            assert not model.new
            assert Path(model.path, "data.bin").read_bytes() == b"x" * 100
        cache.manager.flush()
        assert {e.path: e.access_count for e in cache.entries()} == {"a": 2, "b": 1}
        assert cache.evict() == ["b"]  # a was opened last


def test_a_backend_written_for_1_0_runs_through_the_adapter(tmp_path: Path) -> None:
    backend = DirectoriesV1(tmp_path)
    fill_two_and_evict_the_older(backend)
    assert "cleanup_temp_files" in backend.calls
    assert "delete_dir" in backend.calls
    assert backend.read_meta("a")["access_count"] == 2
    assert not (tmp_path / "b").exists()


# -- cache roots written by 1.0 -----------------------------------------------------------


def make_v1_root(root: Path, models: dict[str, tuple[int, int, float]]) -> None:
    """Lay out ``models`` (key -> (size, access_count, mtime)) as 1.0 writes them."""
    for key, (size, count, mtime) in models.items():
        folder = root / key
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mesh.vtu").write_bytes(b"m" * size)
        meta = folder / ".cache_meta"
        meta.write_text(json.dumps({"size": size, "access_count": count}))
        os.utime(meta, (mtime, mtime))


def test_a_1_0_root_is_adopted(tmp_path: Path) -> None:
    now = time.time()
    make_v1_root(
        tmp_path,
        {
            "ab/old": (100, 7, now - 3000),
            "ab/new": (100, 2, now - 10),
            "outer": (50, 1, now - 100),
            "outer/inner": (20, 1, now - 100),  # 1.0 allowed a model inside a model
            "bad\\name": (5, 1, now),  # not a valid key here
        },
    )
    (tmp_path / "ab" / "old" / ".cache_meta.123.456.tmp").write_text("{")  # a 1.0 crash
    recorder = RecordingObserver()
    with FileCache(config(observer=recorder), root=tmp_path) as cache:
        ((report,),) = recorder.calls("on_adopt")
        assert sorted(report.models) == ["ab/new", "ab/old", "outer"]
        assert any("outer/inner" in p for p in report.problems)
        assert any("bad\\name" in p for p in report.problems)
        entries = {e.path: e for e in cache.entries()}
        assert sorted(entries) == ["ab/new", "ab/old", "outer"]
        assert entries["ab/old"].access_count == 7
        assert abs(entries["ab/old"].last_access - (now - 3000)) < 1
        assert abs(entries["ab/old"].created - (now - 3000)) < 1  # the .cache_meta's mtime
        assert abs(entries["ab/new"].created - (now - 10)) < 1
        assert entries["outer"].size == 50 + 20 + len(json.dumps({"size": 20, "access_count": 1}))
        assert not (tmp_path / "ab" / "old" / ".cache_meta").exists()
        assert not (tmp_path / "ab" / "old" / ".cache_meta.123.456.tmp").exists()
        with cache.model("ab/new") as model:  # a hit, not a FileExistsError
            assert not model.new
        assert cache.evict(evict_above=210) == ["ab/old"]  # counted, evicted like any model
        problems = cache.verify().problems
        assert any("outer" in p and "1.0 model folder" in p for p in problems)
    assert (tmp_path / "bad\\name" / ".cache_meta").exists()  # left alone


def test_adoption_interrupted_by_kill_is_finished_by_the_next_open(tmp_path: Path) -> None:
    make_v1_root(tmp_path, {f"m/{n:04d}": (10, n, time.time() - n) for n in range(1000)})
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from vcti.filecache import LocalStorage\n"
            "LocalStorage(sys.argv[1]).adopt_v1()\n",
            str(tmp_path),
        ]
    )

    def adopted() -> int:
        return sum(1 for _ in tmp_path.glob("m/*/.filecache/meta.json"))

    wait_for(lambda: adopted() > 0 or child.poll() is not None)
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = adopted()
    with FileCache(config(), root=tmp_path) as cache:
        entries = {e.path: e.access_count for e in cache.entries()}
    assert len(entries) == 1000
    assert entries["m/0042"] == 42
    assert not list(tmp_path.glob("m/*/.cache_meta"))
    assert partial <= 1000


def test_the_command_line_accepts_a_1_0_root(tmp_path: Path) -> None:
    make_v1_root(tmp_path, {"a": (10, 3, time.time())})

    def filecache(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "vcti.filecache", *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    verify = filecache("verify", str(tmp_path))
    assert verify.returncode == 1
    assert "1.0 model to adopt: 'a'" in verify.stdout
    assert (tmp_path / "a" / ".cache_meta").exists()  # verify changes nothing
    listing = filecache("ls", str(tmp_path), "--json")
    assert listing.returncode == 0, listing.stderr
    (entry,) = json.loads(listing.stdout)["entries"]
    assert (entry["key"], entry["access_count"]) == ("a", 3)
    assert (tmp_path / "a" / ".cache_meta").exists()  # ls adopts nothing either
    assert filecache("adopt", str(tmp_path)).returncode == 0
    assert filecache("verify", str(tmp_path)).returncode == 0


# -- fork ---------------------------------------------------------------------------------


def fork() -> int:
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() in a process with threads: that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def test_a_forked_child_gets_a_manager_of_its_own(tmp_path: Path) -> None:
    meta = tmp_path / "m" / ".filecache" / "meta.json"
    with FileCache(config(interval=0.05), root=tmp_path) as cache:
        with cache.model("m") as model:
            write(model, 10)
        with cache.model("m"):  # recorded, not yet written, when the child is forked
            pass
        pid = fork()
        if pid == 0:  # the child: its own thread, pins and records
            status = 1
            try:
                wait_for(lambda: cache.manager.cycles >= 1, timeout=20)
                running, leader = cache.manager.is_running, cache.manager.is_leader
                if running and not leader:
                    for _ in range(3):
                        with cache.model("m"):
                            pass
                    cache.close()
                    status = 0
                else:
                    print(f"in the child: running={running} leader={leader}", file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        cache.manager.flush()
        # 1 fill + 1 parent open + 3 child opens: the parent's record was not doubled
        wait_for(lambda: json.loads(meta.read_bytes())["access_count"] == 5)


def test_a_forked_child_leads_when_the_parent_closes(tmp_path: Path) -> None:
    cache = FileCache(config(interval=0.05), root=tmp_path).open()
    wait_for(lambda: cache.manager.is_leader)
    ready, go = os.pipe()
    pid = fork()
    if pid == 0:
        status = 1
        try:
            wait_for(lambda: cache.manager.cycles >= 2)  # it tried to lead, and could not
            assert cache.manager.is_running
            assert not cache.manager.is_leader
            os.write(go, b".")
            wait_for(lambda: cache.manager.is_leader, timeout=20)  # once the parent closed
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(go)  # the child's exit ends the read below, whatever happens in it
    os.read(ready, 1)
    cache.close()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


GUNICORN_APP = """
import os
from pathlib import Path

from vcti.filecache import CacheManagerConfig, FileCache

cache = FileCache(CacheManagerConfig(evict_above=10**9, interval=0.1), root=os.environ["ROOT"])
cache.open()  # before the workers are forked (--preload)


def app(environ, start_response):
    with cache.model("m") as model:
        if model.new:
            Path(model.path, "data.bin").write_bytes(b"x")
    body = f"{os.getpid()} {cache.manager.is_running}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def test_gunicorn_preload(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn", reason="gunicorn is not installed")
    import socket
    import urllib.request

    (tmp_path / "app.py").write_text(GUNICORN_APP)
    root = tmp_path / "cache"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ROOT": str(root), "PYTHONPATH": str(tmp_path)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "app:app",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers: dict[str, str] = {}
        requests = 0
        deadline = time.monotonic() + 60
        while len(workers) < 2 or requests < 20:
            assert time.monotonic() < deadline, f"workers seen: {workers}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    pid, running = r.read().decode().split()
            except OSError:
                time.sleep(0.1)
                continue
            workers[pid] = running
            requests += 1
        assert set(workers.values()) == {"True"}  # every worker runs its own manager
        meta = root / "m" / ".filecache" / "meta.json"
        wait_for(lambda: json.loads(meta.read_bytes())["access_count"] == requests)
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- 1.0's module paths --------------------------------------------------------------------


def test_every_1_0_module_path_names_the_same_classes() -> None:
    import vcti.filecache as package
    from vcti.filecache.cache import FileCache as CacheFileCache
    from vcti.filecache.meta import ModelInfo as MetaModelInfo
    from vcti.filecache.model import ModelDir as ModelModelDir
    from vcti.filecache.observer import CacheObserver as ObserverBase
    from vcti.filecache.observer import LoggingObserver as ObserverLogging
    from vcti.filecache.policy import EvictionPolicy as PolicyProtocol
    from vcti.filecache.policy import LfuPolicy as PolicyLfu
    from vcti.filecache.policy import LruPolicy as PolicyLru
    from vcti.filecache.policy import SizedLruPolicy as PolicySizedLru
    from vcti.filecache.policy.base import EvictionPolicy as BaseProtocol
    from vcti.filecache.policy.lfu import LfuPolicy as LfuModule
    from vcti.filecache.policy.lru import LruPolicy as LruModule
    from vcti.filecache.policy.sized_lru import SizedLruPolicy as SizedLruModule

    assert CacheFileCache is FileCache
    assert ModelModelDir is ModelDir
    assert MetaModelInfo is ModelInfo
    assert (ObserverBase, ObserverLogging) == (CacheObserver, LoggingObserver)
    assert PolicyProtocol is BaseProtocol is EvictionPolicy
    assert PolicyLfu is LfuModule is LfuPolicy
    assert PolicyLru is LruModule is LruPolicy
    assert PolicySizedLru is SizedLruModule is SizedLruPolicy
    assert isinstance(LruModule(), package.EvictionPolicy)


def test_a_policy_subclassing_policy_base(tmp_path: Path) -> None:
    from vcti.filecache.meta import ModelInfo as Info
    from vcti.filecache.policy.base import EvictionPolicy as Base

    class NewestFirst(Base):
        def __init__(self) -> None:
            self.name = "newest-first"  # a subclass may set its own name
            self.asked: list[int] = []

        def select_evictions(self, entries: list[Info], required_free: int) -> list[Info]:
            self.asked.append(required_free)
            chosen, freed = [], 0
            for entry in sorted(entries, key=lambda e: -e.last_access):
                if freed >= required_free:
                    break
                chosen.append(entry)
                freed += entry.size
            return chosen

    policy = NewestFirst()
    assert isinstance(policy, EvictionPolicy)
    recorder = RecordingObserver()
    settings = config(evict_above=250, policy=policy, observer=recorder, prompt_eviction=False)
    with FileCache(settings, root=tmp_path) as cache:
        for key in ("a", "b", "c"):
            with cache.model(key) as model:
                write(model, 100)
            time.sleep(0.01)
        assert cache.evict() == ["c"]
        assert policy.asked == [50]
    (result,) = [args[0] for args in recorder.calls("on_evict_end")]
    assert result.policy == "newest-first"


# -- LocalStorage's 1.0 methods --------------------------------------------------------------


def test_local_storage_reads_and_writes_1_0_metadata(tmp_path: Path) -> None:
    with FileCache(config(), root=tmp_path) as cache:
        storage = cache.storage
        assert isinstance(storage, LocalStorage)
        assert storage.key() == str(tmp_path)
        storage.ensure_root()
        with cache.model("ab/m") as model:
            write(model, 100)
        assert storage.model_path("ab/m") == str(tmp_path / "ab" / "m")
        assert storage.dir_exists("ab/m")
        assert storage.dir_exists("ab")
        assert not storage.dir_exists("ab/other")
        assert storage.compute_dir_size("ab/m") == 100
        assert storage.compute_dir_size("missing") == 0
        assert storage.read_meta("ab/m") == {"size": 100, "access_count": 1}
        assert storage.read_meta("missing") == {"size": 0, "access_count": 0}
        (info,) = storage.scan_entries()
        assert isinstance(info, ModelInfo)
        assert (info.path, info.size, info.access_count) == ("ab/m", 100, 1)
        with pytest.raises(ValueError, match="outside cache root"):
            storage.read_meta("../elsewhere")

        cache.manager.run_once()  # the scan knows the model now
        (before,) = cache.entries()
        time.sleep(0.02)
        storage.write_meta("ab/m", {"size": 100, "access_count": 42}, preserve_mtime=True)
        assert storage.read_meta("ab/m") == {"size": 100, "access_count": 42}
        (entry,) = cache.entries()  # the next scan sees the write
        assert entry.access_count == 42
        assert entry.last_access == before.last_access  # preserved

        storage.write_meta("ab/m", {"size": 100, "access_count": 3})
        (entry,) = cache.entries()
        assert entry.access_count == 3
        assert entry.last_access > before.last_access  # now
        assert time.time() - entry.last_access < 5

        storage.write_meta("ab/m", {"size": 100, "access_count": 3}, preserve_mtime=True)
        past = entry.last_access
        time.sleep(0.02)
        storage.touch_access("ab/m")
        (entry,) = cache.entries()
        assert entry.last_access > past
        assert entry.access_count == 3

        # A recorded size the files do not have is corrected by the next measurement.
        storage.write_meta("ab/m", {"size": 7, "access_count": 3})
        assert storage.read_meta("ab/m")["size"] == 7
        cache.manager.run_once(full=True)
        assert storage.read_meta("ab/m")["size"] == 100
        for bad in ({"size": -1}, {"access_count": "3"}, {"size": True}):
            with pytest.raises(ValueError, match="non-negative int"):
                storage.write_meta("ab/m", bad)
        assert storage.read_meta("ab/m")["access_count"] == 3  # nothing lost


def test_local_storage_writes_go_to_the_journal(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with FileCache(config(), storage=storage) as cache:
        with cache.model("m") as model:
            write(model, 10)
        cursor = storage.read_changes(None).cursor
        storage.write_meta("m", {"size": 10, "access_count": 5})
        changes = storage.read_changes(cursor)
        assert changes.keys == frozenset({"m"})
        storage.touch_access("m")
        assert storage.read_changes(changes.cursor).keys == frozenset({"m"})
        generation = storage.generation()
        storage.delete_dir("m")
        assert storage.generation() != generation
        assert cache.entries() == []


def test_local_storage_makes_a_model_in_place_as_1_0_did(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with FileCache(config(), storage=storage) as cache:
        cache.manager.run_once()
        storage.create_dir("runs/7")
        assert storage.dir_exists("runs/7")
        assert storage.read_meta("runs/7") == {"size": 0, "access_count": 0}
        assert storage.scan_entries() == []  # a folder, not a model yet
        (tmp_path / "runs" / "7" / "result.bin").write_bytes(b"r" * 30)
        storage.write_meta("runs/7", {"size": 30, "access_count": 2})
        (entry,) = cache.entries()
        assert (entry.key, entry.size, entry.access_count) == ("runs/7", 30, 2)
        with cache.model("runs/7") as model:
            assert not model.new  # a hit
            assert Path(model.path, "result.bin").read_bytes() == b"r" * 30
        with pytest.raises(FileNotFoundError):
            storage.write_meta("never/made", {"size": 1, "access_count": 1})
        with pytest.raises(FileNotFoundError):
            storage.touch_access("never/made")
        storage.create_dir("runs/7/inner")
        with pytest.raises(FileExistsError, match="inside the model"):
            storage.write_meta("runs/7/inner", {"size": 0, "access_count": 1})
        cache.manager.flush()  # the hit's access, written behind
        assert storage.read_meta("runs/7")["access_count"] == 3
        storage.create_dir("runs/8")
        storage.write_meta("runs/8", {"size": 0, "access_count": 1})
        storage.delete_dir("runs/7")
        assert not storage.dir_exists("runs/7")
        assert [e.key for e in cache.entries()] == ["runs/8"]
        with cache.model("runs/8"):  # open: kept, the rest goes
            (tmp_path / "runs" / "loose.txt").write_text("x")
            with pytest.raises(OSError, match="open") as refused:
                storage.delete_dir("runs")
            assert refused.value.errno == errno.EBUSY
            assert storage.dir_exists("runs/8")
        storage.delete_dir("runs")  # a folder of models, each evicted
        assert not storage.dir_exists("runs")
        storage.create_dir("plain")
        storage.delete_dir("plain")  # a folder that is no model
        storage.delete_dir("plain")  # and nothing at all
        assert not (tmp_path / "plain").exists()
        assert cache.entries() == []


def test_local_storage_cleans_up_leftovers(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.ensure_root()
    # A fill whose process died (no lock holds its folder), as kill -9 leaves it.
    dead = tmp_path / ".filecache" / "staging" / "0123.abcd"
    dead.mkdir()
    (dead / "part.bin").write_bytes(b"p" * 10)
    storage.cleanup_temp_files()
    assert not dead.exists()


OPENER = """
import sys
from vcti.filecache import CacheManagerConfig, FileCache
root, key, fill = sys.argv[1], sys.argv[2], sys.argv[3] == "fill"
with FileCache(CacheManagerConfig(evict_above=10**9), root=root) as cache:
    with cache.model(key) as model:
        if fill:
            open(model.path + "/data.bin", "wb").write(b"f" * 64)
        print("open", flush=True)
        sys.stdin.readline()
print("closed", flush=True)
"""


def opener(root: Path, key: str, fill: bool) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", OPENER, str(root), key, "fill" if fill else "open"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "open\n"
    return child


def finish(child: subprocess.Popen[str]) -> None:
    out, _ = child.communicate("\n", timeout=30)
    assert out == "closed\n"
    assert child.returncode == 0


def test_write_meta_on_a_model_open_in_another_process(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with FileCache(config(), storage=storage) as cache, cache.model("m") as model:
        write(model, 50)
    child = opener(tmp_path, "m", fill=False)
    try:
        storage.write_meta("m", {"size": 50, "access_count": 10})
        with pytest.raises(OSError, match="open") as refused:
            storage.delete_dir("m")  # open elsewhere: kept
        assert refused.value.errno == errno.EBUSY
        assert (tmp_path / "m" / "data.bin").read_bytes() == b"x" * 50
    finally:
        finish(child)
    with FileCache(config(), storage=storage) as cache:
        (entry,) = cache.entries()
    assert entry.access_count == 11  # the write, then the other process's access


def test_write_meta_waits_for_a_fill_in_another_process(tmp_path: Path) -> None:
    import threading

    storage = LocalStorage(tmp_path)
    storage.ensure_root()
    child = opener(tmp_path, "m", fill=True)
    done = threading.Event()
    failures: list[BaseException] = []

    def set_meta() -> None:
        try:
            storage.write_meta("m", {"size": 64, "access_count": 9})
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=set_meta)
    try:
        writer.start()
        assert not done.wait(0.5)  # the fill holds the key
    finally:
        finish(child)
    writer.join(timeout=30)
    assert failures == []
    assert (tmp_path / "m" / "data.bin").read_bytes() == b"f" * 64  # the fill published
    assert storage.read_meta("m") == {"size": 64, "access_count": 9}
    with FileCache(config(), storage=storage) as cache:
        (entry,) = cache.entries()
    assert (entry.key, entry.size, entry.access_count) == ("m", 64, 9)


class WrapsLocalStorage:
    """A 1.0 backend that wraps LocalStorage, forwarding 1.0's methods (and counting writes)."""

    def __init__(self, root: Path) -> None:
        self.inner = LocalStorage(root)
        self.root = self.inner.root
        self.writes = 0

    def key(self) -> str:
        return self.inner.key()

    def create_dir(self, rel_path: str) -> None:
        self.inner.create_dir(rel_path)

    def delete_dir(self, rel_path: str) -> None:
        self.inner.delete_dir(rel_path)

    def dir_exists(self, rel_path: str) -> bool:
        return self.inner.dir_exists(rel_path)

    def model_path(self, rel_path: str) -> str:
        return self.inner.model_path(rel_path)

    def read_meta(self, rel_path: str) -> dict[str, Any]:
        return self.inner.read_meta(rel_path)

    def write_meta(
        self, rel_path: str, data: dict[str, Any], *, preserve_mtime: bool = False
    ) -> None:
        self.writes += 1
        self.inner.write_meta(rel_path, data, preserve_mtime=preserve_mtime)

    def touch_access(self, rel_path: str) -> None:
        self.inner.touch_access(rel_path)

    def scan_entries(self) -> list[ModelInfo]:
        return self.inner.scan_entries()

    def compute_dir_size(self, rel_path: str) -> int:
        return self.inner.compute_dir_size(rel_path)

    def cleanup_temp_files(self) -> None:
        self.inner.cleanup_temp_files()


def test_a_backend_that_wraps_local_storage(tmp_path: Path) -> None:
    backend = WrapsLocalStorage(tmp_path)
    fill_two_and_evict_the_older(backend)
    assert backend.writes >= 3
    assert backend.read_meta("a") == {"size": 100, "access_count": 2}
    # What it wrote is a root of this package: a native LocalStorage reads it.
    with FileCache(config(), root=tmp_path) as cache:
        assert [(e.key, e.size, e.access_count) for e in cache.entries()] == [("a", 100, 2)]


def test_a_1_0_backend_that_subclasses_cache_storage(tmp_path: Path) -> None:
    from vcti.filecache.storage import CacheStorage as StorageProtocol

    class MyStorage(StorageProtocol, DirectoriesV1):  # 1.0's protocol had this name
        def __init__(self, root: Path) -> None:
            self.root = root  # no "property 'root' has no setter"
            self.calls = []
            root.mkdir(parents=True, exist_ok=True)

    backend = MyStorage(tmp_path)
    assert backend.root == tmp_path
    with FileCache(config(evict_above=150, prompt_eviction=False), storage=backend) as cache:
        assert "StorageV1Adapter" in repr(cache.storage)  # recognised by its 1.0 methods
        wait_for(lambda: cache.manager.cycles >= 1)  # the cycle at start is done
        with cache.model("a") as model:
            write(model, 100)
        with cache.model("b") as model:
            write(model, 100)
        assert sorted(e.path for e in cache.entries()) == ["a", "b"]
        assert len(cache.evict()) == 1
    assert "delete_dir" in backend.calls
    (kept,) = [p.parent.name for p in tmp_path.glob("*/.cache_meta")]  # written by MyStorage
    assert backend.read_meta(kept)["access_count"] == 1


def test_a_2_0_backend_subclassing_cache_storage_may_assign_root(tmp_path: Path) -> None:
    class Named(LocalStorage):
        pass

    class Native(CacheStorage):
        def __init__(self) -> None:
            self.root = "native:"

    assert Native().root == "native:"
    assert isinstance(Native(), CacheStorage)
    assert isinstance(Named(tmp_path), CacheStorage)
    with FileCache(config(), storage=Named(tmp_path)) as cache:
        assert isinstance(cache.storage, Named)  # both method sets: a backend of 2.0


# -- CacheManager built directly ------------------------------------------------------------


def test_cache_manager_built_directly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vcti.filecache")
    storage = LocalStorage(tmp_path)
    watcher = SizeWatcher()
    settings = config(evict_above=150, observer=[watcher, LoggingObserver()])
    manager = CacheManager(storage, settings)
    try:
        assert manager.is_running
        assert manager.storage.root == str(tmp_path)
        with FileCache(config(), root=tmp_path) as cache:
            assert cache.manager is not manager
            for key in ("a", "b"):
                with cache.model(key) as model:
                    write(model, 100)
                time.sleep(0.01)
            snapshot = manager.run_once()
            assert snapshot is not None
            assert [e.key for e in snapshot.entries] == ["b"]  # the manager's limit: 150
            assert manager.cycles == cache.manager.cycles  # one runtime for the root
        assert manager.is_running  # still one user: this manager
        assert watcher.cycles[-1] == (100, 1)
        assert watcher.evicted == [str(tmp_path / "a")]
        assert "Evicted a" in caplog.messages
    finally:
        manager.stop()
    assert not manager.is_running
    manager.stop()  # twice is harmless
    assert manager.run_once() is None  # nobody uses the root
    with CacheManager(storage, config()) as again:
        assert again.is_running
    assert not again.is_running
