"""``ModelDir`` under the module name vcti-file-cache 1.0 gave it.

Kept for code written against 1.0: ``from vcti.filecache.model import ModelDir`` names
the same class as ``from vcti.filecache import ModelDir``.
"""

from __future__ import annotations

from ._cache import ModelDir

__all__ = ["ModelDir"]
