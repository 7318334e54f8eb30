"""Storage backends: where model directories live, and the protocols they implement.

``storage/base.py`` is the specification of a backend: the required
:class:`CacheStorage` and the optional capabilities layered on it. ``S3Storage`` is
imported on first use, so that importing vcti.filecache never imports boto3 (an
optional extra: ``pip install "vcti-file-cache[s3]"``). Backends written for
vcti-file-cache 1.0 (:class:`StorageV1`) run through :class:`StorageV1Adapter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._local_v1_methods import LocalStorageV1Methods
from .base import (
    AdoptingStorage,
    CacheStorage,
    FreeSpaceStorage,
    LeasedStorage,
    LeaseLock,
    Lock,
    PolicyStateStorage,
    SharedStorage,
    StampedStorage,
)
from .local import LocalStorage
from .memory import MemoryStorage
from .v1 import CACHE_META, StorageV1, StorageV1Adapter

if TYPE_CHECKING:
    from .s3 import S3Storage

__all__ = [  # noqa: RUF022 - plainly sorted, as tests/test_exported_members.py checks
    "AdoptingStorage",
    "CACHE_META",
    "CacheStorage",
    "FreeSpaceStorage",
    "LeaseLock",
    "LeasedStorage",
    "LocalStorage",
    "LocalStorageV1Methods",
    "Lock",
    "MemoryStorage",
    "PolicyStateStorage",
    "S3Storage",
    "SharedStorage",
    "StampedStorage",
    "StorageV1",
    "StorageV1Adapter",
]


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from .s3 import S3Storage  # noqa: PLC0415 - boto3 is imported only when asked for

        globals()[name] = S3Storage
        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
