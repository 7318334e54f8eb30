"""Helpers for testing code that uses vcti.filecache, and for testing new backends.

- :class:`MemoryStorage`: a backend that keeps everything in memory.
- :class:`RecordingObserver`: records every hook call, for assertions.
- :class:`StorageContract`: the shared storage test suite. A new backend's test is a
  subclass that says how to make the storage and how to write a file into a model::

      class TestMyStorage(StorageContract):
          def make_storage(self, tmp_path):
              return MyStorage(...)

          def write_file(self, storage, folder, name, data):
              ...

  pytest collects the inherited ``test_*`` methods (the class name must start with
  ``Test``). pytest is imported only when the suite runs.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

from ._meta import Meta
from .observers.base import CacheObserver
from .storage.base import CacheStorage, Lock, SharedStorage
from .storage.memory import MemoryStorage

__all__ = ["MemoryStorage", "RecordingObserver", "StorageContract"]


class RecordingObserver(CacheObserver):
    """Records every hook call as ``(hook_name, args)`` in :attr:`events`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def _record(self, hook: str, *args: Any) -> None:
        with self._lock:
            self.events.append((hook, args))

    def names(self) -> list[str]:
        """Return the hook names in call order."""
        with self._lock:
            return [name for name, _ in self.events]

    def calls(self, hook: str) -> list[tuple[Any, ...]]:
        """Return the arguments of every call of ``hook``."""
        with self._lock:
            return [args for name, args in self.events if name == hook]

    def errors(self) -> list[tuple[Exception, str]]:
        """Return ``(error, context)`` for every ``on_error`` call."""
        return [(args[0], args[1]) for args in self.calls("on_error")]

    def on_attach(self, storage: Any, config: Any) -> None:
        self._record("on_attach", storage, config)

    def on_manager_start(self, root: str) -> None:
        self._record("on_manager_start", root)

    def on_manager_stop(self, root: str) -> None:
        self._record("on_manager_stop", root)

    def on_leader_change(self, is_leader: bool) -> None:
        self._record("on_leader_change", is_leader)

    def on_model_open(self, key: str) -> None:
        self._record("on_model_open", key)

    def on_access(self, key: str, hit: bool) -> None:
        self._record("on_access", key, hit)

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        self._record("on_fill", key, duration, error)

    def on_model_close(
        self, key: str, hit: bool, duration: float, error: BaseException | None
    ) -> None:
        self._record("on_model_close", key, hit, duration, error)

    def on_scan_start(self) -> None:
        self._record("on_scan_start")

    def on_scan_end(self, snapshot: Any, duration: float) -> None:
        self._record("on_scan_end", snapshot, duration)

    def on_evict_start(self, snapshot: Any, policy: str, trigger: str) -> None:
        self._record("on_evict_start", snapshot, policy, trigger)

    def on_evict(self, path: str) -> None:
        self._record("on_evict", path)

    def on_evict_end(self, result: Any) -> None:
        self._record("on_evict_end", result)

    def on_size_update(self, path: str, size: int) -> None:
        self._record("on_size_update", path, size)

    def on_cycle_complete(self, total_size: int, entry_count: int) -> None:
        self._record("on_cycle_complete", total_size, entry_count)

    def on_adopt(self, report: Any) -> None:
        self._record("on_adopt", report)

    def on_error(self, error: Exception, context: str) -> None:
        self._record("on_error", error, context)


def _raises(error: type[BaseException]) -> Any:
    # pytest is imported only when the suite runs: using the other helpers needs no pytest.
    import pytest  # noqa: PLC0415

    return pytest.raises(error)


def _meta(count: int = 1, t: float = 1000.0) -> bytes:
    return Meta(count, t, t).encode()


