"""Model directories on a local (POSIX) filesystem.

Layout under the root::

    ROOT/.filecache/staging/HASH.UUID/    fills in progress (renamed into place on publish)
    ROOT/.filecache/trash/UUID/           evicted models being deleted
    ROOT/.filecache/locks/BUCKET.lock     fill locks (flock, one per key hash bucket)
    ROOT/.filecache/journal               one line per change made through the library
    ROOT/.filecache/policy/NAME.state     the state of a stateful eviction policy
    ROOT/.filecache/layout                written once the root's layout is complete
    ROOT/a/b/model/.filecache/meta.json   the marker and metadata of model "a/b/model"

Locks are ``flock`` locks, which the kernel drops when a process dies, so no lock can be
left stale by a crash. What decides liveness is a lock on a directory, never a file
that an operator could delete: a pin is a shared lock on ``MODEL/.filecache`` (the
evictor takes it exclusively before renaming the model away), a metadata update holds
the model directory, a live fill holds its staging directory, the leader holds
``ROOT/.filecache``, a publish holds ``ROOT/.filecache/staging`` (so that no two
publishes nest models, and no parent folder is pruned under one), and every open cache
holds ``ROOT`` shared. The fill-lock files only make waiters wait; a waiter that gets a
lock also checks that no live staging directory of its key remains. Publish and
eviction are renames, so a reader sees a complete model or none.

Nothing follows a symlink: the cache's own files are opened with ``O_NOFOLLOW``, a key
whose path goes through a symlink is refused, and trees are measured and deleted
without following links.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence

from .._entry import AdoptionReport, CacheEntry
from .._keys import RESERVED, ancestors
from .._meta import MAX_META_BYTES, Meta
from ..exceptions import KeyValidationError, LockTimeoutError, MetadataError
from . import _fs, _inotify, _worker
from . import _local_v1 as _v1
from ._fs import FdLock
from ._journal import Journal
from ._local_v1_methods import LocalStorageV1Methods
from .base import Changes, ChangeWatch

_META = "meta.json"
_FILL_BUCKETS_HEX = 4  # 65,536 fill-lock files at most; a collision only serialises two fills
_LAYOUT = "layout"
_LAYOUT_VERSION = b"2\n"
_STATE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MAX_STATE_BYTES = 256 * 1024 * 1024


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _recorded_size(meta: bytes) -> int | None:
    """The size a publish's metadata records (the journal announces it to the leader)."""
    try:
        return Meta.decode(meta).size
    except MetadataError:
        return None


def _published(meta: bytes) -> tuple[int | None, dict[str, float | int] | None]:
    """A publish's size and its fill's lookup (when it began, how long it took) for the journal."""
    try:
        record = Meta.decode(meta)
    except MetadataError:
        return None, None
    if record.fill_seconds is None:
        return record.size, None
    return record.size, {"at": record.created - record.fill_seconds, "fill": record.fill_seconds}


def _accesses(before: bytes | None, after: bytes) -> dict[str, float | int] | None:
    """The accesses a metadata write added, for the journal (None: it added none)."""
    if not before:
        return None  # a new or rebuilt record: no count to go from
    try:
        old, new = Meta.decode(before), Meta.decode(after)
    except MetadataError:
        return None
    added = new.access_count - old.access_count
    if added <= 0:
        return None
    return {"n": added, "last": new.last_access, "since": old.last_access}


def _rename_folder(source: str, dest: str) -> None:
    """Rename a folder to another parent, even a read-only one (as a fill may leave it).

    Moving a folder rewrites its ``..`` entry, which needs write permission on the folder
    itself: a read-only folder is made writable for the rename, then given its mode back.
    """
    try:
        os.rename(source, dest)
        return
    except PermissionError:
        mode = stat.S_IMODE(os.stat(source, follow_symlinks=False).st_mode)
        if mode & 0o200:
            raise  # writable already: the parent is what refuses
    _fs.make_movable(source)
    try:
        os.rename(source, dest)
    except BaseException:
        os.chmod(source, mode)
        raise
    os.chmod(dest, mode)


