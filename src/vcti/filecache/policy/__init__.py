"""The policies of vcti-file-cache 1.0, under its package name.

Kept for code written against 1.0: ``vcti.filecache.policy`` and its modules ``base``,
``lru``, ``lfu`` and ``sized_lru`` name the same classes as
:mod:`vcti.filecache.policies`, where every policy lives.
"""

from __future__ import annotations

from .base import EvictionPolicy
from .lfu import LfuPolicy
from .lru import LruPolicy
from .sized_lru import SizedLruPolicy

__all__ = ["EvictionPolicy", "LfuPolicy", "LruPolicy", "SizedLruPolicy"]
