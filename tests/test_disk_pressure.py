"""Disk pressure and prompt eviction, on a real small filesystem where the machine allows one.

``min_free`` keeps part of a shared filesystem free (a tmpfs of 40 MiB here); a publish
that takes the total over the limit, or the free space under ``min_free``, starts a cycle
at once, in the leader or from another process through the journal.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage
from vcti.filecache.testing import MemoryStorage, RecordingObserver

from .helpers import REPO, wait_for

MIB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {run.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def config(**kwargs: Any) -> CacheManagerConfig:
    kwargs.setdefault("evict_above", 10**12)
    kwargs.setdefault("interval", 3600.0)
    return CacheManagerConfig(**kwargs)


def fill(cache: FileCache, key: str, size: int) -> None:
    with cache.model(key) as model:
        Path(model.path, "data.bin").write_bytes(b"x" * size)


def free_bytes(path: Path) -> int:
    return LocalStorage(path).disk_usage()[0]


@pytest.mark.parametrize("min_free", [15 * MIB, 0.375], ids=["bytes", "fraction"])
def test_min_free_keeps_the_filesystem_free(small_fs: Path, min_free: float) -> None:
    recorder = RecordingObserver()
    root = small_fs / "cache"
    with FileCache(config(min_free=min_free, observer=recorder), root=root) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        snapshot = cache.snapshot()
        assert snapshot.disk_total == 40 * MIB
        assert snapshot.disk_free is not None
        for n in range(8):  # 32 MiB in all: the free space would fall under 15 MiB
            fill(cache, f"m/{n}", 4 * MIB)
        # The interval is an hour: the publishes start the cycles that evict.
        wait_for(lambda: free_bytes(small_fs) >= 15 * MIB and bool(recorder.calls("on_evict_end")))
        results = [args[0] for args in recorder.calls("on_evict_end")]
        assert results
        assert {r.reason for r in results} == {"free_space"}
        assert {r.trigger for r in results} == {"background"}
        assert cache.entry_count < 8


def test_a_full_disk_discards_the_fill_and_loses_nothing(small_fs: Path) -> None:
    root = small_fs / "cache"
    with FileCache(config(prompt_eviction=False), root=root) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        fill(cache, "kept", 10 * MIB)
        with pytest.raises(OSError, match="No space left") as raised:
            fill(cache, "too-big", 64 * MIB)
        assert raised.value.errno == errno.ENOSPC
        assert os.listdir(root / ".filecache" / "staging") == []  # the fill was discarded
        assert [e.key for e in cache.entries()] == ["kept"]
        assert cache.verify().ok
        fill(cache, "after", 1024)  # there is room again
        assert sorted(e.key for e in cache.entries()) == ["after", "kept"]


def test_min_free_is_validated_and_refused_without_free_space() -> None:
    for bad in (0, -1, 0.0, 1.0, 1.5, -0.5, True, "10G", float("nan")):
        with pytest.raises(ValueError, match="min_free"):
            CacheManagerConfig(evict_above=1, min_free=bad)  # type: ignore[arg-type]
    cache = FileCache(config(min_free=10 * MIB), storage=MemoryStorage())
    with pytest.raises(ValueError, match="min_free needs a backend"):
        cache.open()


def test_a_publish_over_the_limit_starts_a_cycle_at_once(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    settings = config(evict_above=250, observer=recorder)  # interval: an hour
    with FileCache(settings, root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for key in ("a", "b"):
            fill(cache, key, 100)
        fill(cache, "c", 100)  # 300 bytes: over
        wait_for(lambda: bool(recorder.calls("on_evict_end")))
        (result,) = [args[0] for args in recorder.calls("on_evict_end")]
        assert (result.trigger, result.reason) == ("background", "size")
        assert [e.key for e in result.entries] == ["a"]


PUBLISHER = """
import sys
import time
from pathlib import Path
from vcti.filecache import CacheManagerConfig, FileCache
config = CacheManagerConfig(evict_above=10**12, interval=3600)
with FileCache(config, root=sys.argv[1]) as cache:
    for n in range(3):
        with cache.model(f"far/{n}") as model:
            Path(model.path, "data.bin").write_bytes(b"x" * 100)
"""


def test_another_processs_publish_wakes_the_leader(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    settings = config(evict_above=250, observer=recorder)
    with FileCache(settings, root=tmp_path) as cache:
        wait_for(lambda: cache.manager.is_leader)
        run = subprocess.run(
            [sys.executable, "-c", PUBLISHER, str(tmp_path)], cwd=REPO, check=False
        )
        assert run.returncode == 0
        # The leader watches the journal: 300 bytes published elsewhere start its cycle.
        wait_for(lambda: bool(recorder.calls("on_evict_end")))
        assert cache.snapshot().total_size <= 250


class CountingStorage(LocalStorage):
    """Local storage that counts the reads of its journal, and can refuse to watch it."""

    def __init__(self, root: Path, *, refuse_watch: bool = False) -> None:
        super().__init__(root)
        self.reads = 0
        self.refuse_watch = refuse_watch

    def read_changes(self, cursor: object | None) -> Any:
        self.reads += 1
        return super().read_changes(cursor)

    def watch_changes(self) -> Any:
        if self.refuse_watch:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().watch_changes()


def test_an_idle_leader_sleeps_until_the_journal_is_written(tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path)
    recorder = RecordingObserver()
    with FileCache(config(evict_above=250, observer=recorder), storage=storage) as cache:
        wait_for(lambda: cache.manager.is_leader and cache.manager.cycles >= 1)
        fill(cache, "warm", 10)  # read once it is written, then nothing to read
        time.sleep(0.5)
        reads = storage.reads
        time.sleep(1.5)  # six looks, had it polled every 0.25 s
        assert storage.reads == reads
        run = subprocess.run(
            [sys.executable, "-c", PUBLISHER, str(tmp_path)], cwd=REPO, check=False
        )
        assert run.returncode == 0
        wait_for(lambda: bool(recorder.calls("on_evict_end")))
        assert cache.snapshot().total_size <= 250
    assert not recorder.calls("on_error")


def test_a_watch_refused_is_reported_and_the_journal_read_periodically(tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path, refuse_watch=True)
    recorder = RecordingObserver()
    with FileCache(config(evict_above=250, observer=recorder), storage=storage) as cache:
        wait_for(lambda: bool(recorder.calls("on_error")))
        ((error, context),) = recorder.errors()
        assert (context, error.errno) == ("leader", errno.EMFILE)
        run = subprocess.run(
            [sys.executable, "-c", PUBLISHER, str(tmp_path)], cwd=REPO, check=False
        )
        assert run.returncode == 0
        wait_for(lambda: bool(recorder.calls("on_evict_end")))
        assert cache.snapshot().total_size <= 250
    assert len(recorder.errors()) == 1  # reported once, not at every wait
