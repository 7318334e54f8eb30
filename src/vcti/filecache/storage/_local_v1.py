"""Adoption of a cache root written by vcti-file-cache 1.0.

1.0 kept a model as any directory below the root that holds a ``.cache_meta`` JSON file,
``{"size": int, "access_count": int}``; the model's last access is that file's mtime. It
wrote the file through temporary files named ``.cache_meta.<pid>.<thread-id>.tmp``, and
allowed a model inside a model.

Adopting a 1.0 model gives it this package's marker and metadata (``.filecache/meta.json``
with the access count, and the 1.0 file's mtime as its last access and creation time),
then deletes ``.cache_meta`` and its temporary files. The metadata is written first, so
a process killed in between leaves a model of this package with a stale ``.cache_meta``,
which the next adoption deletes. Only the outermost model of a nest is adopted; models
inside it stay plain folders of its files, and are reported. A folder whose path is not
a valid key is left alone, and reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .._entry import AdoptionReport, CacheEntry
from .._keys import RESERVED, validate_key
from .._meta import MAX_META_BYTES, Meta
from ..exceptions import KeyValidationError
from . import _fs

#: The metadata file name of vcti-file-cache 1.0.
CACHE_META = ".cache_meta"

_MODEL_META = "meta.json"


@dataclass(frozen=True)
class _Found:
    key: str
    folder: str
    adopted: bool  # already a model of this package (a stale .cache_meta is left)


def find_v1(root: str) -> tuple[list[_Found], list[str]]:
    """Walk ``root`` for 1.0 models; return them and the problems, touching nothing."""
    found: list[_Found] = []
    problems: list[str] = []
    skip = len(root) + 1
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                names = {e.name: e for e in entries}
        except OSError:
            continue
        if folder != root and (CACHE_META in names or RESERVED in names):
            key = folder[skip:]
            ours = RESERVED in names and names[RESERVED].is_dir(follow_symlinks=False)
            if CACHE_META in names or any(_is_v1_tmp(n) for n in names):
                try:
                    validate_key(key)
                except KeyValidationError as exc:
                    problems.append(f"1.0 model folder {folder} left alone: {exc}")
                    continue
                found.append(_Found(key, folder, ours))
                problems.extend(
                    f"model {key!r} contains a 1.0 model folder at {inner}"
                    for inner in _nested_v1(folder)
                )
            continue
        for name, entry in sorted(names.items(), reverse=True):
            if folder == root and name == RESERVED:
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return found, problems


def _nested_v1(top: str) -> Iterator[str]:
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                items = list(entries)
        except OSError:
            continue
        for entry in items:
            if entry.name == CACHE_META and folder != top:
                yield folder
            elif entry.name != RESERVED and entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)


def _is_v1_tmp(name: str) -> bool:
    return name.startswith(CACHE_META + ".") and name.endswith(".tmp")


def plan_v1(root: str) -> AdoptionReport:
    """What adopting ``root`` would do, without doing it (for ``verify``)."""
    found, problems = find_v1(root)
    return AdoptionReport(tuple(f.key for f in found if not f.adopted), tuple(problems))


def inspect_v1(root: str, onerror: Callable[[OSError], object] | None = None) -> list[CacheEntry]:
    """The 1.0 models not adopted yet, as 1.0 recorded them, touching nothing.

    A model's size is measured as adoption will measure it (its files without 1.0's
    metadata); its access count and last access are 1.0's, its creation time unknown to
    1.0 and shown as its last access, as adoption records it. A model that cannot be
    read is left out and passed to ``onerror``.
    """
    found, _ = find_v1(root)
    entries: list[CacheEntry] = []
    for item in found:
        if item.adopted:
            continue
        v1_meta = os.path.join(item.folder, CACHE_META)
        try:
            mtime = os.stat(v1_meta, follow_symlinks=False).st_mtime
            size = _fs.tree_size(item.folder, skip=RESERVED) - _v1_files_size(item.folder)
        except FileNotFoundError:
            continue  # adopted or removed meanwhile
        except OSError as exc:
            if onerror is not None:
                onerror(exc)
            continue
        entries.append(CacheEntry(item.key, max(size, 0), _v1_count(v1_meta), mtime, mtime))
    return entries


def _v1_files_size(folder: str) -> int:
    """Bytes of 1.0's metadata and temporary files directly in ``folder``."""
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if (entry.name == CACHE_META or _is_v1_tmp(entry.name)) and entry.is_file(
                follow_symlinks=False
            ):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def adopt_v1(root: str) -> AdoptionReport:
    """Adopt every 1.0 model below ``root``; the caller holds the root exclusively."""
    found, problems = find_v1(root)
    adopted: list[str] = []
    for item in found:
        try:
            if _adopt(item):
                adopted.append(item.key)
        except OSError as exc:
            problems.append(f"1.0 model {item.key!r} could not be adopted: {exc}")
    return AdoptionReport(tuple(adopted), tuple(problems))


def _adopt(item: _Found) -> bool:
    """Adopt one model; True if it became a model here (False: only leftovers removed)."""
    v1_meta = os.path.join(item.folder, CACHE_META)
    internal = os.path.join(item.folder, RESERVED)
    target = os.path.join(internal, _MODEL_META)
    made = False
    if not (item.adopted and os.path.lexists(target)):
        try:
            st = os.stat(v1_meta, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            count = _v1_count(v1_meta)
            meta = Meta(count, st.st_mtime, st.st_mtime)
            try:
                os.mkdir(internal)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(internal, follow_symlinks=False).st_mode):
                    raise OSError(f"{internal} is in the way") from None
            _fs.write_atomic(target, meta.encode())
            made = True
    for name in os.listdir(item.folder):
        if name == CACHE_META or _is_v1_tmp(name):
            _fs.remove_entry(os.path.join(item.folder, name))
    return made


def _v1_count(path: str) -> int:
    """The access count of a 1.0 metadata file; 0 when it is unreadable (as 1.0 did)."""
    try:
        data = json.loads(_fs.read_regular(path, MAX_META_BYTES))
    except (OSError, ValueError, RecursionError):
        return 0
    count = data.get("access_count") if isinstance(data, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0
