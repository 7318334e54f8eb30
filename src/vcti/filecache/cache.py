"""``FileCache`` under the module name vcti-file-cache 1.0 gave it.

Kept for code written against 1.0: ``from vcti.filecache.cache import FileCache`` names
the same class as ``from vcti.filecache import FileCache``.
"""

from __future__ import annotations

from ._cache import FileCache

__all__ = ["FileCache"]
