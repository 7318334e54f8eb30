"""The errors raised by vcti.filecache.

Every error derives from :class:`FileCacheError` and from the built-in exception that
matches it, so ``except ValueError`` and friends keep working::

    FileCacheError
    ├── KeyValidationError(ValueError)    a key that is malformed or collides with another model
    ├── MetadataError(ValueError)         a model's metadata file is unreadable (rebuilt, reported)
    ├── CacheClosedError(RuntimeError)    the FileCache is not open
    └── LockTimeoutError(TimeoutError)    waiting for another process's lock took too long
"""

from __future__ import annotations

__all__ = [
    "CacheClosedError",
    "FileCacheError",
    "KeyValidationError",
    "LockTimeoutError",
    "MetadataError",
]


class FileCacheError(Exception):
    """Base class of every error raised by vcti.filecache."""


class KeyValidationError(FileCacheError, ValueError):
    """A model key is malformed, reserved, or nested inside (or around) another model."""


class MetadataError(FileCacheError, ValueError):
    """A model's metadata could not be read; it is rebuilt with defaults and reported."""


class CacheClosedError(FileCacheError, RuntimeError):
    """The FileCache was used before it was opened or after it was closed."""


class LockTimeoutError(FileCacheError, TimeoutError):
    """A lock held by another process was not released within the configured timeout."""
