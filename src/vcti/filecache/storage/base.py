"""The storage protocol: the few primitives the cache core needs from a backend.

Everything built on these primitives (walks, totals, eviction order, pin counting
between threads) lives in the core. A backend only knows how to store model
directories under keys, and how to lock them against other processes or hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class Lock(Protocol):
    """A held lock (a pin, a fill lock or the leader lock); ``release()`` gives it up."""

    def release(self) -> None:
        """Give the lock up. Calling it twice is harmless."""
        ...


@runtime_checkable
class CacheStorage(Protocol):
    """Where a cache keeps its model directories.

    A missing model or object raises ``FileNotFoundError``; other failures raise
    ``OSError``. Keys given to a backend are already validated by the core.
    """

    @property
    def root(self) -> str:
        """The root as a path or URI; it names the cache in metrics and logs."""
        ...

    def path(self, key: str) -> str:
        """Return the full path or URI of the model ``key``."""
        ...

    def open(self) -> None:
        """Create the root's layout if needed and reclaim leftovers nobody holds."""
        ...

    def sweep(self) -> int:
        """Reclaim leftovers of interrupted fills and deletes that nobody holds.

        Returns:
            The bytes reclaimed.
        """
        ...

    def verify(self, repair: bool) -> list[str]:
        """Check the backend's own bookkeeping (not the metadata records) for drift.

        Returns one line per problem found; with ``repair``, fixes what can be fixed
        without losing user data.
        """
        ...

    def iter_models(
        self, prefix: str = "", onerror: Callable[[OSError], None] | None = None
    ) -> Iterator[str]:
        """Yield the key of every published model (at or below ``prefix``).

        Unreadable folders are passed to ``onerror`` and skipped; folders that vanish
        during the walk are skipped silently.
        """
        ...

    def is_model(self, key: str) -> bool:
        """Return True if ``key`` is a published model."""
        ...

    def exists(self, key: str) -> bool:
        """Return True if anything (a model or a folder of models) is stored at ``key``."""
        ...

    def model_size(self, key: str) -> int:
        """Return the bytes of the files in model ``key``, the cache's own files excluded."""
        ...

    def staging_size(self) -> int:
        """Return the bytes of fills in progress or left over."""
        ...

    def read_meta(self, key: str) -> bytes:
        """Return the stored metadata of model ``key``."""
        ...

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        """Replace the metadata of model ``key`` with ``update(current)``, atomically.

        ``current`` is None when the metadata is missing. No other process updates the
        same model's metadata in between.
        """
        ...

    def pin(self, key: str) -> Lock | None:
        """Protect the published model ``key`` against removal, in every process.

        Returns None when ``key`` is not a published model.
        """
        ...

    def lock_fill(self, key: str, timeout: float) -> Lock:
        """Take the fill lock of ``key``, waiting for another process's fill to end.

        Raises:
            LockTimeoutError: the lock was not free within ``timeout`` seconds.
        """
        ...

    def stage(self, key: str) -> str:
        """Create an empty private staging area for a fill of ``key``; return its path."""
        ...

    def publish(self, key: str, staged: str, meta: bytes) -> None:
        """Make the staged fill visible as model ``key`` in one atomic step.

        Raises:
            FileExistsError: something else is already stored at ``key``.
        """
        ...

    def discard(self, staged: str) -> None:
        """Remove a staged fill that will not be published."""
        ...

    def remove(self, key: str) -> bool:
        """Remove model ``key`` unless it is pinned; return False when it is pinned.

        The model disappears at once (a reader never sees it half-deleted); its data is
        deleted afterwards.
        """
        ...

    def try_lead(self) -> Lock | None:
        """Try to become the one process that scans and evicts; None when another is."""
        ...
