"""The head of a model key: the one object whose conditional writes decide its state.

Every fill of a key writes its files under an *attempt* prefix of its own, which no other
fill uses and which nobody reads until the head names it as published. The head
(``.filecache/models/KEY/head``) is, at any time, one of:

- absent, or *vacant* (a body that says so, written with ``IfMatch`` when a model is
  removed or a claim withdrawn, and kept: a deletion could not be fenced on servers
  that ignore a delete's condition): no model, no fill;
- a *claim*: the lease of the fill in progress, naming its attempt; created with
  ``IfNoneMatch="*"`` (or ``IfMatch`` over a vacant head), renewed with ``IfMatch``,
  taken over with ``IfMatch`` once expired;
- *published*: a small immutable body; the model's files are those of the attempt whose
  id is the first 16 hex digits of the MD5 of that body. It is written over the claim with
  ``IfMatch=<the claim's ETag>``, so a fill whose claim was taken over (its host paused
  past the TTL) can never publish; eviction makes it vacant, with ``IfMatch`` too.

A claim names the attempt it protects, so a sweep can tell abandoned attempts (named by
no head) from the one being filled. Because a published body never changes, its ETag
identifies the attempt for as long as the model lives, and a reader that saw it once
pins the model with one conditional ``CopyObject``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from ._lease import VACANT, is_vacant, lease_problem, parse_body

#: Attempt ids are this many lowercase hex digits.
ATTEMPT_LEN = 16
_HEX = frozenset("0123456789abcdef")

PUBLISHED = "published"
FILLING = "filling"


def is_attempt(text: str) -> bool:
    """True if ``text`` is an attempt id."""
    return len(text) == ATTEMPT_LEN and set(text) <= _HEX


def attempt_of(body: bytes) -> str:
    """The attempt a published head body names: its MD5, shortened."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()[:ATTEMPT_LEN]


def etag_attempt(etag: str) -> str:
    """The attempt a published head would name if its ETag is the MD5 of its body.

    True of plain and SSE-S3 objects on AWS, MinIO, Ceph; callers confirm a match (an
    attempt with that id exists) and otherwise read the head.
    """
    return etag.strip('"').lower()[:ATTEMPT_LEN]


def new_published(key: str) -> tuple[bytes, str]:
    """A fresh published body for ``key`` and the attempt id it names."""
    body = json.dumps(
        {"state": PUBLISHED, "key": key, "nonce": uuid.uuid4().hex}, separators=(",", ":")
    ).encode()
    return body, attempt_of(body)


@dataclass(frozen=True)
class HeadState:
    """What a head body says: ``kind`` is ``published``, ``filling``, ``vacant`` or ``corrupt``.

    ``attempt`` is the attempt it names (None for a corrupt head); ``data`` the decoded
    body (for a claim: its lease fields); ``problem`` why a head is corrupt.
    """

    kind: str
    attempt: str | None
    data: dict[str, object]
    problem: str | None = None

    @property
    def published(self) -> bool:
        """True for a published model."""
        return self.kind == PUBLISHED

    @property
    def vacant(self) -> bool:
        """True for a removed model or a withdrawn claim: the key is free."""
        return self.kind == VACANT

    @property
    def orphan(self) -> bool:
        """True for a published head whose attempt has no object at all (as listed)."""
        return self.kind == ORPHAN


#: A published head whose attempt has neither files nor a metadata record: only a
#: deletion behind the library's back makes one (a publish writes the record first).
ORPHAN = "orphan"
ORPHAN_PROBLEM = "it names an attempt with no files and no metadata record (a marker without data)"


def read_head(raw: bytes, key: str, own_ttl: float) -> HeadState:
    """Classify the head body ``raw`` of ``key``: published, filling, vacant or corrupt.

    A claim whose lease fields are implausible (a TTL that is not finite, or above ten
    times ``own_ttl``) is corrupt, and so is anything that is neither a claim nor a
    published body of this key.
    """
    data = parse_body(raw)
    state = data.get("state")
    if is_vacant(data) and data.get("key") == key:
        return HeadState(VACANT, None, data)
    if state == PUBLISHED and data.get("key") == key and isinstance(data.get("nonce"), str):
        return HeadState(PUBLISHED, attempt_of(raw), data)
    if state == FILLING:
        attempt = data.get("attempt")
        problem = lease_problem(data, own_ttl)
        if not isinstance(attempt, str) or not is_attempt(attempt):
            problem = "its attempt is not an attempt id"
        if problem is None and data.get("key") != key:
            problem = f"it claims the key {data.get('key')!r}"
        if problem is None:
            assert isinstance(attempt, str)
            return HeadState(FILLING, attempt, data)
        return HeadState("corrupt", None, data, f"corrupt fill lease: {problem}")
    if not data:
        return HeadState("corrupt", None, data, "not a head (unreadable)")
    return HeadState("corrupt", None, data, f"not a head of {key!r}")
