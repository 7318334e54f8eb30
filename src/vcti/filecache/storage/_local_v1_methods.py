"""1.0's storage methods on :class:`~vcti.filecache.storage.LocalStorage`, on 2.0's layout.

Kept for code written against vcti-file-cache 1.0, which called them to inspect a model,
to set its metadata, or from a backend that wraps or subclasses ``LocalStorage``. They
keep 1.0's meaning, on the layout of this package: a model is a folder holding
``.filecache/meta.json``, never ``.cache_meta``. Every write goes through the same locked,
journaled metadata update as the cache's own, so the next scan sees it like any other
change, and a write never disturbs a fill or a model that is open:

- ``write_meta`` on a published model replaces its access count and recorded size (the
  next measurement of the model corrects the size, as 1.0's next cycle did) under the
  model's metadata lock; pins and readers are unaffected.
- ``write_meta`` on a folder made by ``create_dir`` makes it a model where it is (as 1.0
  did), after waiting for a fill of the same key in any process to end; if that fill
  published a model meanwhile, its metadata is updated instead.
- ``delete_dir`` evicts a model as the cache does (it raises ``OSError(EBUSY)`` while
  the model is open in some process), and deletes a plain folder.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from .._entry import CacheEntry
from .._keys import RESERVED, validate_key
from .._meta import Meta
from ..exceptions import MetadataError
from . import _fs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .base import Lock

#: How long ``write_meta`` waits for a fill of the same key to end before it gives up.
FILL_WAIT = 600.0

_EMPTY = {"size": 0, "access_count": 0}


class _Host(Protocol):
    """What the methods need of ``LocalStorage``."""

    @property
    def root(self) -> str: ...
    def path(self, key: str) -> str: ...
    def is_model(self, key: str) -> bool: ...
    def iter_models(self, prefix: str = "") -> Iterator[str]: ...
    def read_record(self, key: str) -> bytes: ...
    def model_size(self, key: str) -> int: ...
    def remove(self, key: str) -> bool: ...
    def open(self) -> None: ...
    def sweep(self) -> int: ...
    def lock_fill(self, key: str, timeout: float) -> Lock: ...
    def _check_folders(self, key: str) -> None: ...
    def _update_meta(
        self, key: str, update: Callable[[bytes | None], bytes]
    ) -> tuple[bytes | None, bytes]: ...
    def _make_model_in_place(self, key: str, meta: bytes) -> bool: ...


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"metadata {name!r} must be a non-negative int, not {value!r}")
    return value


class LocalStorageV1Methods:
    """1.0's storage methods, with 1.0's meaning (see the module docstring).

    Paths are model keys relative to the root; one that leaves the root raises
    :class:`~vcti.filecache.KeyValidationError` ("outside cache root").
    """

    __slots__ = ()

    def key(self: _Host) -> str:
        """The name of the root (1.0's key of the manager's singleton): the root path."""
        return self.root

    def model_path(self: _Host, rel_path: str) -> str:
        """The full path of ``rel_path``."""
        return self.path(validate_key(rel_path))

    def dir_exists(self: _Host, rel_path: str) -> bool:
        """True if a folder is at ``rel_path`` (a model, or a folder of models)."""
        path = self.path(validate_key(rel_path))
        return os.path.isdir(path) and not os.path.islink(path)

    def create_dir(self: _Host, rel_path: str) -> None:
        """Create the folder ``rel_path`` (and its parents); ``write_meta`` makes it a model."""
        key = validate_key(rel_path)
        self._check_folders(key)
        os.makedirs(self.path(key), exist_ok=True)

    def delete_dir(self: _Host, rel_path: str) -> None:
        """Delete the folder ``rel_path`` and everything in it; nothing there is fine.

        Each model at or below it is evicted as the cache evicts (renamed away at once,
        recorded in the journal); a model open in some process is kept.

        Raises:
            OSError: ``EBUSY``, a model there is open in some process (the other models
                are evicted; it, and the files that are no model's, are kept).
        """
        key = validate_key(rel_path)
        path = self.path(key)
        busy: list[str] = []
        for model in list(self.iter_models(key)):
            try:
                if not self.remove(model):
                    busy.append(model)
            except FileNotFoundError:
                continue  # evicted meanwhile
        if busy:
            raise OSError(errno.EBUSY, f"{len(busy)} model(s) open, e.g. {busy[0]!r}", path)
        if os.path.isdir(path) and not os.path.islink(path):
            _fs.rmtree(path)

    def read_meta(self: _Host, rel_path: str) -> dict[str, Any]:
        """``{"size": int, "access_count": int}``; both 0 when missing or unreadable.

        ``size`` is the size recorded when the model was last measured (at publish, and
        by scans).
        """
        try:
            meta = Meta.decode(self.read_record(validate_key(rel_path)))
        except (OSError, MetadataError):
            return dict(_EMPTY)
        return {"size": meta.size or 0, "access_count": meta.access_count}

    def write_meta(
        self: _Host, rel_path: str, data: dict[str, Any], *, preserve_mtime: bool = False
    ) -> None:
        """Set the recorded size and access count; the last access becomes now.

        Args:
            rel_path: the model, or a folder made by ``create_dir`` (it becomes a model).
            data: ``{"size": int, "access_count": int}`` (a missing one is 0).
            preserve_mtime: keep the last access as it was.

        Raises:
            FileNotFoundError: no folder is at ``rel_path``.
            FileExistsError: a model is above or below ``rel_path``.
            ValueError: ``data`` holds something other than non-negative ints.
        """
        key = validate_key(rel_path)
        size, count = _count(data, "size"), _count(data, "access_count")
        now = time.time()

        def update(raw: bytes | None) -> bytes:
            meta, _ = Meta.read(raw, now)
            last = meta.last_access if preserve_mtime else now
            # stamp None: the next measurement of the model replaces the size given here.
            meta = replace(meta, access_count=count, last_access=last, size=size, stamp=None)
            return meta.encode()

        if self.is_model(key):
            try:
                self._update_meta(key, update)
                return
            except FileNotFoundError:
                pass  # evicted meanwhile: the folder is gone too, as below
        self.open()  # 1.0's code may not have opened the root: its fill locks live there
        fill = self.lock_fill(key, FILL_WAIT)
        try:
            if self.is_model(key):  # a fill published it while we waited
                self._update_meta(key, update)
            else:
                self._make_model_in_place(key, Meta(count, now, now, size=size).encode())
        finally:
            fill.release()

    def touch_access(self: _Host, rel_path: str) -> None:
        """Record an access: the model's last access becomes now.

        Raises:
            FileNotFoundError: ``rel_path`` is not a model.
        """
        now = time.time()

        def update(raw: bytes | None) -> bytes:
            meta, _ = Meta.read(raw, now)
            return replace(meta, last_access=now).encode()

        self._update_meta(validate_key(rel_path), update)

    def scan_entries(self: _Host) -> list[CacheEntry]:
        """Every model, as ``ModelInfo(path, size, last_access, access_count)``.

        The size is the recorded one (measured when none is recorded); unreadable
        metadata reads as no accesses, last access now.
        """
        now = time.time()
        entries: list[CacheEntry] = []
        for key in self.iter_models():
            try:
                raw: bytes | None = self.read_record(key)
            except FileNotFoundError:
                raw = None
            except (OSError, MetadataError):
                raw = b""
            meta, _ = Meta.read(raw, now)
            size = meta.size
            if size is None:
                try:
                    size = self.model_size(key)
                except FileNotFoundError:
                    continue  # evicted meanwhile
            entries.append(CacheEntry(key, size, meta.access_count, meta.last_access, meta.created))
        return entries

    def compute_dir_size(self: _Host, rel_path: str) -> int:
        """Bytes of the files below ``rel_path`` (the cache's own excluded); 0 if missing."""
        try:
            return _fs.tree_size(self.path(validate_key(rel_path)), skip=RESERVED)
        except FileNotFoundError:
            return 0

    def cleanup_temp_files(self: _Host) -> None:
        """Delete the leftovers of interrupted fills and deletes that no process holds.

        Raises:
            OSError: something unexpected was found in the cache's folders (removed) or
                could not be removed (see ``sweep``).
        """
        self.sweep()
