"""The policy protocol, under 1.0's module name (see :mod:`vcti.filecache.policies.base`).

A policy written for 1.0 subclasses it and implements ``select_evictions``.
"""

from __future__ import annotations

from ..policies.base import EvictionPolicy

__all__ = ["EvictionPolicy"]
