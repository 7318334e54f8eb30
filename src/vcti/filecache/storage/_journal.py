"""The change journal of a local root: one line per change, appended by every process.

``ROOT/.filecache/journal`` holds one JSON line per change made through the library:
``["p", KEY, SIZE, TAG]`` a publish of SIZE bytes, ``["r", KEY, TAG]`` a removal,
``["m", KEY, TAG]`` a metadata write (accesses written behind, a size recorded, a record
rebuilt). TAG is unique to the line: the writing process's random tag and its count of
lines written (a helper process writing for another puts that one's tag and a ``/``
first). A line may end with an object after its TAG, the lookups it stands for (readers
that do not know it ignore it): a publish's ``{"at": T, "fill": S}``, its fill looked up
at epoch T and taking S seconds; accesses written behind ``{"n": N, "last": T, "since":
T0}``, N accesses, the last at T, after the record's previous last access T0 (the
leader's what-if simulations replay the other processes' lookups from them).

A line is appended with one ``write`` on an ``O_APPEND`` descriptor, which a local
filesystem does whole, so processes never interleave lines, and a process killed while
writing leaves at worst an incomplete last line, which readers wait for and then skip as
damaged.

A reader keeps a cursor (the file's inode, an offset, and the length and checksum of the
last line before it) and reads only what was appended since, after checking that the
line before the offset is still the one it read: a file truncated in place (``: >
journal``, logrotate's ``copytruncate``) and grown back past the cursor, or replaced by
one that reuses the inode, fails that check (the line's TAG is never written twice). The
leader starts a new file (an atomic rename) once the old one is large; a reader whose
cursor names the old inode then knows nothing of what changed before the new file and
walks every model once (the new file's publishes it is told). A journal that is missing,
damaged, truncated or not a regular file is reported and means the same: a full walk,
until the next change recreates it.

The leader also records, after each cycle, the total it left the root at and where it
had read the journal up to (``ROOT/.filecache/total``): with the bytes published since,
any process can tell how far over the limit the root is.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import os
import stat
import zlib
from collections.abc import Hashable
from typing import TypeGuard

from . import _fs
from .base import Changes, PeerRequest

#: A new file once the journal is this large (about 20,000 changes).
ROTATE_BYTES = 1 << 20

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_MAX_TOTAL_BYTES = 4096


class _Tags:
    """Tags unique to each line: this process's random tag and a count of lines."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.count = itertools.count()

    def next(self, on_behalf: str | None = None) -> str:
        tag = f"{self.prefix}.{next(self.count)}"
        return tag if on_behalf is None else f"{on_behalf}/{tag}"


_tags = _Tags()
os.register_at_fork(after_in_child=_tags.renew)  # a forked child is another writer


def writer() -> str:
    """This process's tag in the journal (a helper working for it writes on its behalf)."""
    return _tags.prefix


def _writer_of(tag: str) -> str:
    """The process a line's TAG stands for: the one a helper wrote for, or its writer."""
    return tag.partition("/")[0].partition(".")[0]


def _writer(item: list[object]) -> str | None:
    """The process a line stands for, by its TAG (the last item, or the one before the
    lookups); None for a line without a tag."""
    tag = item[-2] if isinstance(item[-1], dict) and len(item) > 3 else item[-1]
    return _writer_of(tag) if isinstance(tag, str) else None


