"""The shared storage suite, run against every built-in backend."""

from __future__ import annotations

from pathlib import Path

from vcti.filecache import LocalStorage
from vcti.filecache.storage.base import CacheStorage
from vcti.filecache.testing import MemoryStorage, StorageContract


class TestLocalStorage(StorageContract):
    def make_storage(self, tmp_path: Path) -> CacheStorage:
        return LocalStorage(tmp_path / "cache")

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        (Path(folder) / name).write_bytes(data)


class TestMemoryStorage(StorageContract):
    pins_across_processes = False

    def make_storage(self, tmp_path: Path) -> CacheStorage:
        return MemoryStorage()

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        assert isinstance(storage, MemoryStorage)
        storage.write_file(f"{folder}/{name}", data)
