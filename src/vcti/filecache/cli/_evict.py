"""``filecache evict ROOT --evict-above SIZE``: evict models now, or show what would go."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._cache import FileCache
from .._config import CacheManagerConfig
from .._entry import CacheEntry, CacheSnapshot
from .._sizes import SIZE_UNITS_HELP, format_size
from ..policies import EvictionPolicy
from ..storage.local import LocalStorage
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    NO_LIMIT,
    ONE_DAY,
    POLICIES,
    CommandError,
    Recorder,
    add_json_argument,
    add_root_argument,
    check_root,
    entry_json,
    entry_lines,
    format_bytes,
    format_count,
    print_json,
    print_lines,
    scan,
    size_argument,
)
from ._progress import ProgressBar

if TYPE_CHECKING:
    from ._common import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add the ``evict`` subcommand."""
    parser = subparsers.add_parser(
        "evict",
        help="evict models until the cache is within a limit",
        description=(
            "If the total size of the cache root is above --evict-above, remove models in "
            "the policy's order until it is at or below --evict-to (default: --evict-above). "
            "Models open in a running process are kept. Leftovers of interrupted fills and "
            "evictions are swept. With --dry-run, list what would be removed and delete "
            "nothing."
        ),
        epilog=SIZE_UNITS_HELP,
    )
    add_root_argument(parser)
    parser.add_argument(
        "--evict-above",
        type=size_argument,
        metavar="SIZE",
        required=True,
        help="evict only if the total is above this size (required: nothing is deleted without it)",
    )
    parser.add_argument(
        "--evict-to",
        type=size_argument,
        metavar="SIZE",
        help="evict down to this size, at most --evict-above (default: --evict-above)",
    )
    parser.add_argument(
        "--policy",
        choices=list(POLICIES),
        default="lru",
        help=(
            "the eviction order: lru = least recently used first (default), lfu = least "
            "often used first, sized-lru = least recently used, larger first among equals, "
            "idle-size = largest idle time x size first, gdsf = lowest accesses / size "
            "first, cost-aware = lowest accesses x fill seconds / size first, sieve = "
            "oldest not opened since published first, largest = largest first"
        ),
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the models that would be removed, in eviction order; delete nothing",
    )
    add_json_argument(parser)
    parser.set_defaults(run=run)


class _Watcher(Recorder):
    """Records eviction runs and drives the progress bar from the library's events."""

    def __init__(self, storage: LocalStorage, target: int, progress: ProgressBar | None) -> None:
        super().__init__()
        self._path = storage.path
        self._target = target
        self._progress = progress
        self._sizes: dict[str, int] = {}

    def on_evict_start(self, snapshot: CacheSnapshot, policy: str, trigger: str) -> None:
        """Learn the size of every model (by path) and start the bar."""
        sizes = {self._path(e.key): e.size for e in snapshot.entries}
        with self._lock:
            self._sizes.update(sizes)
        if self._progress is not None:
            self._progress.begin(snapshot.total_size - self._target)

    def on_evict(self, path: str) -> None:
        """Advance the bar by the size of the model just removed."""
        if self._progress is not None:
            with self._lock:
                size = self._sizes.get(path, 0)
            self._progress.advance(size)


def plan(snapshot: CacheSnapshot, policy: EvictionPolicy, target: int) -> list[CacheEntry]:
    """Return the models an eviction would remove, in order, without removing any.

    The same walk as ``CacheManager.evict``: nothing if the snapshot is not over its
    limit, else the policy's order until the total is at or below ``target``. Models
    open in other processes cannot be seen from here; a real run keeps them and may
    then go further down the order.
    """
    if not snapshot.is_over_limit:
        return []
    total = snapshot.total_size
    chosen: list[CacheEntry] = []
    for entry in policy.order(snapshot.entries):
        if total <= target:
            break
        chosen.append(entry)
        total -= entry.size
    return chosen