class Journal:
    """Appends changes to, and reads them from, one journal file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._total_path = os.path.join(os.path.dirname(path), "total")

    def record(
        self,
        kind: str,
        key: str,
        size: int | None = None,
        *,
        lookups: dict[str, float | int] | None = None,
        on_behalf: str | None = None,
    ) -> None:
        """Append one change; a failure removes the file, so readers walk instead.

        Args:
            kind: ``"p"``, ``"r"`` or ``"m"``.
            key: the model.
            size: a publish's bytes.
            lookups: the lookups the change stands for (see the module's docstring).
            on_behalf: the tag of the process this one (a helper) writes for.
        """
        tag = _tags.next(on_behalf)
        item: list[object] = [kind, key, tag] if size is None else [kind, key, size, tag]
        if lookups:
            item.append(lookups)
        line = (json.dumps(item, separators=(",", ":")) + "\n").encode()
        try:
            try:
                fd = os.open(self.path, _FLAGS, 0o644)
            except OSError as exc:
                if exc.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO):
                    raise
                _fs.remove_entry(self.path)  # a folder, a link or a FIFO in its place
                fd = os.open(self.path, _FLAGS, 0o644)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EINVAL, "not a regular file", self.path)
                if os.write(fd, line) != len(line):
                    raise OSError(errno.EIO, "short write", self.path)
            finally:
                os.close(fd)
        except OSError:
            # The change itself is done; if it cannot be recorded, readers must learn that
            # they missed something: no journal means a full walk.
            with contextlib.suppress(OSError):
                _fs.remove_entry(self.path)

    def generation(self) -> Hashable:
        """The file's identity and size: it changes with every change (None: no file).

        Raises:
            OSError: something other than a regular file is in its place.
        """
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise OSError(
                errno.EINVAL, "not a regular file; scans walk until it is replaced", self.path
            )
        return st.st_ino, st.st_size

    def rotate_if_large(self) -> None:
        """Start a new file once this one is large (the leader does, at its sweep)."""
        with contextlib.suppress(OSError):
            st = os.stat(self.path, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_size > ROTATE_BYTES:
                _fs.write_atomic(self.path, b"")

    def record_total(self, total: int, cursor: object) -> None:
        """Record that the root held ``total`` bytes when the journal was read to ``cursor``."""
        data = json.dumps({"total": total, "cursor": cursor}, separators=(",", ":"))
        _fs.write_atomic(self._total_path, data.encode())

    def recorded_total(self) -> tuple[int, object] | None:
        """The last total recorded and its cursor (None: none, or unreadable)."""
        try:
            item = json.loads(_fs.read_regular(self._total_path, _MAX_TOTAL_BYTES))
            total, cursor = item["total"], item["cursor"]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not isinstance(total, int) or not isinstance(cursor, list):
            return None
        return total, tuple(cursor)

    def read(self, cursor: object | None, *, peers: bool = False) -> Changes:
        """What changed since ``cursor``; see :class:`~.base.Changes`.

        ``peers``: also the lookups other processes recorded (``Changes.requests``).
        """
        if self._unchanged(cursor):
            return Changes(cursor, frozenset())
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if cursor is None or cursor[:2] == (None, 0):  # type: ignore[index]
                # No change was ever recorded: nothing to know (the first read walks).
                return Changes(_START, None if cursor is None else frozenset())
            return self._lost(FileNotFoundError(errno.ENOENT, "the journal is missing", self.path))
        except OSError as exc:
            return self._lost(exc)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return self._lost(OSError(errno.EINVAL, "the journal is not a file", self.path))
            if cursor is None:
                return Changes(self._end(fd, st), None)  # the first read: nothing known
            inode, offset, tail_len, tail_sum = _unpack(cursor)
            if inode not in (None, st.st_ino):  # (None: no file at the last read)
                return self._rotated(fd, st, peers=peers)
            start = offset - tail_len
            if st.st_size < offset or start < 0:
                return self._truncated(fd, st)
            os.lseek(fd, start, os.SEEK_SET)
            data = _read_all(fd, st.st_size - start)
        finally:
            os.close(fd)
        if zlib.crc32(data[:tail_len]) != tail_sum:
            # Not the line read before the cursor: truncated (or replaced) and regrown.
            return Changes(_cursor_at(st, start, data, aligned=False), None, 0, self._cut())
        end = data.rfind(b"\n") + 1  # an incomplete last line is read next time
        if end <= tail_len:
            mtime = st.st_mtime_ns if end == len(data) else None
            return Changes((st.st_ino, offset, tail_len, tail_sum, mtime), frozenset())
        requests: list[PeerRequest] | None = [] if peers else None
        keys, published, here, damaged = _parse(data[tail_len:end], requests)
        cursor = _cursor_at(st, start, data, aligned=True)
        found = () if requests is None else tuple(requests)
        if damaged:
            error = OSError(errno.EINVAL, f"{damaged} damaged lines in the journal", self.path)
            return Changes(cursor, None, published, error, found, here)
        return Changes(cursor, frozenset(keys), published, requests=found, published_here=here)

    def _rotated(self, fd: int, st: os.stat_result, *, peers: bool) -> Changes:
        """A new file since the cursor: what changed before it is unknown; what was
        published since, it says (it is small: the rotation was recent)."""
        data = _read_all(fd, min(st.st_size, ROTATE_BYTES))
        found: list[PeerRequest] | None = [] if peers else None
        _, published, here, _ = _parse(data[: data.rfind(b"\n") + 1], found)
        requests = () if found is None else tuple(found)
        cursor = _cursor_at(st, 0, data, aligned=True)
        return Changes(cursor, None, published, None, requests, here)

    def _unchanged(self, cursor: object) -> bool:
        """True if one stat shows the same file, no longer and no newer than at ``cursor``.

        (The leader looks a few times a second where nothing wakes it.)
        """
        if not (isinstance(cursor, tuple) and len(cursor) == 5 and cursor[0] is not None):
            return False
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False  # reported by the read
        return stat.S_ISREG(st.st_mode) and (st.st_ino, st.st_size, st.st_mtime_ns) == (
            cursor[0],
            cursor[1],
            cursor[4],
        )

    def _end(self, fd: int, st: os.stat_result) -> tuple[object, ...]:
        """The cursor after the last complete line of the open file ``fd``."""
        start = max(0, st.st_size - _TAIL_READ)
        os.lseek(fd, start, os.SEEK_SET)
        return _cursor_at(st, start, _read_all(fd, st.st_size - start), aligned=start == 0)

    def _cut(self) -> OSError:
        return OSError(errno.EINVAL, "the journal was truncated or replaced in place", self.path)

    def _truncated(self, fd: int, st: os.stat_result) -> Changes:
        return Changes(self._end(fd, st), None, 0, self._cut())

    def _lost(self, error: OSError, inode: object = None) -> Changes:
        return Changes((inode, 0, 0, 0, None), None, 0, error)


#: The cursor of a journal that was never written.
_START = (None, 0, 0, 0, None)
#: Bytes read from the end of the file to find its last complete line (a key is at most
#: a few KiB); a longer line makes the cursor start after it with no line to check.
_TAIL_READ = 16384


def _unpack(cursor: object) -> tuple[object, int, int, int]:
    if isinstance(cursor, tuple) and len(cursor) == 5:
        inode, offset, tail_len, tail_sum, _ = cursor
        if isinstance(offset, int) and isinstance(tail_len, int) and isinstance(tail_sum, int):
            return inode, offset, tail_len, tail_sum
    return None, 0, 0, 0


def _cursor_at(st: os.stat_result, start: int, data: bytes, *, aligned: bool) -> tuple[object, ...]:
    """The cursor after the last complete line of ``data``, read from offset ``start``.

    ``aligned``: ``data`` starts at the beginning of a line.
    """
    end = data.rfind(b"\n") + 1
    begin = data.rfind(b"\n", 0, max(0, end - 1)) + 1
    if begin == 0 and not aligned:
        begin = end  # the line began before what was read: not checked
    tail = data[begin:end]
    mtime = st.st_mtime_ns if end == len(data) else None  # at the end: a stat may tell
    return (st.st_ino, start + end, len(tail), zlib.crc32(tail), mtime)


def _parse(
    data: bytes, requests: list[PeerRequest] | None = None
) -> tuple[set[str], int, int, int]:
    """The keys and published bytes of complete lines, of them the bytes this process
    published, and how many lines were damaged.

    With ``requests``, the lookups other processes recorded are appended to it.
    """
    own = _tags.prefix
    keys: set[str] = set()
    published = here = 0
    damaged = 0
    for line in data.splitlines():
        try:
            item = json.loads(line)
            kind, key = item[0], item[1]
            if not isinstance(key, str) or kind not in ("p", "r", "m"):
                raise ValueError(line)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError):
            damaged += 1
            continue
        keys.add(key)
        if kind == "p" and len(item) > 2 and isinstance(item[2], int):
            published += item[2]
            if _writer(item) == own:
                here += item[2]
        if requests is not None and isinstance(item[-1], dict) and len(item) > 3:
            request = _request(kind, key, item, own)
            if request is not None:
                requests.append(request)
    return keys, published, here, damaged


def _request(kind: str, key: str, item: list[object], own: str) -> PeerRequest | None:
    """The lookups a line with an object after its TAG stands for (None: none, or ours)."""
    lookups = item[-1]
    assert isinstance(lookups, dict)
    if _writer(item) in (None, own):
        return None
    if kind == "p" and isinstance(item[2], int) and _is_time(at := lookups.get("at")):
        fill = lookups.get("fill")
        return PeerRequest(key, at, size=item[2], fill=fill if _is_time(fill) else None)
    if kind == "m" and _is_time(last := lookups.get("last")):
        count, since = lookups.get("n"), lookups.get("since")
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            return PeerRequest(key, last, hits=count, since=since if _is_time(since) else None)
    return None


def _is_time(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
