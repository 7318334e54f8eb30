"""Helpers for testing code that uses vcti.filecache, and for testing new backends and policies.

- :class:`MemoryStorage`: a backend that keeps everything in memory.
- :class:`RecordingObserver`: records every hook call, for assertions.
- :class:`PolicyContract`: the shared policy test suite (``make_policy()`` in a
  ``Test*`` subclass), with hypothesis generating the entries.
- :class:`StorageContract`: the shared test suite of the required storage protocol, and
  one suite per optional capability (:class:`SharedStorageContract`,
  :class:`LeasedStorageContract`, :class:`StampedStorageContract`,
  :class:`JournaledStorageContract`, :class:`RequestJournalContract`,
  :class:`BulkMeasuringStorageContract`,
  :class:`BulkMetadataStorageContract`, :class:`FreeSpaceStorageContract`,
  :class:`PolicyStateStorageContract`, :class:`AdoptingStorageContract`), sharing the
  fixtures of :class:`StorageFixtures`. A new backend's test inherits the suites of the
  protocols it implements and says how to make the storage and how to write a file into
  a model::

      class TestMyStorage(StorageContract, SharedStorageContract):
          def make_storage(self, tmp_path):
              return MyStorage(tmp_path / "cache")

          def write_file(self, storage, folder, name, data):
              ...

  pytest collects the inherited ``test_*`` methods (the class name must start with
  ``Test``). pytest and hypothesis are imported only when a suite runs.
"""

from __future__ import annotations

from ..storage.memory import MemoryStorage
from ._observer import RecordingObserver
from ._policy import PolicyContract
from ._storage import (
    AdoptingStorageContract,
    BulkMeasuringStorageContract,
    BulkMetadataStorageContract,
    FreeSpaceStorageContract,
    JournaledStorageContract,
    LeasedStorageContract,
    PolicyStateStorageContract,
    RequestJournalContract,
    SharedStorageContract,
    StampedStorageContract,
    StorageContract,
    StorageFixtures,
    capability_suites,
)

__all__ = [
    "AdoptingStorageContract",
    "BulkMeasuringStorageContract",
    "BulkMetadataStorageContract",
    "FreeSpaceStorageContract",
    "JournaledStorageContract",
    "LeasedStorageContract",
    "MemoryStorage",
    "PolicyContract",
    "PolicyStateStorageContract",
    "RecordingObserver",
    "RequestJournalContract",
    "SharedStorageContract",
    "StampedStorageContract",
    "StorageContract",
    "StorageFixtures",
    "capability_suites",
]