def run(args: argparse.Namespace) -> int:
    """Run ``filecache evict``."""
    limit: int = args.evict_above
    target: int = limit if args.evict_to is None else args.evict_to
    if target > limit:
        raise CommandError(
            f"--evict-to {format_bytes(target)} must not be greater than "
            f"--evict-above {format_bytes(limit)}",
            EXIT_USAGE,
        )
    root = check_root(args.root)
    policy = POLICIES[args.policy]()
    storage = LocalStorage(root)
    progress = ProgressBar(sys.stderr) if not args.dry_run and sys.stderr.isatty() else None
    watcher = _Watcher(storage, target, progress)
    before = scan(root, watcher, limit)
    kept: list[str] = []
    if args.dry_run or not before.is_over_limit:
        removed = plan(before, policy, target)
        after = (before.entry_count - len(removed), before.total_size - _size(removed))
    else:
        # The config holds no limit of its own (0 is no valid config): the run is given it.
        config = CacheManagerConfig(
            evict_above=NO_LIMIT, policy=policy, interval=ONE_DAY, observer=watcher
        )
        try:
            removed, kept = _evict(storage, config, watcher, (limit, target))
        finally:
            if progress is not None:
                progress.finish()
        rescan = scan(root, watcher, limit)
        after = (rescan.entry_count, rescan.total_size)
    failed = watcher.report_errors()  # warnings first: the summary may refer to them
    summary = _Summary(
        root=root,
        dry_run=args.dry_run,
        policy=policy.name,
        limit=limit,
        target=target,
        before=before,
        removed=removed,
        kept=kept,
        failed=failed,
        after=after,
    )
    if args.json:
        print_json(summary.document())
    else:
        print_lines(summary.text())
    return EXIT_FAILURE if failed else EXIT_OK


def _evict(
    storage: LocalStorage,
    config: CacheManagerConfig,
    watcher: Recorder,
    limits: tuple[int, int],
) -> tuple[list[CacheEntry], list[str]]:
    """Evict with the library; return the removed models and the keys chosen but kept."""
    limit, target = limits
    with FileCache(storage=storage, config=config) as cache:
        cache.evict(config.policy, evict_above=limit, evict_to=target)
    # The manager's thread runs a cycle as the cache opens and may have done the eviction
    # itself: the watcher saw every run, whichever thread made it.
    removed = [entry for result in watcher.results for entry in result.entries]
    gone = {entry.key for entry in removed}
    kept = [key for result in watcher.results for key in result.skipped_pinned if key not in gone]
    return removed, list(dict.fromkeys(kept))


def _size(entries: list[CacheEntry]) -> int:
    return sum(e.size for e in entries)


def _models(count: int, size: int) -> str:
    return f"{format_count(count)}, {format_bytes(size)}"


def _row(label: str, value: str) -> str:
    return f"{label + ':':<9} {value}"


@dataclass(frozen=True, kw_only=True)
class _Summary:
    """What an evict run (or dry run) did, as text or JSON."""

    root: str
    dry_run: bool
    policy: str
    limit: int
    target: int
    before: CacheSnapshot
    removed: list[CacheEntry]
    kept: list[str]  # chosen by the policy but not removed: open, or removal failed
    failed: bool  # errors were reported as warnings
    after: tuple[int, int]  # entry count, total size

    def document(self) -> dict[str, Any]:
        """Return the summary as a JSON object."""
        return {
            "root": self.root,
            "dry_run": self.dry_run,
            "policy": self.policy,
            "evict_above": self.limit,
            "evict_to": self.target,
            "before": {
                "entry_count": self.before.entry_count,
                "total_size": self.before.total_size,
            },
            "removed": [entry_json(e) for e in self.removed],
            "removed_count": len(self.removed),
            "bytes_freed": _size(self.removed),
            "kept": self.kept,
            "after": {"entry_count": self.after[0], "total_size": self.after[1]},
        }

    def text(self) -> list[str]:
        """Return the summary as lines of text."""
        limit = format_bytes(self.limit)
        if self.target != self.limit:
            limit += f", evict down to {format_bytes(self.target)}"
        lines = [
            _row("root", self.root),
            _row("policy", self.policy),
            _row("limit", limit),
            _row("before", _models(self.before.entry_count, self.before.total_size)),
        ]
        if not self.before.is_over_limit:
            lines.append(
                f"nothing to evict: {format_size(self.before.total_size)} is not above "
                f"{format_size(self.limit)}"
            )
        else:
            verb = "would remove" if self.dry_run else "removed"
            lines.append(_row(verb, _models(len(self.removed), _size(self.removed))))
            lines += entry_lines(self.removed, lambda e: format_size(e.size))
        if self.kept:
            why = "open, or see the warnings above" if self.failed else "open in a process"
            lines.append(
                _row("kept", f"{format_count(len(self.kept))} ({why}): {', '.join(self.kept)}")
            )
        label = "after (projected)" if self.dry_run else "after"
        lines.append(_row(label, _models(*self.after)))
        if self.dry_run:
            lines.append("dry run: nothing was deleted")
        return lines
