"""Leases on S3 made of conditional writes, and the thread that keeps them alive.

A lease is one small object. It is taken by creating it (``IfNoneMatch="*"``), renewed
and released only if it still has the ETag its holder wrote (``IfMatch``). Its body
changes on every write, so its ETag (the MD5 of the body) does too. Clocks of different
hosts are never compared: a host considers another's lease expired only after it has
seen the same ETag, unchanged, for longer than the TTL on its own monotonic clock. The
holder treats its lease as valid until the TTL has passed since it last started a
successful write, which is never later than any other host can decide it expired.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ._client import ConditionFailedError, S3Calls

log = logging.getLogger("vcti.filecache")


@dataclass(eq=False)
class Lease:
    """A lease object this process holds."""

    name: str
    key: str
    etag: str
    deadline: float
    renew_at: float
    lost: bool = False
    done: bool = False
    keep: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def valid(self, now: float, margin: float = 0.0) -> bool:
        """True while no other host can have taken the lease over, ``margin`` seconds ahead."""
        return not self.lost and not self.done and now + margin < self.deadline


@dataclass(eq=False)
class PinRecord:
    """A pin object of this process on one model, shared by every pin of it here."""

    key: str
    lease: Lease
    refs: int = 1
    released_at: float = 0.0
    dead: bool = False

    def usable(self, now: float, margin: float) -> bool:
        """True if a new pin may share this object without asking S3."""
        return not self.dead and self.lease.valid(now, margin)


def lease_body(holder: str, key: str, ttl: float) -> tuple[bytes, str]:
    """Return a fresh lease body and its nonce (so every write has a new ETag)."""
    nonce = uuid.uuid4().hex
    now = time.time()  # for people reading the object: hosts never compare clocks
    body = {
        "holder": holder,
        "key": key,
        "ttl": ttl,
        "nonce": nonce,
        "written": now,
        "expires": now + ttl,
    }
    return json.dumps(body, separators=(",", ":")).encode(), nonce


def _parse(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


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


class Leases:
    """Takes, renews and releases lease objects for one process (``holder``)."""

    def __init__(self, calls: S3Calls, holder: str, ttl: float, clock: Callable[[], float]) -> None:
        self.calls = calls
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.observations = Observations(clock)

    def _held(self, name: str, key: str, etag: str, started: float) -> Lease:
        return Lease(name, key, etag, started + self.ttl, started + self.ttl / 3)

    def acquire(self, name: str, key: str, *, look_first: bool = False) -> Lease | None:
        """Take the lease ``name``; None while another holder's lease is alive.

        A lease is taken over once this process has seen it unchanged for longer than
        the TTL (the larger of ours and the one in its body). With ``look_first``, the
        lease is read before trying to create it: one request, not two, while another
        process holds it (for the leader lease, tried at every cycle).
        """
        body, nonce = lease_body(self.holder, key, self.ttl)
        current: dict[str, object] | None = None
        if look_first:
            try:
                raw, etag = self.calls.get(name)
                current = _parse(raw)
            except FileNotFoundError:
                pass
        if current is None:
            started = self.clock()
            try:
                return self._held(name, key, self.calls.put(name, body, create=True), started)
            except ConditionFailedError:
                pass
            try:
                raw, etag = self.calls.get(name)
            except FileNotFoundError:
                return None  # released in between: the next attempt may create it
            current = _parse(raw)
            if current.get("nonce") == nonce:
                return self._held(name, key, etag, started)  # our create landed; a retry lost
        ttl = current.get("ttl")
        limit = max(self.ttl, float(ttl) if isinstance(ttl, (int, float)) else 0.0)
        if self.observations.unchanged_for(name, etag) <= limit:
            return None
        body, nonce = lease_body(self.holder, key, self.ttl)
        started = self.clock()
        try:
            lease = self._held(name, key, self.calls.put(name, body, if_match=etag), started)
        except (ConditionFailedError, FileNotFoundError):
            landed = self._landed(name, nonce)
            if landed is None:
                return None  # another process took it over (or released it) first
            lease = self._held(name, key, landed, started)
        log.warning("took over the expired lease %s", self.calls.uri(name))
        return lease

    def renew(self, lease: Lease, *, due_at: float | None = None) -> None:
        """Rewrite the lease with a new body; mark it lost if another process has it.

        With ``due_at``, do nothing unless a renewal is due by then (another thread may
        have just renewed it).

        Raises:
            OSError: S3 could not be reached; the lease stays valid until its deadline.
        """
        with lease.lock:
            if lease.lost or lease.done or (due_at is not None and lease.renew_at > due_at):
                return
            body, nonce = lease_body(self.holder, lease.key, self.ttl)
            started = self.clock()
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

    def _landed(self, name: str, nonce: str) -> str | None:
        """Return the ETag if the object holds our write ``nonce`` (a retried request lost)."""
        try:
            raw, etag = self.calls.get(name)
        except FileNotFoundError:
            return None
        return etag if _parse(raw).get("nonce") == nonce else None

    def release(self, lease: Lease, *, delete: bool = True) -> None:
        """Stop holding the lease; delete it if it is still ours (unless ``delete`` is False).

        A lease kept (``delete=False``) expires by itself: it marks work left unfinished,
        for another process's sweep. Errors are logged, not raised.
        """
        with lease.lock:
            if lease.done:
                return
            lease.done = True
            if lease.lost or not delete:
                return
            try:
                self.calls.delete(lease.name, if_match=lease.etag)
            except (ConditionFailedError, FileNotFoundError):
                pass  # taken over or gone: not ours to delete any more
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
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def wake(self) -> None:
        """Run ``tick`` soon, starting the thread if needed (also in a forked child)."""
        with self._lock:
            self._event.set()
            if self._pid != os.getpid():  # forked: the parent's thread is not here
                self._pid, self._thread = os.getpid(), None
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
