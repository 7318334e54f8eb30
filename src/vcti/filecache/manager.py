"""The manager of a cache root, under the module name vcti-file-cache 1.0 gave it.

``from vcti.filecache.manager import CacheManager, CacheManagerConfig, run_eviction``
keeps working; everything here is also importable from :mod:`vcti.filecache`.
"""

from __future__ import annotations

from ._config import CacheManagerConfig
from ._manager import CacheManager, run_eviction

__all__ = ["CacheManager", "CacheManagerConfig", "run_eviction"]
