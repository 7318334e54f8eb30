"""The shared storage test suites: the required protocol, and one suite per capability.

A backend's test class inherits :class:`StorageContract` and the suite of each optional
capability (``storage/base.py``) its backend implements, and says how to make a storage
and how to write a file into a model (:class:`StorageFixtures`), as fsspec's
``tests/abstract`` suites share ``AbstractFixtures``::

    class TestMyStorage(StorageContract, SharedStorageContract, PolicyStateStorageContract):
        def make_storage(self, tmp_path):
            return MyStorage(tmp_path / "cache")

        def write_file(self, storage, folder, name, data):
            (Path(folder) / name).write_bytes(data)

:class:`StorageContract` also checks that the class inherits a suite for every capability
its backend implements, and each suite that the backend implements its capability. pytest
collects the inherited ``test_*`` methods (the class name must start with ``Test``); it is
imported only when a suite runs.
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import select
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, ClassVar

from .._meta import Meta, MetaUpdate
from ..exceptions import LockTimeoutError
from ..storage import base
from ..storage.base import CacheStorage, LeaseLock, Lock

__all__ = [
    "AdoptingStorageContract",
    "FreeSpaceStorageContract",
    "JournaledStorageContract",
    "LeasedStorageContract",
    "PolicyStateStorageContract",
    "RequestJournalContract",
    "SharedStorageContract",
    "StampedStorageContract",
    "StorageContract",
    "StorageFixtures",
    "capability_suites",
]

_WAIT = 60.0  # seconds a suite waits for a lock it expects to get: generous on a loaded host


def _pytest() -> Any:
    # pytest is imported only when a suite runs: using the other helpers needs no pytest.
    import pytest  # noqa: PLC0415

    return pytest


def _meta(count: int = 1, t: float = 1000.0, size: int | None = None) -> bytes:
    return Meta(count, t, t, size=size).encode()


def _changed(old: Hashable, new: Hashable) -> bool:
    """True if a stamp says "changed": a different value, or unknown (None)."""
    return new is None or new != old


class _Child:
    """A forked process that holds locks on its own opener of the root, until told."""

    def __init__(self, pid: int, go: int) -> None:
        self.pid = pid
        self._go = go

    def finish(self) -> None:
        """Let it release what it holds and exit; fail if it did not exit cleanly."""
        os.write(self._go, b"x")
        os.close(self._go)
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child process failed"

    def kill(self) -> None:
        """Kill it with SIGKILL, as a crash would: it releases nothing itself."""
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._go)


class StorageFixtures:
    """What every suite needs: how to make a storage and fill it, and shared helpers.

    A backend's test class implements :meth:`make_storage` and :meth:`write_file`, and
    sets the class attributes that describe a backend with fewer guarantees.
    """

    #: False for a backend whose pins and fill locks hold only between the threads of
    #: one process, the core's job (a backend for one process, such as ``MemoryStorage``).
    pins_across_processes: ClassVar[bool] = True
    #: False for a backend whose fills write in the model's own folder rather than in a
    #: staging area apart (``StorageV1Adapter``): then a fill is not counted by
    #: ``staging_size()``, a publish over a model is left to the core to prevent, and a
    #: fill left by a dead process stays where it is.
    stages_apart: ClassVar[bool] = True
    #: The protocol a suite checks (set by each suite class itself).
    capability: ClassVar[type[Any]] = CacheStorage

    def make_storage(self, tmp_path: Path) -> CacheStorage:
        """Return a new storage on the root that belongs to ``tmp_path``, not yet opened.

        For a backend that processes share, every call with the same ``tmp_path`` must
        give another opener of the same root (as another process would open it). The root
        is empty at the first call.
        """
        raise NotImplementedError

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        """Write ``data`` as file ``name`` into ``folder`` (a model or staging path).

        It may be called in a forked child process, with a storage made there.
        """
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------

    def _opened(self, tmp_path: Path) -> CacheStorage:
        storage = self.make_storage(tmp_path)
        storage.open()
        return storage

    def _add(self, storage: CacheStorage, key: str, size: int, count: int = 1) -> None:
        staged = storage.stage(key)
        self.write_file(storage, staged, "data.bin", b"x" * size)
        storage.publish(key, staged, _meta(count))

    def _in_child(self, tmp_path: Path, work: Callable[[CacheStorage], list[Lock]]) -> _Child:
        """Fork a process that opens the root, runs ``work`` and holds the locks it returns.

        Returns once ``work`` is done; the child holds its locks until
        :meth:`_Child.finish` (it releases them and exits) or :meth:`_Child.kill`.
        """
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12 warns about fork() in a process with threads: the child only
            # opens a storage of its own, and leaves with os._exit().
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            status = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                locks = work(self._opened(tmp_path))
                os.write(ready_w, b"x")
                os.read(go_r, 1)  # told to finish, or the parent is gone
                for lock in locks:
                    lock.release()
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(ready_w)
        os.close(go_r)
        child = _Child(pid, go_w)
        try:
            readable, _, _ = select.select([ready_r], [], [], _WAIT)
            if not readable or os.read(ready_r, 1) != b"x":
                child.kill()
                raise AssertionError("the child process failed or did not get ready")
        finally:
            os.close(ready_r)
        return child

    def _fill_and_die(self, tmp_path: Path, key: str, size: int) -> None:
        """Leave the fill of a process that was killed in the middle of filling ``key``."""

        def fill(storage: CacheStorage) -> list[Lock]:
            lock = storage.lock_fill(key, timeout=_WAIT)
            staged = storage.stage(key)
            self.write_file(storage, staged, "data.bin", b"x" * size)
            return [lock]

        self._in_child(tmp_path, fill).kill()

    @staticmethod
    def _eventually(storage: CacheStorage, condition: Callable[[], bool], what: str) -> None:
        """Poll ``condition`` with a generous deadline: a lease must be seen to lapse."""
        ttl = storage.lease_ttl if isinstance(storage, base.LeasedStorage) else 0.0
        deadline = time.monotonic() + _WAIT + 10 * ttl
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} before the deadline")
            time.sleep(0.02 + ttl / 20)

    # -- every suite ----------------------------------------------------------------------

    def test_implements_the_protocol(self, tmp_path: Path) -> None:
        """The storage is an instance of the protocol of each suite the class inherits."""
        storage = self.make_storage(tmp_path)
        protocols = [
            vars(cls)["capability"] for cls in type(self).__mro__ if "capability" in vars(cls)
        ]
        missing = [protocol.__name__ for protocol in protocols if not isinstance(storage, protocol)]
        assert missing == [], f"{type(storage).__name__} does not implement {missing}"


class StorageContract(StorageFixtures):
    """The behaviour every :class:`~vcti.filecache.storage.base.CacheStorage` must show.

    Also checks that the test class inherits the suite of every optional capability that
    the backend implements (:func:`capability_suites`).
    """

    def test_is_a_cache_storage(self, tmp_path: Path) -> None:
        assert isinstance(self.make_storage(tmp_path), CacheStorage)

    def test_inherits_a_suite_for_each_capability(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        untested = [
            protocol.__name__
            for protocol, suite in capability_suites().items()
            if isinstance(storage, protocol) and (suite is None or not isinstance(self, suite))
        ]
        assert untested == [], f"{type(self).__name__} lacks the suites of {untested}"

    def test_empty_after_open(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert list(storage.iter_models()) == []
        assert storage.staging_size() == 0
        assert not storage.is_model("a")
        assert not storage.exists("a")

    def test_publish_makes_a_model(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        staged = storage.stage("ab/cd/m1")
        self.write_file(storage, staged, "mesh.vtu", b"x" * 100)
        self.write_file(storage, staged, "field.bin", b"y" * 23)
        assert not storage.is_model("ab/cd/m1")
        if self.stages_apart:
            assert storage.staging_size() == 123
        storage.publish("ab/cd/m1", staged, _meta(3))
        assert storage.is_model("ab/cd/m1")
        assert storage.exists("ab/cd/m1")
        assert storage.exists("ab")
        assert not storage.is_model("ab/cd")
        assert storage.model_size("ab/cd/m1") == 123
        assert Meta.decode(storage.read_record("ab/cd/m1")).access_count == 3
        assert list(storage.iter_models()) == ["ab/cd/m1"]
        assert storage.staging_size() == 0
        assert storage.path("ab/cd/m1").endswith("ab/cd/m1")

    def test_iter_models_with_prefix(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        for key in ("a/m1", "a/m2", "b/m3", "m4"):
            self._add(storage, key, 1)
        assert sorted(storage.iter_models()) == ["a/m1", "a/m2", "b/m3", "m4"]
        assert sorted(storage.iter_models(prefix="a")) == ["a/m1", "a/m2"]
        assert list(storage.iter_models(prefix="m4")) == ["m4"]
        assert list(storage.iter_models(prefix="zz")) == []

    def test_publish_over_existing_model_fails(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "m", 5)
        staged = storage.stage("m")
        self.write_file(storage, staged, "other.bin", b"z")
        with _pytest().raises(FileExistsError):
            storage.publish("m", staged, _meta())
        storage.discard(staged)
        assert storage.is_model("m")  # the published model stays
        assert Meta.decode(storage.read_record("m")).access_count == 1
        if self.stages_apart:  # (a fill written in place went into the model itself)
            assert storage.model_size("m") == 5
        assert storage.staging_size() == 0

    def test_discard_removes_the_fill(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        staged = storage.stage("m")
        self.write_file(storage, staged, "data.bin", b"x" * 10)
        storage.discard(staged)
        assert storage.staging_size() == 0
        assert not storage.is_model("m")
        assert list(storage.iter_models()) == []

    def test_update_meta(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "m", 1, count=2)
        seen: list[bytes | None] = []

        def update(raw: bytes | None) -> bytes:
            seen.append(raw)
            return _meta(7)

        storage.update_meta("m", update)
        assert seen == [_meta(2)]
        assert Meta.decode(storage.read_record("m")).access_count == 7
        with _pytest().raises(FileNotFoundError):
            storage.update_meta("missing", update)
        with _pytest().raises(FileNotFoundError):
            storage.read_record("missing")

    def test_remove(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "a/b/m", 10)
        self._add(storage, "a/other", 10)
        assert storage.remove("a/b/m") is True
        assert not storage.is_model("a/b/m")
        assert list(storage.iter_models()) == ["a/other"]
        with _pytest().raises(FileNotFoundError):
            storage.model_size("a/b/m")
        with _pytest().raises(FileNotFoundError):
            storage.remove("a/b/m")
        assert storage.model_size("a/other") == 10

    def test_pin(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert storage.pin("m") is None
        self._add(storage, "m", 1)
        pin = storage.pin("m")
        assert isinstance(pin, Lock)
        if self.pins_across_processes:
            assert storage.remove("m") is False
            assert storage.is_model("m")
        pin.release()
        pin.release()  # releasing twice is harmless
        assert storage.remove("m") is True
        assert storage.pin("m") is None

    def test_locks(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        fill = storage.lock_fill("m", timeout=1.0)
        assert isinstance(fill, Lock)
        fill.release()

    def test_open_reclaims_unpublished_fills(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        staged = storage.stage("m")
        self.write_file(storage, staged, "data.bin", b"x" * 10)
        # (A fill written in place is no staging area: it counts nowhere until published.)
        assert storage.staging_size() == (10 if self.stages_apart else 0)
        if isinstance(storage, base.SharedStorage):
            del storage  # the process that filled is gone: a new one opens the root
            gc.collect()
            restarted = self._opened(tmp_path)
            assert isinstance(restarted, base.SharedStorage)
            restarted.sweep()  # what the manager runs right after open()
            storage = restarted
        else:
            storage.open()  # a restart of the one process that uses it
        assert storage.staging_size() == 0
        assert list(storage.iter_models()) == []


class SharedStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.SharedStorage`.

    Other processes are played by other openers of the root (:meth:`make_storage` with
    the same ``tmp_path``) and, where one must die, by a forked child killed with SIGKILL.
    """

    capability = base.SharedStorage

    def test_lock_fill_times_out_while_another_process_fills(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        child = self._in_child(tmp_path, lambda other: [other.lock_fill("m", timeout=_WAIT)])
        try:
            with _pytest().raises(LockTimeoutError):
                storage.lock_fill("m", timeout=0.2)
            storage.lock_fill("n", timeout=_WAIT).release()  # another key is free
        finally:
            child.finish()  # it releases the lock, then exits
        storage.lock_fill("m", timeout=_WAIT).release()

    def test_try_lead_is_exclusive_between_openers(self, tmp_path: Path) -> None:
        one, two = self._opened(tmp_path), self._opened(tmp_path)
        assert isinstance(one, base.SharedStorage)
        assert isinstance(two, base.SharedStorage)
        leader = one.try_lead()
        assert isinstance(leader, Lock)
        assert two.try_lead() is None
        leader.release()
        leader.release()  # releasing twice is harmless
        other = two.try_lead()
        assert other is not None
        assert one.try_lead() is None
        other.release()
        again = one.try_lead()  # the first opener leads again once the other stopped
        assert again is not None
        again.release()

    def test_sweep_reclaims_dead_fills_and_keeps_live_ones(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.SharedStorage)
        lock = storage.lock_fill("live", timeout=_WAIT)
        live = storage.stage("live")
        self.write_file(storage, live, "data.bin", b"x" * 7)
        self._fill_and_die(tmp_path, "dead", 10)
        assert storage.staging_size() == 17
        reclaimed: list[int] = []

        def swept() -> bool:
            reclaimed.append(storage.sweep())
            return storage.staging_size() == 7  # (a scan, as the manager's precedes a sweep)

        self._eventually(storage, swept, "the dead fill was not reclaimed")
        assert sum(reclaimed) == 10
        storage.publish("live", live, _meta())
        lock.release()
        assert list(storage.iter_models()) == ["live"]
        assert storage.model_size("live") == 7
        assert storage.sweep() == 0

    def test_verify_reports_and_repairs_leftovers(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.SharedStorage)
        self._add(storage, "m", 5)
        lock = storage.lock_fill("live", timeout=_WAIT)
        live = storage.stage("live")
        self.write_file(storage, live, "data.bin", b"x" * 7)
        assert storage.verify(repair=False) == []
        self._fill_and_die(tmp_path, "dead", 10)
        problems: list[str] = []

        def reported() -> bool:
            problems[:] = storage.verify(repair=False)
            return bool(problems)

        self._eventually(storage, reported, "the dead fill was not reported")
        assert all(isinstance(line, str) and line for line in problems)
        assert storage.staging_size() == 17  # reported, not repaired
        storage.verify(repair=True)
        assert storage.verify(repair=False) == []
        assert storage.staging_size() == 7
        storage.publish("live", live, _meta())
        lock.release()
        assert sorted(storage.iter_models()) == ["live", "m"]
        assert storage.model_size("m") == 5


class LeasedStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.LeasedStorage`."""

    capability = base.LeasedStorage

    def test_lease_ttl_is_positive(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        assert isinstance(storage, base.LeasedStorage)
        ttl = storage.lease_ttl
        assert isinstance(ttl, (int, float))
        assert 0 < ttl < math.inf

    def test_locks_expose_lost(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "m", 1)
        locks = [storage.pin("m"), storage.lock_fill("other", timeout=_WAIT)]
        if isinstance(storage, base.SharedStorage):
            locks.append(storage.try_lead())
        for lock in locks:
            assert isinstance(lock, LeaseLock)
            assert lock.lost is False
            lock.release()


class StampedStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.StampedStorage`.

    A stamp of None means "unknown" (the model is measured), which counts as changed.
    """

    capability = base.StampedStorage

    @staticmethod
    def _stamps(storage: CacheStorage) -> dict[str, tuple[Hashable, Hashable]]:
        assert isinstance(storage, base.StampedStorage)
        return {key: (data, meta) for key, data, meta in storage.iter_stamped_models()}

    def test_stamps_change_when_a_model_changes(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        self._add(storage, "a", 3)
        self._add(storage, "b/c", 4)
        before = self._stamps(storage)
        assert sorted(before) == ["a", "b/c"]
        assert self._stamps(storage) == before  # nothing changed
        storage.update_meta("a", lambda raw: _meta(5))
        after = self._stamps(storage)
        assert _changed(before["a"][1], after["a"][1])
        assert after["b/c"] == before["b/c"]
        staged = storage.stage("b/c")  # filled again after an eviction
        self.write_file(storage, staged, "data.bin", b"y" * 4)
        assert storage.remove("b/c") is True
        storage.publish("b/c", staged, _meta())
        again = self._stamps(storage)
        assert _changed(after["b/c"][0], again["b/c"][0])
        assert again["a"] == after["a"]
        assert isinstance(storage, base.StampedStorage)
        assert list(storage.iter_stamped_models(prefix="b")) == [("b/c", *again["b/c"])]

    def test_stamps_are_equal_across_openers(self, tmp_path: Path) -> None:
        one = self._opened(tmp_path)
        self._add(one, "a", 3)
        self._add(one, "b/c", 4)
        one.update_meta("a", lambda raw: _meta(2))
        two = self._opened(tmp_path)
        assert isinstance(one, base.StampedStorage)
        assert isinstance(two, base.StampedStorage)
        assert self._stamps(two) == self._stamps(one)
        assert two.generation() == one.generation()
        before = one.generation()
        two.update_meta("b/c", lambda raw: _meta(3))  # another process changes the cache
        assert _changed(before, one.generation())

    def test_staged_stamp_is_the_stamp_after_publish(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.StampedStorage)
        staged = storage.stage("a/m")
        self.write_file(storage, staged, "data.bin", b"x" * 10)
        stamp = storage.staged_stamp(staged)
        storage.publish("a/m", staged, _meta())
        assert self._stamps(storage)["a/m"][0] == stamp

    def test_generation_changes_with_every_change(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.StampedStorage)
        seen = [storage.generation()]
        self._add(storage, "m", 1)
        seen.append(storage.generation())
        storage.update_meta("m", lambda raw: _meta(2))
        seen.append(storage.generation())
        assert storage.remove("m") is True
        seen.append(storage.generation())
        assert all(_changed(old, new) for old, new in itertools.pairwise(seen))
        # Reading changes nothing: a scan that finds the generation unchanged is reused.
        self._add(storage, "n", 1)
        now = storage.generation()
        list(storage.iter_models())
        storage.read_record("n")
        storage.model_size("n")
        assert storage.generation() == now


class JournaledStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.JournaledStorage`.

    The test class implements :meth:`damage_journal` as well.
    """

    capability = base.JournaledStorage
    #: Whether the backend gives a watch here (False: ``watch_changes()`` returns None).
    watches_changes = True

    def damage_journal(self, storage: CacheStorage) -> None:
        """Leave an unreadable record after the last good one (a torn write, a bad disk)."""
        raise NotImplementedError

    @staticmethod
    def _journal(storage: CacheStorage) -> base.JournaledStorage:
        assert isinstance(storage, base.JournaledStorage)
        return storage

    def test_read_changes(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        journal = self._journal(storage)
        first = journal.read_changes(None)
        assert first.keys is None  # the first read knows nothing
        assert first.error is None
        nothing = journal.read_changes(first.cursor)
        assert (nothing.keys, nothing.published, nothing.error) == (frozenset(), 0, None)
        staged = storage.stage("a/m")
        self.write_file(storage, staged, "data.bin", b"x" * 10)
        storage.publish("a/m", staged, _meta(size=10))  # the publish records its size
        self._add(storage, "b", 5)  # no size recorded: none announced
        published = journal.read_changes(nothing.cursor)
        assert published.keys == frozenset({"a/m", "b"})
        assert published.published == 10
        assert published.error is None
        storage.update_meta("b", lambda raw: _meta(2))
        assert storage.remove("a/m") is True
        written = journal.read_changes(published.cursor)
        assert (written.keys, written.published) == (frozenset({"a/m", "b"}), 0)
        self._add(self._opened(tmp_path), "c", 1)  # another process's publish
        assert journal.read_changes(written.cursor).keys == frozenset({"c"})

    def test_watch_changes_wakes_on_another_openers_change(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        watch = self._journal(storage).watch_changes()
        if not self.watches_changes:
            assert watch is None
            return
        assert watch is not None

        def readable(timeout: float = 0.0) -> bool:
            return bool(select.select([watch.fileno()], [], [], timeout)[0])

        try:
            assert not readable()  # nothing recorded since it started
            self._add(self._opened(tmp_path), "c", 1)  # another opener's publish
            assert readable(10.0)
            watch.clear()
            assert not readable()
            storage.update_meta("c", lambda raw: _meta(2))  # a metadata write
            assert readable(10.0)
        finally:
            watch.close()
        watch.close()  # twice is harmless

    def test_a_damaged_journal_gives_no_keys_and_an_error(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        journal = self._journal(storage)
        cursor = journal.read_changes(None).cursor
        self._add(storage, "m", 1)
        self.damage_journal(storage)
        damaged = journal.read_changes(cursor)
        assert damaged.keys is None
        assert isinstance(damaged.error, OSError)
        self._add(storage, "n", 1)
        assert journal.read_changes(damaged.cursor).keys == frozenset(
            {"n"}
        )  # read on past the damage


class FreeSpaceStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.FreeSpaceStorage`."""

    capability = base.FreeSpaceStorage

    def test_disk_usage_is_plausible(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.FreeSpaceStorage)
        free, total = storage.disk_usage()
        assert isinstance(free, int)
        assert isinstance(total, int)
        assert 0 <= free <= total
        assert total > 0


class RequestJournalContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.RequestJournal`."""

    capability = base.RequestJournal

    @staticmethod
    def _requests(storage: CacheStorage) -> base.RequestJournal:
        assert isinstance(storage, base.RequestJournal)
        return storage

    def test_read_peer_requests(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        journal = self._requests(storage)
        first = journal.read_peer_requests(None)
        assert first.keys is None  # the first read knows nothing
        assert first.requests == ()
        # This process's own lookups are not another's.
        self._add(storage, "own", 3)
        storage.update_meta("own", lambda raw: _meta(4, 1010.0))
        journal.record_hits("gone", 2, 1020.0)
        mine = journal.read_peer_requests(first.cursor)
        assert mine.keys == frozenset({"own", "gone"})
        assert mine.requests == ()

        def lookups(other: CacheStorage) -> list[Lock]:
            staged = other.stage("m")
            self.write_file(other, staged, "data.bin", b"x" * 10)
            # Looked up at 990, filled in 10 s, published at 1000.
            other.publish("m", staged, Meta(1, 1000.0, 1000.0, 10.0, size=10).encode())
            other.update_meta("m", lambda raw: Meta(4, 1030.0, 1000.0, 10.0, size=10).encode())
            other.update_meta("m", lambda raw: Meta(4, 1030.0, 1000.0, 10.0, size=10).encode())
            self._requests(other).record_hits("gone", 2, 1040.0)
            return []

        self._in_child(tmp_path, lookups).finish()
        theirs = journal.read_peer_requests(mine.cursor)
        assert theirs.keys == frozenset({"m", "gone"})
        assert theirs.requests == (
            base.PeerRequest("m", 990.0, size=10, fill=10.0),
            base.PeerRequest("m", 1030.0, hits=3, since=1000.0),  # the second added none
            base.PeerRequest("gone", 1040.0, hits=2),
        )
        assert journal.read_changes(mine.cursor).requests == ()


class BulkMeasuringStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.BulkMeasuringStorage`."""

    capability = base.BulkMeasuringStorage

    def test_model_sizes_measures_many_and_leaves_out_the_missing(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.BulkMeasuringStorage)
        for n in range(5):
            self._add(storage, f"m/{n}", 10 * (n + 1))
        sizes = storage.model_sizes([f"m/{n}" for n in range(5)] + ["gone"])
        assert sizes == {f"m/{n}": 10 * (n + 1) for n in range(5)}
        assert storage.model_sizes([]) == {}


class BulkMetadataStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.BulkMetadataStorage`."""

    capability = base.BulkMetadataStorage

    def test_update_metas_runs_each_update_in_order(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.BulkMetadataStorage)
        for n in range(3):
            self._add(storage, f"m/{n}", 10, count=n + 1)
        before = {f"m/{n}": storage.read_record(f"m/{n}") for n in range(3)}
        add = MetaUpdate(accesses=(2, 2000.0))
        results = list(
            storage.update_metas(
                [("m/0", add), ("m/1", add), ("gone", add), ("m/2", add), ("m/0", add)]
            )
        )
        assert [key for key, _ in results] == ["m/0", "m/1", "gone", "m/2", "m/0"]
        assert isinstance(results[2][1], FileNotFoundError)
        first = results[0][1]
        for key, result in (results[0], results[1], results[3]):
            assert not isinstance(result, Exception), result
            assert result == (before[key], add(before[key]))
        last = results[4][1]
        assert not isinstance(first, Exception)
        assert not isinstance(last, Exception)
        assert last[0] == first[1]  # the second update of m/0 was given the first's record
        counts = {key: Meta.decode(storage.read_record(key)).access_count for key in before}
        assert counts == {"m/0": 1 + 2 + 2, "m/1": 2 + 2, "m/2": 3 + 2}
        assert list(storage.update_metas([])) == []

    def test_read_metas_gives_stamps_and_records_in_order(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.BulkMetadataStorage)
        for n in range(3):
            self._add(storage, f"m/{n}", 10, count=n + 1)
        stamps: dict[str, tuple[Hashable, Hashable]] = {}
        if isinstance(storage, base.StampedStorage):
            stamps = {key: (d, m) for key, d, m in storage.iter_stamped_models()}
        items = list(storage.read_metas(["m/2", "gone", "m", "m/0"]))
        assert [key for key, _, _ in items] == ["m/2", "gone", "m", "m/0"]
        assert items[1][1:] == (None, None)  # not a model
        assert items[2][1:] == (None, None)  # a folder above models is not one either
        for key, got, record in (items[0], items[3]):
            assert got == stamps.get(key, (None, None))
            assert record == storage.read_record(key)
        assert list(storage.read_metas([])) == []

    def test_walk_models_lists_stamps_and_measures_every_model(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.BulkMetadataStorage)
        assert storage.walk_models() == ([], [])
        for key, size in (("a", 5), ("b/c", 7), ("b/d/e", 11)):
            self._add(storage, key, size)
        walked, errors = storage.walk_models()
        assert errors == []
        assert sorted((key, size) for key, _, _, size in walked) == [
            ("a", 5),
            ("b/c", 7),
            ("b/d/e", 11),
        ]
        if isinstance(storage, base.StampedStorage):
            stamps = {key: (d, m) for key, d, m in storage.iter_stamped_models()}
            assert {key: (d, m) for key, d, m, _ in walked} == stamps

    def test_close_ends_what_batches_hold_and_they_start_again(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.BulkMetadataStorage)
        self._add(storage, "m", 10)
        storage.close()  # before any batch: nothing to end
        add = MetaUpdate(accesses=(1, 2000.0))
        assert not isinstance(dict(storage.update_metas([("m", add)]))["m"], Exception)
        storage.close()
        storage.close()
        assert not isinstance(dict(storage.update_metas([("m", add)]))["m"], Exception)
        storage.close()
        assert Meta.decode(storage.read_record("m")).access_count == 3


class PolicyStateStorageContract(StorageFixtures):
    """The behaviour of a :class:`~vcti.filecache.storage.base.PolicyStateStorage`."""

    capability = base.PolicyStateStorage

    def test_policy_state_round_trip(self, tmp_path: Path) -> None:
        storage = self._opened(tmp_path)
        assert isinstance(storage, base.PolicyStateStorage)
        with _pytest().raises(FileNotFoundError):
            storage.read_state("gdsf")
        storage.write_state("gdsf", b"clock=1")
        storage.write_state("gdsf", b"clock=2")  # replaced whole
        storage.write_state("sieve", b"")
        storage.write_state("lru", bytes(range(256)))
        assert storage.read_state("gdsf") == b"clock=2"
        assert storage.read_state("sieve") == b""
        assert storage.read_state("lru") == bytes(range(256))
        assert list(storage.iter_models()) == []  # state is not a model
        assert storage.staging_size() == 0


class AdoptingStorageContract(StorageFixtures):
    """The behaviour of an :class:`~vcti.filecache.storage.base.AdoptingStorage`.

    The test class implements :meth:`write_v1_model` as well.
    """

    capability = base.AdoptingStorage

    def write_v1_model(
        self, storage: CacheStorage, key: str, files: dict[str, bytes], access_count: int
    ) -> None:
        """Lay out model ``key`` in the (not yet opened) root as vcti-file-cache 1.0 did."""
        raise NotImplementedError

    def test_adopts_a_1_0_root_once(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        assert isinstance(storage, base.AdoptingStorage)
        self.write_v1_model(storage, "ab/m1", {"mesh.vtu": b"m" * 100}, access_count=7)
        self.write_v1_model(storage, "m2", {"a.bin": b"a" * 5, "b.bin": b"b" * 6}, 1)
        storage.open()
        plan = storage.plan_v1()
        assert sorted(plan.models) == ["ab/m1", "m2"]
        assert plan.problems == ()
        assert list(storage.iter_models()) == []  # planning touches nothing
        report = storage.adopt_v1()
        assert sorted(report.models) == ["ab/m1", "m2"]
        assert sorted(storage.iter_models()) == ["ab/m1", "m2"]
        assert Meta.decode(storage.read_record("ab/m1")).access_count == 7
        assert storage.model_size("ab/m1") == 100
        assert storage.model_size("m2") == 11
        assert not storage.plan_v1()
        assert not storage.adopt_v1()  # once only
        again = self._opened(tmp_path)
        assert isinstance(again, base.AdoptingStorage)
        assert not again.adopt_v1()
        assert sorted(again.iter_models()) == ["ab/m1", "m2"]


def capability_suites() -> dict[type[Any], type[StorageFixtures] | None]:
    """The suite of each optional capability declared in ``storage/base.py``.

    The capabilities are the protocols of that module layered on ``CacheStorage``; one
    without a suite maps to None (and fails ``StorageContract`` for every backend that
    implements it).
    """
    # The suites defined here (a backend's test class subclasses them, elsewhere).
    suites = {
        suite.capability: suite
        for suite in StorageFixtures.__subclasses__()
        if suite.__module__ == __name__ and suite is not StorageContract
    }
    found: dict[type[Any], type[StorageFixtures] | None] = {}
    for name in base.__all__:
        value = getattr(base, name)
        if isinstance(value, type) and value is not CacheStorage and CacheStorage in value.__mro__:
            found[value] = suites.get(value)
    return found
