"""Leases on S3 made of conditional writes, and the thread that keeps them alive.

A lease is one small object. It is taken by creating it (``IfNoneMatch="*"``), renewed
and released only if it still has the ETag its holder wrote (``IfMatch``). Releasing it
writes a *vacant* body over it (``IfMatch`` too), never deletes it: a delete cannot be
fenced on servers that ignore its condition (Ceph's gateway), and a late one would
remove whatever another host wrote since. A vacant lease is taken at once, with
``IfMatch`` on the vacant body's ETag. Its body
changes on every write, so its ETag (the MD5 of the body) does too. Clocks of different
hosts are never compared: a host considers another's lease expired only after it has
seen the same ETag, unchanged, for longer than the TTL on its own monotonic clock (the
TTL in the body when it is larger and plausible; a body whose TTL is not a finite
number, or is above :data:`TTL_FACTOR` times the reader's own, is corrupt and expires
after the reader's own TTL). The holder treats its lease as valid until the TTL has
passed since it last started a successful write, which is never later than any other
host can decide it expired; a lease not renewed by then is lost for good, even if no
other host took it, because one may have acted on its expiry.

A lease belongs to the process that took it: after ``fork()`` the child neither renews
nor releases its parent's leases, and sees them as lost.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ._client import ConditionFailedError, S3Calls

log = logging.getLogger("vcti.filecache")

#: A lease body whose TTL is above this many times the reader's own TTL is corrupt.
TTL_FACTOR = 10
#: Lease and head bodies are a few hundred bytes; anything larger is corrupt.
MAX_BODY = 64 * 1024
#: The state of a released lease or a removed head.
VACANT = "vacant"


@dataclass(eq=False)
class Lease:
    """A lease object this process holds.

    ``extra`` fields are written into every body (a fill's claim names its attempt).
    """

    name: str
    key: str
    etag: str
    deadline: float
    renew_at: float
    extra: dict[str, str] = field(default_factory=dict)
    lost: bool = False
    done: bool = False
    pid: int = field(default_factory=os.getpid)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def valid(self, now: float, margin: float = 0.0) -> bool:
        """True while no other host can have taken the lease over, ``margin`` seconds ahead."""
        return (
            not self.lost
            and not self.done
            and self.pid == os.getpid()
            and now + margin < self.deadline
        )

    def lapsed(self, now: float) -> bool:
        """True once the lease was lost, or not renewed in time, or belongs to a parent."""
        return self.lost or self.pid != os.getpid() or (not self.done and now >= self.deadline)


@dataclass(eq=False)
class PinRecord:
    """A pin object of this process on one attempt of a model, shared by its pins here."""

    key: str
    attempt: str
    lease: Lease
    refs: int = 1
    released_at: float = 0.0
    dead: bool = False

    def usable(self, now: float, margin: float) -> bool:
        """True if a new pin may share this object without asking S3."""
        return not self.dead and self.lease.valid(now, margin)


def lease_body(
    holder: str, key: str, ttl: float, extra: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """Return a fresh lease body and its nonce (so every write has a new ETag)."""
    nonce = uuid.uuid4().hex
    now = time.time()  # for people reading the object: hosts never compare clocks
    body: dict[str, object] = dict(extra or {})
    body.update(holder=holder, key=key, ttl=ttl, nonce=nonce, written=now, expires=now + ttl)
    return json.dumps(body, separators=(",", ":")).encode(), nonce


def vacant_body(key: str) -> bytes:
    """A fresh body of a released lease (or of a removed head): the object stays, free."""
    body = {"state": VACANT, "key": key, "nonce": uuid.uuid4().hex, "written": time.time()}
    return json.dumps(body, separators=(",", ":")).encode()


def is_vacant(data: dict[str, object]) -> bool:
    """True for the body of a released lease or removed head."""
    return data.get("state") == VACANT


def parse_body(raw: bytes) -> dict[str, object]:
    """Decode a lease or head body; ``{}`` when it is not a JSON object of a sane size."""
    if len(raw) > MAX_BODY:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def lease_problem(data: dict[str, object], own_ttl: float) -> str | None:
    """What makes ``data`` a corrupt lease body, or None if it is a plausible one."""
    if not isinstance(data.get("holder"), str) or not isinstance(data.get("nonce"), str):
        return "not a lease body"
    ttl = data.get("ttl")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        return f"its ttl {ttl!r} is not a number"
    if not math.isfinite(ttl) or ttl <= 0:
        return f"its ttl {ttl!r} is not a positive finite number"
    if ttl > TTL_FACTOR * own_ttl:
        return f"its ttl {ttl!r} is above {TTL_FACTOR} times this host's lease_ttl ({own_ttl})"
    return None


def lease_limit(data: dict[str, object], own_ttl: float) -> float:
    """Seconds a lease must stay unchanged before it is taken over.

    The larger of ``own_ttl`` and the TTL in a plausible body; ``own_ttl`` for a corrupt
    one, so that a damaged object can never block a lease forever.
    """
    ttl = data.get("ttl")
    if lease_problem(data, own_ttl) is not None or not isinstance(ttl, (int, float)):
        return own_ttl
    return max(own_ttl, float(ttl))


@dataclass
class Observations:
    """When this process first saw each lease or pin object with its current ETag."""

    clock: Callable[[], float]
    seen: dict[str, tuple[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def unchanged_for(self, name: str, etag: str) -> float:
        """Record a sighting; return for how long ``name`` has been seen with ``etag``."""
        now = self.clock()
        with self.lock:
            old = self.seen.get(name)
            if old is None or old[0] != etag:
                self.seen[name] = (etag, now)
                return 0.0
            return now - old[1]

    def keep_only(self, names: Iterable[str], listed: Callable[[str], bool]) -> None:
        """Forget the objects a listing would show (``listed``) that it did not show."""
        alive = set(names)
        with self.lock:
            for name in [n for n in self.seen if listed(n) and n not in alive]:
                del self.seen[name]

    def after_fork(self) -> None:
        """In a forked child: a new lock (a parent's thread may have held it)."""
        self.lock = threading.Lock()


class Leases:
    """Takes, renews and releases lease objects for one process (``holder``)."""

    def __init__(self, calls: S3Calls, holder: str, ttl: float, clock: Callable[[], float]) -> None:
        self.calls = calls
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.observations = Observations(clock)

    def held(
        self, name: str, key: str, etag: str, started: float, extra: dict[str, str] | None = None
    ) -> Lease:
        """The lease written with ``etag`` by a request started at ``started``."""
        return Lease(name, key, etag, started + self.ttl, started + self.ttl / 3, dict(extra or {}))

    def read(self, name: str) -> tuple[dict[str, object], str] | None:
        """The decoded body and ETag of lease ``name``; None when there is none."""
        try:
            raw, etag = self.calls.get(name, limit=MAX_BODY)
        except FileNotFoundError:
            return None
        return parse_body(raw), etag

    def expired(self, name: str, etag: str, data: dict[str, object]) -> bool:
        """True once this process has seen ``name`` unchanged for longer than its limit."""
        return self.observations.unchanged_for(name, etag) > lease_limit(data, self.ttl)

    def create(self, name: str, key: str, extra: dict[str, str] | None = None) -> Lease | None:
        """Create lease ``name``; None if it exists (and is not our own retried write)."""
        body, nonce = lease_body(self.holder, key, self.ttl, extra)
        started = self.clock()
        try:
            return self.held(name, key, self.calls.put(name, body, create=True), started, extra)
        except ConditionFailedError as exc:
            if not exc.retried:
                return None
        etag = self._landed(name, nonce)  # an earlier attempt of ours may have created it
        return None if etag is None else self.held(name, key, etag, started, extra)

    def take_over(
        self,
        name: str,
        key: str,
        etag: str,
        extra: dict[str, str] | None = None,
        *,
        vacant: bool = False,
    ) -> Lease | None:
        """Replace the expired (or ``vacant``) lease ``name`` (ETag ``etag``); None if
        another host did first."""
        body, nonce = lease_body(self.holder, key, self.ttl, extra)
        started = self.clock()
        try:
            new = self.calls.put(name, body, if_match=etag)
        except (ConditionFailedError, FileNotFoundError):
            landed = self._landed(name, nonce)
            if landed is None:
                return None  # another process took it over (or released it) first
            new = landed
        if not vacant:
            log.warning("took over the expired lease %s", self.calls.uri(name))
        return self.held(name, key, new, started, extra)

    def acquire(self, name: str, key: str, *, look_first: bool = False) -> Lease | None:
        """Take the lease ``name``; None while another holder's lease is alive.

        With ``look_first``, the lease is read before trying to create it: one request,
        not two, while another process holds it (for the leader lease, tried at every
        cycle).
        """
        current = self.read(name) if look_first else None
        if current is None:
            lease = self.create(name, key)
            if lease is not None:
                return lease
            current = self.read(name)
            if current is None:
                return None  # released in between: the next attempt may create it
        data, etag = current
        if is_vacant(data):
            return self.take_over(name, key, etag, vacant=True)
        if not self.expired(name, etag, data):
            return None
        return self.take_over(name, key, etag)

    def renew(self, lease: Lease, *, due_at: float | None = None) -> bool:
        """Rewrite the lease with a new body; mark it lost if it lapsed or another took it.

        With ``due_at``, do nothing unless a renewal is due by then (another thread may
        have just renewed it). Returns False, doing nothing, while another thread works
        on the lease (a publish that retries must not hold up every other renewal).

        Raises:
            OSError: S3 could not be reached; the lease stays valid until its deadline.
        """
        if not lease.lock.acquire(blocking=False):
            return False
        try:
            self._renew(lease, due_at)
        finally:
            lease.lock.release()
        return True

    def _renew(self, lease: Lease, due_at: float | None) -> None:
        if lease.lost or lease.done or lease.pid != os.getpid():
            return
        if due_at is not None and lease.renew_at > due_at:
            return
        started = self.clock()
        if started >= lease.deadline:
            # Not renewed in time (a paused host): another may have acted on it.
            lease.lost = True
            log.warning("the lease %s lapsed before it was renewed", self.calls.uri(lease.name))
            return
        body, nonce = lease_body(self.holder, lease.key, self.ttl, lease.extra)
        try:
            etag: str | None = self.calls.put(lease.name, body, if_match=lease.etag)
        except (ConditionFailedError, FileNotFoundError):
            etag = self._landed(lease.name, nonce)
        if etag is None:
            lease.lost = True
            log.warning("lost the lease %s", self.calls.uri(lease.name))
            return
        lease.etag = etag
        lease.deadline = started + self.ttl
        lease.renew_at = started + self.ttl / 3

    def vacate(self, name: str, key: str, etag: str) -> str:
        """Write a vacant body over ``name`` if it still has ``etag``; return the new ETag.

        Raises:
            ConditionFailedError: it changed since (or is gone: ``FileNotFoundError``).
        """
        return self.calls.put(name, vacant_body(key), if_match=etag)

    def _landed(self, name: str, nonce: str) -> str | None:
        """Return the ETag if the object holds our write ``nonce`` (a retried request lost)."""
        current = self.read(name)
        if current is None:
            return None
        data, etag = current
        return etag if data.get("nonce") == nonce else None

    def release(self, lease: Lease, *, delete: bool = True) -> None:
        """Stop holding the lease; mark it vacant if it is still ours (unless ``delete``
        is False).

        A lease kept (``delete=False``) expires by itself. A lost lease is marked vacant
        only if it still has our ETag (it lapsed, and nobody took it). A parent's lease is
        never touched by a forked child. Errors are logged, not raised.
        """
        with lease.lock:
            if lease.done:
                return
            lease.done = True
            if not delete or lease.pid != os.getpid():
                return
            try:
                self.vacate(lease.name, lease.key, lease.etag)
            except (ConditionFailedError, FileNotFoundError):
                pass  # taken over or gone: not ours to release any more
            except OSError as exc:
                log.warning("could not release the lease %s: %s", self.calls.uri(lease.name), exc)


class Keeper:
    """A daemon thread that calls ``tick`` until it reports nothing left to keep.

    ``tick`` returns the seconds until it wants to run again, or None when idle; the
    thread then ends, and :meth:`wake` starts a new one when there is work again.
    """

    def __init__(self, name: str, tick: Callable[[], float | None]) -> None:
        self._name = name
        self._tick = tick
        self.after_fork()

    def after_fork(self) -> None:
        """Forget the thread (a forked child has none) and make new locks."""
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def wake(self) -> None:
        """Run ``tick`` soon, starting the thread if needed (also in a forked child)."""
        if self._pid != os.getpid():  # forked, and the handler did not run (a bare fork)
            self.after_fork()
        with self._lock:
            self._event.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._event.clear()
            try:
                delay = self._tick()
            except Exception:  # the keeper must survive anything a tick raises
                log.exception("S3 storage keeper failed")
                delay = 1.0
            with self._lock:
                if delay is None and not self._event.is_set():
                    self._thread = None
                    return
            self._event.wait(0.0 if delay is None else delay)
