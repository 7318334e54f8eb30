"""A recording observer, for assertions on the hooks a cache calls."""

from __future__ import annotations

import threading
from typing import Any

from ..observers.base import CacheObserver

__all__ = ["RecordingObserver"]


class RecordingObserver(CacheObserver):
    """Records every hook call as ``(hook_name, args)`` in :attr:`events`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def _record(self, hook: str, *args: Any) -> None:
        with self._lock:
            self.events.append((hook, args))

    def names(self) -> list[str]:
        """Return the hook names in call order."""
        with self._lock:
            return [name for name, _ in self.events]

    def calls(self, hook: str) -> list[tuple[Any, ...]]:
        """Return the arguments of every call of ``hook``."""
        with self._lock:
            return [args for name, args in self.events if name == hook]

    def errors(self) -> list[tuple[Exception, str]]:
        """Return ``(error, context)`` for every ``on_error`` call."""
        return [(args[0], args[1]) for args in self.calls("on_error")]

    def on_attach(self, storage: Any, config: Any) -> None:
        self._record("on_attach", storage, config)

    def on_manager_start(self, root: str) -> None:
        self._record("on_manager_start", root)

    def on_manager_stop(self, root: str) -> None:
        self._record("on_manager_stop", root)

    def on_leader_change(self, is_leader: bool) -> None:
        self._record("on_leader_change", is_leader)

    def on_model_open(self, key: str) -> None:
        self._record("on_model_open", key)

    def on_access(self, key: str, hit: bool) -> None:
        self._record("on_access", key, hit)

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        self._record("on_fill", key, duration, error)

    def on_model_close(
        self, key: str, hit: bool, duration: float, error: BaseException | None
    ) -> None:
        self._record("on_model_close", key, hit, duration, error)

    def on_scan_start(self) -> None:
        self._record("on_scan_start")

    def on_scan_end(self, snapshot: Any, duration: float) -> None:
        self._record("on_scan_end", snapshot, duration)

    def on_evict_start(self, snapshot: Any, policy: str, trigger: str) -> None:
        self._record("on_evict_start", snapshot, policy, trigger)

    def on_evict(self, path: str) -> None:
        self._record("on_evict", path)

    def on_evict_end(self, result: Any) -> None:
        self._record("on_evict_end", result)

    def on_size_update(self, path: str, size: int) -> None:
        self._record("on_size_update", path, size)

    def on_cycle_complete(self, total_size: int, entry_count: int) -> None:
        self._record("on_cycle_complete", total_size, entry_count)

    def on_adopt(self, report: Any) -> None:
        self._record("on_adopt", report)

    def on_error(self, error: Exception, context: str) -> None:
        self._record("on_error", error, context)
