"""Eviction policies: each orders entries, the manager does the rest."""

from __future__ import annotations

from .base import EvictionPolicy, EvictionPolicyV1, PolicyState, StatefulPolicy
from .lfu import LfuPolicy
from .lru import LruPolicy
from .sized_lru import SizedLruPolicy

__all__ = [
    "EvictionPolicy",
    "EvictionPolicyV1",
    "LfuPolicy",
    "LruPolicy",
    "PolicyState",
    "SizedLruPolicy",
    "StatefulPolicy",
]
