"""Model directories kept in memory: for tests, and the proof that the protocol is enough."""

from __future__ import annotations

import errno
import threading
import uuid
from collections.abc import Callable, Iterator

from .._keys import is_nested


class _NoLock:
    __slots__ = ()

    def release(self) -> None:
        pass


class MemoryStorage:
    """Keeps models in this process's memory; paths are ``memory://NAME/KEY`` URIs.

    A model is a set of files under its path; write them with :meth:`write_file`.
    Everything lives in one process, so pins and fill locks between threads are the
    core's job and this backend's locks are no-ops. It implements the required
    :class:`~.base.CacheStorage` and keeps policy state (``PolicyStateStorage``): the
    smallest complete backend, and a model for new ones.

    Args:
        name: names the root (default: a unique name, so two instances never share).
    """

    def __init__(self, name: str | None = None) -> None:
        self._name = name if name is not None else uuid.uuid4().hex
        self._lock = threading.RLock()
        self._files: dict[str, bytes] = {}
        self._models: dict[str, bytes] = {}  # key -> metadata
        self._staged: set[str] = set()
        self._states: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage({self._name!r})"

    @property
    def root(self) -> str:
        return f"memory://{self._name}"

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def open(self) -> None:
        # Memory lives and dies with this process, and the first cache opens before any fill
        # starts: every staged fill here is a leftover.
        with self._lock:
            for staged in list(self._staged):
                self.discard(staged)

    # -- files (what a user does with open() on a local path) ---------------------------

    def write_file(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path`` (a path below a model's or a staging area's path)."""
        with self._lock:
            if not any(path.startswith(p + "/") for p in self._writable()):
                raise FileNotFoundError(errno.ENOENT, "no model or staging area here", path)
            self._files[path] = bytes(data)

    def read_file(self, path: str) -> bytes:
        """Return the data stored at ``path``."""
        with self._lock:
            try:
                return self._files[path]
            except KeyError:
                raise FileNotFoundError(errno.ENOENT, "no such file", path) from None

    def _writable(self) -> Iterator[str]:
        yield from self._staged
        for key in self._models:
            yield self.path(key)

    # -- the protocol -----------------------------------------------------------------

    def iter_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[str]:
        with self._lock:
            keys = sorted(self._models)
        for key in keys:
            if not prefix or key == prefix or is_nested(key, prefix):
                yield key

    def is_model(self, key: str) -> bool:
        return key in self._models

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._models or any(is_nested(k, key) for k in self._models)

    def model_size(self, key: str) -> int:
        with self._lock:
            if key not in self._models:
                raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
            return self._size_below(self.path(key))

    def staging_size(self) -> int:
        with self._lock:
            return sum(self._size_below(s) for s in self._staged)

    def staged_size(self, staged: str) -> int:
        with self._lock:
            return self._size_below(staged)

    def read_state(self, name: str) -> bytes:
        """The policy state stored under ``name`` (kept in memory, like the models)."""
        with self._lock:
            try:
                return self._states[name]
            except KeyError:
                raise FileNotFoundError(errno.ENOENT, "no such state", name) from None

    def write_state(self, name: str, data: bytes) -> None:
        """Keep ``data`` as the policy state ``name``."""
        with self._lock:
            self._states[name] = bytes(data)

    def read_record(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._models[key]
            except KeyError:
                raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key)) from None

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        with self._lock:
            if key not in self._models:
                raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
            self._models[key] = update(self._models[key])

    def pin(self, key: str) -> _NoLock | None:
        with self._lock:
            return _NoLock() if key in self._models else None

    def lock_fill(self, key: str, timeout: float) -> _NoLock:
        return _NoLock()

    def stage(self, key: str) -> str:
        staged = f"{self.root}/.filecache/staging/{uuid.uuid4().hex}"
        with self._lock:
            self._staged.add(staged)
        return staged

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        with self._lock:
            if self.exists(key):
                raise FileExistsError(errno.EEXIST, "something is stored at this key", key)
            dest = self.path(key)
            for path in [p for p in self._files if p.startswith(staged + "/")]:
                self._files[dest + path[len(staged) :]] = self._files.pop(path)
            self._staged.discard(staged)
            self._models[key] = meta

    def discard(self, staged: str) -> None:
        with self._lock:
            self._staged.discard(staged)
            for path in [p for p in self._files if p.startswith(staged + "/")]:
                del self._files[path]

    def remove(self, key: str) -> bool:
        with self._lock:
            if key not in self._models:
                raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
            del self._models[key]
            prefix = self.path(key) + "/"
            for path in [p for p in self._files if p.startswith(prefix)]:
                del self._files[path]
            return True

    def _size_below(self, folder: str) -> int:
        prefix = folder + "/"
        return sum(len(v) for p, v in self._files.items() if p.startswith(prefix))
