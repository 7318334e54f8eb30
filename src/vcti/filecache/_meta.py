"""The per-model metadata record: access count, last access, created."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .exceptions import MetadataError

_VERSION = 1


@dataclass(frozen=True, slots=True)
class Meta:
    """What the cache remembers about a model between scans and restarts."""

    access_count: int
    last_access: float
    created: float

    def encode(self) -> bytes:
        """Return the record as JSON bytes."""
        return json.dumps(
            {
                "version": _VERSION,
                "access_count": self.access_count,
                "last_access": self.last_access,
                "created": self.created,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Meta:
        """Parse a record.

        Raises:
            MetadataError: ``raw`` is not a valid record.
        """
        try:
            data = json.loads(raw)
            count = data["access_count"]
            last = data["last_access"]
            created = data["created"]
        except (ValueError, TypeError, KeyError) as exc:
            raise MetadataError(f"unreadable metadata: {exc}") from exc
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise MetadataError(f"bad access_count {count!r}")
        for name, value in (("last_access", last), ("created", created)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise MetadataError(f"bad {name} {value!r}")
        return cls(count, float(last), float(created))

    @classmethod
    def read(cls, raw: bytes | None, now: float) -> tuple[Meta, MetadataError | None]:
        """Decode a stored record; a missing or unreadable one gives defaults.

        Returns:
            The record (count 0 and times ``now`` when rebuilt), and the reason it was
            rebuilt from an unreadable one, if it was.
        """
        try:
            if raw is not None:
                return cls.decode(raw), None
            error = None
        except MetadataError as exc:
            error = exc
        return cls(0, now, now), error

    def add(self, count: int, last_access: float) -> Meta:
        """Return this record with ``count`` more accesses, the last at ``last_access``.

        The last access never moves backwards, so a clock that jumps back cannot make a
        model look older than it is.
        """
        return Meta(self.access_count + count, max(self.last_access, last_access), self.created)
