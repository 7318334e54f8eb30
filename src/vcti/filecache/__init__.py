"""vcti.filecache: a directory-level cache for expensive derived data.

Open model directories with ``FileCache.model(key)``; a background manager measures
sizes and evicts whole directories when the total passes a limit.
"""

from __future__ import annotations

from ._cache import FileCache, ModelDir
from ._config import CacheManagerConfig
from ._entry import CacheEntry, CacheSnapshot, EvictionResult, VerifyReport
from ._manager import CacheManager
from .exceptions import (
    CacheClosedError,
    FileCacheError,
    KeyValidationError,
    LockTimeoutError,
    MetadataError,
)
from .observers.base import CacheObserver, LoggingObserver
from .policies import (
    CostAwarePolicy,
    EvictionPolicy,
    GdsfPolicy,
    IdleSizePolicy,
    LargestFirstPolicy,
    LfuPolicy,
    LruPolicy,
    SievePolicy,
    SizedLruPolicy,
)
from .storage import CacheStorage, LocalStorage, MemoryStorage

__version__ = "0.1.0"

__all__ = [
    "CacheClosedError",
    "CacheEntry",
    "CacheManager",
    "CacheManagerConfig",
    "CacheObserver",
    "CacheSnapshot",
    "CacheStorage",
    "CostAwarePolicy",
    "EvictionPolicy",
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
    "SievePolicy",
    "SizedLruPolicy",
    "VerifyReport",
    "__version__",
]
