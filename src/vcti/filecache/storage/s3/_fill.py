"""Fills on S3: a claim on the key's head, an attempt of their own, a fenced publish.

A fill takes the key's head as its claim (a lease naming a fresh attempt), checks that
no model or fill exists at an ancestor or below the key, writes under its attempt's
prefix, and publishes by replacing its own claim with the published body, conditioned
on the claim's ETag. A host that paused past its lease finds its claim taken over: its
late writes land in its own attempt, which nobody reads, and its publish fails.

The nesting check works across hosts because both sides write first and look second:
a fill of ``a`` and a fill of ``a/b`` each create their claim before reading the
other's head, so at least one of them sees the other. The one that sees a fill in
progress withdraws and tries again a little later; the one that sees a published model
gives up with ``KeyValidationError``, as the core does within one process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import time
from dataclasses import dataclass
from functools import partial

from ..._keys import ancestors
from ...exceptions import KeyValidationError, LockTimeoutError
from ._catalog import Catalog
from ._client import ConditionFailedError, S3Calls
from ._head import FILLING, new_published
from ._hold import Handle, Holdings
from ._lease import Lease, Leases
from ._listing import head_key

log = logging.getLogger("vcti.filecache")

_PUBLISH_TRIES = 4  # rounds of "did our publish land?" after failures of the transport


@dataclass(eq=False)
class Claim:
    """This process's claim on a key's head: a fill in progress."""

    key: str
    lease: Lease
    attempt: str
    body: bytes  # the published body; its MD5 names the attempt
    checked: bool = False  # no model or fill at an ancestor or below, as of the check
    published: bool = False
    uncertain: bool = False  # a publish whose outcome could not be learned


@dataclass(eq=False)
class _Later:
    """A fill lock taken while the key was a model: it claims only if stage() needs it."""

    key: str
    deadline: float
    claim: Claim | None = None


class _Wait:
    """Another fill (of the key, or of a key nested with it) is in progress."""


_WAIT = _Wait()


class Fills:
    """Claims, nesting checks, stage, publish and discard for one S3Storage."""

    def __init__(self, calls: S3Calls, leases: Leases, hold: Holdings, cat: Catalog) -> None:
        self.calls = calls
        self.leases = leases
        self.hold = hold
        self.cat = cat
        self.clock = leases.clock
        self.after_fork()

    def after_fork(self) -> None:
        """Forget the fills in progress (in a forked child they are the parent's)."""
        self.claims: dict[str, Claim] = {}  # key -> this process's live claim
        self.later: dict[str, _Later] = {}  # key -> a fill lock taken over a model
        self.loose: dict[str, tuple[str, bytes]] = {}  # stage() without a claim: uri -> body

    # -- the claim ----------------------------------------------------------------------

    def lock(self, key: str, timeout: float) -> Handle:
        """Take the fill of ``key``, waiting while another fill of it (or of a key nested
        with it) is in progress.

        When ``key`` is published already, the handle claims nothing (the core then pins
        the model); should the model vanish before that, :meth:`stage` claims it then.

        Raises:
            KeyValidationError: a model is published at an ancestor of ``key`` or below it.
            LockTimeoutError: the fill stayed taken for ``timeout`` seconds.
        """
        deadline = self.clock() + timeout
        claim = self._claim(key, deadline)
        if claim is not None:
            return Handle(partial(self.end, claim), partial(self._lapsed, claim))
        later = _Later(key, deadline)
        self.later[key] = later
        return Handle(partial(self._end_later, later), partial(self._later_lapsed, later))

    def _claim(self, key: str, deadline: float) -> Claim | None:
        """Claim ``key`` (None if it is published), waiting until ``deadline``."""
        delay = 0.05
        look_first = False
        while True:
            claim = self._try(key, look_first)
            if not isinstance(claim, _Wait):
                return claim
            look_first = True  # while another holds it: one GET a poll
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise LockTimeoutError(
                    f"another process kept filling {key!r} (or a key nested with it) "
                    "beyond the lock timeout"
                )
            time.sleep(min(remaining, random.uniform(delay / 2, delay)))
            delay = min(delay * 2, 1.0)

    def _try(self, key: str, look_first: bool) -> Claim | _Wait | None:
        body, attempt = new_published(key)
        extra = {"state": FILLING, "attempt": attempt}
        name = self.cat.head_name(key)
        seen = self.cat.read_state(key) if look_first else None
        lease: Lease | None = None
        vacant = self.cat.vacant(key) if seen is None else None
        if vacant is not None:  # removed here, or seen vacant: claim it over its ETag
            lease = self.leases.take_over(name, key, vacant, extra, vacant=True)
        if seen is None and lease is None:
            lease = self.leases.create(name, key, extra) if vacant is None else None
            if lease is None:
                seen = self.cat.read_state(key)
                if seen is None:
                    return _WAIT  # withdrawn in between: the next try creates it
        if lease is None:
            assert seen is not None
            etag, state = seen
            if state.published:
                return None
            if state.vacant:
                lease = self.leases.take_over(name, key, etag, extra, vacant=True)
            elif self.leases.expired(name, etag, state.data):
                lease = self.leases.take_over(name, key, etag, extra)
                # The fill it replaced is abandoned: its attempt is swept by the leader.
            if lease is None:
                return _WAIT
        claim = Claim(key, lease, attempt, body)
        self.claims[key] = claim
        self.hold.hold(lease)
        try:
            clear = self._check_nesting(key)
        except BaseException:
            self._withdraw(claim)
            raise
        if not clear:
            self._withdraw(claim)
            return _WAIT
        claim.checked = True
        return claim

    def _end_later(self, later: _Later) -> None:
        if self.later.get(later.key) is later:
            del self.later[later.key]
        if later.claim is not None:
            self.end(later.claim)

    def _later_lapsed(self, later: _Later) -> bool:
        return later.claim is not None and self._lapsed(later.claim)

    def _lapsed(self, claim: Claim) -> bool:
        return not claim.published and claim.lease.lapsed(self.clock())

    def _check_nesting(self, key: str) -> bool:
        """False while a fill of an ancestor or of a key below is in progress.

        Expired claims found on the way are removed (their fills are dead).

        Raises:
            KeyValidationError: a model is published at an ancestor or below ``key``.
        """
        for outer in ancestors(key):
            if not self._clear(outer, f"model key {key!r} is inside the model {outer!r}"):
                return False
        start = len(self.cat.prefix)
        for obj in self.calls.list(self.cat.heads_below(key)):
            inner = head_key(obj.key[start:])
            if inner is None or inner == key:
                continue
            known = self.cat.known(inner, obj.etag)
            if known is not None and known.vacant:
                continue  # a removed model, as seen before: nothing to wait for
            if not self._clear(inner, f"model key {key!r} contains the model {inner!r}"):
                return False
        return True

    def _clear(self, other: str, nested: str) -> bool:
        """False if a live fill of ``other`` is in progress; raise if it is a model."""
        seen = self.cat.read_state(other)
        if seen is None:
            return True
        etag, state = seen
        if state.published:
            raise KeyValidationError(nested)
        if state.vacant:
            return True
        name = self.cat.head_name(other)
        if not self.leases.expired(name, etag, state.data):
            return False
        with contextlib.suppress(ConditionFailedError, FileNotFoundError):
            self.leases.vacate(name, other, etag)
            log.warning("released the expired fill lease %s", self.calls.uri(name))
        self.cat.forget(other)
        return True

    def _withdraw(self, claim: Claim) -> None:
        if self.claims.get(claim.key) is claim:
            del self.claims[claim.key]
        self.hold.drop(claim.lease)

    def end(self, claim: Claim) -> None:
        """Release the fill lock: a claim that was not published is withdrawn."""
        self._withdraw(claim)

    def vouches(self, key: str, *, below: bool = False) -> bool:
        """True if a live checked claim of this process proves that ``key`` is no model
        (with ``below``: nor has any model or fill below it).

        While this process holds a checked claim on a key, no model can be published at
        it, at an ancestor of it or below it (a fill of one would see the claim and give
        way), so the core's own nesting check needs no request.
        """
        now = self.clock()
        for claim in list(self.claims.values()):
            if not (claim.checked and claim.lease.valid(now)):
                continue
            if key == claim.key or (not below and claim.key.startswith(key + "/")):
                return True
        return False

    def filling(self, key: str) -> bool:
        """True while this process holds an unpublished claim on ``key``."""
        claim = self.claims.get(key)
        return claim is not None and not claim.published and claim.lease.valid(self.clock())

    def busy(self, key: str, attempt: str) -> bool:
        """True if this process is filling ``attempt`` of ``key``."""
        claim = self.claims.get(key)
        if claim is not None and claim.attempt == attempt:
            return True
        return self.cat.attempt_uri(key, attempt) in self.loose

    # -- stage, publish, discard --------------------------------------------------------

    def stage(self, key: str) -> str:
        """The URI of the attempt this fill writes to (no request, with a claim).

        A fill lock taken over a model that then vanished claims the key now. Without a
        claim (no fill lock, single-process use; or the key still published, as when a
        model of another version is refilled), a fresh attempt is made up and published
        later with a conditional create.
        """
        later = self.later.get(key)
        if later is not None and later.claim is None:
            # Still published (a refill of another version: the core removes the old
            # model once nobody holds it, then publishes): an attempt without a claim,
            # published with a conditional create.
            later.claim = self._claim(key, later.deadline)
        claim = self.claims.get(key)
        if claim is not None and not claim.published:
            return self.cat.attempt_uri(key, claim.attempt)
        body, attempt = new_published(key)
        uri = self.cat.attempt_uri(key, attempt)
        self.loose[uri] = (key, body)
        return uri

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        """Write the metadata record, then make the head name the attempt.

        Raises:
            FileExistsError: another model is published at ``key``.
            OSError: the claim was taken over by another host (this one paused past its
                lease): nothing is published.
        """
        skey, attempt = self.cat.parse_uri(staged)
        if skey != key:
            raise ValueError(f"{staged!r} is not where {key!r} is filled")
        claim = self.claims.get(key)
        if claim is not None and claim.attempt == attempt:
            body = claim.body
            meta_etag = self._put_surely(self.cat.meta_name(key, attempt), meta)
            etag = self._replace_claim(claim)
        else:
            loose = self.loose.get(staged)
            if loose is None:
                raise ValueError(f"{staged!r} was not staged by this storage")
            body = loose[1]
            meta_etag = self._put_surely(self.cat.meta_name(key, attempt), meta)
            etag = self._create_head(key, body, staged)
            del self.loose[staged]
        self.cat.classify(key, body, etag)
        self.cat.remember_meta(key, attempt, meta_etag, meta)
        self.cat.patch(key, published=True)

    def _put_surely(self, name: str, body: bytes) -> str:
        """PUT ``body``; after a transport failure, check whether it landed anyway."""
        try:
            return self.calls.put(name, body)
        except ConditionFailedError:
            raise
        except FileNotFoundError:
            raise
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                raw, etag = self.calls.get(name)
                if raw == body:
                    return etag
            raise

    def _replace_claim(self, claim: Claim) -> str:
        """Replace the claim with the published body (``IfMatch``); return the new ETag."""
        name = self.cat.head_name(claim.key)
        lease = claim.lease
        with lease.lock:  # no renewal in between
            error: OSError | None = None
            for round_ in range(_PUBLISH_TRIES):
                try:
                    etag = self.calls.put(name, claim.body, if_match=lease.etag)
                except OSError as exc:  # a lost response, a condition, a vanished claim
                    error = exc
                else:
                    return self._published(claim, etag)
                try:
                    current = self.calls.get(name)
                except FileNotFoundError:
                    current = None
                except OSError:
                    claim.uncertain = True
                    time.sleep(min(1.0, 0.1 * 2**round_))
                    continue
                if current is not None and current[0] == claim.body:
                    return self._published(claim, current[1])  # ours landed; its answer did not
                if current is None or current[1] != lease.etag:
                    lease.lost = True
                    return self._refuse(claim, current)
                time.sleep(min(1.0, 0.1 * 2**round_))  # still our claim: the PUT never landed
            claim.uncertain = True
            assert error is not None
            raise error

    def _published(self, claim: Claim, etag: str) -> str:
        claim.published = True
        claim.uncertain = False
        claim.lease.done = True  # the head is the model now: never renewed or released as a lease
        return etag

    def _refuse(self, claim: Claim, current: tuple[bytes, str] | None) -> str:
        uri = self.cat.attempt_uri(claim.key, claim.attempt)
        if current is not None and self.cat.classify(claim.key, *current).published:
            raise FileExistsError(errno.EEXIST, "another fill published this key first", uri)
        raise OSError(
            errno.ENOLCK,
            "the fill lease lapsed (this host paused longer than lease_ttl) and another "
            "host took the fill over; not publishing",
            uri,
        )

    def _create_head(self, key: str, body: bytes, staged: str) -> str:
        """Publish without a claim: create the head (``IfNoneMatch``), or replace a vacant
        one (``IfMatch`` on its ETag)."""
        name = self.cat.head_name(key)
        taken = FileExistsError(errno.EEXIST, "something else is stored at this key", staged)
        for _ in range(_PUBLISH_TRIES):
            vacant = self.cat.vacant(key)
            try:
                if vacant is not None:
                    return self.calls.put(name, body, if_match=vacant)
                return self.calls.put(name, body, create=True)
            except OSError as exc:
                lost = isinstance(exc, (ConditionFailedError, FileNotFoundError))
                try:
                    raw, etag = self.calls.get(name)
                except FileNotFoundError:
                    self.cat.forget(key)
                    if lost:
                        continue  # gone: create it
                    raise exc from None
                if raw == body:
                    return etag  # ours landed; its answer did not
                if not lost:
                    raise
                if not self.cat.classify(key, raw, etag).vacant:
                    raise taken from exc
                # made vacant again since: try over its new ETag
        raise taken

    def discard(self, staged: str) -> None:
        """Delete what the failed fill wrote: its own attempt, nothing else."""
        key, attempt = self.cat.parse_uri(staged)
        self.loose.pop(staged, None)
        claim = self.claims.get(key)
        if claim is not None and claim.attempt == attempt and (claim.published or claim.uncertain):
            return  # perhaps a model now: a sweep decides once the head can be read
        names = [o.key for o in self.calls.list(self.cat.attempt_prefix(key, attempt))]
        if names and self.hold.delete_packed([names]):
            raise OSError(errno.EIO, "could not delete the discarded fill; a sweep will", staged)
