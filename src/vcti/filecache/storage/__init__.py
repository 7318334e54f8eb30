"""Storage backends: where model directories live.

``S3Storage`` is imported on first use, so that importing vcti.filecache never imports
boto3 (an optional extra: ``pip install "vcti-file-cache[s3]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import CacheStorage, Lock
from .local import LocalStorage
from .memory import MemoryStorage

if TYPE_CHECKING:
    from .s3 import S3Storage

__all__ = ["CacheStorage", "LocalStorage", "Lock", "MemoryStorage", "S3Storage"]


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from .s3 import S3Storage  # noqa: PLC0415 - boto3 is imported only when asked for

        globals()[name] = S3Storage
        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
