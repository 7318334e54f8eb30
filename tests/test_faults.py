"""Faults and bad conditions: the manager keeps running and every problem is reported."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, IdleSizePolicy, LocalStorage
from vcti.filecache.testing import RecordingObserver

from .helpers import FakeClock, wait_for


class FaultyStorage(LocalStorage):
    """LocalStorage with switchable faults, injected without root privileges."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.meta_error: OSError | None = None
        self.publish_error: OSError | None = None
        self.remove_error: OSError | None = None
        self.on_iter: Callable[[str], None] | None = None

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        if self.meta_error is not None:
            raise self.meta_error
        super().update_meta(key, update)

    def update_metas(
        self, updates: Sequence[tuple[str, Callable[[bytes | None], bytes]]]
    ) -> Iterator[tuple[str, tuple[bytes | None, bytes] | Exception]]:
        if self.meta_error is None:
            yield from super().update_metas(updates)
            return
        for key, _ in updates:  # as the measuring process reports a failed write
            yield key, self.meta_error

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        if self.publish_error is not None:
            raise self.publish_error
        super().publish(key, staged, meta)

    def remove(self, key: str) -> bool:
        if self.remove_error is not None:
            raise self.remove_error
        return super().remove(key)

    def iter_stamped_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[tuple[str, Hashable, Hashable]]:
        for key, data_stamp, meta_stamp in super().iter_stamped_models(prefix, onerror):
            if self.on_iter is not None:
                self.on_iter(key)
            yield key, data_stamp, meta_stamp


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def make(
    tmp_path: Path, recorder: RecordingObserver, **kwargs: object
) -> tuple[FaultyStorage, FileCache]:
    storage = FaultyStorage(tmp_path / "cache")
    kwargs.setdefault("evict_above", 10**9)
    kwargs.setdefault("interval", 3600)
    kwargs.setdefault("prompt_eviction", False)
    config = CacheManagerConfig(observer=recorder, **kwargs)  # type: ignore[arg-type]
    cache = FileCache(storage=storage, config=config).open()
    wait_for(lambda: cache.manager.cycles >= 1)
    return storage, cache


def add(cache: FileCache, key: str, size: int) -> None:
    with cache.model(key) as model:
        Path(model.path, "data.bin").write_bytes(b"x" * size)


@pytest.mark.parametrize(
    "error", [enospc(), PermissionError(errno.EACCES, "Permission denied")], ids=str
)
def test_metadata_write_fails_then_recovers_without_losing_counts(
    tmp_path: Path, error: OSError
) -> None:
    recorder = RecordingObserver()
    storage, cache = make(tmp_path, recorder, interval=0.05)
    with cache:
        add(cache, "m", 10)
        storage.meta_error = error
        for _ in range(5):
            with cache.model("m"):
                pass
        wait_for(lambda: len(recorder.errors()) >= 2)
        assert cache.manager.is_running
        assert {(type(e), c) for e, c in recorder.errors()} == {(type(error), "metadata")}
        storage.meta_error = None
        meta = tmp_path / "cache" / "m" / ".filecache" / "meta.json"
        wait_for(lambda: json.loads(meta.read_bytes())["access_count"] == 6)  # on disk
        assert cache.entries()[0].access_count == 6
    with FileCache(root=tmp_path / "cache", config=CacheManagerConfig(evict_above=1)) as again:
        assert again.entries()[0].access_count == 6


