"""``LruPolicy`` under 1.0's module name (see :mod:`vcti.filecache.policies.lru`)."""

from __future__ import annotations

from ..policies.lru import LruPolicy

__all__ = ["LruPolicy"]
