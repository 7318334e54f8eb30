"""The check of an S3 server's conditional writes, made when a bucket is first used.

The backend's fencing rests on two conditions of ``PutObject`` alone: ``If-None-Match: *``
refuses to replace an existing object, and ``If-Match`` refuses to replace an object whose
ETag changed. A server that ignored either would let two hosts hold one lease, or a stale
host undo another's work, without any error: the check refuses to run on it instead. It
also learns the dialect of the server: whether ``If-Match`` takes the quoted ETag (RFC
7232, AWS) or the bare one (Ceph's gateway 16 compares it without quotes), and whether a
missing object fails ``If-Match`` with 404 (AWS) or 412 (Ceph).

The check writes one object of its own, ``PREFIX.filecache/probe/RANDOM``, and tries a
conditional write on a missing name, then deletes the object (no other process ever
writes those names): six requests, seven where ``If-Match`` takes only bare ETags. It
runs once per bucket and endpoint in a process: when a storage opens, or before its
first conditional write when it is used without ``open()``.
"""

from __future__ import annotations

import threading
import uuid

from ...exceptions import StorageError
from ._client import ConditionFailedError, S3Calls

# What each server answered, by (endpoint, bucket): (quoted, missing_fails_match).
_known: dict[tuple[str, str], tuple[bool, bool]] = {}
_known_lock = threading.Lock()


def check_server(calls: S3Calls, probe_prefix: str) -> None:
    """Check the server's conditional writes once per endpoint and bucket; set the dialect.

    Raises:
        StorageError: the server lacks a condition the backend needs (named).
        OSError: the server could not be reached, or refused a plain request.
    """
    where = (str(calls.client.meta.endpoint_url), calls.bucket)
    with _known_lock:
        known = _known.get(where)
    if known is None:
        known = _probe(calls, f"{probe_prefix}{uuid.uuid4().hex}")
        with _known_lock:
            _known[where] = known
    calls.quoted, calls.missing_fails_match = known


def _refuse(calls: S3Calls, feature: str, why: str) -> StorageError:
    return StorageError(
        0,
        f"the S3 server at {calls.client.meta.endpoint_url} lacks {feature}, which "
        f"S3Storage needs to keep hosts from undoing each other's writes ({why}); "
        "nothing was cached in this bucket",
        calls.uri(""),
    )


def _probe(calls: S3Calls, name: str) -> tuple[bool, bool]:
    calls.missing_fails_match = False
    try:
        etag = calls.put(name, b"1", create=True, checked=True)
        try:
            calls.put(name, b"2", create=True, checked=True)
        except ConditionFailedError:
            pass
        else:
            raise _refuse(
                calls,
                "conditional creation (PutObject with If-None-Match: *)",
                "it replaced an existing object",
            )
        quoted = _match_form(calls, name, etag)
        try:
            calls.put(name, b"4", if_match='"0123456789abcdef0123456789abcdef"', checked=True)
        except ConditionFailedError:
            pass
        else:
            raise _refuse(
                calls,
                "conditional replacement (PutObject with If-Match)",
                "it replaced an object whose ETag did not match",
            )
        calls.quoted = quoted
        try:
            calls.put(f"{name}-missing", b"5", if_match=etag, checked=True)
        except FileNotFoundError:
            missing_fails_match = False
        except ConditionFailedError:
            missing_fails_match = True
        else:
            calls.delete(f"{name}-missing")
            raise _refuse(
                calls,
                "conditional replacement (PutObject with If-Match)",
                "it created a missing object that If-Match should have refused",
            )
    finally:
        calls.delete(name)
    return quoted, missing_fails_match


def _match_form(calls: S3Calls, name: str, etag: str) -> bool:
    """True if ``If-Match`` takes the quoted ETag, False if only the bare one."""
    for quoted in (True, False):
        calls.quoted = quoted
        try:
            calls.put(name, b"3" if quoted else b"3 bare", if_match=etag, checked=True)
        except ConditionFailedError:
            continue
        return quoted
    raise _refuse(
        calls,
        "conditional replacement (PutObject with If-Match)",
        f"it refused the object's own ETag {etag}, quoted and bare",
    )
