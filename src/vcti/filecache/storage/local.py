"""Model directories on a local (POSIX) filesystem.

Layout under the root::

    ROOT/.filecache/staging/BUCKET.UUID/   fills in progress (renamed into place on publish)
    ROOT/.filecache/trash/UUID/            evicted models being deleted
    ROOT/.filecache/locks/BUCKET.lock      fill locks (flock, one per key hash bucket)
    ROOT/.filecache/leader.lock            held by the process that scans and evicts
    ROOT/a/b/model/.filecache/meta.json    the marker and metadata of model "a/b/model"
    ROOT/a/b/model/.filecache/pin.lock     shared-locked while the model is open anywhere

Locks are ``flock`` locks, so the kernel drops them when a process dies: no lock can be
left stale by a crash. Publish and eviction are renames, so correctness does not depend
on a lock alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Callable, Hashable, Iterator

from .._keys import RESERVED
from ..exceptions import LockTimeoutError

_META = "meta.json"
_PIN = "pin.lock"
_META_LOCK = "meta.lock"
_FILL_BUCKETS_HEX = 4  # 65,536 fill-lock files at most; a collision only serialises two fills
_GENERATION = "generation"
_GENERATION_ROTATE = 1 << 20  # bytes: one per change, so a fresh file every million changes


class _FdLock:
    """A held ``flock`` on an open file descriptor."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # closing the descriptor drops its flock


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def _tree_size(top: str, skip: str | None = None) -> int:
    """Bytes of the regular files below ``top``, never following symlinks.

    Entries that vanish during the walk are ignored; ``FileNotFoundError`` is raised
    only when ``top`` itself is missing.
    """
    total = 0
    stack = [top]
    first = True
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except FileNotFoundError:
            if first:
                raise
            continue
        first = False
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not (skip is not None and folder == top and entry.name == skip):
                            stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
    return total


def _rmtree(path: str) -> None:
    """Delete a tree (never following symlinks); entries already gone are fine."""

    def ignore_missing(func: Callable[..., object], name: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=ignore_missing)
    else:
        shutil.rmtree(path, onerror=lambda f, n, info: ignore_missing(f, n, info[1]))


