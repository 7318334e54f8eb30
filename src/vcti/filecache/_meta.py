"""The per-model metadata record: access count, last access, created, and what a fill recorded."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from .exceptions import MetadataError

_VERSION = 1

#: A record is a few hundred bytes; anything larger is not one (and is not read whole).
MAX_META_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Meta:
    """What the cache remembers about a model between scans and restarts.

    ``fill_seconds`` and ``version`` are recorded when a fill is published; ``size`` and
    ``stamp`` when the model is measured (the stamp is the backend's data stamp the size
    was measured under, so that a new process can trust the size while the stamp holds).
    Records written before these existed read with None for each.
    """

    access_count: int
    last_access: float
    created: float
    fill_seconds: float | None = None
    version: str | None = None
    size: int | None = None
    stamp: str | None = None

    def __reduce__(self) -> tuple[type[Meta], tuple[object, ...]]:
        # A plain tuple of fields: a cycle sends records to the measuring process, and
        # the dataclass's own pickling (by field names) costs several times more.
        return (
            Meta,
            (
                self.access_count,
                self.last_access,
                self.created,
                self.fill_seconds,
                self.version,
                self.size,
                self.stamp,
            ),
        )

    def encode(self) -> bytes:
        """Return the record as JSON bytes."""
        record: dict[str, object] = {
            "version": _VERSION,
            "access_count": self.access_count,
            "last_access": self.last_access,
            "created": self.created,
        }
        for name in ("fill_seconds", "size", "stamp"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        if self.version is not None:
            record["model_version"] = self.version
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Meta:
        """Parse a record.

        Raises:
            MetadataError: ``raw`` is not a valid record.
        """
        if len(raw) > MAX_META_BYTES:
            raise MetadataError(f"unreadable metadata: larger than {MAX_META_BYTES} bytes")
        try:
            data = json.loads(raw)
            count = data["access_count"]
            last = data["last_access"]
            created = data["created"]
            fill = data.get("fill_seconds")
            version = data.get("model_version")
            size = data.get("size")
            stamp = data.get("stamp")
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            # RecursionError: deeply nested brackets are not a record, however they parse.
            raise MetadataError(f"unreadable metadata: {type(exc).__name__}: {exc}") from None
        if not _is_int(count) or count < 0:
            raise MetadataError(f"bad access_count {count!r}")
        for name, value in (("last_access", last), ("created", created)):
            if not _is_number(value):
                raise MetadataError(f"bad {name} {value!r}")
        if fill is not None and (not _is_number(fill) or fill < 0):
            raise MetadataError(f"bad fill_seconds {fill!r}")
        if version is not None and not isinstance(version, str):
            raise MetadataError(f"bad model_version {version!r}")
        if size is not None and (not _is_int(size) or size < 0):
            raise MetadataError(f"bad size {size!r}")
        if stamp is not None and not isinstance(stamp, str):
            raise MetadataError(f"bad stamp {stamp!r}")
        return cls(
            count,
            float(last),
            float(created),
            None if fill is None else float(fill),
            version,
            size,
            stamp,
        )

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
        model look older than it is. The recorded size stops being trusted (its stamp is
        cleared): a context that opened the model may have changed its files.
        """
        return replace(
            self,
            access_count=self.access_count + count,
            last_access=max(self.last_access, last_access),
            stamp=None,
        )

    def measured(self, size: int, stamp: str | None) -> Meta:
        """Return this record with the size measured under ``stamp``."""
        return replace(self, size=size, stamp=stamp)


@dataclass(frozen=True, slots=True)
class MetaUpdate:
    """A change to a stored record, as data: it can run in another process (it pickles).

    Called with the stored record (None if missing, damaged bytes if unreadable), it
    returns the record to write: the stored one, or ``fallback`` where it is missing or
    unreadable (without a fallback, defaults with times ``accesses``' last access), with
    ``accesses`` added (count, last access) and then ``measured`` recorded (size, stamp).
    """

    accesses: tuple[int, float] | None = None
    measured: tuple[int, str | None] | None = None
    fallback: Meta | None = None

    def __reduce__(self) -> tuple[type[MetaUpdate], tuple[object, ...]]:
        return MetaUpdate, (self.accesses, self.measured, self.fallback)

    def __call__(self, raw: bytes | None) -> bytes:
        if self.fallback is not None:
            meta, error = Meta.read(raw, self.fallback.last_access)
            if raw is None or error is not None:
                meta = self.fallback
        else:
            now = self.accesses[1] if self.accesses is not None else 0.0
            meta, _ = Meta.read(raw, now)
        if self.accesses is not None:
            meta = meta.add(*self.accesses)
        if self.measured is not None:
            meta = meta.measured(*self.measured)
        return meta.encode()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
