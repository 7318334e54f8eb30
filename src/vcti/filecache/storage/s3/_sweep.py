"""Sweeping and checking an S3 cache root: what nobody holds any more, and what is corrupt.

Every deletion here is safe however late it lands: an attempt is deleted only once its
head names another attempt or none (it can never be published again, because only its
own claim could publish it and that claim is gone), and only while no live pin holds it.
Heads and leases are never deleted: they are made vacant with a conditional PUT
(``IfMatch`` on the ETag that was judged). A pin seen expired is made vacant the same
way first, so its holder can no longer renew it, and only then deleted: pin names are
never reused, so that delete cannot remove anything live.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from ._catalog import Catalog
from ._client import ConditionFailedError, S3Calls
from ._hold import Holdings
from ._lease import Leases, is_vacant, lease_problem
from ._listing import Listing, head_key

log = logging.getLogger("vcti.filecache")


class Sweeper:
    """Reclaims leftovers and reports (or repairs) corrupt objects of one root.

    Args:
        busy: ``busy(key, attempt)`` is True while this process fills that attempt or
            is about to delete it (an eviction waiting for its batched delete).
    """

    def __init__(
        self,
        calls: S3Calls,
        leases: Leases,
        hold: Holdings,
        cat: Catalog,
        busy: Callable[[str, str], bool],
    ) -> None:
        self.calls = calls
        self.leases = leases
        self.hold = hold
        self.cat = cat
        self.busy = busy

    # -- sweeping -----------------------------------------------------------------------

    def sweep(self, listing: Listing) -> int:
        """Reclaim what ``listing`` shows nobody holds; return the bytes freed.

        Expired (or corrupt) fill claims are made vacant, then every attempt that no head
        names and no live pin holds is deleted, then the pins seen expired.

        Raises:
            OSError: some leftovers could not be reclaimed (the rest was); they are
                retried at the next sweep.
        """
        errors: list[OSError] = []
        for key in sorted(listing.claims):
            try:
                self._drop_dead_claim(listing, key)
            except OSError as exc:
                errors.append(exc)
        freed = 0
        for key in sorted(listing.attempts):
            try:
                freed += self._reclaim_attempts(listing, key)
            except OSError as exc:
                errors.append(exc)
        for name, etag in self.hold.expired_pins(_all_pins(listing)):
            try:
                self.leases.vacate(name, "", etag)
                self.calls.delete(name)
            except (ConditionFailedError, FileNotFoundError):
                pass  # rewritten or deleted meanwhile
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise OSError(
                errno.EIO, f"{len(errors)} leftovers could not be reclaimed, e.g. {errors[0]}"
            ) from errors[0]
        return freed

    def _drop_dead_claim(self, listing: Listing, key: str) -> bool:
        """Make the head of ``key`` vacant if it is a claim (or corrupt) seen expired."""
        state = listing.claims[key]
        etag = listing.heads.get(key)
        if etag is None or self.busy(key, state.attempt or ""):
            return False
        name = self.cat.head_name(key)
        if not self.leases.expired(name, etag, state.data):
            return False
        if state.orphan and not self._still_orphan(key, state.attempt):
            return False
        try:
            vacant = self.leases.vacate(name, key, etag)
        except (ConditionFailedError, FileNotFoundError):
            return False  # renewed, published or removed meanwhile
        what = state.problem or "expired fill lease"
        log.warning("released the head %s (%s)", self.calls.uri(name), what)
        del listing.claims[key]
        listing.heads.pop(key, None)
        self.cat.vacated(key, vacant)
        return True

    def _still_orphan(self, key: str, attempt: str | None) -> bool:
        """True if the attempt has no object now (a listing's pages are not one snapshot)."""
        assert attempt is not None
        prefix = self.cat.attempt_prefix(key, attempt)
        return not any(True for _ in self.calls.list(prefix, limit=1))

    def _reclaim_attempts(self, listing: Listing, key: str) -> int:
        """Delete the attempts of ``key`` that nobody can publish or read any more."""
        claim = listing.claims.get(key)
        named = claim.attempt if claim is not None else None
        candidates = [a for a in listing.unpublished(key) if a != named and not self.busy(key, a)]
        candidates = [a for a in candidates if not self.hold.pinned(listing.attempt_pins(key, a))]
        if not candidates:
            return 0
        # The listing's pages are not one snapshot: read the head again now. An attempt
        # it does not name now can never be named again.
        seen = self.cat.read_state(key)
        if seen is not None:
            listing.heads[key] = seen[0]
            if seen[1].attempt in candidates:
                candidates.remove(seen[1].attempt)
        freed = 0
        for attempt in candidates:
            freed += self._delete_attempt(key, attempt)
        return freed

    def _delete_attempt(self, key: str, attempt: str) -> int:
        objects = list(self.calls.list(self.cat.attempt_prefix(key, attempt)))
        pins = self.cat.pin_prefix(key, attempt)
        if self.hold.pinned([(o.key, o.etag) for o in objects if o.key.startswith(pins)]):
            return 0  # a reader still holds it: it goes once the pin is released
        if objects and self.hold.delete_packed([[o.key for o in objects]]):
            raise OSError(
                errno.EIO, "could not delete a leftover attempt", self.cat.attempt_uri(key, attempt)
            )
        files = self.cat.files_prefix(key, attempt)
        return sum(o.size for o in objects if o.key.startswith(files))

    # -- checking -----------------------------------------------------------------------

    def verify(self, listing: Listing, repair: bool) -> list[str]:
        """One line per problem: corrupt leases and heads, models without data, leftovers,
        stray objects, expired pins, nested models; with ``repair``, fix all but the last.
        """
        problems = [
            f"model {outer!r} contains another model at {self.cat.path(inner)}"
            for outer, inner in listing.nested
        ]
        doomed: list[tuple[str, str]] = []  # (object, ETag) made vacant by a repair
        problems += self._check_heads(listing, doomed)
        problems += self._check_attempts(listing)
        for folder, size in sorted(listing.strays.items()):
            where = self.cat.path(folder) if folder else self.cat.root
            problems.append(f"objects outside any model or fill: {where}/ ({size} bytes)")
        for name, _ in self.hold.expired_pins(_all_pins(listing)):
            problems.append(f"expired pin: {self.calls.uri(name)}")
        if repair:
            problems.extend(self._repair(listing, doomed))
        return problems

    def _check_heads(self, listing: Listing, doomed: list[tuple[str, str]]) -> list[str]:
        """Corrupt or expired claims, a corrupt leader lease, heads whose data is gone."""
        problems = []
        for key, state in sorted(listing.claims.items()):
            name = self.cat.head_name(key)
            if state.orphan and not self._still_orphan(key, state.attempt):
                continue  # published while the root was listed
            if state.problem is not None:
                problems.append(f"corrupt head of {key!r}: {self.calls.uri(name)}: {state.problem}")
                doomed.append((name, listing.heads[key]))
            elif self.leases.expired(name, listing.heads[key], state.data):
                problems.append(f"expired fill lease: {self.calls.uri(name)}")
        leader = self.leases.read(self.cat.leader_name)
        problem = None
        if leader is not None and not is_vacant(leader[0]):
            problem = lease_problem(leader[0], self.leases.ttl)
        if leader is not None and problem is not None:
            uri = self.calls.uri(self.cat.leader_name)
            problems.append(f"corrupt leader lease: {uri}: {problem}")
            doomed.append((self.cat.leader_name, leader[1]))
        return problems

    def _check_attempts(self, listing: Listing) -> list[str]:
        """Attempts that no head names and no live pin holds."""
        problems = []
        for key in sorted(listing.attempts):
            claim = listing.claims.get(key)
            for attempt in listing.unpublished(key):
                if claim is not None and claim.attempt == attempt:
                    continue  # a fill in progress
                if self.hold.pinned(listing.attempt_pins(key, attempt)):
                    continue  # an evicted model a reader still holds
                size = listing.attempts[key][attempt]
                uri = self.cat.attempt_uri(key, attempt)
                problems.append(f"leftover fill or delete: {uri}/ ({size} bytes)")
        return problems

    def _repair(self, listing: Listing, doomed: list[tuple[str, str]]) -> list[str]:
        failures: list[str] = []
        for name, etag in doomed:
            try:
                self.leases.vacate(name, self._key_of(name), etag)
            except (ConditionFailedError, FileNotFoundError):
                pass  # changed meanwhile: no longer what was judged
            except OSError as exc:
                failures.append(f"repair incomplete: {exc}")
        deleted = {name for name, _ in doomed}
        for key in [k for k, state in listing.claims.items() if state.problem is not None]:
            del listing.claims[key]  # its attempt is a leftover now
        for key in [k for k in listing.models if self.cat.head_name(k) in deleted]:
            del listing.models[key]
            self.cat.forget(key)
        if listing.stray_names and self.hold.delete_packed([listing.stray_names]):
            failures.append("repair incomplete: some stray objects could not be deleted")
        try:
            self.sweep(listing)
        except OSError as exc:
            failures.append(f"repair incomplete: {exc}")
        return failures

    def _key_of(self, name: str) -> str:
        """The model key whose head is ``name`` (``""`` for the leader lease)."""
        return head_key(name[len(self.cat.prefix) :]) or ""


def _all_pins(listing: Listing) -> list[tuple[str, str]]:
    return [pin for pins in listing.pins.values() for ps in pins.values() for pin in ps]
