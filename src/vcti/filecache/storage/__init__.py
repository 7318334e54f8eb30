"""Storage backends: where model directories live."""

from __future__ import annotations

from .base import CacheStorage, Lock
from .local import LocalStorage
from .memory import MemoryStorage

__all__ = ["CacheStorage", "LocalStorage", "Lock", "MemoryStorage"]
