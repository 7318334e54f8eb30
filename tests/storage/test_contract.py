"""The shared storage suites, run against every built-in backend (S3's: test_s3.py).

Each backend's class inherits StorageContract and the suite of each capability its
backend implements; StorageContract checks that none is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vcti.filecache import LocalStorage
from vcti.filecache.storage import base
from vcti.filecache.storage.base import CacheStorage
from vcti.filecache.storage.v1 import CACHE_META, StorageV1, StorageV1Adapter
from vcti.filecache.testing import (
    AdoptingStorageContract,
    BulkMeasuringStorageContract,
    BulkMetadataStorageContract,
    FreeSpaceStorageContract,
    JournaledStorageContract,
    LeasedStorageContract,
    MemoryStorage,
    PolicyStateStorageContract,
    RequestJournalContract,
    SharedStorageContract,
    StampedStorageContract,
    StorageContract,
    StorageFixtures,
    capability_suites,
)

from ..helpers import DirectoriesV1


class TestLocalStorage(
    StorageContract,
    SharedStorageContract,
    StampedStorageContract,
    JournaledStorageContract,
    RequestJournalContract,
    BulkMeasuringStorageContract,
    BulkMetadataStorageContract,
    FreeSpaceStorageContract,
    PolicyStateStorageContract,
    AdoptingStorageContract,
):
    watches_changes = sys.platform.startswith("linux")  # inotify

    def make_storage(self, tmp_path: Path) -> CacheStorage:
        return LocalStorage(tmp_path / "cache")

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        (Path(folder) / name).write_bytes(data)

    def damage_journal(self, storage: CacheStorage) -> None:
        with open(Path(storage.root, ".filecache", "journal"), "ab") as journal:
            journal.write(b'["p", "torn\n')

    def write_v1_model(
        self, storage: CacheStorage, key: str, files: dict[str, bytes], access_count: int
    ) -> None:
        folder = Path(storage.root, key)
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        record = {"size": sum(map(len, files.values())), "access_count": access_count}
        (folder / CACHE_META).write_text(json.dumps(record))


class TestMemoryStorage(StorageContract, PolicyStateStorageContract):
    pins_across_processes = False

    def make_storage(self, tmp_path: Path) -> CacheStorage:
        return MemoryStorage()

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        assert isinstance(storage, MemoryStorage)
        storage.write_file(f"{folder}/{name}", data)


class TestStorageV1Adapter(StorageContract):
    # 1.0's protocol has no staging and no locks between processes (see storage/v1.py).
    pins_across_processes = False
    stages_apart = False

    def make_storage(self, tmp_path: Path) -> CacheStorage:
        backend = DirectoriesV1(tmp_path / "cache")
        assert isinstance(backend, StorageV1)
        return StorageV1Adapter(backend)

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        (Path(folder) / name).write_bytes(data)


def test_every_capability_has_a_suite() -> None:
    suites = capability_suites()
    assert {protocol.__name__: suite for protocol, suite in suites.items()} == {
        "AdoptingStorage": AdoptingStorageContract,
        "BulkMeasuringStorage": BulkMeasuringStorageContract,
        "BulkMetadataStorage": BulkMetadataStorageContract,
        "FreeSpaceStorage": FreeSpaceStorageContract,
        "JournaledStorage": JournaledStorageContract,
        "LeasedStorage": LeasedStorageContract,
        "PolicyStateStorage": PolicyStateStorageContract,
        "RequestJournal": RequestJournalContract,
        "SharedStorage": SharedStorageContract,
        "StampedStorage": StampedStorageContract,
    }
    for protocol, suite in suites.items():
        assert protocol is getattr(base, protocol.__name__)
        assert suite is not None
        assert issubclass(suite, StorageFixtures)
        assert suite.capability is protocol


def test_a_backend_missing_a_suite_fails_the_contract(tmp_path: Path) -> None:
    class PartlyTested(StorageContract):  # LocalStorage without its capability suites
        def make_storage(self, tmp_path: Path) -> CacheStorage:
            return LocalStorage(tmp_path / "cache")

    with pytest.raises(AssertionError) as failed:
        PartlyTested().test_inherits_a_suite_for_each_capability(tmp_path)
    message = str(failed.value)
    for name in (
        "BulkMetadataStorage",
        "SharedStorage",
        "StampedStorage",
        "JournaledStorage",
        "FreeSpaceStorage",
        "PolicyStateStorage",
        "AdoptingStorage",
    ):
        assert name in message
    assert "LeasedStorage" not in message


def test_a_suite_of_a_capability_the_backend_lacks_fails(tmp_path: Path) -> None:
    class OverTested(StorageContract, LeasedStorageContract):  # MemoryStorage has no leases
        def make_storage(self, tmp_path: Path) -> CacheStorage:
            return MemoryStorage()

    with pytest.raises(AssertionError, match="does not implement \\['LeasedStorage'\\]"):
        OverTested().test_implements_the_protocol(tmp_path)


def test_the_suites_import_pytest_only_when_they_run() -> None:
    code = (
        "import sys\n"
        "from vcti.filecache.testing import MemoryStorage, PolicyContract, RecordingObserver\n"
        "from vcti.filecache.testing import StorageContract, capability_suites\n"
        "assert all(capability_suites().values())\n"
        "assert 'pytest' not in sys.modules and 'hypothesis' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
