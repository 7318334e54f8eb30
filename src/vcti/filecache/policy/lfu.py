"""``LfuPolicy`` under 1.0's module name (see :mod:`vcti.filecache.policies.lfu`)."""

from __future__ import annotations

from ..policies.lfu import LfuPolicy

__all__ = ["LfuPolicy"]
