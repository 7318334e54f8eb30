"""Validation of model keys, in one place."""

from __future__ import annotations

import functools

from .exceptions import KeyValidationError

#: The name the cache keeps for its own files, at the root and inside every model.
RESERVED = ".filecache"

_MAX_PART_BYTES = 255  # NAME_MAX of the filesystems a root lives on
_MAX_KEY_BYTES = 3072  # leaves room under PATH_MAX (4096) for the root and the cache's names


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid model key, else raise.

    A key is a relative, ``/``-separated path of valid Unicode (no lone surrogates,
    which would alias other names on disk): no empty, ``.`` or ``..`` parts, no
    backslash or NUL, no part that starts with the reserved name, no part longer than
    255 bytes and at most 3,072 bytes in all (in UTF-8). A key that is absolute or has a
    ``..`` part would leave the root: its message says "outside cache root".

    Raises:
        TypeError: ``key`` is not a string.
        KeyValidationError: ``key`` is not a valid key (also a ``ValueError``).
    """
    if not isinstance(key, str):
        raise TypeError(f"model key must be a str, not {type(key).__name__}")
    return _validate(key)


@functools.lru_cache(maxsize=65_536)  # the hit path opens the same keys again and again
def _validate(key: str) -> str:
    if not key:
        raise KeyValidationError("model key must not be empty")
    if "\\" in key or "\x00" in key:
        raise KeyValidationError(f"model key {key!r} must not contain a backslash or NUL")
    if key.startswith("/"):
        raise KeyValidationError(
            f"model key {key!r} is absolute: it would be outside cache root; keys are relative"
        )
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyValidationError(
            f"model key {key!r} is not valid Unicode (it has lone surrogates)"
        ) from None
    if len(encoded) > _MAX_KEY_BYTES:
        raise KeyValidationError(f"model key {key[:40]!r}... is longer than {_MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        if part == "..":
            raise KeyValidationError(f"model key {key!r} has a '..' part: outside cache root")
        if part in ("", "."):
            raise KeyValidationError(f"model key {key!r} must not contain empty or '.' parts")
        if part.startswith(RESERVED):
            raise KeyValidationError(f"model key {key!r} uses the reserved name {RESERVED!r}")
        if len(part.encode("utf-8")) > _MAX_PART_BYTES:
            raise KeyValidationError(
                f"model key {key!r} has a part longer than {_MAX_PART_BYTES} bytes"
            )
    return key


def ancestors(key: str) -> list[str]:
    """Return the proper prefixes of ``key``: ``"a/b/c"`` gives ``["a", "a/b"]``."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def is_nested(inner: str, outer: str) -> bool:
    """Return True if ``inner`` lies strictly below ``outer``."""
    return inner.startswith(outer + "/")
