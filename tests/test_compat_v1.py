"""vcti-file-cache 1.0's public interface, used as a 1.0 user would, unchanged.

Each test follows one fact of 1.0's interface (see README, "Migrating from 1.0"): its
names and modules, FileCache and ModelDir, ModelInfo and CacheSnapshot, the config,
policies with ``select_evictions``, ``run_eviction``, observers with ``on_size_update`` and
``on_cycle_complete``, ``CacheManager.acquire``/``release``, backends written to 1.0's
``CacheStorage`` protocol, cache roots written by 1.0, and ``fork()``.
"""

from __future__ import annotations

import dataclasses
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
        with pytest.raises(ValueError, match="evict_above"):
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
        assert watcher.sizes == {str(tmp_path / "m"): 40}
        with cache.model("m") as model:
            write(model, 60, "more.bin")  # a rewrite through the library...
        cache.manager.run_once()  # ...is measured at the next cycle
        assert watcher.sizes == {str(tmp_path / "m"): 100}
        assert watcher.cycles[-1] == (100, 1)
        cycles = len(watcher.cycles)
    assert len(watcher.cycles) == cycles + 1  # and a last one at shutdown


def test_logging_observer_levels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vcti.filecache")
    settings = config(
        evict_above=10, observer=LoggingObserver(), prompt_eviction=False, full_scan_every=1
    )
    with FileCache(settings, root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        with cache.model("m") as model:
            write(model, 40)
        cache.evict()
        # A model made behind the library's back, with junk metadata: a full walk finds it.
        (Path(cache.storage.path("x")) / ".filecache").mkdir(parents=True)
        (Path(cache.storage.path("x")) / ".filecache" / "meta.json").write_text("junk")
        cache.manager.run_once()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "vcti.filecache"]
    assert any(level == logging.INFO and "evicted" in text for level, text in records)
    assert any(level == logging.DEBUG and "size of" in text for level, text in records)
    assert any(level == logging.DEBUG and "cycle complete" in text for level, text in records)
    assert any(level == logging.WARNING and "metadata" in text for level, text in records)
    assert not any(level >= logging.ERROR for level, _ in records)


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


def test_a_backend_written_for_1_0_runs_through_the_adapter(tmp_path: Path) -> None:
    backend = DirectoriesV1(tmp_path)
    settings = config(evict_above=150, prompt_eviction=False)
    with FileCache(settings, storage=backend) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        assert "cleanup_temp_files" in backend.calls
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