class LocalStorage:
    """Stores each model as a directory below ``root`` on a local filesystem.

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
        self._generation = os.path.join(self._internal, _GENERATION)

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

    def open(self) -> None:
        for folder in (self._staging, self._trash, self._locks):
            os.makedirs(folder, exist_ok=True)
        self.sweep()

    def disk_usage(self) -> tuple[int, int]:
        """``(free, total)`` bytes of the filesystem under the root (``statvfs``).

        ``free`` is what unprivileged users may still write (``f_bavail``), the figure
        ``df`` shows as available.
        """
        st = os.statvfs(self._root)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def generation(self) -> Hashable:
        """A value that changes whenever any process changes the cache through the library.

        Publishing, removing and writing metadata (which every ``model()`` context leads
        to, through the written-behind access) each append one byte to
        ``.filecache/generation``;
        the value is that file's identity and size. None when the file is missing. Changes
        made behind the library's back do not count: the manager's full scans see them.
        """
        try:
            st = os.stat(self._generation)
        except OSError:
            return None
        return st.st_ino, st.st_size

    def _bump(self) -> None:
        try:
            fd = os.open(self._generation, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC)
            try:
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError:
            # The change itself is done; if it cannot be announced, make the generation
            # unknown, which makes every scan walk, until the next bump recreates the file.
            with contextlib.suppress(OSError):
                os.unlink(self._generation)

    def sweep(self) -> int:
        """Delete staging and trash leftovers that no live process holds; return their bytes.

        It also starts a fresh generation file once the old one is large. (A bump that
        lands in the old file after the swap is one whose change happened before the
        swap, which the scan that follows the sweep sees.)
        """
        with contextlib.suppress(OSError):
            if os.stat(self._generation).st_size > _GENERATION_ROTATE:
                self._write_atomic(self._generation, b"")
        freed = 0
        for name in self._listdir(self._trash):
            leftover = os.path.join(self._trash, name)
            with contextlib.suppress(FileNotFoundError):
                freed += _tree_size(leftover)
            _rmtree(leftover)
        for name in self._listdir(self._staging):
            bucket = name.partition(".")[0]
            lock = self._try_lock(self._bucket_lock_path(bucket))
            if lock is None:
                continue  # a live fill in that bucket; its staging area is not a leftover
            try:
                leftover = os.path.join(self._staging, name)
                with contextlib.suppress(FileNotFoundError):
                    freed += _tree_size(leftover)
                _rmtree(leftover)
            finally:
                lock.release()
        return freed

    def verify(self, repair: bool) -> list[str]:
        problems: list[str] = []
        for name in self._listdir(self._trash):
            problems.append(f"leftover delete: {os.path.join(self._trash, name)}")
        for name in self._listdir(self._staging):
            lock = self._try_lock(self._bucket_lock_path(name.partition(".")[0]))
            if lock is not None:
                lock.release()
                problems.append(f"leftover fill: {os.path.join(self._staging, name)}")
        if repair:
            self.sweep()
        for key in self.iter_models():
            internal = os.path.join(self.path(key), RESERVED)
            for name in (_PIN, _META_LOCK):
                if not os.path.isfile(os.path.join(internal, name)):
                    problems.append(f"model {key!r}: missing {RESERVED}/{name}")
                    if repair:
                        with contextlib.suppress(FileNotFoundError):
                            os.close(os.open(os.path.join(internal, name), os.O_CREAT, 0o644))
            for name in self._listdir(internal):
                if name.endswith(".tmp"):
                    problems.append(f"model {key!r}: leftover {RESERVED}/{name}")
                    if repair:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(internal, name))
            inner = next(self._nested_markers(self.path(key)), None)
            if inner is not None:
                problems.append(f"model {key!r} contains another model folder at {inner}")
        return problems

    @staticmethod
    def _nested_markers(top: str) -> Iterator[str]:
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name == RESERVED and folder != top:
                    yield folder
                elif entry.name != RESERVED and entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)

    # -- reading ----------------------------------------------------------------------

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
        scan catches those.
        """
        skip = len(self._root) + 1  # a model's path is f"{root}/{key}"
        if prefix:
            stamps = self._stamps(self.path(prefix), onerror)
            if stamps is not None:
                yield prefix, *stamps
                return
            stack = [self.path(prefix)]
        else:
            stack = [self._root]
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
            except FileNotFoundError:
                # No metadata: still a model if the marker folder exists (the scan
                # rebuilds the metadata); a stamp of None is never equal to a known one.
                inner = os.stat(f"{folder}/{RESERVED}", follow_symlinks=False)
                if not stat.S_ISDIR(inner.st_mode):
                    return None
                meta_stamp = None
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
        return os.path.isfile(os.path.join(self.path(key), RESERVED, _PIN))

    def exists(self, key: str) -> bool:
        return os.path.lexists(self.path(key))

    def model_size(self, key: str) -> int:
        return _tree_size(self.path(key), skip=RESERVED)

    def staging_size(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return _tree_size(self._staging)
        return 0

    def read_meta(self, key: str) -> bytes:
        with open(os.path.join(self.path(key), RESERVED, _META), "rb") as f:
            return f.read()

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        internal = os.path.join(self.path(key), RESERVED)
        if not os.path.isdir(internal):
            raise FileNotFoundError(errno.ENOENT, "not a model", self.path(key))
        fd = os.open(os.path.join(internal, _META_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not os.path.isdir(internal):  # evicted while we waited
                raise FileNotFoundError(errno.ENOENT, "not a model", self.path(key))
            target = os.path.join(internal, _META)
            try:
                with open(target, "rb") as f:
                    current: bytes | None = f.read()
            except FileNotFoundError:
                current = None
            self._write_atomic(target, update(current))
        finally:
            os.close(fd)
        self._bump()

    # -- locks ------------------------------------------------------------------------

    def pin(self, key: str) -> _FdLock | None:
        folder = self.path(key)
        pin_path = f"{folder}/{RESERVED}/{_PIN}"
        try:
            fd = os.open(pin_path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            # Blocks only while an evictor holds the exclusive lock, which lasts one rename.
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _same_file(fd, pin_path):
                return _FdLock(fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the model was evicted (or replaced) while we waited
        return None

    def lock_fill(self, key: str, timeout: float) -> _FdLock:
        bucket = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        path = self._bucket_lock_path(bucket[:_FILL_BUCKETS_HEX])
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            lock = self._try_lock(path)
            if lock is not None:
                return lock
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"another process has been filling {key!r} for more than {timeout}s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def try_lead(self) -> _FdLock | None:
        return self._try_lock(os.path.join(self._internal, "leader.lock"))

    # -- writing ----------------------------------------------------------------------

    def stage(self, key: str) -> str:
        bucket = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        staged = os.path.join(self._staging, f"{bucket[:_FILL_BUCKETS_HEX]}.{uuid.uuid4().hex}")
        os.makedirs(staged)
        return staged

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        internal = os.path.join(staged, RESERVED)
        os.makedirs(internal, exist_ok=True)
        self._write_atomic(os.path.join(internal, _META), meta)
        for name in (_PIN, _META_LOCK):
            os.close(os.open(os.path.join(internal, name), os.O_WRONLY | os.O_CREAT, 0o644))
        dest = self.path(key)
        for _ in range(10):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            try:
                os.rename(staged, dest)  # replaces an empty folder, fails on anything else
                self._bump()
                return
            except FileNotFoundError:
                continue  # an evictor pruned the empty parent in between; make it again
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise FileExistsError(
                        errno.EEXIST, "something else is stored at this key", dest
                    ) from exc
                raise
        raise FileNotFoundError(errno.ENOENT, "the parent folder kept vanishing", dest)

    def discard(self, staged: str) -> None:
        _rmtree(staged)

    def remove(self, key: str) -> bool:
        folder = self.path(key)
        pin_path = os.path.join(folder, RESERVED, _PIN)
        try:
            fd = os.open(pin_path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(errno.ENOENT, "no such model", folder) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # open in some process
            if not _same_file(fd, pin_path):
                return False  # replaced by a new model since we looked
            trash = os.path.join(self._trash, uuid.uuid4().hex)
            os.rename(folder, trash)
        finally:
            os.close(fd)
        self._bump()
        _rmtree(trash)
        self._prune_parents(folder)
        return True

    # -- helpers ----------------------------------------------------------------------

    def _bucket_lock_path(self, bucket: str) -> str:
        return os.path.join(self._locks, f"{bucket}.lock")

    @staticmethod
    def _try_lock(path: str) -> _FdLock | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return _FdLock(fd)

    @staticmethod
    def _listdir(folder: str) -> list[str]:
        try:
            return os.listdir(folder)
        except FileNotFoundError:
            return []

    @staticmethod
    def _write_atomic(target: str, data: bytes) -> None:
        tmp = f"{target}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _prune_parents(self, folder: str) -> None:
        parent = os.path.dirname(folder)
        while parent != self._root and parent.startswith(self._root + os.sep):
            try:
                os.rmdir(parent)
            except OSError:
                return  # not empty (or already gone): stop
            parent = os.path.dirname(parent)
