"""vcti.filecache: a directory-level cache for expensive derived data.

Open model directories with ``FileCache.model(key)``; a background manager measures
sizes and evicts whole directories when the total passes a limit.
"""

from __future__ import annotations

from ._cache import FileCache, ModelDir
from ._config import CacheManagerConfig
from ._entry import (
    AdoptionReport,
    CacheEntry,
    CacheSnapshot,
    EvictionResult,
    ModelInfo,
    VerifyReport,
)
from ._manager import CacheManager, run_eviction
from .exceptions import (
    CacheClosedError,
    FileCacheError,
    KeyValidationError,
    LockTimeoutError,
    MetadataError,
    PinLostError,
    StorageError,
)
from .observers.base import CacheObserver, LoggingObserver
from .policies import (
    CostAwarePolicy,
    EvictionPolicy,
    EvictionPolicyV1,
    GdsfPolicy,
    IdleSizePolicy,
    LargestFirstPolicy,
    LfuPolicy,
    LruPolicy,
    PolicyState,
    SievePolicy,
    SizedLruPolicy,
    StatefulPolicy,
)
from .storage import CacheStorage, LocalStorage, MemoryStorage, StorageV1


def __getattr__(name: str) -> str:
    # ``__version__`` is read from the installed metadata on first use: importing
    # ``importlib.metadata`` costs more than the rest of the package (a process that
    # only measures folders never needs it).
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        value = version("vcti-file-cache")
    except PackageNotFoundError:  # pragma: no cover - a source tree not installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value


__all__ = [
    "AdoptionReport",
    "CacheClosedError",
    "CacheEntry",
    "CacheManager",
    "CacheManagerConfig",
    "CacheObserver",
    "CacheSnapshot",
    "CacheStorage",
    "CostAwarePolicy",
    "EvictionPolicy",
    "EvictionPolicyV1",
    "EvictionResult",
    "FileCache",
    "FileCacheError",
    "GdsfPolicy",
    "IdleSizePolicy",
    "KeyValidationError",
    "LargestFirstPolicy",
    "LfuPolicy",
    "LocalStorage",
    "LockTimeoutError",
    "LoggingObserver",
    "LruPolicy",
    "MemoryStorage",
    "MetadataError",
    "ModelDir",
    "ModelInfo",
    "PinLostError",
    "PolicyState",
    "SievePolicy",
    "SizedLruPolicy",
    "StatefulPolicy",
    "StorageError",
    "StorageV1",
    "VerifyReport",
    "__version__",
    "run_eviction",
]