class StorageContract:
    """The behaviour every :class:`CacheStorage` backend must show.

    Subclass it in a ``Test*`` class and implement :meth:`make_storage` and
    :meth:`write_file`. Set ``pins_across_processes = False`` for a backend whose
    pins are left to the core (a single-process backend such as ``MemoryStorage``).
    """

    pins_across_processes = True

    def make_storage(self, tmp_path: Path) -> CacheStorage:
        """Return a fresh, empty storage (``tmp_path`` is a private temporary folder)."""
        raise NotImplementedError

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        """Write ``data`` as file ``name`` into ``folder`` (a model or staging path)."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------

    def _opened(self, tmp_path: Path) -> CacheStorage:
        storage = self.make_storage(tmp_path)
        storage.open()
        return storage

    def _add(self, storage: CacheStorage, key: str, size: int, count: int = 1) -> None:
        staged = storage.stage(key)
        self.write_file(storage, staged, "data.bin", b"x" * size)
        storage.publish(key, staged, _meta(count))

    # -- the suite ----------------------------------------------------------------------

    def test_is_a_cache_storage(self, tmp_path: Path) -> None:
        assert isinstance(self.make_storage(tmp_path), CacheStorage)

    def test_empty_after_open(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert list(storage.iter_models()) == []
        assert storage.staging_size() == 0
        assert not storage.is_model("a")
        assert not storage.exists("a")

    def test_publish_makes_a_model(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        staged = storage.stage("ab/cd/m1")
        self.write_file(storage, staged, "mesh.vtu", b"x" * 100)
        self.write_file(storage, staged, "field.bin", b"y" * 23)
        assert not storage.is_model("ab/cd/m1")
        assert storage.staging_size() == 123
        storage.publish("ab/cd/m1", staged, _meta(3))
        assert storage.is_model("ab/cd/m1")
        assert storage.exists("ab/cd/m1")
        assert storage.exists("ab")
        assert not storage.is_model("ab/cd")
        assert storage.model_size("ab/cd/m1") == 123
        assert Meta.decode(storage.read_meta("ab/cd/m1")).access_count == 3
        assert list(storage.iter_models()) == ["ab/cd/m1"]
        assert storage.staging_size() == 0
        assert storage.path("ab/cd/m1").endswith("ab/cd/m1")

    def test_iter_models_with_prefix(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        for key in ("a/m1", "a/m2", "b/m3", "m4"):
            self._add(storage, key, 1)
        assert sorted(storage.iter_models()) == ["a/m1", "a/m2", "b/m3", "m4"]
        assert sorted(storage.iter_models(prefix="a")) == ["a/m1", "a/m2"]
        assert list(storage.iter_models(prefix="m4")) == ["m4"]
        assert list(storage.iter_models(prefix="zz")) == []

    def test_publish_over_existing_model_fails(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "m", 5)
        staged = storage.stage("m")
        self.write_file(storage, staged, "other.bin", b"z")
        with _raises(FileExistsError):
            storage.publish("m", staged, _meta())
        storage.discard(staged)
        assert storage.model_size("m") == 5
        assert storage.staging_size() == 0

    def test_discard_removes_the_fill(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        staged = storage.stage("m")
        self.write_file(storage, staged, "data.bin", b"x" * 10)
        storage.discard(staged)
        assert storage.staging_size() == 0
        assert not storage.is_model("m")
        assert list(storage.iter_models()) == []

    def test_update_meta(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "m", 1, count=2)
        seen: list[bytes | None] = []

        def update(raw: bytes | None) -> bytes:
            seen.append(raw)
            return _meta(7)

        storage.update_meta("m", update)
        assert seen == [_meta(2)]
        assert Meta.decode(storage.read_meta("m")).access_count == 7
        with _raises(FileNotFoundError):
            storage.update_meta("missing", update)
        with _raises(FileNotFoundError):
            storage.read_meta("missing")

    def test_remove(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "a/b/m", 10)
        self._add(storage, "a/other", 10)
        assert storage.remove("a/b/m") is True
        assert not storage.is_model("a/b/m")
        assert list(storage.iter_models()) == ["a/other"]
        with _raises(FileNotFoundError):
            storage.model_size("a/b/m")
        with _raises(FileNotFoundError):
            storage.remove("a/b/m")
        assert storage.model_size("a/other") == 10

    def test_pin(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert storage.pin("m") is None
        self._add(storage, "m", 1)
        pin = storage.pin("m")
        assert isinstance(pin, Lock)
        if self.pins_across_processes:
            assert storage.remove("m") is False
            assert storage.is_model("m")
        pin.release()
        pin.release()  # releasing twice is harmless
        assert storage.remove("m") is True
        assert storage.pin("m") is None

    def test_locks(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        fill = storage.lock_fill("m", timeout=1.0)
        assert isinstance(fill, Lock)
        fill.release()
        if not isinstance(storage, SharedStorage):
            return
        leader = storage.try_lead()
        assert leader is not None
        leader.release()

    def test_open_reclaims_unpublished_fills(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        staged = storage.stage("m")
        self.write_file(storage, staged, "data.bin", b"x" * 10)
        assert storage.staging_size() == 10
        if isinstance(storage, SharedStorage):
            del storage  # the process that filled is gone: a new one opens the root
            gc.collect()
            restarted = self._opened(tmp_path)
            assert isinstance(restarted, SharedStorage)
            restarted.sweep()  # what the manager runs right after open()
            storage = restarted
        else:
            storage.open()  # a restart of the one process that uses it
        assert storage.staging_size() == 0
        assert list(storage.iter_models()) == []
