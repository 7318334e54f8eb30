"""Eviction policies: each orders entries, the manager does the rest."""

from __future__ import annotations

from .base import EvictionPolicy
from .lfu import LfuPolicy
from .lru import LruPolicy
from .sized_lru import SizedLruPolicy

__all__ = ["EvictionPolicy", "LfuPolicy", "LruPolicy", "SizedLruPolicy"]
