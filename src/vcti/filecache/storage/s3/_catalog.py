"""Object names, listings, heads and cached metadata of one S3 cache root."""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ._client import ConditionFailedError, S3Calls
from ._head import ORPHAN, ORPHAN_PROBLEM, HeadState, etag_attempt, read_head
from ._lease import MAX_BODY, VACANT, Observations
from ._listing import HEAD, INNER, LEADER, META, MODELS, PINS, POLICY, Listing

# A scan is iter_models() followed by model_size(), read_record() and staging_size() for
# what it yielded; those reuse its listing for this long instead of asking S3 again.
_SCAN_REUSE = 30.0
_GET_WORKERS = 8  # concurrent GETs of changed heads and metadata after a listing
_META_PATIENCE = 60.0  # seconds of conditional writes lost to other hosts before giving up
_KNOWN_HEADS = 100_000  # published heads remembered (their ETag never changes)


class Catalog:
    """Names the objects of a root and remembers what listings and reads showed.

    The latest listing of the whole root, the state of each head seen (a published head
    never changes, so its ETag identifies it for good) and each model's metadata with
    its ETag are kept, so a scan costs its listing pages plus one GET per model whose
    metadata changed since it was read (and one per head it cannot identify).
    """

    def __init__(
        self, calls: S3Calls, prefix: str, root: str, observations: Observations, ttl: float
    ) -> None:
        self.calls = calls
        self.prefix = prefix
        self.root = root
        self.clock = observations.clock
        self.observations = observations
        self.ttl = ttl
        self.lock = threading.Lock()
        self.listing: Listing | None = None  # the latest listing of the whole root
        self._scan: Listing | None = None  # the latest one made by a scan
        self.heads: dict[str, tuple[str, HeadState]] = {}  # key -> (ETag, state) last seen
        self.metas: dict[str, tuple[str, str, bytes]] = {}  # key -> (attempt, ETag, record)

    def after_fork(self) -> None:
        """In a forked child: a new lock (a parent's thread may have held it)."""
        self.lock = threading.Lock()

    # -- names --------------------------------------------------------------------------

    def path(self, key: str) -> str:
        """The model's base URI (its attempts are below it)."""
        return f"{self.root}/{key}"

    def attempt_uri(self, key: str, attempt: str) -> str:
        """The URI of one attempt's files: what ``ModelDir.path`` is."""
        return f"{self.root}/{key}{INNER}{attempt}"

    def parse_uri(self, uri: str) -> tuple[str, str]:
        """``(key, attempt)`` of an attempt URI.

        Raises:
            ValueError: ``uri`` is not an attempt URI of this root.
        """
        head = self.root + "/"
        at = uri.find(INNER)
        key, attempt = uri[len(head) : at], uri[at + len(INNER) :]
        if not uri.startswith(head) or at <= len(head) or self.attempt_uri(key, attempt) != uri:
            raise ValueError(f"{uri!r} is not a fill of {self.root}")
        return key, attempt

    def head_name(self, key: str) -> str:
        """The head of ``key``."""
        return f"{self.prefix}{MODELS}{key}{HEAD}"

    def heads_below(self, key: str) -> str:
        """The prefix of the heads of ``key`` and every key below it."""
        return f"{self.prefix}{MODELS}{key}/"

    def attempt_prefix(self, key: str, attempt: str) -> str:
        """The prefix of every object of one attempt (files, metadata, pins)."""
        return f"{self.prefix}{key}{INNER}{attempt}"

    def files_prefix(self, key: str, attempt: str) -> str:
        """The prefix of one attempt's files."""
        return f"{self.attempt_prefix(key, attempt)}/"

    def meta_name(self, key: str, attempt: str) -> str:
        """One attempt's metadata record."""
        return f"{self.attempt_prefix(key, attempt)}{META}"

    def pin_prefix(self, key: str, attempt: str) -> str:
        """The prefix of one attempt's pin objects."""
        return f"{self.attempt_prefix(key, attempt)}{PINS}"

    def key_objects(self, key: str) -> str:
        """The prefix of every attempt of ``key`` (not of the keys below it)."""
        return f"{self.prefix}{key}{INNER}"

    @property
    def leader_name(self) -> str:
        """The leader lease."""
        return f"{self.prefix}{LEADER}"

    def policy_name(self, name: str) -> str:
        """Where the state of policy ``name`` is kept."""
        return f"{self.prefix}{POLICY}{name}"

    # -- heads --------------------------------------------------------------------------

    def classify(self, key: str, raw: bytes, etag: str) -> HeadState:
        """Classify a head body just read, and remember it."""
        state = read_head(raw, key, self.ttl)
        self._remember_head(key, etag, state)
        return state

    def _remember_head(self, key: str, etag: str, state: HeadState) -> None:
        with self.lock:
            if len(self.heads) >= _KNOWN_HEADS and key not in self.heads:
                self.heads.pop(next(iter(self.heads)))
            self.heads[key] = (etag, state)

    def known(self, key: str, etag: str) -> HeadState | None:
        """The state of the head of ``key`` if it was seen with ``etag`` before."""
        with self.lock:
            seen = self.heads.get(key)
        return seen[1] if seen is not None and seen[0] == etag else None

    def published(self, key: str) -> tuple[str, str] | None:
        """``(etag, attempt)`` of the published head of ``key`` as last seen, if any."""
        with self.lock:
            seen = self.heads.get(key)
        if seen is None or not seen[1].published:
            return None
        etag, state = seen
        assert state.attempt is not None
        return etag, state.attempt

    def vacant(self, key: str) -> str | None:
        """The ETag of the vacant head of ``key`` as last seen, if it was seen vacant."""
        with self.lock:
            seen = self.heads.get(key)
        return seen[0] if seen is not None and seen[1].vacant else None

    def vacated(self, key: str, etag: str) -> None:
        """Remember that this process made the head of ``key`` vacant (ETag ``etag``)."""
        self._remember_head(key, etag, HeadState(VACANT, None, {}))

    def read_state(self, key: str) -> tuple[str, HeadState] | None:
        """GET the head of ``key``: ``(etag, state)``, or None when there is none."""
        try:
            raw, etag = self.calls.get(self.head_name(key), limit=MAX_BODY)
        except FileNotFoundError:
            self.forget(key)
            return None
        return etag, self.classify(key, raw, etag)

    def current(self, key: str) -> tuple[str, str]:
        """``(etag, attempt)`` of the published model ``key`` (a GET unless known).

        Raises:
            FileNotFoundError: ``key`` is not a published model.
        """
        known = self.published(key)
        if known is not None:
            return known
        seen = self.read_state(key)
        if seen is None or not seen[1].published:
            raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
        assert seen[1].attempt is not None
        return seen[0], seen[1].attempt

    def forget(self, key: str) -> None:
        """Forget the head and metadata of ``key`` (it changed, or is gone)."""
        with self.lock:
            self.heads.pop(key, None)
            self.metas.pop(key, None)

    def resolve(self, listing: Listing) -> None:
        """Find which heads of ``listing`` are published and which attempt each names.

        A head seen before with the same ETag is known; a head whose ETag is the MD5 of a
        published body naming an attempt that has a metadata record is identified without
        a request; the others are read, a few at a time. A published head whose attempt
        has no object in the listing is no model (an orphan, for the sweep to check).

        Raises:
            OSError: a head could not be read (after the others were).
        """
        unknown: list[tuple[str, str]] = []
        for key, etag in list(listing.heads.items()):
            state = self.known(key, etag)
            if state is None:
                attempt = etag_attempt(etag)
                if attempt in listing.metas.get(key, {}):
                    listing.models[key] = attempt
                    continue
                unknown.append((key, etag))
                continue
            self._place(listing, key, state)

        def fetch(item: tuple[str, str]) -> tuple[str, tuple[str, HeadState] | OSError | None]:
            try:
                return item[0], self.read_state(item[0])
            except OSError as exc:
                return item[0], exc

        errors: list[OSError] = []
        if unknown:
            with ThreadPoolExecutor(min(_GET_WORKERS, len(unknown))) as pool:
                for key, seen in pool.map(fetch, unknown):
                    if isinstance(seen, OSError):
                        errors.append(seen)
                    elif seen is None:
                        listing.heads.pop(key, None)  # gone since the listing
                    else:
                        listing.heads[key] = seen[0]
                        self._place(listing, key, seen[1])
        for key, attempt in list(listing.models.items()):
            if attempt not in listing.attempts.get(key, {}):
                del listing.models[key]
                listing.claims[key] = HeadState(ORPHAN, attempt, {}, ORPHAN_PROBLEM)
        listing.settle()
        if errors:  # a partial answer would make the cache look smaller than it is
            raise errors[0]

    def _place(self, listing: Listing, key: str, state: HeadState) -> None:
        if state.vacant:
            listing.heads.pop(key, None)  # no model, no fill: as if it had no head
        elif state.published:
            assert state.attempt is not None
            listing.models[key] = state.attempt
        else:
            listing.claims[key] = state

    # -- listings -----------------------------------------------------------------------

    def list(self, below: str) -> Listing:
        """List the objects below ``PREFIX + below`` and sort them out (heads unresolved)."""
        start = len(self.prefix)
        objects = self.calls.list(self.prefix + below)
        listing = Listing.build(
            ((o.key[start:], o.size, o.etag) for o in objects), 0.0, self.prefix
        )
        listing.taken = self.clock()
        for pins in listing.pins.values():
            for attempt_pins in pins.values():
                for name, etag in attempt_pins:
                    self.observations.unchanged_for(name, etag)
        return listing

    def list_root(self, *, scan: bool = False) -> Listing:
        """List the whole root and resolve its heads; a ``scan`` also fetches metadata."""
        listing = self.list("")
        self.resolve(listing)
        for key in listing.claims:
            self.observations.unchanged_for(self.head_name(key), listing.heads[key])
        alive = {self.head_name(k) for k in listing.heads}
        alive.update(n for pins in listing.pins.values() for ps in pins.values() for n, _ in ps)
        heads = self.prefix + MODELS
        self.observations.keep_only(alive, lambda name: name.startswith(heads) or PINS in name)
        with self.lock:
            self.listing = listing
            for key in [k for k in self.metas if k not in listing.models]:
                del self.metas[key]
        if scan:
            self._prefetch_metas(listing)
            listing.taken = self.clock()
            with self.lock:
                self._scan = listing
        return listing

    def fresh_scan(self) -> Listing | None:
        """The listing of the scan in progress (made moments ago), if any."""
        scan = self._scan
        if scan is not None and self.clock() - scan.taken < _SCAN_REUSE:
            return scan
        return None

    def _prefetch_metas(self, listing: Listing) -> None:
        """GET the metadata that changed since it was last read, a few at a time."""
        with self.lock:
            wanted = [
                (key, attempt, etag)
                for key, attempt in listing.models.items()
                if (etag := listing.metas.get(key, {}).get(attempt)) is not None
                and self.metas.get(key, ("", "", b""))[:2] != (attempt, etag)
            ]
        if len(wanted) < 2:
            return  # read_record() will GET it

        def fetch(item: tuple[str, str, str]) -> None:
            key, attempt, _ = item
            try:
                body, etag = self.calls.get(self.meta_name(key, attempt))
            except OSError:
                return  # read_record() will try again and report
            self.remember_meta(key, attempt, etag, body)
            listing.metas.setdefault(key, {})[attempt] = etag

        with ThreadPoolExecutor(min(_GET_WORKERS, len(wanted))) as pool:
            list(pool.map(fetch, wanted))

    def patch(self, key: str, *, published: bool = False, gone: bool = False) -> None:
        """Bring the kept listings up to date with a change this process made."""
        with self.lock:
            for listing in (self.listing, self._scan):
                if listing is None:
                    continue
                if published:
                    listing.dirty.add(key)
                if gone:
                    listing.models.pop(key, None)
                    listing.sizes.pop(key, None)
                    listing.heads.pop(key, None)
            if gone:
                self.metas.pop(key, None)
                self.heads.pop(key, None)

    # -- sizes and metadata -------------------------------------------------------------

    def model_size(self, key: str) -> int:
        """The bytes of model ``key``, from the scan in progress or from a listing."""
        with self.lock:
            scan = self.fresh_scan()
            if scan is not None and key in scan.sizes and key not in scan.dirty:
                return scan.sizes[key]
        _, attempt = self.current(key)
        prefix = self.files_prefix(key, attempt)
        return sum(o.size for o in self.calls.list(prefix))

    def staging_size(self) -> int:
        """The bytes of attempts that are not published."""
        with self.lock:
            scan = self.fresh_scan()
            if scan is not None:
                return scan.staging
        return self.list_root().staging

    def remember_meta(self, key: str, attempt: str, etag: str, meta: bytes) -> None:
        """Remember the metadata of attempt ``attempt`` as written or read with ``etag``."""
        with self.lock:
            self.metas[key] = (attempt, etag, meta)

    def read_record(self, key: str) -> bytes:
        """The metadata of the published model, unchanged since the scan or read again."""
        with self.lock:
            scan, cached = self.fresh_scan(), self.metas.get(key)
            if scan is not None and cached is not None and key in scan.models:
                attempt = scan.models[key]
                if scan.metas.get(key, {}).get(attempt) == cached[1] and cached[0] == attempt:
                    return cached[2]
        _, attempt = self.current(key)
        body, etag = self.calls.get(self.meta_name(key, attempt))
        self.remember_meta(key, attempt, etag, body)
        return body

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        """Replace the metadata with ``update(current)``: a GET and a conditional PUT.

        The PUT carries ``IfMatch`` with the ETag that was read (``IfNoneMatch`` when the
        record is missing), so a concurrent update from another host makes it fail
        (412); it is then read again and redone, so no increment is ever lost. The ETag
        and body kept from a scan or from this process's previous write save the GET
        when nothing changed since. The record belongs to the published attempt: once
        the model is evicted, updates fail with ``FileNotFoundError``.
        """
        _, attempt = self.current(key)
        name = self.meta_name(key, attempt)
        with self.lock:
            cached = self.metas.get(key)
        known: tuple[str | None, bytes | None] | None = None
        if cached is not None and cached[0] == attempt:
            known = (cached[1], cached[2])
        deadline = self.clock() + _META_PATIENCE
        attempts = 0
        while self.clock() < deadline:
            attempts += 1
            if known is None:
                known = self._read_record_or_none(key, name)
            etag, body = known
            new = update(body)
            try:
                if etag is None:
                    new_etag = self.calls.put(name, new, create=True)
                else:
                    new_etag = self.calls.put(name, new, if_match=etag)
            except FileNotFoundError:
                self.patch(key, gone=True)
                raise
            except ConditionFailedError as exc:
                current = self._read_record_or_none(key, name)
                if not exc.retried or current[1] != new:  # not our own retried write landing
                    known = current
                    time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** min(attempts, 10))))
                    continue
                new_etag = current[0] or ""
            self.remember_meta(key, attempt, new_etag, new)
            return
        raise OSError(
            errno.EBUSY,
            f"the metadata kept changing for {_META_PATIENCE:.0f}s ({attempts} updates lost)",
            self.path(key),
        )

    def _read_record_or_none(self, key: str, name: str) -> tuple[str | None, bytes | None]:
        """``(etag, body)`` of a metadata record; ``(None, None)`` if the model has none.

        Raises:
            FileNotFoundError: the model is gone, or was replaced by a new fill.
        """
        try:
            body, etag = self.calls.get(name)
        except FileNotFoundError:
            self.forget(key)
            _, attempt = self.current(key)  # read afresh: is the model still there?
            if name != self.meta_name(key, attempt):
                raise
            return None, None
        return etag, body
