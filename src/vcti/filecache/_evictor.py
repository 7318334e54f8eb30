"""Eviction runs of one storage root: who goes, why, and the policies' state.

A run has one reason. Models idle for longer than ``max_age`` go first, whatever the
total (``"age"``); then, while the total is above ``evict_above`` or the filesystem has
less than ``min_free`` free, the policy chooses until enough is freed (``"size"`` or
``"free_space"``, whichever needs more). Open models are skipped. A stateful policy's
state is kept in step with the scans and stored with the cache by the leader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ._coord import Coordinator
from ._entry import CacheEntry, CacheSnapshot, EvictionResult
from ._observers import ObserverGroup, callback_error
from ._victims import (
    Candidates,
    Removal,
    Tracker,
    candidates,
    evict_until,
    keeps_history,
    policy_name,
)
from .storage.base import CacheStorage, PolicyStateStorage

if TYPE_CHECKING:
    from ._config import CacheManagerConfig
    from .policies.base import StatefulPolicy


class Evictor:
    """Runs evictions on one root and keeps the state of stateful policies."""

    def __init__(self, storage: CacheStorage, coord: Coordinator) -> None:
        self.storage = storage
        self.coord = coord
        self._states = storage if isinstance(storage, PolicyStateStorage) else None
        self.lock = threading.Lock()  # one eviction run at a time
        self._trackers: dict[str, Tracker] = {}
        self._dirty: set[str] = set()
        self._clock: Callable[[], float] = time.time

    def after_fork(self) -> None:
        """A forked child starts with its own lock and reads the policies' state again."""
        self.lock = threading.Lock()
        self._trackers.clear()
        self._dirty.clear()

    # -- runs ---------------------------------------------------------------------------

    def evict(
        self,
        group: ObserverGroup,
        config: CacheManagerConfig,
        policy: object,
        trigger: str,
        snapshot: CacheSnapshot,
        *,
        target: int | None = None,
        limit: int | None = None,
    ) -> tuple[list[EvictionResult], CacheSnapshot]:
        """Run what ``snapshot`` calls for; return the runs and the snapshot after them.

        Args:
            target, limit: override ``config.target`` and ``config.evict_above`` (the
                command line evicts to 0 above 0, which no config can say).

        Raises:
            Exception: what a manual run's policy raised (a background run reports it).
        """
        self._clock = config.now
        limit = config.evict_above if limit is None else limit
        target = config.target if target is None else target
        results: list[EvictionResult] = []
        with self.lock:
            now = config.now()
            if config.max_age is not None:
                aged = sorted(
                    (e for e in snapshot.entries if now - e.last_access > config.max_age),
                    key=lambda e: (e.last_access, e.key),
                )
                if aged:
                    result, snapshot = self._run(
                        group,
                        lambda aged=aged: _Aged(aged),  # type: ignore[misc]
                        sum(e.size for e in aged),
                        labels=("age", "max-age", trigger),
                        snapshot=snapshot,
                        target=target,
                    )
                    results.append(result)
            required, reason = self._required(snapshot, config, limit, target)
            if required > 0:
                name = policy_name(policy)
                current = snapshot
                result, snapshot = self._run(
                    group,
                    lambda: self._candidates(policy, current, required, group),
                    required,
                    labels=(reason, name, trigger),
                    snapshot=snapshot,
                    target=target,
                )
                results.append(result)
        return results, snapshot

    @staticmethod
    def _required(
        snapshot: CacheSnapshot, config: CacheManagerConfig, limit: int, target: int
    ) -> tuple[int, str]:
        """Bytes to free and why: above the limit, and below the free-space floor."""
        by_size = snapshot.total_size - target if snapshot.total_size > limit else 0
        by_space = 0
        if config.min_free is not None and snapshot.disk_free is not None:
            floor = config.min_free_bytes(snapshot.disk_total or 0)
            by_space = max(0, floor - snapshot.disk_free)
        if by_space > by_size:
            return by_space, "free_space"
        return by_size, "size"

    def _candidates(
        self, policy: object, snapshot: CacheSnapshot, required: int, group: ObserverGroup
    ) -> Candidates:
        entries = snapshot.entries
        if not keeps_history(policy):
            return candidates(policy, entries, required)
        tracker = self._tracker(policy, group)  # type: ignore[arg-type]
        tracker.sync(entries)
        self._dirty.add(policy_name(policy))
        return candidates(policy, entries, required, tracker.state)

    def _run(
        self,
        group: ObserverGroup,
        make_stream: Callable[[], Candidates],
        required: int,
        *,
        labels: tuple[str, str, str],
        snapshot: CacheSnapshot,
        target: int,
    ) -> tuple[EvictionResult, CacheSnapshot]:
        """One run: walk the policy's candidates until ``required`` bytes are freed.

        ``labels`` are the run's reason, policy name and trigger. A policy that fails is
        reported (``"policy"``) and ends the run; a manual run then raises its error (it
        is the caller's own policy), a background one goes on.
        """
        reason, name, trigger = labels
        started_at = self._clock()
        started = time.perf_counter()
        group.emit("on_evict_start", snapshot, name, trigger)
        error: BaseException | None = None
        stream: Candidates = _Aged([])
        try:
            stream = make_stream()
            outcome = evict_until(stream, required, lambda e: self.evict_one(e, group))
        except BaseException as exc:
            error = exc
            outcome = stream.outcome
            failure = callback_error(exc)
            if failure is not None:
                group.error(failure, "policy")
        result = EvictionResult(
            entries=tuple(outcome.removed),
            bytes_freed=sum(e.size for e in outcome.removed),
            policy=name,
            trigger=trigger,
            started_at=started_at,
            duration=time.perf_counter() - started,
            target=target,
            skipped_pinned=tuple(outcome.kept),
            reason=reason,
        )
        group.emit("on_evict_end", result)
        gone = [e.key for e in outcome.removed] + outcome.gone
        self._forget(gone)
        snapshot = snapshot.without(gone)
        if error is not None and (callback_error(error) is None or trigger == "manual"):
            raise error  # the caller's own policy (or Ctrl-C in the caller): tell the caller
        return result, snapshot

    def evict_one(
        self, entry: CacheEntry, group: ObserverGroup, storage: CacheStorage | None = None
    ) -> Removal:
        """Remove one model: True if removed, False if open somewhere (or failing), None if gone.

        ``storage`` is the backend to remove it with (default: the root's).
        """
        key = entry.key
        backend = self.storage if storage is None else storage
        gone = False

        def remove() -> bool:
            nonlocal gone
            try:
                return backend.remove(key)
            except FileNotFoundError:
                gone = True
                return False

        try:
            removed = self.coord.try_remove(key, remove)
        except OSError as exc:
            group.error(exc, "evict")
            return False
        if gone:
            return None
        if removed:
            group.emit("on_evict", backend.path(key))
        return removed

    def _forget(self, keys: Sequence[str]) -> None:
        for tracker in self._trackers.values():
            tracker.evicted(keys)

    # -- policy state -------------------------------------------------------------------

    def _tracker(self, policy: StatefulPolicy, group: ObserverGroup) -> Tracker:
        name = policy_name(policy)
        tracker = self._trackers.get(name)
        if tracker is not None and tracker.policy is policy:
            return tracker
        data: bytes | None = None
        if self._states is not None:
            try:
                data = self._states.read_state(name)
            except FileNotFoundError:
                data = None
            except OSError as exc:
                group.error(exc, "policy")
        try:
            tracker = Tracker(policy, data)
        except ValueError as exc:
            group.error(
                ValueError(f"policy state of {name!r} unreadable, started afresh: {exc}"), "policy"
            )
            tracker = Tracker(policy)
        self._trackers[name] = tracker
        return tracker

    def sync(self, policy: object, entries: Sequence[CacheEntry], group: ObserverGroup) -> None:
        """Keep a stateful policy's state in step with a scan (every cycle of the leader)."""
        if keeps_history(policy):
            with self.lock:
                self._tracker(policy, group).sync(entries)  # type: ignore[arg-type]
                self._dirty.add(policy_name(policy))

    def save(self, group: ObserverGroup) -> None:
        """Store the state of the policies that changed (the leader only)."""
        if self._states is None:
            return
        with self.lock:
            dirty, self._dirty = self._dirty, set()
            for name in dirty:
                tracker = self._trackers.get(name)
                if tracker is None:
                    continue
                try:
                    self._states.write_state(name, tracker.dump())
                except OSError as exc:
                    group.error(exc, "policy")
                    self._dirty.add(name)


class _Aged(Candidates):
    """Models past ``max_age``, oldest first: every one goes, whatever the policy."""

    def __init__(self, entries: list[CacheEntry]) -> None:
        super().__init__(entries)
        self._order = [e.key for e in entries]

    def _keys(self) -> Iterator[str]:
        return iter(self._order)
