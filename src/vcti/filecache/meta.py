"""``ModelInfo`` under the module name vcti-file-cache 1.0 gave it.

Kept for code written against 1.0: ``from vcti.filecache.meta import ModelInfo`` names
the same class as ``from vcti.filecache import ModelInfo``.
"""

from __future__ import annotations

from ._entry import ModelInfo

__all__ = ["ModelInfo"]