class LocalStorage(LocalStorageV1Methods):
    """Stores each model as a directory below ``root`` on a local filesystem.

    It also has 1.0's storage methods (``read_meta``, ``write_meta``, ``scan_entries``
    ...), with 1.0's meaning, for code written against 1.0 (see
    :class:`~vcti.filecache.storage.LocalStorageV1Methods`).

    Args:
        root: the cache root; created (with its parents) when the cache opens.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = os.fspath(root)
        if not isinstance(path, str) or not path:
            raise TypeError("root must be a non-empty str or os.PathLike[str]")
        self._root = os.path.abspath(path)
        self._internal = os.path.join(self._root, RESERVED)
        self._staging = os.path.join(self._internal, "staging")
        self._trash = os.path.join(self._internal, "trash")
        self._locks = os.path.join(self._internal, "locks")
        self._policy = os.path.join(self._internal, "policy")
        self._journal = Journal(os.path.join(self._internal, "journal"))
        self._staged: dict[str, FdLock] = {}  # staged path -> the lock that keeps it alive
        self._checked: set[str] = set()  # keys whose folders were checked for symlinks
        self._locks_clean: tuple[int, int] | None = None  # (inode, mtime) when found clean
        self._worker = _worker.Worker()  # the measuring process, started on first use

    def __repr__(self) -> str:
        return f"LocalStorage({self._root!r})"

    @property
    def root(self) -> str:
        return self._root

    def path(self, key: str) -> str:
        # Keys are validated relative "/"-separated paths, and "/" is the POSIX separator:
        # plain concatenation gives what os.path.join would, at a fraction of the cost on
        # the hit path.
        return f"{self._root}/{key}"

    # -- lifecycle ------------------------------------------------------------------------

    def ensure_root(self) -> None:
        """Create the root folder and the cache's layout in it (1.0's name for :meth:`open`)."""
        self.open()

    def open(self) -> None:
        """Create the root's layout (leftovers are reclaimed by :meth:`sweep`)."""
        for folder in (self._staging, self._trash, self._locks, self._policy):
            os.makedirs(folder, exist_ok=True)

    def adopt_v1(self) -> AdoptionReport:
        """Adopt the models of a root written by vcti-file-cache 1.0, once.

        The first process that opens a root whose layout is not marked complete walks it
        for 1.0 models under an exclusive lock on the root folder (others opening it
        meanwhile wait), adopts them and marks the layout complete. A walk interrupted by
        kill -9 leaves the mark unwritten, so the next open finishes it.
        """
        layout = os.path.join(self._internal, _LAYOUT)
        report = AdoptionReport()
        for exclusive in (False, True):
            lock = _fs.lock_dir(self._root, exclusive=exclusive, wait=True)
            assert lock is not None
            try:
                if os.path.isfile(layout):
                    return report
                if exclusive:
                    report = _v1.adopt_v1(self._root)
                    for key in report.models:
                        self._journal.record("m", key)
                    _fs.write_atomic(layout, _LAYOUT_VERSION)
            finally:
                lock.release()
        return report

    def plan_v1(self) -> AdoptionReport:
        """What :meth:`adopt_v1` would adopt now, without touching anything."""
        if os.path.isfile(os.path.join(self._internal, _LAYOUT)):
            return AdoptionReport()
        return _v1.plan_v1(self._root)

    def inspect_v1(self, onerror: Callable[[OSError], object] | None = None) -> list[CacheEntry]:
        """The models :meth:`adopt_v1` would adopt, as 1.0 recorded them, touching nothing.

        A model that cannot be read is left out and passed to ``onerror``.
        """
        if os.path.isfile(os.path.join(self._internal, _LAYOUT)):
            return []
        return _v1.inspect_v1(self._root, onerror)

    # -- change detection ---------------------------------------------------------------

    def disk_usage(self) -> tuple[int, int]:
        """``(free, total)`` bytes of the filesystem under the root (``statvfs``).

        ``free`` is what unprivileged users may still write (``f_bavail``), the figure
        ``df`` shows as available.
        """
        st = os.statvfs(self._root)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def generation(self) -> Hashable:
        """A value that changes whenever any process changes the cache through the library.

        The journal's identity and size (see :meth:`read_changes`); None when there is
        none. Changes made behind the library's back do not count: the manager's full
        walks see them.

        Raises:
            OSError: something other than a regular file is in the journal's place (it
                is replaced at the next change).
        """
        return self._journal.generation()

    def read_changes(self, cursor: object | None) -> Changes:
        """The models changed through the library since ``cursor`` (``ROOT/.filecache/journal``)."""
        return self._journal.read(cursor)

    def read_peer_requests(self, cursor: object | None) -> Changes:
        """``read_changes``, with the lookups other processes recorded in the journal."""
        return self._journal.read(cursor, peers=True)

    def record_hits(self, key: str, count: int, last: float) -> None:
        """Record hits on a removed model in the journal (a metadata line for a gone key)."""
        self._journal.record("m", key, lookups={"n": count, "last": last})

    def record_total(self, total: int, cursor: object) -> None:
        """Record the leader's total and its journal cursor (``ROOT/.filecache/total``)."""
        self._journal.record_total(total, cursor)

    def recorded_total(self) -> tuple[int, object] | None:
        """The last total the leader recorded, with its journal cursor (None: none)."""
        return self._journal.recorded_total()

    def watch_changes(self) -> ChangeWatch | None:
        """An inotify watch on ``ROOT/.filecache``, where the journal is written and replaced.

        None on a platform without inotify: the leader then reads the journal four
        times a second.

        Raises:
            OSError: the watch could not be set up (the per-user limit of inotify
                instances or watches reached, the folder missing).
        """
        if not _inotify.available():
            return None
        return _inotify.FolderWatch(self._internal)

    # -- sweeping and checking ----------------------------------------------------------

    def sweep(self) -> int:
        """Delete staging and trash leftovers that no live process holds; return their bytes.

        Entries the cache does not recognise in its own folders (a file in the trash, a
        symlink among the fills, a folder named like a lock file) are removed without
        following them, and reported by raising ``OSError`` once the rest is done. It
        also starts a fresh generation file once the old one is large. (A bump that lands
        in the old file after the swap is one whose change happened before the swap,
        which the scan that follows the sweep sees.)
        """
        self._journal.rotate_if_large()
        strays: list[str] = []
        failures: list[OSError] = []
        freed = 0
        for folder, reclaim in (
            (self._trash, self._reclaim_trashed),
            (self._staging, self._reclaim_staged),
            (self._locks, self._check_lock_file),
        ):
            names = self._odd_lock_entries() if folder == self._locks else self._listdir(folder)
            for name in names:
                entry = os.path.join(folder, name)
                try:
                    size = reclaim(entry)
                    if size is None:
                        strays.append(entry)
                        _fs.remove_entry(entry)
                    else:
                        freed += size
                except OSError as exc:
                    failures.append(exc)
        if strays or failures:
            parts = []
            if strays:
                parts.append(f"removed {len(strays)} unexpected entries, e.g. {strays[0]}")
            if failures:
                parts.append(f"{len(failures)} leftovers could not be removed, e.g. {failures[0]}")
            raise OSError(errno.EIO, "; ".join(parts), self._internal)
        return freed

    def _reclaim_trashed(self, leftover: str) -> int | None:
        """Delete an evicted model's remains; None if it is not a folder (a stray)."""
        kind = self._kind(leftover)
        if kind != "dir":
            return 0 if kind is None else None
        size = 0
        with contextlib.suppress(FileNotFoundError):
            size = _fs.tree_size(leftover)
        _fs.rmtree(leftover)
        return size

    def _odd_lock_entries(self) -> list[str]:
        """Names in the fill-lock folder that the listing does not show as regular files.

        The folder holds one file per key-hash bucket ever filled (thousands), and every
        cycle sweeps it: the file type comes with the listing, so the lock files cost no
        system call of their own (the others are checked one by one), and a folder found
        clean is not listed again until its modification time changes. That time is
        trusted only once it is a second old, so a change in the same clock tick as the
        listing is never missed.
        """
        try:
            st = os.stat(self._locks, follow_symlinks=False)
            signature = (st.st_ino, st.st_mtime_ns)
            if signature == self._locks_clean:
                return []
            with os.scandir(self._locks) as entries:
                odd = [e.name for e in entries if not e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        settled = time.time_ns() - st.st_mtime_ns > 1_000_000_000
        self._locks_clean = signature if not odd and settled else None
        return odd

    def _check_lock_file(self, entry: str) -> int | None:
        """A fill-lock file stays; None for anything else (a stray)."""
        try:
            mode = os.stat(entry, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return 0
        return 0 if stat.S_ISREG(mode) else None

    def _reclaim_staged(self, leftover: str) -> int | None:
        """Delete a staging directory unless a live fill holds it; return its bytes.

        None for what is not a staging directory (a stray).
        """
        kind = self._kind(leftover)
        if kind != "dir":
            return 0 if kind is None else None  # gone meanwhile (published): not a stray
        try:
            lock = _fs.lock_dir(leftover, exclusive=True, wait=False)
        except FileNotFoundError:
            return 0
        if lock is None:
            return 0  # a live fill
        try:
            size = _fs.tree_size(leftover)
            _fs.rmtree(leftover)
        except FileNotFoundError:
            return 0
        finally:
            lock.release()
        return size

    def trash_size(self) -> int:
        """Bytes of evicted models not yet deleted (left by a process that died deleting)."""
        with contextlib.suppress(FileNotFoundError):
            return _fs.tree_size(self._trash)
        return 0

    def verify(self, repair: bool) -> list[str]:
        """Report leftovers, unexpected entries and nested models (see ``FileCache.verify``)."""
        problems: list[str] = []
        for name in self._listdir(self._trash):
            problems.append(f"leftover delete: {os.path.join(self._trash, name)}")
        for name in self._listdir(self._staging):
            leftover = os.path.join(self._staging, name)
            if not self._is_real_dir(leftover):
                problems.append(f"unexpected entry among the fills: {leftover}")
                continue
            try:
                lock = _fs.lock_dir(leftover, exclusive=True, wait=False)
            except FileNotFoundError:
                continue
            if lock is not None:
                lock.release()
                problems.append(f"leftover fill: {leftover}")
        for name in self._listdir(self._locks):
            entry = os.path.join(self._locks, name)
            if not os.path.isfile(entry) or os.path.islink(entry):
                problems.append(f"unexpected entry among the fill locks: {entry}")
        try:
            self.generation()
        except OSError as exc:
            problems.append(f"change journal: {exc.filename}: {exc.strerror}")
        if repair:
            with contextlib.suppress(OSError):
                self.sweep()
            if problems and problems[-1].startswith("change journal"):
                with contextlib.suppress(OSError):
                    _fs.remove_entry(self._journal.path)  # the next change makes a new one
        for key in self.iter_models():
            problems.extend(self._verify_model(key, repair))
        return problems

    def _verify_model(self, key: str, repair: bool) -> list[str]:
        problems: list[str] = []
        folder = self.path(key)
        internal = f"{folder}/{RESERVED}"
        lock: FdLock | None = None
        with contextlib.suppress(FileNotFoundError):
            lock = _fs.lock_dir(folder, exclusive=True, wait=True)  # no metadata write runs
        try:
            for name in self._listdir(internal):
                if name.endswith(".tmp"):
                    problems.append(f"model {key!r}: leftover {RESERVED}/{name}")
                    if repair and lock is not None:
                        _fs.remove_entry(os.path.join(internal, name))
        finally:
            if lock is not None:
                lock.release()
        for marker, inner in self._nested_markers(folder):
            what = "another model folder" if marker == RESERVED else "a 1.0 model folder"
            problems.append(f"model {key!r} contains {what} at {inner}")
        return problems

    @staticmethod
    def _nested_markers(top: str) -> Iterator[tuple[str, str]]:
        """``(marker, folder)`` for each folder below ``top`` that holds a model marker."""
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            reported = False
            for entry in entries:
                if folder != top and not reported and entry.name in (RESERVED, _v1.CACHE_META):
                    reported = True
                    yield entry.name, folder
                elif entry.name != RESERVED and entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)

    # -- reading ------------------------------------------------------------------------

    def iter_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[str]:
        for key, _, _ in self.iter_stamped_models(prefix, onerror):
            yield key

    def iter_stamped_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[tuple[str, Hashable, Hashable]]:
        """Yield ``(key, data_stamp, meta_stamp)`` for every published model.

        The stamps are cheap to read (two ``stat`` calls a model, no walk inside it):
        ``data_stamp`` changes when files are added to, removed from or renamed in the
        model's top folder, ``meta_stamp`` with every write of its metadata. An in-place
        rewrite, or a change in a subfolder, changes neither: the manager's periodic full
        scan catches those. Symlinks are never followed.
        """
        skip = len(self._root) + 1  # a model's path is f"{root}/{key}"
        top = self.path(prefix) if prefix else self._root
        stamps = self._stamps(top, onerror) if prefix else None
        if stamps is not None:
            yield prefix, *stamps
            return
        stack = [] if os.path.islink(top) else [top]
        while stack:
            folder = stack.pop()
            try:
                entries = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if onerror is not None:
                    onerror(exc)
                continue
            subfolders: list[str] = []
            with entries:
                for entry in entries:
                    try:
                        if entry.name == RESERVED or not entry.is_dir(follow_symlinks=False):
                            continue
                    except OSError:
                        continue
                    stamps = self._stamps(entry.path, onerror)
                    if stamps is None:
                        subfolders.append(entry.path)
                    else:
                        yield entry.path[skip:], *stamps
            stack.extend(sorted(subfolders, reverse=True))

    @staticmethod
    def _stamps(
        folder: str, onerror: Callable[[OSError], None] | None
    ) -> tuple[Hashable, Hashable] | None:
        """The stamps of the model at ``folder``, or None if ``folder`` is not a model.

        Metadata is only ever replaced (a new file renamed over the old one), so the
        identity of ``meta.json`` changes with every write, however close together;
        timestamps alone could miss two writes within one clock tick of the filesystem.
        """
        try:
            try:
                meta = os.stat(f"{folder}/{RESERVED}/{_META}", follow_symlinks=False)
                meta_stamp: Hashable = hash((meta.st_ino, meta.st_mtime_ns, meta.st_size))
            except (FileNotFoundError, NotADirectoryError):
                meta_stamp = None
            # A model is a folder holding a .filecache folder (its metadata, if missing or
            # unreadable, is rebuilt by the scan).
            inner = os.stat(f"{folder}/{RESERVED}", follow_symlinks=False)
            if not stat.S_ISDIR(inner.st_mode):
                return None
            outer = os.stat(folder, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if onerror is not None:
                onerror(exc)
            return None
        # One int a stamp rather than a tuple of large ints: a scan keeps one per model.
        return hash((outer.st_ino, outer.st_mtime_ns)), meta_stamp

    def is_model(self, key: str) -> bool:
        folder = self.path(key)
        if os.path.islink(folder):
            return False
        try:
            st = os.stat(f"{folder}/{RESERVED}", follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISDIR(st.st_mode)

    def exists(self, key: str) -> bool:
        return os.path.lexists(self.path(key))

    def model_size(self, key: str) -> int:
        return _fs.tree_size(self.path(key), skip=RESERVED)

    def model_sizes(self, keys: Sequence[str]) -> dict[str, int]:
        """Measure many models in the measuring process (see ``_worker``), off this GIL."""
        if not keys:
            return {}
        measured = self._worker.sizes([self.path(key) for key in keys], RESERVED)
        return {keys[index]: size for index, size in measured.items()}

    def update_metas(
        self, updates: Sequence[tuple[str, Callable[[bytes | None], bytes]]]
    ) -> Iterator[tuple[str, tuple[bytes | None, bytes] | Exception]]:
        """Run many metadata updates in the measuring process (see ``_worker``), in order."""
        results = self._worker.update(self._root, updates)
        for (key, _), result in zip(updates, results, strict=False):  # results may stop early
            yield key, result

    def read_metas(
        self, keys: Sequence[str]
    ) -> Iterator[tuple[str, tuple[Hashable, Hashable] | None, bytes | Exception | None]]:
        """Read many models' stamps and records in the measuring process, in order."""
        yield from self._worker.read(self._root, keys)

    def walk_models(
        self,
    ) -> tuple[list[tuple[str, Hashable, Hashable, int | None]], list[OSError]]:
        """List, stamp and measure every model in the measuring process, in one pass."""
        return self._worker.walk(self._root)

    def _walked(self) -> tuple[list[tuple[str, Hashable, Hashable, int | None]], list[OSError]]:
        """``walk_models``, here (the measuring process runs it)."""
        errors: list[OSError] = []
        walked: list[tuple[str, Hashable, Hashable, int | None]] = []
        for key, data_stamp, meta_stamp in self.iter_stamped_models(onerror=errors.append):
            try:
                size: int | None = self.model_size(key)
            except OSError:
                size = None
            walked.append((key, data_stamp, meta_stamp, size))
        return walked, errors

    def _stamped_record(
        self, key: str
    ) -> tuple[str, tuple[Hashable, Hashable] | None, bytes | Exception | None]:
        """A key's stamps, then its record (``read_metas``, for one key)."""
        errors: list[OSError] = []
        stamps = self._stamps(self.path(key), errors.append)
        if errors:
            return key, (None, None), errors[0]  # the scan reports it and tries again
        if stamps is None:
            return key, None, None
        try:
            return key, stamps, self.read_record(key)
        except Exception as exc:
            return key, stamps, exc

    def close(self) -> None:
        """End the measuring process, if one runs (the next batch starts a new one)."""
        self._worker.close()

    def staging_size(self) -> int:
        """Bytes of the files of fills in progress or left over (their metadata excluded)."""
        total = 0
        for name in self._listdir(self._staging):
            with contextlib.suppress(FileNotFoundError):
                total += _fs.tree_size(os.path.join(self._staging, name), skip=RESERVED)
        return total

    def staged_size(self, staged: str) -> int:
        return _fs.tree_size(staged, skip=RESERVED)

    def staged_stamp(self, staged: str) -> Hashable:
        """The staged folder's stamp: a rename keeps a folder's inode and mtime."""
        outer = os.stat(staged, follow_symlinks=False)
        return hash((outer.st_ino, outer.st_mtime_ns))

    def read_record(self, key: str) -> bytes:
        """The metadata record, read only as a small regular file.

        Raises:
            FileNotFoundError: the model or its record is missing.
            MetadataError: something other than a record is in its place (a folder, a
                symlink, a FIFO, a huge file).
        """
        path = f"{self.path(key)}/{RESERVED}/{_META}"
        try:
            return _fs.read_regular(path, MAX_META_BYTES)
        except NotADirectoryError:
            raise FileNotFoundError(errno.ENOENT, "not a model", self.path(key)) from None
        except ValueError as exc:
            raise MetadataError(f"unreadable metadata: {path} is {exc}") from None

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        self._update_meta(key, update)

    def _update_meta(
        self,
        key: str,
        update: Callable[[bytes | None], bytes],
        on_behalf: str | None = None,
    ) -> tuple[bytes | None, bytes]:
        """``update_meta``, returning the record given to ``update`` and the one written.

        ``on_behalf``: the journal tag of the process this one (its helper) works for.
        """
        folder = self.path(key)
        internal = f"{folder}/{RESERVED}"
        lock = _fs.lock_dir(folder, exclusive=True, wait=True)
        assert lock is not None
        try:
            if not self._is_real_dir(internal):  # evicted while we waited, or not a model
                raise FileNotFoundError(errno.ENOENT, "not a model", folder)
            target = f"{internal}/{_META}"
            try:
                current: bytes | None = _fs.read_regular(target, MAX_META_BYTES)
            except FileNotFoundError:
                current = None
            except ValueError:
                current = b""  # not a record: update() rebuilds it
            written = update(current)
            _fs.write_atomic(target, written)
        finally:
            lock.release()
        self._journal.record("m", key, lookups=_accesses(current, written), on_behalf=on_behalf)
        return current, written

    # -- policy state -------------------------------------------------------------------

    def read_state(self, name: str) -> bytes:
        """The state stored under ``name`` (``ROOT/.filecache/policy/NAME.state``)."""
        try:
            return _fs.read_regular(self._state_path(name), _MAX_STATE_BYTES)
        except ValueError as exc:
            raise OSError(errno.EINVAL, f"policy state is {exc}", self._state_path(name)) from None

    def write_state(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing the previous state atomically."""
        os.makedirs(self._policy, exist_ok=True)
        _fs.write_atomic(self._state_path(name), data)

    def _state_path(self, name: str) -> str:
        if not _STATE_NAME.fullmatch(name):
            raise ValueError(f"invalid policy state name {name!r}")
        return os.path.join(self._policy, f"{name}.state")

    # -- locks --------------------------------------------------------------------------

    def pin(self, key: str) -> FdLock | None:
        folder = self.path(key)
        if key not in self._checked:
            self._check_folders(key)
        internal = f"{folder}/{RESERVED}"
        try:
            fd = os.open(internal, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # a symlink is never a model
            raise
        try:
            # Blocks only while an evictor holds the exclusive lock, which lasts one rename.
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _fs.same_file(fd, internal):
                return FdLock(fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the model was evicted (or replaced) while we waited
        return None

    def lock_fill(self, key: str, timeout: float) -> FdLock:
        key_hash = _key_hash(key)
        path = self._bucket_lock_path(key_hash[:_FILL_BUCKETS_HEX])
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            lock = _fs.lock_file(path)
            if lock is not None:
                # The lock file could have been deleted and recreated while another
                # process filled this key: a live staging directory of the key says so.
                if not self._live_fill(key_hash):
                    return lock
                lock.release()
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"another process has been filling {key!r} for more than {timeout}s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _live_fill(self, key_hash: str) -> bool:
        for name in self._listdir(self._staging):
            if not name.startswith(key_hash):
                continue
            try:
                probe = _fs.lock_dir(os.path.join(self._staging, name), exclusive=True, wait=False)
            except FileNotFoundError:
                continue
            if probe is None:
                return True
            probe.release()
        return False

    def try_lead(self) -> FdLock | None:
        return _fs.lock_dir(self._internal, exclusive=True, wait=False)

    # -- writing ------------------------------------------------------------------------

    def stage(self, key: str) -> str:
        """Make the staging folder of a fill, holding its (empty) ``.filecache`` already.

        The marker folder is made now, not at publish, so that publishing does not change
        the folder's stamp measured just before.
        """
        os.makedirs(self._staging, exist_ok=True)
        for _ in range(100):
            staged = os.path.join(self._staging, f"{_key_hash(key)}.{uuid.uuid4().hex}")
            os.mkdir(staged)
            try:
                # A sweep may find the folder between its creation and this lock, take it
                # for a dead fill's and delete it: then try again with a new name.
                lock = _fs.lock_dir(staged, exclusive=True, wait=False)
            except FileNotFoundError:
                continue
            if lock is None or not _fs.same_file(lock.fd, staged):
                if lock is not None:
                    lock.release()
                continue
            self._staged[staged] = lock
            os.mkdir(os.path.join(staged, RESERVED))
            return staged
        raise OSError(errno.EAGAIN, "could not make a staging folder", self._staging)

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        internal = os.path.join(staged, RESERVED)
        if not self._is_real_dir(staged):
            raise FileNotFoundError(
                errno.ENOENT, "the staging directory vanished before publish", staged
            )
        if not self._is_real_dir(internal) or os.listdir(internal):
            raise FileExistsError(
                errno.EEXIST,
                f"the fill wrote into {RESERVED!r}, a name the cache reserves",
                internal,
            )
        _fs.write_atomic(os.path.join(internal, _META), meta)
        dest = self.path(key)
        with self._publishing():
            self._make_parents(key)
            try:
                _rename_folder(staged, dest)  # replaces an empty folder, fails on anything else
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise FileExistsError(
                        errno.EEXIST, "something else is stored at this key", dest
                    ) from exc
                if exc.errno == errno.ENOENT and not os.path.isdir(staged):
                    raise FileNotFoundError(
                        errno.ENOENT, "the staging directory vanished before publish", staged
                    ) from exc
                raise
        self._release_staged(staged)
        size, lookup = _published(meta)
        self._journal.record("p", key, size, lookups=lookup)

    def _make_model_in_place(self, key: str, meta: bytes) -> bool:
        """Make the folder at ``key`` a model holding ``meta``, as 1.0's ``write_meta`` did.

        The caller holds the key's fill lock. Returns False if it is a model already.

        Raises:
            FileNotFoundError: no folder is at ``key``.
            FileExistsError: a model is above or below ``key``.
        """
        folder = self.path(key)
        internal = f"{folder}/{RESERVED}"
        self._check_folders(key)
        with self._publishing():
            if not self._is_real_dir(folder):
                raise FileNotFoundError(errno.ENOENT, "no such model directory", folder)
            if self._is_real_dir(internal):
                return False
            for prefix in ancestors(key):
                if self._is_real_dir(f"{self.path(prefix)}/{RESERVED}"):
                    raise FileExistsError(
                        errno.EEXIST, f"model key {key!r} is inside the model {prefix!r}", folder
                    )
            for marker, inner in self._nested_markers(folder):
                if marker == RESERVED:
                    raise FileExistsError(errno.EEXIST, "a model is inside this folder", inner)
            os.mkdir(internal)
            _fs.write_atomic(f"{internal}/{_META}", meta)
        self._journal.record("p", key, _recorded_size(meta))
        return True

    def _make_parents(self, key: str) -> None:
        """Create the folders above ``key``, refusing symlinks and models on the way."""
        for prefix in ancestors(key):
            folder = self.path(prefix)
            try:
                os.mkdir(folder)
                continue
            except FileExistsError:
                pass
            st = os.stat(folder, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise KeyValidationError(f"model key {key!r} goes through the symlink {folder}")
            if not stat.S_ISDIR(st.st_mode):
                raise FileExistsError(errno.EEXIST, "a file is stored on the key's path", folder)
            if self._is_real_dir(f"{folder}/{RESERVED}"):
                raise FileExistsError(
                    errno.EEXIST, f"model key {key!r} is inside the model {prefix!r}", folder
                )

    def _check_folders(self, key: str) -> None:
        """Refuse a key whose folders (the model's own included) are symlinks; once per key."""
        for prefix in [*ancestors(key), key]:
            try:
                st = os.stat(self.path(prefix), follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISLNK(st.st_mode):
                raise KeyValidationError(
                    f"model key {key!r} goes through the symlink {self.path(prefix)}"
                )
        self._checked.add(key)

    def discard(self, staged: str) -> None:
        try:
            _fs.rmtree(staged)
        finally:
            self._release_staged(staged)

    def _release_staged(self, staged: str) -> None:
        lock = self._staged.pop(staged, None)
        if lock is not None:
            lock.release()

    def remove(self, key: str) -> bool:
        folder = self.path(key)
        internal = f"{folder}/{RESERVED}"
        try:
            lock = _fs.lock_dir(internal, exclusive=True, wait=False)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such model", folder) from None
        if lock is None:
            return False  # open in some process
        try:
            if not _fs.same_file(lock.fd, internal) or os.path.islink(folder):
                return False  # replaced by a new model since we looked
            trash = os.path.join(self._trash, uuid.uuid4().hex)
            _rename_folder(folder, trash)
        finally:
            lock.release()
        self._journal.record("r", key)
        _fs.rmtree(trash)
        self._prune_parents(folder)
        return True

    # -- helpers ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _publishing(self) -> Iterator[None]:
        """Hold the root's publish lock: publishes and pruning of parents, one at a time."""
        os.makedirs(self._staging, exist_ok=True)
        lock = _fs.lock_dir(self._staging, exclusive=True, wait=True)
        assert lock is not None
        try:
            yield
        finally:
            lock.release()

    def _bucket_lock_path(self, bucket: str) -> str:
        return os.path.join(self._locks, f"{bucket}.lock")

    @staticmethod
    def _kind(path: str) -> str | None:
        """``"dir"`` for a real folder, ``"other"`` for anything else, None if nothing is there."""
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        return "dir" if stat.S_ISDIR(mode) else "other"

    @staticmethod
    def _is_real_dir(path: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(path, follow_symlinks=False).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    @staticmethod
    def _listdir(folder: str) -> list[str]:
        try:
            return os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _prune_parents(self, folder: str) -> None:
        with self._publishing():
            parent = os.path.dirname(folder)
            while parent != self._root and parent.startswith(self._root + os.sep):
                try:
                    os.rmdir(parent)
                except OSError:
                    return  # not empty (or already gone): stop
                parent = os.path.dirname(parent)
