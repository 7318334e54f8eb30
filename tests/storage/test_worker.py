"""The measuring process: a local root's bulk file work in a long-lived child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage
from vcti.filecache._meta import Meta, MetaUpdate
from vcti.filecache.storage import _worker
from vcti.filecache.testing import RecordingObserver

from ..helpers import wait_for


def measuring_processes() -> list[int]:
    """This process's children that run the measuring process."""
    pids: list[int] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids.extend(int(pid) for pid in f.read().split())
    return [pid for pid in pids if _is_measuring(pid)]


def _is_measuring(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"vcti.filecache.storage._worker" in f.read()
    except FileNotFoundError:
        return False


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def add(storage: LocalStorage, key: str, data: bytes, count: int = 1) -> None:
    staged = storage.stage(key)
    Path(staged, "data.bin").write_bytes(data)
    storage.publish(key, staged, Meta(count, 1000.0, 1000.0).encode())


def opened(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "cache")
    storage.open()
    return storage


def test_sizes_and_updates_run_in_one_long_lived_child(tmp_path: Path) -> None:
    storage = opened(tmp_path)
    for n in range(3):
        add(storage, f"m{n}", b"x" * (n + 1))
    assert measuring_processes() == []  # started on first use only
    assert storage.model_sizes(["m0", "gone", "m2"]) == {"m0": 1, "m2": 3}
    (pid,) = measuring_processes()
    update = MetaUpdate(accesses=(1, 2000.0))
    assert [key for key, _ in storage.update_metas([("m1", update)])] == ["m1"]
    assert measuring_processes() == [pid]  # the same process served both
    assert Meta.decode(storage.read_record("m1")).access_count == 2
    storage.close()
    assert measuring_processes() == []
    assert not alive(pid)


def test_updates_that_cannot_travel_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    storage = opened(tmp_path)
    add(storage, "m", b"x")

    def closure(raw: bytes | None) -> bytes:  # a local function does not pickle
        return raw or b""

    with pytest.raises(TypeError, match="picklable"):
        list(storage.update_metas([("m", closure)]))
    assert Meta.decode(storage.read_record("m")).access_count == 1
    assert storage.model_sizes(["m"]) == {"m": 1}  # the process is still fine
    storage.close()


def test_malformed_updates_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    storage = opened(tmp_path)
    add(storage, "m", b"x")
    update = MetaUpdate(accesses=(1, 2000.0))
    bad: list[object] = [("m",), ("m", "not callable"), (7, update), ["m", update]]
    for item in bad:
        with pytest.raises(TypeError, match="update"):
            list(storage.update_metas([("m", update), item]))  # type: ignore[list-item]
    assert Meta.decode(storage.read_record("m")).access_count == 1
    storage.close()


def test_a_request_that_fails_as_a_whole_raises_its_error_and_the_process_lives(
    tmp_path: Path,
) -> None:
    storage = opened(tmp_path)
    add(storage, "m", b"xyz")
    assert storage.model_sizes(["m"]) == {"m": 3}
    (pid,) = measuring_processes()
    with pytest.raises(ValueError, match="null"):
        list(storage.read_metas(["m", "bad\0key"]))
    with pytest.raises(ValueError, match="null"):
        storage.model_sizes(["bad\0key"])
    assert [key for key, stamps, _ in storage.read_metas(["m"]) if stamps] == ["m"]
    assert measuring_processes() == [pid]  # the same process served them all
    storage.close()


def test_a_killed_process_is_reported_once_and_replaced(tmp_path: Path) -> None:
    storage = opened(tmp_path)
    add(storage, "m", b"xy")
    assert storage.model_sizes(["m"]) == {"m": 2}
    (pid,) = measuring_processes()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid) or pid not in measuring_processes())
    with pytest.raises(OSError, match="exit status -9"):
        storage.model_sizes(["m"])
    assert storage.model_sizes(["m"]) == {"m": 2}  # a new one
    (new,) = measuring_processes()
    assert new != pid
    storage.close()


def test_an_idle_process_exits_and_the_next_batch_starts_one_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_worker, "IDLE_EXIT", 0.2)
    storage = opened(tmp_path)
    add(storage, "m", b"xyz")
    assert storage.model_sizes(["m"]) == {"m": 3}
    (pid,) = measuring_processes()
    wait_for(lambda: not alive(pid))
    assert storage.model_sizes(["m"]) == {"m": 3}
    storage.close()