def test_disk_full_while_publishing_is_the_caller_error(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    storage, cache = make(tmp_path, recorder)
    with cache:
        add(cache, "other", 10)
        storage.publish_error = enospc()
        with pytest.raises(OSError, match="No space left") as info, cache.model("m") as model:
            Path(model.path, "data.bin").write_bytes(b"x" * 100)
        assert info.value.errno == errno.ENOSPC
        storage.publish_error = None
        assert [e.key for e in cache.entries()] == ["other"]
        assert storage.staging_size() == 0
        ((key, _, fill_error),) = recorder.calls("on_fill")[1:]
        assert key == "m"
        assert fill_error is info.value
        with cache.model("m") as model:
            assert model.new


def test_disk_full_while_the_user_writes(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    storage, cache = make(tmp_path, recorder)

    def extract(path: str) -> None:
        Path(path, "part.bin").write_bytes(b"x" * 50)
        raise enospc()

    with cache:
        add(cache, "other", 10)
        with pytest.raises(OSError, match="No space left"), cache.model("m") as model:
            extract(model.path)
        assert storage.staging_size() == 0
        assert cache.total_size == 10
        assert recorder.errors() == []  # the caller's own error, not the cache's


def test_a_failing_removal_is_reported_and_the_rest_goes_on(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    storage, cache = make(tmp_path, recorder, evict_above=1, evict_to=0, interval=0.05)
    with cache:
        add(cache, "m", 10)
        storage.remove_error = PermissionError(errno.EPERM, "Operation not permitted")
        wait_for(lambda: len([1 for _, c in recorder.errors() if c == "evict"]) >= 2)
        assert cache.manager.is_running
        assert storage.is_model("m")
        storage.remove_error = None
        wait_for(lambda: not storage.is_model("m"))


def test_models_vanishing_mid_scan_are_not_errors(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    storage, cache = make(tmp_path, recorder)
    with cache:
        for key in ("a", "b", "c"):
            add(cache, key, 10)

        first: list[str] = []

        def vanish(key: str) -> None:
            if not first:  # another process deletes the others behind the walk's back
                first.append(key)
                for other in {"a", "b", "c"} - {key}:
                    shutil.rmtree(storage.path(other))

        storage.on_iter = vanish
        keys = [e.key for e in cache.entries()]
        storage.on_iter = None
        assert keys == first
        assert recorder.errors() == []


def test_an_unreadable_folder_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RecordingObserver()
    # Only a walk meets the folder: make every background cycle a full scan, and walk
    # here rather than in the measuring process, where the injected denial cannot reach.
    monkeypatch.setattr(FaultyStorage, "walk_models", LocalStorage._walked)
    storage, cache = make(tmp_path, recorder, interval=0.05, full_scan_every=1)
    with cache:
        add(cache, "locked/m", 10)
        add(cache, "open/m", 20)
        locked = storage.path("locked")
        real_scandir = os.scandir

        def scandir(path: str) -> Iterator[os.DirEntry[str]]:
            # chmod 000 does not stop root, so the denial is injected.
            if os.fspath(path) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", path)
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
        wait_for(lambda: len(recorder.errors()) >= 2)
        assert cache.manager.is_running
        assert {c for _, c in recorder.errors()} == {"scan"}
        wait_for(lambda: [e.key for e in cache.entries()] == ["open/m"])
        monkeypatch.undo()
        wait_for(lambda: sorted(e.key for e in cache.entries()) == ["locked/m", "open/m"])


def test_the_clock_jumping_backwards(tmp_path: Path) -> None:
    clock = FakeClock()
    recorder = RecordingObserver()
    _, cache = make(tmp_path, recorder, clock=clock, evict_above=15, policy=IdleSizePolicy(clock))
    with cache:
        add(cache, "m", 10)
        before = cache.entries()[0].last_access
        clock.advance(-86_400)
        with cache.model("m"):
            pass
        add(cache, "n", 10)  # created "a day earlier" than m
        (m,) = [e for e in cache.entries() if e.key == "m"]
        assert m.last_access == before  # never moves backwards
        assert m.access_count == 2
        assert cache.evict() == ["n"]  # m looks newer, n is older
        assert recorder.errors() == []


def test_many_models_in_one_folder(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    storage, cache = make(tmp_path, recorder, evict_above=1500 * 10)
    with cache:
        for n in range(2000):
            add(cache, f"flat/m{n:05d}", 10)
        snapshot = cache.snapshot()
        assert snapshot.entry_count == 2000
        assert snapshot.total_size == 20_000
        removed = cache.evict()
        assert len(removed) == 500
        assert len(os.listdir(storage.path("flat"))) == 1500
        assert recorder.errors() == []


def test_an_unexpected_metadata_failure_keeps_the_counts(tmp_path: Path) -> None:
    class Buggy(FaultyStorage):
        broken = True

        def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
            if self.broken:
                raise RuntimeError("backend bug")
            super().update_meta(key, update)

    recorder = RecordingObserver()
    storage = Buggy(tmp_path / "cache")
    config = CacheManagerConfig(evict_above=10**9, interval=3600, observer=recorder)
    with FileCache(storage=storage, config=config) as cache:
        # The cycle at start is done: the accesses below are written by this flush.
        wait_for(lambda: cache.manager.cycles >= 1)
        with cache.model("m"):
            pass
        for _ in range(3):
            with cache.model("m"):
                pass
        cache.manager.flush()
        assert [(type(e), c) for e, c in recorder.errors()] == [(RuntimeError, "metadata")]
        storage.broken = False
        cache.manager.flush()
        assert cache.entries()[0].access_count == 4
