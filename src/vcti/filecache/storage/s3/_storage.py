"""Model directories as attempt prefixes in S3 (or MinIO, Ceph), shared by many hosts.

Install the extra: ``pip install "vcti-file-cache[s3]"``. Layout below ``s3://BUCKET/PREFIX``
(``_listing`` has the details)::

    .filecache/leader              lease of the one process that scans and evicts
    .filecache/models/KEY/head     KEY's head: a fill's claim, the published model, or vacant
    .filecache/policy/NAME         an eviction policy's state
    .filecache/probe/ID            the server check's object, while a storage checks
    KEY/.filecache/A/...           the files of attempt A of KEY: ModelDir.path
    KEY/.filecache/A.meta          its metadata record
    KEY/.filecache/A.pins/HOST-N   a pin of it held by a process, refreshed while held

Nothing is renamed, and no write or delete depends on a lease still being held when it
lands (fencing). Each fill writes under an attempt of its own; the model becomes visible
when the head, which was the fill's claim, is replaced by a published body naming the
attempt, conditioned on the claim's ETag (``_fill``). Eviction makes the head vacant
with ``IfMatch``, then deletes that attempt's objects, by name. A sweep deletes the
attempts no head names and no live pin holds, makes the claims seen expired vacant, and
deletes the pins seen expired once it made them vacant (``_sweep``). Every fenced
transition is a conditional ``PutObject``; no safety rests on a conditional delete,
which several S3-compatible servers ignore: only objects that nothing live can name
any more are deleted, unconditionally. Leases are objects written with conditional
requests and judged expired only on the observer's own monotonic clock (``_lease``); a
pin is a conditional copy of the head, rewritten in the background while held. The
first conditional write checks that the server honours the conditions (``_probe``).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import logging
import math
import os
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

from ._catalog import Catalog
from ._client import ConditionFailedError, S3Calls
from ._fill import Fills
from ._hold import Handle, Holdings
from ._lease import Lease, Leases, PinRecord
from ._listing import PROBE, head_key
from ._probe import check_server
from ._sweep import Sweeper

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("vcti.filecache")

_PIN_TRIES = 3  # heads that keep changing under a pin: give up (a miss) after this many
_MAX_STATE = 16 * 1024 * 1024  # a policy's state is small; refuse to read a huge object


@dataclass(eq=False)
class _Removal:
    """An evicted attempt whose head is gone and whose objects wait for a batched delete."""

    key: str
    attempt: str
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


def _check_state_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or any(ord(c) < 32 for c in name)
        or len(name.encode("utf-8", "surrogatepass")) > 200
    ):
        raise ValueError(f"a policy state name must be a short name without '/', got {name!r}")
    return name


class S3Storage:
    """Stores each model as a key prefix in an S3 bucket; many hosts may share it.

    ``ModelDir.path`` is the URI of the model's current *attempt*,
    ``s3://BUCKET/PREFIX/KEY/.filecache/ATTEMPT``: write and read the model's files as
    objects below ``PATH + "/"`` (with boto3, s3fs, ...). Every fill writes to an attempt
    of its own, so the model's URI changes when it is filled again (after an eviction);
    use the path of the ``model()`` context you are in, not one kept from earlier.

    Args:
        bucket: the bucket (it must exist).
        prefix: where the cache lives in the bucket (``"cache/"``); empty for all of it.
        client: a boto3 S3 client to use as it is; otherwise one is created here from
            ``session`` (default: a new ``boto3.session.Session()``), ``endpoint_url``,
            ``region_name`` and ``config``. Clients are thread-safe; create the storage
            in the process that uses it. After ``fork()``, a client created here is
            created anew in the child; a given one has its connection pool emptied.
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
        self._factory: Callable[[], S3Client] | None = None
        if client is None:
            self._factory = partial(_make_client, session, endpoint_url, region_name, config)
            client = self._factory()
        elif session is not None or endpoint_url or region_name or config is not None:
            raise TypeError("give either client= or the settings to make one, not both")
        self._bucket = bucket
        self._host = host_id if host_id is not None else uuid.uuid4().hex[:16]
        self._ttl = float(lease_ttl)
        self._delete_delay = float(delete_delay)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        root = f"s3://{bucket}/{prefix}".rstrip("/")
        self._calls = S3Calls(client, bucket)
        self._calls.check_before_conditions(partial(check_server, self._calls, f"{prefix}{PROBE}"))
        self._leases = Leases(self._calls, self._host, self._ttl, time.monotonic)
        self._cat = Catalog(self._calls, prefix, root, self._leases.observations, self._ttl)
        self._hold = Holdings(self._calls, self._leases, f"vcti-filecache-s3 {root}", self._due)
        self._fills = Fills(self._calls, self._leases, self._hold, self._cat)
        self._sweeper = Sweeper(self._calls, self._leases, self._hold, self._cat, self._busy)
        self._reset_process_state()
        _instances.add(self)

    def _reset_process_state(self) -> None:
        self._pending: list[_Removal] = []
        self._pending_since = self._pending_last = 0.0
        self._pin_tag = uuid.uuid4().hex[:8]  # pins of this process (a forked child: new)
        self._pin_numbers = itertools.count(1)
        self._flush_lock = threading.Lock()
        self._local = threading.local()  # the attempt each thread pinned last, by key

    def _after_fork(self) -> None:
        """In a forked child: hold nothing of the parent's, and talk to S3 on new sockets."""
        self._calls.after_fork(self._factory)
        self._leases.observations.after_fork()
        self._cat.after_fork()
        self._hold.after_fork()
        self._fills.after_fork()
        self._reset_process_state()

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
        return self._calls.client

    @property
    def host_id(self) -> str:
        """The name of this process's pins and leases."""
        return self._host

    @property
    def lease_ttl(self) -> float:
        """Seconds after which a lease or pin that was not renewed may be taken over."""
        return self._ttl

    @property
    def request_counts(self) -> dict[str, int]:
        """HTTP requests sent so far by this storage, by S3 operation (retries included).

        For example ``{"CopyObject": 12, "ListObjectsV2": 3, ...}``; requests the user
        sends with the same client are not counted.
        """
        return self._calls.counts()

    def path(self, key: str) -> str:
        """The URI of the model's files.

        Inside a ``model()`` context (after this thread pinned the model) it is the URI
        of the attempt pinned, ``s3://BUCKET/PREFIX/KEY/.filecache/ATTEMPT``; otherwise
        the model's base URI ``s3://BUCKET/PREFIX/KEY``, which names it in events.
        """
        pinned = getattr(self._local, "pinned", None)
        if pinned is not None and pinned[0] == key:
            return self._cat.attempt_uri(key, pinned[1])
        return self._cat.path(key)

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> None:
        """Check the bucket and the server, then reclaim leftovers nobody holds.

        The first open of a bucket on an endpoint in a process checks that the server
        refuses what ``If-None-Match: *`` and ``If-Match`` should refuse (six requests,
        seven where ``If-Match`` takes only bare ETags).

        Raises:
            FileNotFoundError: the bucket does not exist.
            StorageError: the server lacks a conditional write the backend needs.
        """
        try:
            self._calls.head_bucket()
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                errno.ENOENT, f"the bucket {self._bucket!r} does not exist", self.root
            ) from exc
        self._calls.ensure_checked()
        self.flush()
        self._fills.loose.clear()  # stage() without lock_fill(): nobody holds those
        try:
            self._sweeper.sweep(self._cat.list_root())
        except OSError as exc:  # leftovers wait for the next sweep; the cache can open
            log.warning("could not reclaim every leftover in %s: %s", self.root, exc)

    def sweep(self) -> int:
        """Reclaim leftovers found by the latest listing; return their bytes.

        Also finishes pending deletes and renews this process's leases. Leftovers are
        attempts that no head names and no live pin holds, claims of fills seen expired
        (or corrupt), and pins seen expired.

        Raises:
            OSError: some leftovers could not be deleted (they are retried at the next
                sweep).
        """
        self._hold.renew_due(self._hold.clock())
        self.flush()
        listing = self._cat.listing
        return self._sweeper.sweep(listing if listing is not None else self._cat.list_root())

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
        """Report corrupt leases and heads, models without data, leftovers, stray objects,
        expired pins and nested models.

        With ``repair``, repairs all of them but nested models (reported only): a corrupt
        or expired lease and a head whose model has neither files nor metadata are made
        vacant; leftover attempts, objects outside the layout and expired pins deleted.
        """
        return self._sweeper.verify(self._cat.list_root(), repair)

    # -- reading ------------------------------------------------------------------------

    def iter_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[str]:
        """Yield the published models, from one listing of the root (or of ``prefix``).

        A listing that fails raises ``OSError`` rather than going to ``onerror``: S3 has
        no folder to skip, and a partial listing would make the cache look smaller than
        it is (a failed one, empty).
        """
        if not prefix:
            yield from sorted(self._cat.list_root(scan=True).models)
            return
        start = len(self._cat.prefix)
        found = []
        for obj in self._calls.list(self._cat.heads_below(prefix)):
            key = head_key(obj.key[start:])
            if key is None:
                continue
            state = self._cat.known(key, obj.etag)
            if state is None:
                seen = self._cat.read_state(key)
                state = None if seen is None else seen[1]
            if state is not None and state.published:
                found.append(key)
        yield from sorted(found)

    def is_model(self, key: str) -> bool:
        """True if the head of ``key`` is published (one GET)."""
        if self._fills.vouches(key):
            return False
        seen = self._cat.read_state(key)
        return seen is not None and seen[1].published

    def exists(self, key: str) -> bool:
        """True if a model or a fill is at ``key`` or below it (one small listing).

        Also True where only a vacant head is (a removed model): callers then list the
        models there, and find none.
        """
        if self._fills.vouches(key, below=True):
            return False
        return any(True for _ in self._calls.list(self._cat.heads_below(key), limit=1))

    def model_size(self, key: str) -> int:
        """The bytes of the model's files (from the scan's listing, or one listing)."""
        return self._cat.model_size(key)

    def staging_size(self) -> int:
        """The bytes of attempts not published: fills in progress and leftovers."""
        return self._cat.staging_size()

    def staged_size(self, staged: str) -> int:
        """Bytes of the files a fill wrote to its attempt (one listing of their prefix)."""
        key, attempt = self._cat.parse_uri(staged)
        return sum(o.size for o in self._calls.list(self._cat.files_prefix(key, attempt)))

    def read_record(self, key: str) -> bytes:
        """The model's metadata record (from the scan when unchanged, else one GET)."""
        return self._cat.read_record(key)

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        """Replace the metadata with ``update(current)``, one conditional PUT.

        A concurrent update from another host makes the PUT fail (412); the metadata is
        then read again and the update redone, so no access is ever lost. The GET is
        saved when the metadata did not change since this process last read or wrote it.
        """
        self._cat.update_meta(key, update)

    # -- policy state -------------------------------------------------------------------

    def read_state(self, name: str) -> bytes:
        """The state stored for policy ``name`` (``.filecache/policy/NAME``).

        Raises:
            FileNotFoundError: nothing is stored under ``name``.
            ValueError: ``name`` is not a short name without ``/``.
        """
        object_name = self._cat.policy_name(_check_state_name(name))
        try:
            data, _ = self._calls.get(object_name, limit=_MAX_STATE)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                errno.ENOENT, f"no state stored for policy {name!r}", self._calls.uri(object_name)
            ) from exc
        if len(data) > _MAX_STATE:
            raise OSError(errno.EFBIG, "the policy state is too large", object_name)
        return data

    def write_state(self, name: str, data: bytes) -> None:
        """Store ``data`` for policy ``name``; S3 replaces the object atomically."""
        object_name = self._cat.policy_name(_check_state_name(name))
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"policy state must be bytes, not {type(data).__name__}")
        self._calls.put(object_name, bytes(data))

    # -- locks --------------------------------------------------------------------------

    def pin(self, key: str) -> Handle | None:
        """Pin model ``key`` in every process: one conditional CopyObject of its head.

        The copy (``CopySourceIfMatch`` on the published head's ETag) both checks that
        the model is still that published attempt and creates this process's pin object
        of the attempt; later pins of it in this process share that object. A head not
        seen before is read first (one GET).
        """
        if self._fills.filling(key):
            return None  # this process fills it: not a model yet
        record = self._hold.share_pin(key, self._hold.clock())
        if record is None:
            record = self._new_pin(key)
            if record is None:
                return None
        self._local.pinned = (key, record.attempt)
        return Handle(partial(self._unpin, record), partial(self._hold.pin_lost, record))

    def _new_pin(self, key: str) -> PinRecord | None:
        head = self._cat.head_name(key)
        for _ in range(_PIN_TRIES):
            try:
                etag, attempt = self._cat.current(key)
            except FileNotFoundError:
                return None
            name = (
                f"{self._cat.pin_prefix(key, attempt)}"
                f"{self._host}-{self._pin_tag}-{next(self._pin_numbers)}"
            )
            started = self._hold.clock()
            try:
                copied = self._calls.copy(head, name, if_match=etag)
            except FileNotFoundError:
                self._cat.forget(key)
                return None
            except ConditionFailedError:
                self._cat.forget(key)  # evicted and filled again since it was seen
                continue
            if copied.strip('"') != etag.strip('"'):  # a server ignoring CopySourceIfMatch
                with contextlib.suppress(OSError):
                    self._calls.delete(name)
                self._cat.forget(key)
                continue
            lease = Lease(
                name,
                key,
                copied,
                started + self._ttl,
                started + self._ttl / 3,
                {"attempt": attempt},
            )
            record = PinRecord(key, attempt, lease)
            self._hold.add_pin(record)
            return record
        return None

    def _unpin(self, record: PinRecord) -> None:
        self._hold.unpin(record)
        if getattr(self._local, "pinned", None) == (record.key, record.attempt):
            self._local.pinned = None

    def lock_fill(self, key: str, timeout: float) -> Handle:
        """Take the key's head as this fill's claim, polling while another fill has it.

        Also waits while a fill of a key nested with ``key`` is in progress on any host.

        Raises:
            KeyValidationError: a model is published at an ancestor of ``key`` or below.
            LockTimeoutError: the claim stayed taken for ``timeout`` seconds.
        """
        return self._fills.lock(key, timeout)

    def try_lead(self) -> Handle | None:
        """Take the leader lease; it is renewed in the background until lost or released."""
        if self._hold.leader is not None:
            return None  # this storage leads already
        lease = self._leases.acquire(self._cat.leader_name, "", look_first=True)
        if lease is None:
            return None
        self._hold.leader = lease
        self._hold.hold(lease)
        return Handle(partial(self._resign, lease), partial(self._hold.lease_lost, lease))

    def _resign(self, lease: Lease) -> None:
        with contextlib.suppress(OSError):
            self.flush()
        if self._hold.leader is lease:
            self._hold.leader = None
        self._hold.drop(lease)

    # -- writing ------------------------------------------------------------------------

    def stage(self, key: str) -> str:
        """The URI of this fill's own attempt (no request): nobody else writes there."""
        return self._fills.stage(key)

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        """Write the metadata record, then replace this fill's claim with the published head.

        Raises:
            FileExistsError: another model was published at ``key`` first.
            OSError: this fill's claim lapsed and was taken over: nothing is published.
        """
        self._fills.publish(key, staged, meta)

    def discard(self, staged: str) -> None:
        """Delete what the failed fill wrote, in its own attempt (never anything else)."""
        self._fills.discard(staged)

    def remove(self, key: str) -> bool:
        """Hide model ``key`` now (its head is made vacant, with ``IfMatch``) and delete its
        files soon.

        Returns False when the model is pinned in any process, or this process lost the
        leader lease, or the model changed (was filled again) since it was last seen.
        """
        if self._hold.leader_lost():
            return False
        with self._hold.lock:
            if any(r.key == key for r in self._pending):
                raise FileNotFoundError(errno.ENOENT, "removed already", self.path(key))
        if self._hold.pinned_here(key) or self._fills.filling(key):
            return False
        etag, attempt = self._cat.current(key)
        pins = [(o.key, o.etag) for o in self._calls.list(self._cat.pin_prefix(key, attempt))]
        if self._hold.pinned(pins):
            return False
        try:
            vacant = self._leases.vacate(self._cat.head_name(key), key, etag)
        except FileNotFoundError:
            self._cat.patch(key, gone=True)
            raise
        except ConditionFailedError:
            self._cat.forget(key)
            return False
        self._cat.patch(key, gone=True)
        self._cat.vacated(key, vacant)
        removal = _Removal(key, attempt, self._hold.bury(key, attempt))
        with self._hold.lock:
            self._pending_last = self._hold.clock()
            if not self._pending:
                self._pending_since = self._pending_last
            self._pending.append(removal)
        self._hold.keeper.wake()
        return True

    # -- deleting -----------------------------------------------------------------------

    def _delete_removed(self, batch: list[_Removal], extra: list[str]) -> None:
        """Delete the objects of evicted attempts, and the ``extra`` objects, in few requests.

        An attempt that a reader pinned just before its head went stays until the pin is
        released (a sweep deletes it then): a model open somewhere is never deleted.
        """
        groups: list[list[str]] = [extra] if extra else []
        for removal in batch:
            prefix = self._cat.attempt_prefix(removal.key, removal.attempt)
            try:
                objects = list(self._calls.list(prefix))
            except OSError as exc:
                log.warning("could not list %s to delete it: %s", self._calls.uri(prefix), exc)
                continue  # an attempt no head names: a sweep deletes it
            pins = self._cat.pin_prefix(removal.key, removal.attempt)
            held = [(o.key, o.etag) for o in objects if o.key.startswith(pins)]
            if self._hold.pinned(held, removal.own_pins):
                log.info("%s was opened while it was evicted; its files stay while held", prefix)
                continue
            groups.append([o.key for o in objects])
        if groups:
            self._hold.delete_packed(groups)  # what fails is left to a sweep

    def _busy(self, key: str, attempt: str) -> bool:
        if self._fills.busy(key, attempt):
            return True
        with self._hold.lock:
            return any(r.key == key and r.attempt == attempt for r in self._pending)

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


_instances: weakref.WeakSet[S3Storage] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for storage in list(_instances):
        storage._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _flush_at_exit() -> None:
    """Finish the pending deletes of every S3Storage (best effort)."""
    for storage in list(_instances):
        with contextlib.suppress(Exception):
            storage.flush()