def test_the_process_ends_with_its_parent_even_on_kill_9(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    script = f"""
import os, sys, time
from pathlib import Path
from vcti.filecache import FileCache, CacheManagerConfig
from tests.storage.test_worker import measuring_processes
cache = FileCache(root={str(root)!r}, config=CacheManagerConfig(evict_above=10**9, interval=3600))
cache.open()
with cache.model("m") as model:
    Path(model.path, "f").write_bytes(b"x")
with cache.model("m"):
    pass
cache.manager.run_once()  # the leader measures the opened m in its measuring process
print(measuring_processes()[0], flush=True)
time.sleep(600)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        assert alive(pid)
        child.kill()
        child.wait()
        wait_for(lambda: not alive(pid))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_a_forked_child_gets_a_process_of_its_own(tmp_path: Path) -> None:
    storage = opened(tmp_path)
    add(storage, "m", b"xy")
    assert storage.model_sizes(["m"]) == {"m": 2}
    (pid,) = measuring_processes()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            if storage.model_sizes(["m"]) == {"m": 2} and measuring_processes() not in ([], [pid]):
                code = 0
            storage.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage.model_sizes(["m"]) == {"m": 2}
    assert measuring_processes() == [pid]  # the parent's own, untouched by the child
    storage.close()


def test_the_leaders_cycle_writes_through_it_and_close_ends_it(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=10**9, interval=3600, observer=recorder)
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        with cache.model("m") as model:
            Path(model.path, "f").write_bytes(b"x" * 7)
        for _ in range(3):
            with cache.model("m"):
                pass
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        assert len(measuring_processes()) == 1
        assert [(e.key, e.size, e.access_count) for e in snapshot.entries] == [("m", 7, 4)]
        meta = json.loads((tmp_path / "cache" / "m" / ".filecache" / "meta.json").read_bytes())
        assert (meta["access_count"], meta["size"]) == (4, 7)
    assert measuring_processes() == []
    assert recorder.errors() == []


def test_a_batch_cut_short_is_reported_and_done_here_without_losing_counts(
    tmp_path: Path,
) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=10**9, interval=3600, observer=recorder)
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for key in ("a", "b"):
            with cache.model(key) as model:
                Path(model.path, "f").write_bytes(b"x")
            with cache.model(key):
                pass
        cache.manager.run_once()  # measures the opened models in the measuring process
        (pid,) = measuring_processes()
        for key in ("a", "b", "a"):
            with cache.model(key):
                pass
        os.kill(pid, signal.SIGSTOP)  # it will not read the cycle's request
        done = threading.Event()
        cycle = threading.Thread(target=lambda: (cache.manager.run_once(), done.set()))
        cycle.start()
        # Once the cycle waits on the stopped process, kill it: the batch fails as a whole.
        try:
            wait_for(lambda: _waits_on_pipe(cycle))
        finally:
            os.kill(pid, signal.SIGKILL)  # whatever happened: nothing may wait on it forever
        cycle.join(60)
        assert done.is_set()
        assert [(type(e), c) for e, c in recorder.errors()] == [(OSError, "scan")]
        counts = {e.key: e.access_count for e in cache.entries()}
        assert counts == {"a": 4, "b": 3}
    with FileCache(root=tmp_path / "cache", config=CacheManagerConfig(evict_above=1)) as again:
        assert {e.key: e.access_count for e in again.entries()} == {"a": 4, "b": 3}


def _waits_on_pipe(thread: threading.Thread) -> bool:
    """True once ``thread`` waits for the measuring process (its kernel wait channel)."""
    tid = thread.native_id
    if tid is None:
        return False
    try:
        with open(f"/proc/self/task/{tid}/wchan") as f:
            channel = f.read()
    except FileNotFoundError:
        return False
    return any(word in channel for word in ("pipe", "select", "poll"))


def test_a_full_walk_whose_process_died_is_reported_and_walked_here(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=10**9, interval=3600, observer=recorder)
    with FileCache(root=tmp_path / "cache", config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for key, size in (("a", 3), ("b/c", 4)):
            with cache.model(key) as model:
                Path(model.path, "f").write_bytes(b"x" * size)
        assert cache.manager.run_once(full=True) is not None  # walked in the process
        (pid,) = measuring_processes()
        Path(cache.storage.path("a"), "f").write_bytes(b"y" * 30)  # behind its back
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid))
        snapshot = cache.manager.run_once(full=True)
        assert snapshot is not None
        assert {e.key: e.size for e in snapshot.entries} == {"a": 30, "b/c": 4}
        assert [(type(e), c) for e, c in recorder.errors()] == [(OSError, "scan")]
        assert "exit status -9" in str(recorder.errors()[0][0])
