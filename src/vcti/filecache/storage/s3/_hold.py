"""What one S3Storage holds (leases, pins) and the thread that keeps it alive."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ._client import DELETE_BATCH, S3Calls
from ._lease import Keeper, Lease, Leases, PinRecord

log = logging.getLogger("vcti.filecache")


class Handle:
    """A held lock as the core sees it (a ``LeaseLock``).

    ``release()`` runs ``on_release`` once; ``lost`` asks ``is_lost`` (by default never).
    """

    __slots__ = ("_is_lost", "_on_release")

    def __init__(
        self, on_release: Callable[[], None], is_lost: Callable[[], bool] | None = None
    ) -> None:
        self._on_release: Callable[[], None] | None = on_release
        self._is_lost = is_lost

    @property
    def lost(self) -> bool:
        """True once the lease behind this lock lapsed or was taken over."""
        return self._is_lost is not None and self._is_lost()

    def release(self) -> None:
        """Give the lock up; calling it twice is harmless."""
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release()


class Holdings:
    """The leases and pins of one process, renewed by a background thread.

    Args:
        calls: the requests.
        leases: takes, renews and releases lease objects.
        thread_name: names the keeper thread.
        more_work: called at each keeper tick; returns when it wants the next one (or
            None) after doing the storage's own timed work.
    """

    def __init__(
        self,
        calls: S3Calls,
        leases: Leases,
        thread_name: str,
        more_work: Callable[[float], float | None],
    ) -> None:
        self.calls = calls
        self.leases = leases
        self.ttl = leases.ttl
        self.clock = leases.clock
        self._more_work = more_work
        self.keeper = Keeper(thread_name, self._tick)
        self.after_fork()

    def after_fork(self) -> None:
        """Start empty, with new locks: in a forked child, the parent's leases and pins
        stay the parent's (never renewed, released or deleted here)."""
        self.lock = threading.Lock()
        self.leader: Lease | None = None
        self._held: set[Lease] = set()
        self._pins: dict[str, PinRecord] = {}  # key -> the pin object new pins share
        self._records: set[PinRecord] = set()  # every pin object of this process
        self.keeper.after_fork()

    # -- leases -------------------------------------------------------------------------

    def hold(self, lease: Lease) -> None:
        """Renew ``lease`` in the background until :meth:`drop`."""
        with self.lock:
            self._held.add(lease)
        self.keeper.wake()

    def drop(self, lease: Lease, *, delete: bool = True) -> None:
        """Stop renewing ``lease`` and release it (or let it expire: ``delete=False``)."""
        with self.lock:
            self._held.discard(lease)
        self.leases.release(lease, delete=delete)

    def leader_lost(self) -> bool:
        """True if this process leads but its lease lapsed or was taken."""
        leader = self.leader
        return leader is not None and leader.lapsed(self.clock())

    def lease_lost(self, lease: Lease) -> bool:
        """True once ``lease`` lapsed or was taken over (or is a parent's, after a fork)."""
        return lease.lapsed(self.clock())

    def renew_due(self, now: float) -> None:
        """Renew the held leases whose renewal is due."""
        with self.lock:
            due = [lease for lease in self._held if lease.renew_at <= now]
            due += [r.lease for r in self._records if r.refs > 0 and r.lease.renew_at <= now]
        for lease in due:
            try:
                renewed = self.leases.renew(lease, due_at=now)
            except OSError as exc:
                log.warning("could not renew %s: %s", self.calls.uri(lease.name), exc)
                renewed = False
            if not renewed:  # failed, or busy in another thread: try again shortly
                lease.renew_at = max(lease.renew_at, now + min(1.0, self.ttl / 10))

    # -- pins ---------------------------------------------------------------------------

    def share_pin(self, key: str, now: float) -> PinRecord | None:
        """Count one more pin on this process's pin object of ``key``, if it is usable."""
        with self.lock:
            record = self._pins.get(key)
            if record is None or not record.usable(now, self.ttl / 3):
                return None
            record.refs += 1
            return record

    def add_pin(self, record: PinRecord) -> None:
        """Register a new pin object (held once)."""
        with self.lock:
            self._pins[record.key] = record
            self._records.add(record)
        self.keeper.wake()

    def unpin(self, record: PinRecord) -> None:
        """Count one pin less; the object is deleted a little after the last one."""
        with self.lock:
            if record not in self._records:
                return  # a parent's pin, in a forked child
            record.refs -= 1
            if record.refs == 0:
                record.released_at = self.clock()
        self.keeper.wake()

    def pin_lost(self, record: PinRecord) -> bool:
        """True if the pin object of ``record`` lapsed (or is a parent's, after a fork)."""
        return record.lease.lapsed(self.clock())

    def pinned_here(self, key: str) -> bool:
        """True if this process holds a pin of ``key``."""
        with self.lock:
            return any(r.key == key and r.refs > 0 for r in self._records)

    def bury(self, key: str, attempt: str) -> frozenset[str]:
        """Mark this process's pin objects of an evicted attempt as going with it."""
        with self.lock:
            own = [r for r in self._records if r.key == key and r.attempt == attempt]
            for record in own:
                record.dead = True
        return frozenset(r.lease.name for r in own)

    def pinned(self, pins: list[tuple[str, str]], ignore: frozenset[str] = frozenset()) -> bool:
        """True if one of ``pins`` (``(name, etag)``) is held by a live process.

        Another process's pin is live until this one has seen it unchanged for longer
        than the TTL (its holder rewrites it every third of the TTL).
        """
        with self.lock:
            ours = {r.lease.name: r for r in self._records}
        for name, etag in pins:
            if name in ignore:
                continue
            record = ours.get(name)
            if record is not None:
                if record.refs > 0:
                    return True
                continue  # released here: it goes with the attempt
            if self.leases.observations.unchanged_for(name, etag) <= self.ttl:
                return True
        return False

    def expired_pins(self, pins: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The pins of other processes seen unchanged for longer than the TTL."""
        with self.lock:
            ours = {r.lease.name for r in self._records}
        unchanged_for = self.leases.observations.unchanged_for
        return [(n, e) for n, e in pins if n not in ours and unchanged_for(n, e) > self.ttl]

    def take_old_pins(self, now: float, *, force: bool) -> list[str]:
        """Forget this process's pins no longer held; return the objects to delete."""
        linger = self.ttl / 3
        with self.lock:
            old = [
                r
                for r in self._records
                if r.refs == 0 and (force or r.dead or now >= r.released_at + linger)
            ]
            for record in old:
                self._records.discard(record)
                if self._pins.get(record.key) is record:
                    del self._pins[record.key]
        # A dead pin goes with its attempt; a lost one is not ours any more.
        return [r.lease.name for r in old if not r.dead and not r.lease.lost]

    # -- deleting -----------------------------------------------------------------------

    def delete_packed(self, groups: list[list[str]]) -> set[int]:
        """Delete the keys of every group in DeleteObjects batches of up to 1,000 keys.

        Every key names an object of a dead attempt, a pin or a lease this process owns:
        deleting it late (after a pause) harms nobody, so no lease is checked. Each
        batch's ``Errors`` are checked. Returns the indexes of the groups not completely
        deleted.
        """
        failed: set[int] = set()
        items = [(index, key) for index, keys in enumerate(groups) for key in keys]
        for start in range(0, len(items), DELETE_BATCH):
            chunk = items[start : start + DELETE_BATCH]
            try:
                errors = self.calls.delete_batch([key for _, key in chunk])
            except OSError as exc:
                log.warning("could not delete %d objects: %s", len(chunk), exc)
                failed |= {index for index, _ in chunk}
                continue
            if errors:
                log.warning("%d objects were not deleted, e.g. %s", len(errors), errors[0])
                bad = {key for key, _ in errors}
                failed |= {index for index, key in chunk if key in bad}
        return failed

    # -- the keeper thread --------------------------------------------------------------

    def _tick(self) -> float | None:
        now = self.clock()
        self.renew_due(now)
        names = self.take_old_pins(now, force=False)
        if names:
            self.delete_packed([names])  # a failure leaves them to expire
        more = self._more_work(now)
        now = self.clock()
        linger = self.ttl / 3
        with self.lock:
            times = [lease.renew_at for lease in self._held if not lease.lost]
            times += [
                r.lease.renew_at if r.refs else r.released_at + linger
                for r in self._records
                if r.refs == 0 or not r.lease.lost
            ]
        if more is not None:
            times.append(more)
        if not times:
            return None
        return max(0.0, min(times) - now)
