"""The S3 requests S3Storage makes: each counted, each failure turned into an OSError."""

from __future__ import annotations

import errno
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
log = logging.getLogger("vcti.filecache")

#: DeleteObjects takes at most this many keys.
DELETE_BATCH = 1000

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_DENIED = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "Forbidden",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
# 412: a condition did not hold; 409: a concurrent conditional write to the same key won.
_CONDITION = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})


class ConditionFailedError(OSError):
    """A conditional write or delete lost: the object changed, appeared or vanished.

    ``retried`` is True when botocore had sent the request more than once: then an
    earlier attempt may have succeeded, and the condition failed on our own write.
    """

    retried = False


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a listing."""

    key: str
    size: int
    etag: str
    modified: datetime | None


def wrap_error(exc: Exception, op: str, uri: str) -> OSError:
    """Return the ``OSError`` that stands for a botocore error of request ``op`` on ``uri``."""
    if isinstance(exc, ClientError):
        error: Any = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or code
        text = f"S3 {op} failed: {code} (HTTP {status}): {message}"
        if code in _CONDITION or status in (409, 412):
            failed = ConditionFailedError(errno.EEXIST, text, uri)
            failed.retried = bool(exc.response.get("ResponseMetadata", {}).get("RetryAttempts"))
            return failed
        if code == "NoSuchBucket":
            return FileNotFoundError(errno.ENOENT, f"{text} (does the bucket exist?)", uri)
        if code in _NOT_FOUND or status == 404:
            return FileNotFoundError(errno.ENOENT, text, uri)
        if code in _DENIED or status == 403:
            return PermissionError(errno.EACCES, text, uri)
        return OSError(errno.EIO, text, uri)
    text = f"S3 {op} failed: {exc}"
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return TimeoutError(errno.ETIMEDOUT, text, uri)
    if isinstance(exc, BotoConnectionError):
        return ConnectionError(errno.ECONNREFUSED, text, uri)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return PermissionError(errno.EACCES, f"{text} (configure AWS credentials)", uri)
    return OSError(errno.EIO, text, uri)


def _status(exc: BaseException) -> int:
    """The HTTP status of the S3 error behind ``exc`` (0 if it had none)."""
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def _empty_pools(client: Any) -> None:
    """Drop the connections a forked child inherited (they belong to the parent)."""
    try:
        session = client._endpoint.http_session
        session._manager.clear()
        for manager in session._proxy_managers.values():
            manager.clear()
    except Exception:  # private structures of botocore: best effort
        log.warning("could not empty the connection pool of the S3 client after fork()")


class S3Calls:
    """The few S3 requests the backend needs, on one bucket.

    Every HTTP request sent on behalf of the backend (retries included) is counted by
    operation with a ``before-send`` event hook; requests the user sends with the same
    client are not counted.
    """

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.bucket = bucket
        #: ``If-Match`` carries the ETag quoted (RFC 7232, AWS); False for servers that
        #: compare it unquoted (Ceph's gateway 16). Set by the server check (``_probe``).
        self.quoted = True
        #: The server answers 412, not 404, to ``If-Match`` on a missing object.
        self.missing_fails_match = False
        self._check: Callable[[], None] | None = None
        self._check_lock = threading.Lock()
        self._hook_id = f"vcti-filecache-count-{uuid.uuid4().hex}"
        self._client = client
        self._factory: Callable[[], S3Client] | None = None
        self._reset()
        self.bind(client)

    def _reset(self) -> None:
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._bind_lock = threading.Lock()
        self._ours = threading.local()

    @property
    def client(self) -> S3Client:
        """The client the requests go through (made on first use after a fork)."""
        if self._factory is not None:
            with self._bind_lock:
                factory, self._factory = self._factory, None
                if factory is not None:
                    self.bind(factory())
        return self._client

    def bind(self, client: S3Client) -> None:
        """Send the requests with ``client`` from now on (counted like the first one)."""
        client.meta.events.register("before-send.s3", self._count, unique_id=self._hook_id)
        self._client = client

    def after_fork(self, factory: Callable[[], S3Client] | None) -> None:
        """In a forked child: new locks and counts, and no connection of the parent's.

        With ``factory``, a new client is made on first use; otherwise the given client's
        connection pool is emptied (its sockets are the parent's).
        """
        self._reset()
        if factory is not None:
            self._factory = factory
        else:
            _empty_pools(self._client)

    def _count(self, event_name: str = "", **kwargs: Any) -> None:
        if getattr(self._ours, "active", False):
            with self._counts_lock:
                self._counts[event_name.rpartition(".")[2]] += 1

    def counts(self) -> dict[str, int]:
        """Return the requests sent so far, by S3 operation."""
        with self._counts_lock:
            return dict(sorted(self._counts.items()))

    def uri(self, key: str) -> str:
        """Return the ``s3://`` URI of object ``key``."""
        return f"s3://{self.bucket}/{key}"

    def _run(self, op: str, key: str, call: Callable[[], T]) -> T:
        self._ours.active = True
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise wrap_error(exc, op, self.uri(key)) from exc
        finally:
            self._ours.active = False

    # -- requests -------------------------------------------------------------------------

    def head_bucket(self) -> None:
        """Check that the bucket exists and is reachable."""
        self._run("HeadBucket", "", lambda: self.client.head_bucket(Bucket=self.bucket))

    def head(self, key: str) -> str:
        """Return the ETag of object ``key``."""
        return self._run(
            "HeadObject", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key)
        )["ETag"]

    def get(self, key: str, *, limit: int | None = None) -> tuple[bytes, str]:
        """Return the body and ETag of object ``key``.

        Args:
            limit: read at most this many bytes and one more (so that the caller can tell
                an oversized object from one that fits); None reads it all.
        """

        def call() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            with response["Body"] as body:
                data = body.read() if limit is None else body.read(limit + 1)
                return data, response["ETag"]

        return self._run("GetObject", key, call)

    def check_before_conditions(self, check: Callable[[], None]) -> None:
        """Run ``check`` (the server check) before the first conditional write, once."""
        self._check = check

    def ensure_checked(self) -> None:
        """Run the server check now, unless it ran (other threads wait for it)."""
        if self._check is None:
            return
        with self._check_lock:
            if self._check is not None:
                self._check()
                self._check = None

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        create: bool = False,
        checked: bool = False,
    ) -> str:
        """Write object ``key``; return its new ETag.

        Args:
            if_match: write only if the object still has this ETag (sent in the form the
                server accepts, :attr:`quoted`).
            create: write only if the object does not exist.
            checked: the server check need not run first (the check's own writes).

        A conditional write that the server answers with a 5xx error (Ceph's gateway
        answers some losers of a race with 500) is decided by reading the object: ours
        landed, or another writer's did (a lost condition), or it is gone.

        Raises:
            ConditionFailedError: the condition did not hold.
            FileNotFoundError: ``if_match`` was given and the object is gone (also when
                the server answers 412 for a missing object, as Ceph's gateway does).
        """
        if (if_match is not None or create) and not checked:
            self.ensure_checked()
        extra: dict[str, str] = {}
        if if_match is not None:
            extra["IfMatch"] = self.etag_form(if_match)
        if create:
            extra["IfNoneMatch"] = "*"
        try:
            return self._run(
                "PutObject",
                key,
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra),  # type: ignore[arg-type]
            )["ETag"]
        except ConditionFailedError:
            if if_match is not None and self.missing_fails_match and not self._exists(key):
                raise FileNotFoundError(
                    errno.ENOENT, "S3 PutObject failed: the object is gone", self.uri(key)
                ) from None
            raise
        except OSError as exc:
            if not extra or _status(exc) < 500:
                raise
            return self._decide(key, body, exc, if_match)

    def etag_form(self, etag: str) -> str:
        """``etag`` in the form this server accepts in ``If-Match`` (quoted or not)."""
        return etag if self.quoted else etag.strip('"')

    def _exists(self, key: str) -> bool:
        try:
            self.head(key)
        except FileNotFoundError:
            return False
        return True

    def _decide(self, key: str, body: bytes, exc: OSError, if_match: str | None) -> str:
        """Tell how a conditional PUT that failed with a server error ended, by a GET.

        Ours landed: its ETag. Another writer's did (the object exists where a create
        was asked, or changed where ``if_match`` was given): a lost condition. Nothing
        changed: the server's error stands.
        """
        try:
            current, etag = self.get(key, limit=len(body))
        except FileNotFoundError:
            if if_match is not None:
                raise FileNotFoundError(errno.ENOENT, str(exc), self.uri(key)) from exc
            raise exc from None
        if current == body:
            return etag  # ours landed (or an identical body, which is the same state)
        if if_match is not None and etag.strip('"') == if_match.strip('"'):
            raise exc
        failed = ConditionFailedError(errno.EEXIST, f"{exc} (another write won)", self.uri(key))
        raise failed from exc

    def copy(self, source: str, key: str, *, if_match: str | None = None) -> str:
        """Copy object ``source`` to ``key``; return the copy's ETag.

        Args:
            if_match: copy only if ``source`` has this ETag (``CopySourceIfMatch``). Some
                S3-compatible servers ignore it: callers compare the returned ETag too.

        Raises:
            FileNotFoundError: ``source`` does not exist.
            ConditionFailedError: ``source`` no longer has the ETag ``if_match``.
        """
        extra: dict[str, str] = {}
        if if_match is not None:
            self.ensure_checked()
            extra["CopySourceIfMatch"] = self.etag_form(if_match)
        response = self._run(
            "CopyObject",
            source,
            lambda: self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source},
                **extra,  # type: ignore[arg-type]
            ),
        )
        return response["CopyObjectResult"].get("ETag", "")

    def delete(self, key: str) -> None:
        """Delete object ``key``, whatever it holds (conditional deletes are not used:
        several S3-compatible servers ignore their condition)."""
        self._run(
            "DeleteObject", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key)
        )

    def delete_batch(self, keys: list[str]) -> list[tuple[str, str]]:
        """Delete up to 1,000 objects in one request; return ``(key, error)`` for failures."""
        assert 0 < len(keys) <= DELETE_BATCH
        response = self._run(
            "DeleteObjects",
            keys[0],
            lambda: self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            ),
        )
        return [
            (str(e.get("Key", "")), f"{e.get('Code', '')}: {e.get('Message', '')}")
            for e in response.get("Errors", [])
        ]

    def list(self, prefix: str, *, limit: int | None = None) -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix``, 1,000 per request."""
        token: str | None = None
        seen = 0
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if limit is not None:
                args["MaxKeys"] = min(1000, limit - seen)
            if token is not None:
                args["ContinuationToken"] = token
            page = self._run("ListObjectsV2", prefix, partial(self.client.list_objects_v2, **args))
            for item in page.get("Contents", []):
                seen += 1
                yield ObjectInfo(
                    item["Key"],
                    int(item.get("Size", 0)),
                    item.get("ETag", ""),
                    item.get("LastModified"),
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or token is None:
                return
            if limit is not None and seen >= limit:
                return
