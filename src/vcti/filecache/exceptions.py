"""The errors raised by vcti.filecache.

Every error derives from :class:`FileCacheError` and from the built-in exception that
matches it, so ``except ValueError`` and friends keep working::

    FileCacheError
    ├── KeyValidationError(ValueError)    a key that is malformed or collides with another model
    ├── MetadataError(ValueError)         a model's metadata file is unreadable (rebuilt, reported)
    ├── CacheClosedError(RuntimeError)    the FileCache is not open
    ├── LockTimeoutError(TimeoutError)    waiting for another thread's or process's fill,
    │                                     or for a model's pins, took too long
    ├── PinLostError(RuntimeError)        a pin lapsed while its context was open (S3)
    ├── StorageError(OSError)             the storage cannot be used safely (an S3 server
    │                                     lacks a conditional request the backend needs)
    └── TraceError(ValueError)            a request trace that cannot be replayed
"""

from __future__ import annotations

__all__ = [
    "CacheClosedError",
    "FileCacheError",
    "KeyValidationError",
    "LockTimeoutError",
    "MetadataError",
    "PinLostError",
    "StorageError",
    "TraceError",
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
    """A lock was not released within the configured timeout.

    Raised when another thread or process kept filling the same model for longer than
    ``lock_timeout``, or when a model to remove stayed open for that long.
    """


class PinLostError(FileCacheError, RuntimeError):
    """A model's pin lapsed while its ``model()`` context was open.

    Backends whose pins expire unless renewed (S3) raise it when the context exits if
    the pin could not be renewed in time (a host paused longer than the lease): the model
    may have been evicted while it was in use, so what was read from it may be
    incomplete. It is also reported to ``on_error`` with the context ``"pin"``.
    """


class StorageError(FileCacheError, OSError):
    """The storage cannot be used safely, so it refuses to run at all.

    Raised when an ``S3Storage`` first opens a bucket on a server that lacks a
    conditional request the backend's fencing needs; the message names the feature.
    """


class TraceError(FileCacheError, ValueError):
    """A request trace could not be read: unreadable, a missing column, a bad value.

    The message names the file and, where there is one, the line:
    ``day.csv:12: size must not be negative: '-5'``.
    """
