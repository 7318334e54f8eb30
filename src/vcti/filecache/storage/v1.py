"""Backends written for vcti-file-cache 1.0: their protocol, and the adapter that runs them.

A 1.0 backend manages model directories in place: ``create_dir`` makes one, the fill
writes into it, ``write_meta`` records it. ``FileCache(storage=...)`` and
``CacheManager.acquire`` recognise such a backend by its methods and wrap it in
:class:`StorageV1Adapter`, which gives the core the :class:`~.base.CacheStorage` it needs.

What the adapter cannot give without staging and cross-process locks, which 1.0's
protocol has no way to express:

- a fill writes into the model's own directory, so a reader in *another process* can
  see a model that is still being filled (in this process, openers wait for the fill);
- pins and the single fill hold between the threads of one process only: another
  process may evict a model open here, or fill the same model at the same time;
- every process scans and evicts (there is no leader election);
- metadata updates are read-modify-write without a lock between processes;
- a model of another version (``model(key, version=...)``) cannot be filled again beside
  the old one: the refill raises ``FileExistsError``.

Use one process per root with such a backend, or move to a native backend.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from .._keys import is_nested
from .._meta import Meta
from ..exceptions import MetadataError
from .base import CacheStorage

__all__ = ["CACHE_META", "StorageV1", "StorageV1Adapter", "as_storage"]

#: The metadata file name of vcti-file-cache 1.0 (a model is a directory holding it).
CACHE_META = ".cache_meta"

_RECORD = "vcti_filecache"  # where the adapter keeps this package's record in 1.0's dict


@runtime_checkable
class StorageV1(Protocol):
    """The storage protocol of vcti-file-cache 1.0 (paths are relative to the root)."""

    def key(self) -> str:
        """A string that names the root (the manager's singleton key)."""
        ...

    def create_dir(self, rel_path: str) -> Any:
        """Create the model directory ``rel_path`` (and its parents)."""
        ...

    def delete_dir(self, rel_path: str) -> Any:
        """Delete the model directory ``rel_path`` and everything in it."""
        ...

    def dir_exists(self, rel_path: str) -> bool:
        """True if the directory ``rel_path`` exists."""
        ...

    def model_path(self, rel_path: str) -> str:
        """The full path (or URI) of ``rel_path``."""
        ...

    def read_meta(self, rel_path: str) -> dict[str, Any]:
        """The model's metadata; ``{"size": 0, "access_count": 0}`` when missing or unreadable."""
        ...

    def write_meta(
        self, rel_path: str, data: dict[str, Any], *, preserve_mtime: bool = False
    ) -> Any:
        """Replace the model's metadata (its mtime is the last access unless preserved)."""
        ...

    def touch_access(self, rel_path: str) -> Any:
        """Record an access: set the metadata's mtime to now."""
        ...

    def scan_entries(self) -> list[Any]:
        """Every model, as ``ModelInfo(path, size, last_access, access_count)``."""
        ...

    def compute_dir_size(self, rel_path: str) -> int:
        """Bytes of the files of ``rel_path``."""
        ...

    def cleanup_temp_files(self) -> Any:
        """Delete leftover temporary files."""
        ...


_V1_METHODS = ("create_dir", "delete_dir", "scan_entries", "write_meta", "model_path")


def _is_v1(storage: object) -> bool:
    """True for a backend with 1.0's methods that does not implement 2.0's own fills.

    Recognised by its methods, not its base classes: a 1.0 backend that subclasses
    :class:`~.base.CacheStorage` explicitly (1.0's protocol had that name) inherits the
    protocol's empty methods, which do not count. ``LocalStorage`` has both method sets,
    and is a backend of this package.
    """
    return all(callable(getattr(storage, name, None)) for name in _V1_METHODS) and not (
        _implements(storage, "stage")
    )


def _implements(storage: object, name: str) -> bool:
    """True if ``storage`` has a method ``name`` other than a protocol's empty one."""
    for klass in type(storage).__mro__:
        if name in vars(klass):
            return not vars(klass).get("_is_protocol", False)
    return callable(getattr(storage, name, None))  # set on the instance


def as_storage(storage: object) -> CacheStorage:
    """Return ``storage`` as this package's backend, wrapping a 1.0 backend in the adapter.

    Raises:
        TypeError: ``storage`` is neither a :class:`~.base.CacheStorage` nor a 1.0 backend.
    """
    if _is_v1(storage):
        return StorageV1Adapter(storage)  # type: ignore[arg-type]
    if isinstance(storage, type) or not isinstance(storage, CacheStorage):
        raise TypeError(
            "storage must be a CacheStorage (or a backend written for vcti-file-cache 1.0), "
            f"not {type(storage).__name__}"
        )
    return storage


class _NoLock:
    __slots__ = ()

    def release(self) -> None:
        pass


class StorageV1Adapter:
    """Runs a 1.0 backend as a :class:`~.base.CacheStorage` (see the module docstring).

    Args:
        backend: an object with 1.0's storage methods.
    """

    def __init__(self, backend: StorageV1) -> None:
        self.backend = backend
        self._root = str(backend.key())
        self._staged: dict[str, str] = {}  # staged path (the model's own) -> key
        self._over: set[str] = set()  # staged paths that were published models already

    def __repr__(self) -> str:
        return f"StorageV1Adapter({self.backend!r})"

    @property
    def root(self) -> str:
        return self._root

    def path(self, key: str) -> str:
        return str(self.backend.model_path(key))

    def open(self) -> None:
        self.backend.cleanup_temp_files()

    def _entries(self) -> dict[str, Any]:
        return {str(e.path): e for e in self.backend.scan_entries()}

    def iter_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[str]:
        for key in sorted(self._entries()):
            if not prefix or key == prefix or is_nested(key, prefix):
                yield key

    def is_model(self, key: str) -> bool:
        return self.backend.dir_exists(key) and key in self._entries()

    def exists(self, key: str) -> bool:
        return bool(self.backend.dir_exists(key))

    def model_size(self, key: str) -> int:
        if not self.backend.dir_exists(key):
            raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
        return int(self.backend.compute_dir_size(key))

    def staging_size(self) -> int:
        return 0  # fills are written in place

    def staged_size(self, staged: str) -> int:
        key = self._staged.get(staged)
        if key is None:
            raise FileNotFoundError(errno.ENOENT, "no such fill", staged)
        return int(self.backend.compute_dir_size(key))

    def read_record(self, key: str) -> bytes:
        entry = self._entries().get(key)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
        return self._record(key, self.backend.read_meta(key), entry).encode()

    def _record(self, key: str, data: object, entry: Any) -> Meta:
        """This package's record: kept inside 1.0's dict, else rebuilt from what 1.0 has."""
        if isinstance(data, dict):
            stored = data.get(_RECORD)
            if isinstance(stored, str):
                try:
                    meta = Meta.decode(stored.encode())
                except MetadataError:
                    pass
                else:
                    return meta
            count = data.get("access_count", 0)
        else:
            count = 0
        last = float(getattr(entry, "last_access", 0.0) or time.time())
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            count = 0
        return Meta(count, last, last)

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        entries = self._entries()
        if key not in entries:
            raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
        current = self._record(key, self.backend.read_meta(key), entries[key])
        new = Meta.decode(update(current.encode()))
        # A write that adds no access (a measured size) keeps the last access, which a
        # 1.0 backend may keep as the time of the write itself.
        self._write(key, new, preserve_mtime=new.last_access == current.last_access)

    def _write(self, key: str, meta: Meta, *, preserve_mtime: bool = False) -> None:
        size = meta.size if meta.size is not None else int(self.backend.compute_dir_size(key))
        data = {
            "size": size,
            "access_count": meta.access_count,
            _RECORD: meta.encode().decode(),
        }
        if preserve_mtime:
            self.backend.write_meta(key, data, preserve_mtime=True)
        else:  # as before: a backend that left the keyword out keeps working
            self.backend.write_meta(key, data)

    def pin(self, key: str) -> _NoLock | None:
        return _NoLock() if self.is_model(key) else None

    def lock_fill(self, key: str, timeout: float) -> _NoLock:
        return _NoLock()

    def stage(self, key: str) -> str:
        staged = self.path(key)
        if self.is_model(key):
            self._over.add(staged)  # publish refuses it, discard leaves the model be
        else:
            self.backend.create_dir(key)
        self._staged[staged] = key
        return staged

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        if self._staged.get(staged) != key:
            raise ValueError(f"{staged!r} is not where {key!r} is filled")
        if staged in self._over or self.is_model(key):
            raise FileExistsError(errno.EEXIST, "something else is stored at this key", staged)
        self._write(key, Meta.decode(meta))
        del self._staged[staged]

    def discard(self, staged: str) -> None:
        key = self._staged.pop(staged, None)
        if staged in self._over:  # the model's own folder: its files cannot be told apart
            self._over.discard(staged)
            return
        if key is not None and self.backend.dir_exists(key):
            self.backend.delete_dir(key)

    def remove(self, key: str) -> bool:
        if not self.backend.dir_exists(key):
            raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
        self.backend.delete_dir(key)
        return True
