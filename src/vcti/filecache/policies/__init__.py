"""Eviction policies: each orders entries, the manager does the rest.

Every built-in policy offers ``order(entries)``, 1.0's ``select_evictions(entries,
required_free)`` and ``new_state()``, the event-driven form that the manager and the
replay drive in O(log n) or O(1) per event.
"""

from __future__ import annotations

from .base import EvictionPolicy, EvictionPolicyV1, PolicyState, StatefulPolicy
from .cost_aware import CostAwarePolicy
from .gdsf import GdsfPolicy
from .idle_size import IdleSizePolicy
from .largest import LargestFirstPolicy
from .lfu import LfuPolicy
from .lru import LruPolicy
from .sieve import SievePolicy
from .sized_lru import SizedLruPolicy

__all__ = [
    "CostAwarePolicy",
    "EvictionPolicy",
    "EvictionPolicyV1",
    "GdsfPolicy",
    "IdleSizePolicy",
    "LargestFirstPolicy",
    "LfuPolicy",
    "LruPolicy",
    "PolicyState",
    "SievePolicy",
    "SizedLruPolicy",
    "StatefulPolicy",
]
