"""``SizedLruPolicy`` under 1.0's module name (see :mod:`vcti.filecache.policies.sized_lru`)."""

from __future__ import annotations

from ..policies.sized_lru import SizedLruPolicy

__all__ = ["SizedLruPolicy"]
