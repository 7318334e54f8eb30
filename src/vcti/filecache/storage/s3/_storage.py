"""Model directories as key prefixes in S3 (or MinIO, Ceph), shared by many hosts.

Install the extra: ``pip install "vcti-file-cache[s3]"``. Layout below ``s3://BUCKET/PREFIX``
(``_listing`` has the details)::

    .filecache/leader             lease of the one process that scans and evicts
    .filecache/fills/KEY          lease of the fill of KEY (also held while KEY is deleted)
    KEY/...                       the model's files, written in place by the fill
    KEY/.filecache/key            written when the fill starts: names the prefix's key
    KEY/.filecache/pins/HOST-N    a pin of KEY held by a process, refreshed while held
    KEY/.filecache/meta.json      completion marker and metadata, written last

Nothing is renamed. A model is visible only once its marker exists (created last, with
``IfNoneMatch="*"``); eviction deletes the marker first (``IfMatch``), so a reader never
sees a half-deleted model, and the files afterwards. Prefixes without a marker count as
staging; sweep() reclaims those whose fill lease expired. Leases are objects written
with conditional requests and judged expired only on the observer's own monotonic clock
(``_lease``); a pin is a copy of the marker (one request that both checks that the
model exists and pins it), rewritten in the background while held.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import logging
import math
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

try:
    import boto3
    from botocore.config import Config
except ImportError as exc:  # pragma: no cover - tested in a subprocess without boto3
    raise ImportError(
        "S3Storage needs boto3, an optional dependency: pip install 'vcti-file-cache[s3]'"
    ) from exc

from ...exceptions import LockTimeoutError
from ._catalog import Catalog
from ._client import ConditionFailedError, S3Calls
from ._hold import Handle, Holdings
from ._lease import Lease, Leases, PinRecord
from ._listing import INNER, KEY_FILE, MARKER, Listing

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("vcti.filecache")


@dataclass(eq=False)
class _Removal:
    """A model whose marker is gone and whose files wait for a batched delete."""

    key: str
    meta: bytes
    lease: Lease
    own_pins: frozenset[str]  # this process's released pins of it: they go with it


def _make_client(
    session: boto3.session.Session | None,
    endpoint_url: str | None,
    region_name: str | None,
    config: Config | None,
) -> S3Client:
    retries: dict[str, Any] = dict(getattr(config, "retries", None) or {})  # not in the stubs
    retries.setdefault("mode", "standard")
    if "max_attempts" not in retries:  # retries after the first attempt, in botocore's terms
        retries.setdefault("total_max_attempts", 5)
    final = Config(connect_timeout=10, read_timeout=60)
    if config is not None:
        final = final.merge(config)
    final = final.merge(Config(retries=retries))  # type: ignore[arg-type]
    session = session if session is not None else boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region_name, config=final)


class S3Storage:
    """Stores each model as a key prefix in an S3 bucket; many hosts may share it.

    ``ModelDir.path`` is the model's ``s3://BUCKET/PREFIX/KEY`` URI: write and read the
    model's files as objects below ``PATH + "/"`` (with boto3, s3fs, ...). A fill writes
    in place; the model becomes visible when the context exits and the marker is written.

    Args:
        bucket: the bucket (it must exist).
        prefix: where the cache lives in the bucket (``"cache/"``); empty for all of it.
        client: a boto3 S3 client to use as it is; otherwise one is created here from
            ``session`` (default: a new ``boto3.session.Session()``), ``endpoint_url``,
            ``region_name`` and ``config``. Clients are thread-safe; create the storage
            in the process that uses it.
        config: a ``botocore.config.Config``; retries default to ``standard`` mode with
            5 attempts in all, so throttling (503 SlowDown), timeouts and connection
            errors are retried with backoff.
        host_id: names this process's pins and leases (default: a random id).
        lease_ttl: seconds after which a lease or pin that stopped being renewed is
            taken over (default 30). Every host sharing a cache must use the same value.
        delete_delay: seconds without a new eviction before the evicted models' files
            are deleted, so that evictions share DeleteObjects requests (default 1).

    Raises:
        TypeError: ``client`` was given together with ``session``, ``endpoint_url``,
            ``region_name`` or ``config``.
        ValueError: a value is out of range.

    Failures that remain after retries raise ``OSError``: ``FileNotFoundError`` (404),
    ``PermissionError`` (403), ``TimeoutError``, ``ConnectionError`` or ``OSError``.
    :attr:`request_counts` tells how many requests of each kind this storage sent.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        session: boto3.session.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        config: Config | None = None,
        host_id: str | None = None,
        lease_ttl: float = 30.0,
        delete_delay: float = 1.0,
    ) -> None:
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise ValueError(f"bucket must be a bucket name, got {bucket!r}")
        if not isinstance(prefix, str) or prefix.startswith("/") or "//" in prefix:
            raise ValueError(f"prefix must be a relative key prefix like 'cache/', got {prefix!r}")
        if not (isinstance(lease_ttl, (int, float)) and 0 < lease_ttl < math.inf):
            raise ValueError(f"lease_ttl must be a positive number of seconds, got {lease_ttl!r}")
        if not (isinstance(delete_delay, (int, float)) and 0 <= delete_delay < math.inf):
            raise ValueError(f"delete_delay must be a number of seconds >= 0, got {delete_delay!r}")
        if host_id is not None and (not host_id or "/" in host_id):
            raise ValueError(f"host_id must be a non-empty name without '/', got {host_id!r}")
        if client is None:
            client = _make_client(session, endpoint_url, region_name, config)
        elif session is not None or endpoint_url or region_name or config is not None:
            raise TypeError("give either client= or the settings to make one, not both")
        self._bucket = bucket
        self._client = client
        self._host = host_id if host_id is not None else uuid.uuid4().hex[:16]
        self._ttl = float(lease_ttl)
        self._delete_delay = float(delete_delay)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        root = f"s3://{bucket}/{prefix}".rstrip("/")
        self._calls = S3Calls(client, bucket)
        self._leases = Leases(self._calls, self._host, self._ttl, time.monotonic)
        self._cat = Catalog(self._calls, prefix, root, self._leases.observations)
        self._hold = Holdings(
            self._calls, self._leases, self._cat.leader_name, f"vcti-filecache-s3 {root}", self._due
        )
        self._fills: dict[str, Lease] = {}  # key -> fill lease taken by lock_fill()
        self._staged: dict[str, dict[str, str]] = {}  # stage() over a model: what was there
        self._pending: list[_Removal] = []
        self._pending_since = self._pending_last = 0.0
        self._pin_numbers = itertools.count(1)
        self._flush_lock = threading.Lock()
        _instances.add(self)

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self._bucket!r}, prefix={self._cat.prefix!r})"

    @property
    def root(self) -> str:
        """``s3://BUCKET/PREFIX`` (without the trailing slash)."""
        return self._cat.root

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix of the cache in the bucket (``""`` or ending with ``/``)."""
        return self._cat.prefix

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client this storage uses (reuse it to read and write model files)."""
        return self._client

    @property
    def host_id(self) -> str:
        """The name of this process's pins and leases."""
        return self._host

    @property
    def request_counts(self) -> dict[str, int]:
        """HTTP requests sent so far by this storage, by S3 operation (retries included).

        For example ``{"CopyObject": 12, "ListObjectsV2": 3, ...}``; requests the user
        sends with the same client are not counted.
        """
        return self._calls.counts()

    def path(self, key: str) -> str:
        """The model's URI, ``s3://BUCKET/PREFIX/KEY``; its files are below ``URI + "/"``."""
        return self._cat.path(key)

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> None:
        """Check the bucket, then reclaim leftovers nobody holds (one listing of the root)."""
        try:
            self._calls.head_bucket()
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                errno.ENOENT, f"the bucket {self._bucket!r} does not exist", self.root
            ) from exc
        self.flush()
        try:
            self._sweep(self._cat.list_root())
        except OSError as exc:  # leftovers wait for the next sweep; the cache can open
            log.warning("could not reclaim every leftover in %s: %s", self.root, exc)

    def sweep(self) -> int:
        """Reclaim leftovers found by the latest listing; return their bytes.

        Also finishes pending deletes and renews this process's leases. Leftovers are
        unmarked prefixes whose fill lease expired (or that have none) and pins that
        expired; each is checked again under its fill lease before anything is deleted.

        Raises:
            OSError: this process lost the leader lease to another host, or some
                leftovers could not be deleted (they are retried at the next sweep).
        """
        self._hold.renew_due(self._hold.clock())
        self.flush()
        if self._hold.leader_lost():
            raise OSError(
                errno.ENOLCK,
                f"this process lost the leader lease of {self.root} to another host; "
                "it neither evicts nor sweeps until it can take the lease back",
            )
        listing = self._cat.listing
        return self._sweep(listing if listing is not None else self._cat.list_root())

    def flush(self) -> None:
        """Delete now the files of evicted models and the pin objects no longer held.

        Both otherwise happen in a background thread shortly afterwards (``delete_delay``
        after the last eviction, about ``lease_ttl / 3`` after a pin's release).
        """
        with self._flush_lock:
            with self._hold.lock:
                batch, self._pending = self._pending, []
            # Released pins share the DeleteObjects requests of the evicted files.
            self._delete_removed(batch, self._hold.take_old_pins(self._hold.clock(), force=True))

    def verify(self, repair: bool) -> list[str]:
        """Report leftovers, expired leases and pins, stray objects and nested models.

        With ``repair``, reclaims what a sweep may (never models, never stray objects).
        """
        listing = self._cat.list_root()
        problems = [
            f"model {outer!r} contains another model at {self.path(inner)}"
            for outer, inner in listing.nested
        ]
        for key, size in sorted(listing.groups.items()):
            if self._reclaimable(listing, key):
                problems.append(f"leftover fill or delete: {self.path(key)}/ ({size} bytes)")
        for key in sorted(listing.fills):
            if key not in listing.groups and self._lease_expired(listing, key):
                problems.append(f"expired fill lease: {self._calls.uri(self._cat.fill_name(key))}")
        for folder, size in sorted(listing.strays.items()):
            where = self.path(folder) if folder else self.root
            problems.append(f"objects outside any model or fill: {where}/ ({size} bytes)")
        for name, _ in self._hold.expired_pins(_all_pins(listing)):
            problems.append(f"expired pin: {self._calls.uri(name)}")
        if repair:
            try:
                self._sweep(listing)
            except OSError as exc:
                problems.append(f"repair incomplete: {exc}")
        return problems

    # -- reading ------------------------------------------------------------------------

    def iter_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[str]:
        """Yield the published models, from one listing of the root (or of ``prefix``).

        A listing that fails raises ``OSError`` rather than going to ``onerror``: S3 has
        no folder to skip, and a partial listing would make the cache look smaller than
        it is (a failed one, empty).
        """
        listing = self._cat.list(prefix + "/") if prefix else self._cat.list_root(scan=True)
        yield from sorted(listing.sizes)

    def is_model(self, key: str) -> bool:
        """True if the model's marker exists (one HEAD request)."""
        try:
            self._calls.head(self._cat.marker(key))
        except FileNotFoundError:
            return False
        return True

    def exists(self, key: str) -> bool:
        """True if any object is stored below the key (one small listing)."""
        return any(True for _ in self._calls.list(self._cat.under(key), limit=1))

    def model_size(self, key: str) -> int:
        """Bytes of the model's files: from the scan's listing, or from a new listing."""
        return self._cat.model_size(key)

    def staging_size(self) -> int:
        """Bytes of objects outside every model (fills in progress, leftovers)."""
        return self._cat.staging_size()

    def staged_size(self, staged: str) -> int:
        """Bytes of the files a fill wrote so far (one listing of its prefix)."""
        listing = self._cat.list(self._cat.key_of(staged) + "/")
        return sum(listing.groups.values()) + sum(listing.sizes.values())

    def read_meta(self, key: str) -> bytes:
        """The metadata: kept from earlier if its ETag did not change, else one GET."""
        return self._cat.read_meta(key)

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        """Replace the metadata with ``update(current)``: a GET and a PUT with ``IfMatch``.

        A concurrent update from another host makes the PUT fail (412); the metadata is
        then read again and the update redone, so no access is ever lost. The GET is
        saved when the metadata did not change since this process last read or wrote it.
        """
        self._cat.update_meta(key, update)

    # -- locks --------------------------------------------------------------------------

    def pin(self, key: str) -> Handle | None:
        """Pin model ``key`` in every process: one CopyObject of its marker, or none.

        The copy both checks that the marker exists and creates this process's pin
        object; later pins of the same model in this process share that object.
        """
        record = self._hold.share_pin(key, self._hold.clock())
        if record is None:
            name = f"{self._cat.pin_prefix(key)}{self._host}-{next(self._pin_numbers)}"
            started = self._hold.clock()
            try:
                etag = self._calls.copy(self._cat.marker(key), name)
            except FileNotFoundError:
                return None
            lease = Lease(name, key, etag, started + self._ttl, started + self._ttl / 3)
            record = PinRecord(key, lease)
            self._hold.add_pin(record)
        return Handle(partial(self._hold.unpin, record))

    def lock_fill(self, key: str, timeout: float) -> Handle:
        """Take the key's fill lease, polling with backoff while another process has it.

        Raises:
            LockTimeoutError: the lease stayed taken for ``timeout`` seconds.
        """
        deadline = self._hold.clock() + timeout
        delay = 0.05
        while True:
            lease = self._leases.acquire(self._cat.fill_name(key), key)
            if lease is not None:
                self._hold.hold(lease)
                self._fills[key] = lease
                return Handle(partial(self._end_fill, key, lease))
            remaining = deadline - self._hold.clock()
            if remaining <= 0:
                raise LockTimeoutError(
                    f"another process has been filling {key!r} for more than {timeout}s"
                )
            time.sleep(min(remaining, random.uniform(delay / 2, delay)))
            delay = min(delay * 2, 1.0)

    def _end_fill(self, key: str, lease: Lease) -> None:
        if self._fills.get(key) is lease:
            del self._fills[key]
        self._hold.drop(lease, delete=not lease.keep)

    def try_lead(self) -> Handle | None:
        """Take the leader lease; it is renewed in the background and retaken if lost."""
        if self._hold.leader is not None:
            return None  # this storage leads already
        lease = self._leases.acquire(self._cat.leader_name, "", look_first=True)
        if lease is None:
            return None
        self._hold.leader = lease
        self._hold.hold(lease)
        return Handle(self._resign)

    def _resign(self) -> None:
        with contextlib.suppress(OSError):
            self.flush()
        leader, self._hold.leader = self._hold.leader, None
        if leader is not None:
            self._hold.drop(leader)

    # -- writing ------------------------------------------------------------------------

    def stage(self, key: str) -> str:
        """Prepare the model's own prefix for a fill; return its URI.

        Leftovers of an interrupted fill or delete there are deleted first, and the key
        file is written so that a sweep can find the prefix if this fill never ends.
        """
        objects = list(self._calls.list(self._cat.under(key)))
        if any(o.key == self._cat.marker(key) for o in objects):
            # Already a model: publish() will refuse, and discard() must then remove only
            # what this fill added.
            self._staged[key] = {o.key: o.etag for o in objects}
            return self.path(key)
        self._staged.pop(key, None)
        doomed = [o.key for o in objects]
        if doomed and self._hold.delete_packed([(doomed, self._fills.get(key))]):
            raise OSError(errno.EIO, "could not delete an earlier fill's leftovers", self.path(key))
        self._calls.put(self._cat.key_file(key), key.encode())
        return self.path(key)

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        """Write the completion marker (``IfNoneMatch="*"``): the model becomes visible."""
        if self._cat.key_of(staged) != key:
            raise ValueError(f"{staged!r} is not where {key!r} is filled")
        lease = self._fills.get(key)
        if lease is not None and not lease.valid(self._hold.clock()):
            raise OSError(
                errno.ENOLCK, "the fill lease expired before the fill ended; not publishing", staged
            )
        name = self._cat.marker(key)
        try:
            etag = self._calls.put(name, meta, create=True)
        except ConditionFailedError as exc:
            current = None
            if exc.retried:  # perhaps our own first attempt created it
                with contextlib.suppress(FileNotFoundError):
                    current, etag = self._calls.get(name)
            if current != meta:
                raise FileExistsError(
                    errno.EEXIST, "something else is stored at this key", staged
                ) from exc
        self._staged.pop(key, None)
        self._cat.remember(key, etag, meta)
        self._cat.patch(key, published=True)

    def discard(self, staged: str) -> None:
        """Delete what the failed fill wrote (never a model another process published)."""
        key = self._cat.key_of(staged)
        before = self._staged.pop(key, None)
        lease = self._fills.get(key)
        objects = list(self._calls.list(self._cat.under(key)))
        if any(o.key == self._cat.marker(key) for o in objects):
            if before is None:
                return  # published meanwhile by another process: nothing here is ours
            inner = len(self._cat.under(key))
            doomed = [
                o.key for o in objects if o.key not in before and INNER not in o.key[inner - 1 :]
            ]
        else:
            doomed = [o.key for o in objects]
        if doomed and self._hold.delete_packed([(doomed, lease)]):
            if lease is not None:
                lease.keep = True  # left for a sweep once the lease expires
            raise OSError(errno.EIO, "could not delete the discarded fill; a sweep will", staged)
        self._cat.patch(key)

    def remove(self, key: str) -> bool:
        """Hide model ``key`` now (its marker goes first) and delete its files soon after.

        Returns False when the model is pinned in any process, busy (another process
        holds its fill lease), or this process lost the leader lease.
        """
        if self._hold.leader_lost():
            return False
        with self._hold.lock:
            if any(r.key == key for r in self._pending):
                raise FileNotFoundError(errno.ENOENT, "removed already", self.path(key))
        if self._hold.pinned_here(key):
            return False
        listing = self._cat.listing
        if listing is not None and self._hold.pinned(listing.pins.get(key, []), key):
            return False
        lease = self._leases.acquire(self._cat.fill_name(key), key)
        if lease is None:
            return False
        self._hold.hold(lease)
        try:
            meta = self._delete_marker(key)
        except BaseException:
            self._hold.drop(lease)
            raise
        if meta is None:
            self._hold.drop(lease)
            return False
        self._cat.patch(key, gone=True)
        try:
            pins = [(o.key, o.etag) for o in self._calls.list(self._cat.pin_prefix(key))]
        except BaseException:
            self._restore(key, meta, lease)
            raise
        if self._hold.pinned(pins, key):
            self._restore(key, meta, lease)
            return False
        removal = _Removal(key, meta, lease, self._hold.bury(key))
        with self._hold.lock:
            self._pending_last = self._hold.clock()
            if not self._pending:
                self._pending_since = self._pending_last
            self._pending.append(removal)
        self._hold.keeper.wake()
        return True

    def _delete_marker(self, key: str) -> bytes | None:
        """Delete the marker unless it changes meanwhile; return the metadata it held.

        Returns None if the metadata kept changing (the model is in use).
        """
        name = self._cat.marker(key)
        with self._cat.lock:
            cached = self._cat.metas.get(key)
        for _ in range(3):
            if cached is None:
                body, etag = self._calls.get(name)
            else:
                etag, body = cached
            try:
                self._calls.delete(name, if_match=etag)
            except ConditionFailedError:
                cached = None
                continue
            except FileNotFoundError:
                self._cat.patch(key, gone=True)
                raise
            return body
        return None

    def _restore(self, key: str, meta: bytes, lease: Lease) -> None:
        """Put a removed model's marker back (it was pinned meanwhile)."""
        try:
            etag = self._calls.put(self._cat.marker(key), meta, create=True)
        except ConditionFailedError:
            self._hold.drop(lease)
            return
        except OSError:
            log.exception("could not restore the marker of %s", self.path(key))
            self._hold.drop(lease, delete=False)  # a sweep finishes the removal later
            return
        self._cat.remember(key, etag, meta)
        self._hold.drop(lease)

    # -- deleting and sweeping ----------------------------------------------------------

    def _delete_removed(self, batch: list[_Removal], extra: list[str]) -> None:
        """Delete the files of removed models, and the ``extra`` objects, in few requests."""
        groups: list[tuple[list[str], Lease | None]] = [(extra, None)] if extra else []
        first = len(groups)
        removals: list[_Removal] = []
        for removal in batch:
            try:
                objects = list(self._calls.list(self._cat.under(removal.key)))
            except OSError as exc:
                log.warning("could not list %s to delete it: %s", self.path(removal.key), exc)
                self._hold.drop(removal.lease, delete=False)
                continue
            pin_prefix = self._cat.pin_prefix(removal.key)
            pins = [(o.key, o.etag) for o in objects if o.key.startswith(pin_prefix)]
            if self._hold.pinned(pins, removal.key, removal.own_pins):
                log.warning("%s was opened while it was evicted; it stays", self.path(removal.key))
                self._restore(removal.key, removal.meta, removal.lease)
                continue
            removals.append(removal)
            groups.append(([o.key for o in objects], removal.lease))
        failed = self._hold.delete_packed(groups)
        for index, removal in enumerate(removals, start=first):
            self._hold.drop(removal.lease, delete=index not in failed)

    def _lease_expired(self, listing: Listing, key: str) -> bool:
        etag, _ = listing.fills[key]
        unchanged = self._leases.observations.unchanged_for(self._cat.fill_name(key), etag)
        return unchanged > self._ttl

    def _reclaimable(self, listing: Listing, key: str) -> bool:
        with self._hold.lock:
            if key in self._fills or any(r.key == key for r in self._pending):
                return False
        return key not in listing.fills or self._lease_expired(listing, key)

    def _sweep(self, listing: Listing) -> int:
        keys = {k for k in listing.groups if self._reclaimable(listing, k)}
        keys.update(k for k in listing.fills if self._reclaimable(listing, k))
        freed = 0
        errors: list[OSError] = []
        for key in sorted(keys):
            try:
                freed += self._reclaim(key)
            except OSError as exc:
                errors.append(exc)
        for name, etag in self._hold.expired_pins(_all_pins(listing)):
            try:
                self._calls.delete(name, if_match=etag)
            except (ConditionFailedError, FileNotFoundError):
                pass  # rewritten or deleted meanwhile
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise OSError(
                errno.EIO, f"{len(errors)} leftovers could not be reclaimed, e.g. {errors[0]}"
            ) from errors[0]
        return freed

    def _reclaim(self, key: str) -> int:
        """Delete the unmarked prefix ``key`` under its fill lease; return the bytes freed."""
        lease = self._leases.acquire(self._cat.fill_name(key), key)
        if lease is None:
            return 0
        self._hold.hold(lease)
        complete = True
        try:
            objects = list(self._calls.list(self._cat.under(key)))
            start = len(self._cat.prefix)
            inner = {
                o.key[start : -len(INNER + tail)]
                for o in objects
                for tail in (MARKER, KEY_FILE)
                if o.key.endswith(INNER + tail)
            }
            if any(o.key == self._cat.marker(key) for o in objects):
                return 0  # a model: only its lease was left over
            pin_prefix = self._cat.pin_prefix(key)
            if self._hold.pinned(
                [(o.key, o.etag) for o in objects if o.key.startswith(pin_prefix)], key
            ):
                return 0
            others = tuple(self._cat.under(k) for k in inner if k != key)  # other fills, models
            doomed = [o for o in objects if not o.key.startswith(others)]
            complete = not self._hold.delete_packed([([o.key for o in doomed], lease)])
            if not complete:
                return 0
            self._cat.patch(key)
            return sum(o.size for o in doomed if INNER not in o.key[start:])
        except BaseException:
            complete = False
            raise
        finally:
            self._hold.drop(lease, delete=complete)
            if complete:
                self._cat.forget_fill(key)

    def _due(self, now: float) -> float | None:
        """The keeper's tick: delete removed files once evictions pause; the next due time."""
        with self._hold.lock:
            if not self._pending:
                return None
            due = min(
                self._pending_last + self._delete_delay,
                self._pending_since + 10 * self._delete_delay,
            )
        if now < due:
            return due
        self.flush()
        return None


def _all_pins(listing: Listing) -> list[tuple[str, str]]:
    return [pin for pins in listing.pins.values() for pin in pins]


_instances: weakref.WeakSet[S3Storage] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Finish the pending deletes of every S3Storage (best effort)."""
    for storage in list(_instances):
        with contextlib.suppress(Exception):
            storage.flush()
