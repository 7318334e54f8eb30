"""FileCache and ModelDir: opening, filling, pinning, evicting, in one process."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path

import pytest

from vcti.filecache import (
    CacheClosedError,
    CacheManagerConfig,
    FileCache,
    KeyValidationError,
    LfuPolicy,
    LocalStorage,
    LruPolicy,
    MetadataError,
)
from vcti.filecache.testing import MemoryStorage, RecordingObserver

from .conftest import MakeCache
from .helpers import Backend, FakeClock, fill, wait_for

# -- construction and lifecycle ---------------------------------------------------------


def test_storage_or_root_is_needed_and_storage_wins(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=100)
    with pytest.raises(TypeError, match=r"storage= .* or root="):
        FileCache(config=config)
    storage = MemoryStorage()
    assert FileCache(config=config, root=tmp_path, storage=storage).storage is storage


def test_wrong_types_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="CacheManagerConfig"):
        FileCache(config={"evict_above": 1}, root=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="CacheStorage"):
        FileCache(config=CacheManagerConfig(evict_above=1), storage="/tmp")  # type: ignore[arg-type]


def test_root_is_shorthand_for_local_storage(tmp_path: Path) -> None:
    with FileCache(root=tmp_path / "c", config=CacheManagerConfig(evict_above=100)) as cache:
        assert isinstance(cache.storage, LocalStorage)
        assert cache.storage.root == str(tmp_path / "c")
        assert (tmp_path / "c" / ".filecache").is_dir()


def test_model_needs_an_open_cache(tmp_path: Path) -> None:
    cache = FileCache(root=tmp_path, config=CacheManagerConfig(evict_above=100))
    with pytest.raises(CacheClosedError, match="open"), cache.model("m"):
        pass
    with cache, cache.model("m"):
        pass
    with pytest.raises(CacheClosedError), cache.model("m"):
        pass
    with pytest.raises(CacheClosedError):
        cache.open()
    cache.close()  # closing twice is harmless


# -- fill and hit ------------------------------------------------------------------------


def test_fill_publishes_on_exit(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache()
    with cache.model("ab/cd/model_1") as model:
        assert model.new
        assert not model.exists
        assert model.key == "ab/cd/model_1"
        assert model.path != backend.storage.path("ab/cd/model_1")
        backend.write(model.path, "mesh.vtu", b"mesh")
        assert not backend.storage.is_model("ab/cd/model_1")
    assert model.exists
    with cache.model("ab/cd/model_1") as model:
        assert not model.new
        assert model.exists
        assert model.path == backend.storage.path("ab/cd/model_1")
        assert os.fspath(model) == model.path
        assert backend.read(model.path, "mesh.vtu") == b"mesh"


def test_failed_fill_leaves_nothing_behind(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache()

    def failing_fill() -> None:
        with cache.model("m") as model:
            backend.write(model.path, "half.bin", b"x" * 1000)
            raise RuntimeError("parse failed")

    with pytest.raises(RuntimeError, match="parse failed"):
        failing_fill()
    assert not backend.storage.is_model("m")
    assert backend.storage.staging_size() == 0
    assert cache.entries() == []
    assert cache.total_size == 0
    with cache.model("m") as model:
        assert model.new  # the next opener fills again


def test_accesses_are_counted(make_cache: MakeCache, backend: Backend, clock: FakeClock) -> None:
    cache = make_cache()
    created = clock.now
    fill(backend, cache, "m", 10)
    clock.advance(5)
    with cache.model("m"):
        pass
    clock.advance(5)
    with cache.model("m"):
        pass
    (entry,) = cache.entries()
    assert entry.key == "m"
    assert entry.size == 10
    assert entry.access_count == 3
    assert entry.created == created
    assert entry.last_access == created + 10


def test_access_counts_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    config = CacheManagerConfig(evict_above=10**6, interval=3600, clock=clock)
    with FileCache(root=tmp_path, config=config) as cache:
        for _ in range(4):
            with cache.model("a/m"):
                pass
    with FileCache(root=tmp_path, config=config) as cache:
        (entry,) = cache.entries()
    assert entry.access_count == 4
    assert entry.last_access == clock.now


def test_hit_does_no_walk_and_no_metadata_write(tmp_path: Path) -> None:
    class Guarded(LocalStorage):
        armed = False

        def _guard(self, name: str) -> None:
            if self.armed:
                raise AssertionError(f"{name} called on the hit path")

        def model_size(self, key: str) -> int:
            self._guard("model_size")
            return super().model_size(key)

        def iter_models(self, prefix: str = "", onerror: object = None):  # type: ignore[no-untyped-def]
            self._guard("iter_models")
            return super().iter_models(prefix, onerror)  # type: ignore[arg-type]

        def update_meta(self, key, update):  # type: ignore[no-untyped-def]
            self._guard("update_meta")
            return super().update_meta(key, update)

    storage = Guarded(tmp_path)
    with FileCache(
        storage=storage, config=CacheManagerConfig(evict_above=10**6, interval=3600)
    ) as c:
        wait_for(lambda: c.manager.cycles >= 1)  # the start cycle scans: let it pass first
        with c.model("m") as model:
            Path(model.path, "f").write_bytes(b"1")
        meta = Path(tmp_path, "m", ".filecache", "meta.json").read_bytes()
        storage.armed = True
        for _ in range(50):
            with c.model("m"):
                pass
        storage.armed = False
        assert Path(tmp_path, "m", ".filecache", "meta.json").read_bytes() == meta
        c.manager.flush()
        assert c.entries()[0].access_count == 51


def test_staging_bytes_count_toward_the_total(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache()
    fill(backend, cache, "done", 100)
    with cache.model("filling") as model:
        backend.write(model.path, "part.bin", b"x" * 40)
        snapshot = cache.snapshot()
        assert snapshot.staging_size == 40
        assert snapshot.total_size == 140
        assert snapshot.entry_count == 1


def test_size_properties(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache(evict_above=150)
    fill(backend, cache, "a", 100)
    assert (cache.total_size, cache.entry_count, cache.is_over_limit, cache.overage) == (
        100,
        1,
        False,
        0,
    )
    fill(backend, cache, "b", 100)
    assert (cache.total_size, cache.entry_count, cache.is_over_limit, cache.overage) == (
        200,
        2,
        True,
        50,
    )


def test_two_threads_filling_one_key_fill_once(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache()
    fills = 0
    seen: list[bytes] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker() -> None:
        nonlocal fills
        start.wait()
        with cache.model("shared/model") as model:
            if model.new:
                with lock:
                    fills += 1
                time.sleep(0.2)  # an expensive extraction
                backend.write(model.path, "data.bin", b"complete")
            data = backend.read(model.path, "data.bin")
        with lock:
            seen.append(data)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fills == 1
    assert seen == [b"complete"] * 4
    assert cache.entries()[0].access_count == 4


def test_many_threads_open_fill_and_evict(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache(evict_above=2000)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(60):
                key = f"k{(seed * 7 + i) % 15}"
                with cache.model(key) as model:
                    if model.new:
                        backend.write(model.path, "data.bin", key.encode() * 50)
                    data = backend.read(model.path, "data.bin")
                    assert data == key.encode() * 50
                if i % 10 == 0:
                    cache.evict()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    cache.evict()
    assert cache.total_size <= 2000


# -- eviction ----------------------------------------------------------------------------


def test_evict_follows_the_policy(
    make_cache: MakeCache, backend: Backend, clock: FakeClock
) -> None:
    cache = make_cache(evict_above=250)
    for key in ("a", "b", "c", "d"):
        fill(backend, cache, key, 100)
        clock.advance(10)
    with cache.model("a"):  # a is now the most recent
        pass
    removed = cache.evict()
    assert removed == ["b", "c"]  # keys, as in 1.0
    assert sorted(e.key for e in cache.entries()) == ["a", "d"]
    assert cache.evict() == []  # within budget: nothing to do


def test_evict_to_frees_headroom(make_cache: MakeCache, backend: Backend, clock: FakeClock) -> None:
    cache = make_cache(evict_above=350, evict_to=100)
    for key in ("a", "b", "c", "d"):
        fill(backend, cache, key, 100)
        clock.advance(1)
    assert cache.evict() == ["a", "b", "c"]
    assert cache.total_size == 100


def test_evict_policy_override(make_cache: MakeCache, backend: Backend, clock: FakeClock) -> None:
    cache = make_cache(evict_above=150, policy=LruPolicy())
    fill(backend, cache, "popular", 100)
    for _ in range(5):
        with cache.model("popular"):
            pass
    clock.advance(10)
    fill(backend, cache, "once", 100)
    assert cache.evict(policy=LfuPolicy()) == ["once"]
    with pytest.raises(TypeError, match="EvictionPolicy"):
        cache.evict(policy="lru")  # type: ignore[arg-type]


def test_pinned_model_survives_evict_from_another_cache(
    make_cache: MakeCache, backend: Backend, clock: FakeClock
) -> None:
    reader = make_cache()
    evictor = make_cache(evict_above=1, evict_to=0)
    assert reader.manager is evictor.manager
    fill(backend, reader, "open", 100)
    clock.advance(1)
    fill(backend, reader, "closed", 100)
    with reader.model("open") as model:
        removed = evictor.evict()
        assert removed == ["closed"]
        assert model.exists
        assert backend.read(model.path, "data.bin") == b"x" * 100
    assert evictor.evict() == ["open"]


def test_a_fill_in_progress_is_not_evicted(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache(evict_above=1, evict_to=0)
    with cache.model("m") as model:
        backend.write(model.path, "data.bin", b"x" * 10)
        assert cache.evict() == []
    assert model.exists


# -- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "../up",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "a\x00b",
        ".filecache",
        "a/.filecache",
    ],
)
def test_bad_keys_are_rejected(make_cache: MakeCache, key: str) -> None:
    cache = make_cache()
    with pytest.raises(ValueError, match="model key"), cache.model(key):
        pass
    assert cache.entries() == []


def test_non_string_key(make_cache: MakeCache) -> None:
    with pytest.raises(TypeError, match="str"), make_cache().model(42):  # type: ignore[arg-type]
        pass


def test_keys_may_not_nest(make_cache: MakeCache, backend: Backend) -> None:
    cache = make_cache()
    fill(backend, cache, "a/b", 1)
    with pytest.raises(KeyValidationError, match="inside the model 'a/b'"), cache.model("a/b/c"):
        pass
    with pytest.raises(KeyValidationError, match="contains the model 'a/b'"), cache.model("a"):
        pass
    with cache.model("a/b2"):  # a sibling is fine
        pass
    assert sorted(e.key for e in cache.entries()) == ["a/b", "a/b2"]


def test_keys_may_not_nest_with_a_fill_in_progress(make_cache: MakeCache) -> None:
    cache = make_cache()
    with cache.model("a/b"):
        with pytest.raises(KeyValidationError, match="being filled"), cache.model("a/b/c"):
            pass
        with pytest.raises(KeyValidationError, match="being filled"), cache.model("a"):
            pass


# -- the local filesystem ---------------------------------------------------------------


def test_symlink_outside_the_root_survives_eviction(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "results.h5").write_bytes(b"y" * 5000)
    root = tmp_path / "cache"
    with FileCache(
        root=root,
        config=CacheManagerConfig(evict_above=1, evict_to=0, interval=3600, prompt_eviction=False),
    ) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)  # the cycle at start is done
        with cache.model("m") as model:
            Path(model.path, "data.bin").write_bytes(b"x" * 10)
            os.symlink(outside, Path(model.path, "link"))
            os.symlink(outside / "results.h5", Path(model.path, "file-link"))
        assert cache.entries()[0].size == 10  # links are not followed
        assert cache.evict() == ["m"]
    assert (outside / "results.h5").read_bytes() == b"y" * 5000
    assert not (root / "m").exists()


def test_symlinked_folder_inside_the_root_is_not_a_model(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    with FileCache(
        root=root,
        config=CacheManagerConfig(evict_above=1, evict_to=0, interval=3600, prompt_eviction=False),
    ) as cache:
        with cache.model("real/m") as model:
            Path(model.path, "data.bin").write_bytes(b"x")
        os.symlink(root / "real", root / "alias")
        assert [e.key for e in cache.entries()] == ["real/m"]


def test_corrupt_metadata_is_rebuilt_and_reported(tmp_path: Path, clock: FakeClock) -> None:
    recorder = RecordingObserver()
    config = CacheManagerConfig(evict_above=10**6, interval=3600, observer=recorder, clock=clock)
    with FileCache(root=tmp_path, config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)  # the cycle at open scans nothing yet
        for key in ("corrupt", "missing", "wrong"):
            with cache.model(key) as model:
                Path(model.path, "data.bin").write_bytes(b"x" * 7)
        (tmp_path / "corrupt" / ".filecache" / "meta.json").write_bytes(b"{not json")
        (tmp_path / "missing" / ".filecache" / "meta.json").unlink()
        (tmp_path / "wrong" / ".filecache" / "meta.json").write_text('{"access_count": -3}')
        entries = {e.key: e for e in cache.entries()}
        assert set(entries) == {"corrupt", "missing", "wrong"}
        assert all(e.size == 7 and e.access_count == 0 for e in entries.values())
        errors = recorder.errors()
        assert len(errors) == 3
        assert all(isinstance(e, MetadataError) and ctx == "metadata" for e, ctx in errors)
        cache.entries()  # repaired on disk: no new reports
        assert len(recorder.errors()) == 3
        with cache.model("corrupt"):
            pass
    with FileCache(root=tmp_path, config=config) as cache:
        assert {e.key: e.access_count for e in cache.entries()}["corrupt"] == 1


class RefilledBetween(MemoryStorage):
    """A storage whose next metadata read of ``key`` fails, as when another host removed
    the model and published it again between the read and the check that it exists."""

    def __init__(self) -> None:
        super().__init__()
        self.refill: str | None = None

    def read_record(self, key: str) -> bytes:
        if key == self.refill:
            self.refill = None
            raise FileNotFoundError(key)
        return super().read_record(key)


def test_a_model_refilled_between_two_reads_is_not_reported_missing(clock: FakeClock) -> None:
    recorder = RecordingObserver()
    storage = RefilledBetween()
    config = CacheManagerConfig(evict_above=10**6, interval=3600, observer=recorder, clock=clock)
    with FileCache(storage=storage, config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for _ in range(3):
            with cache.model("m") as model:
                storage.write_file(f"{model.path}/data.bin", b"x" * 7)
        cache.manager.flush()
        storage.refill = "m"
        assert {e.key: e.access_count for e in cache.entries()} == {"m": 3}
        assert storage.refill is None  # the read failed once
        assert recorder.errors() == []  # the record read afresh: nothing missing, kept


def test_leftovers_are_reclaimed_at_start(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=10**6, interval=3600)
    with FileCache(root=tmp_path, config=config):
        pass
    stale_fill = tmp_path / ".filecache" / "staging" / "abcd.0123"
    stale_fill.mkdir()
    (stale_fill / "half.bin").write_bytes(b"x" * 100)
    stale_delete = tmp_path / ".filecache" / "trash" / "0123"
    (stale_delete / "sub").mkdir(parents=True)
    (stale_delete / "sub" / "old.bin").write_bytes(b"x" * 100)
    with FileCache(root=tmp_path, config=config) as cache:
        assert cache.total_size == 0
    assert os.listdir(tmp_path / ".filecache" / "staging") == []
    assert os.listdir(tmp_path / ".filecache" / "trash") == []


def test_empty_parent_folders_are_pruned(tmp_path: Path) -> None:
    with FileCache(
        root=tmp_path,
        config=CacheManagerConfig(evict_above=1, evict_to=0, interval=3600, prompt_eviction=False),
    ) as c:
        with c.model("ab/cd/m") as model:
            Path(model.path, "f").write_bytes(b"12")  # above the limit of 1 byte
        c.evict()
        assert not (tmp_path / "ab").exists()
        with c.model("ab") as model:  # the old folder is no obstacle to a new model
            assert model.new


# -- verify ------------------------------------------------------------------------------


def test_verify_reports_and_repairs_drift(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=10**6, interval=3600)
    with FileCache(root=tmp_path, config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)  # its sweep must not race the test
        for key in ("a", "b", "c"):
            with cache.model(key) as model:
                Path(model.path, "data.bin").write_bytes(b"x" * 10)
        assert cache.verify().ok
        internal = tmp_path / "a" / ".filecache"
        (internal / "meta.json").write_text("garbage")
        (internal / "meta.json.1234.tmp").write_text("half a record")
        (tmp_path / "c" / "inner" / ".filecache").mkdir(parents=True)
        (tmp_path / ".filecache" / "staging" / "ffff.0").mkdir()
        (tmp_path / ".filecache" / "trash" / "0").mkdir()

        report = cache.verify()
        assert not report.ok
        assert not report.repaired
        text = "\n".join(report.problems)
        for needle in (
            "leftover delete",
            "leftover fill",
            "model 'a': unreadable metadata",
            "model 'a': leftover .filecache/meta.json.1234.tmp",
            "model 'c' contains another model folder",
        ):
            assert needle in text, needle
        assert len(report.problems) == 5
        assert cache.verify().problems == report.problems  # a check alone changes nothing

        repaired = cache.verify(repair=True)
        assert repaired.repaired
        assert repaired.problems == report.problems
        remaining = cache.verify().problems
        assert len(remaining) == 1  # nested models are reported, never deleted
        assert "contains another model folder" in remaining[0]
        assert sorted(e.key for e in repaired.snapshot.entries) == ["a", "b", "c"]


# -- steady-state scans ------------------------------------------------------------------


class CountingStorage(LocalStorage):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.sized: list[str] = []
        self.read: list[str] = []
        self.updated: list[str] = []

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        self.updated.append(key)
        super().update_meta(key, update)

    def update_metas(
        self, updates: Sequence[tuple[str, Callable[[bytes | None], bytes]]]
    ) -> Iterator[tuple[str, tuple[bytes | None, bytes] | Exception]]:
        self.updated.extend(key for key, _ in updates)  # in the measuring process
        return super().update_metas(updates)

    def model_size(self, key: str) -> int:
        self.sized.append(key)
        return super().model_size(key)

    def model_sizes(self, keys: Sequence[str]) -> dict[str, int]:
        self.sized.extend(keys)  # in the measuring process
        return super().model_sizes(keys)

    def walk_models(
        self,
    ) -> tuple[list[tuple[str, Hashable, Hashable, int | None]], list[OSError]]:
        walked, errors = super().walk_models()  # a full walk, in the measuring process
        self.sized.extend(key for key, _, _, size in walked if size is not None)
        return walked, errors

    def read_record(self, key: str) -> bytes:
        self.read.append(key)
        return super().read_record(key)


def test_an_unchanged_model_is_not_walked_again(tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path)
    config = CacheManagerConfig(evict_above=10**9, interval=3600, full_scan_every=3)
    with FileCache(storage=storage, config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for key in ("a", "b"):
            with cache.model(key) as model:
                Path(model.path, "data.bin").write_bytes(b"x" * 10)
        cache.manager.run_once()  # the first scan after the start cycle measures
        storage.sized.clear()
        storage.read.clear()
        storage.updated.clear()
        with cache.model("a"):
            pass
        snapshot = cache.manager.run_once()  # a was opened: only a is measured
        assert snapshot is not None
        assert storage.sized == ["a"]
        assert storage.read == []
        assert storage.updated == ["a"]  # its accesses written with its size, in one update
        assert (
            json.loads(Path(storage.path("a"), ".filecache", "meta.json").read_bytes())[
                "access_count"
            ]
            == 2
        )
        assert {e.key: e.access_count for e in snapshot.entries} == {"a": 2, "b": 1}

        with cache.model("b") as model:  # a file added: b is measured again
            Path(model.path, "more.bin").write_bytes(b"y" * 5)
        storage.sized.clear()
        assert {e.key: e.size for e in cache.entries()} == {"a": 10, "b": 15}
        assert storage.sized == ["b"]

        Path(storage.path("a"), "data.bin").write_bytes(b"z" * 30)  # rewritten in place
        assert {e.key: e.size for e in cache.entries()}["a"] == 10  # stamps miss this...
        storage.sized.clear()
        cache.manager.run_once()  # ...the periodic full scan does not
        assert sorted(storage.sized) == ["a", "b"]
        assert {e.key: e.size for e in cache.entries()}["a"] == 30


def test_accesses_written_by_another_process_are_seen(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=10**9, interval=3600)
    with FileCache(root=tmp_path, config=config) as cache:
        with cache.model("m"):
            pass
        assert cache.entries()[0].access_count == 1
        other = LocalStorage(tmp_path)  # what a flush in another process does
        other.update_meta("m", lambda raw: raw.replace(b'"access_count":1', b'"access_count":9'))
        assert cache.entries()[0].access_count == 9


def test_nothing_changed_means_no_walk(tmp_path: Path) -> None:
    walks: list[str] = []

    class Watched(LocalStorage):
        def iter_stamped_models(self, prefix="", onerror=None):  # type: ignore[no-untyped-def]
            walks.append(prefix)
            return super().iter_stamped_models(prefix, onerror)

    storage = Watched(tmp_path)
    config = CacheManagerConfig(evict_above=10**9, interval=3600, full_scan_every=100)
    with FileCache(storage=storage, config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        with cache.model("m") as model:
            Path(model.path, "data.bin").write_bytes(b"x" * 10)
        cache.entries()
        walks.clear()
        generation = storage.generation()
        assert [e.size for e in cache.entries()] == [10]
        assert walks == []  # no process changed anything: the last scan still holds
        with cache.model("m") as model:  # a hit that adds a file
            Path(model.path, "more.bin").write_bytes(b"y" * 5)
        # Its access is not written yet: the scan looks at that model alone, and measures it.
        assert [e.size for e in cache.entries()] == [15]
        assert walks == ["m"]
        cache.manager.flush()  # writing the access announces the change to every process
        assert storage.generation() != generation


def test_the_journal_is_renewed_when_large(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.open()
    assert storage.generation() is None
    with (
        FileCache(CacheManagerConfig(evict_above=10**9), storage=storage) as cache,
        cache.model("m") as model,
    ):
        Path(model.path, "data.bin").write_bytes(b"x")
    first = storage.generation()
    assert first is not None
    journal = tmp_path / ".filecache" / "journal"
    with open(journal, "ab") as f:
        f.write(b'["m","m"]\n' * (1 << 17))
    storage.sweep()
    renewed = storage.generation()
    assert renewed is not None
    assert renewed != first
    assert journal.stat().st_size == 0
