"""``filecache ls ROOT``: one line per model, in a chosen order."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._entry import CacheEntry
from .._sizes import format_size
from ..policies import LfuPolicy, LruPolicy
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Recorder,
    add_json_argument,
    add_root_argument,
    check_root,
    display_key,
    entry_json,
    format_age,
    format_duration,
    format_time,
    key_argument,
    print_json,
    print_lines,
    scan,
)

if TYPE_CHECKING:
    from ._common import Subparsers

#: Each order puts first the model an eviction with the same-named policy would take first.
SORTS: dict[str, Callable[[Sequence[CacheEntry]], list[CacheEntry]]] = {
    "lru": LruPolicy().order,  # least recently used first
    "lfu": LfuPolicy().order,  # least often used first
    "size": lambda entries: sorted(entries, key=lambda e: (-e.size, e.key)),  # largest first
    "age": lambda entries: sorted(entries, key=lambda e: (e.created, e.key)),  # oldest first
}

_HEADER = ("KEY", "SIZE", "ACCESSES", "LAST ACCESS", "CREATED", "FILL", "VERSION")
#: The columns read left to right (the others are numbers, aligned on the right).
_LEFT = frozenset({0, 3, 4, 6})


def register(subparsers: Subparsers) -> None:
    """Add the ``ls`` subcommand."""
    parser = subparsers.add_parser(
        "ls",
        help="list the models",
        description=(
            "List the models of a cache root: key, size, access count, last access and "
            "publication (as ages, or local times with --absolute-times), how long its fill "
            "took and the version it was filled for ('-' when unknown). Control characters "
            "in keys are escaped (\\n, \\x1b); --json gives them as they are. Nothing is "
            "evicted or deleted."
        ),
    )
    add_root_argument(parser)
    parser.add_argument(
        "--sort",
        choices=list(SORTS),
        default="lru",
        help=(
            "lru: least recently used first (default); lfu: least used first; "
            "size: largest first; age: oldest created first"
        ),
    )
    parser.add_argument(
        "--prefix",
        type=key_argument,
        metavar="P",
        help=(
            "only the models under P, in whole key components: 'ab' lists ab/cd/x and the "
            "model ab itself, not abc/x (a trailing / is ignored)"
        ),
    )
    parser.add_argument(
        "--absolute-times",
        action="store_true",
        help="show local times (2024-05-01 12:00:00) instead of ages (3 days ago)",
    )
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache ls``."""
    root = check_root(args.root)
    recorder = Recorder()
    snapshot = scan(root, recorder)
    prefix: str | None = args.prefix
    if prefix is None:
        chosen, total = snapshot.entries, snapshot.total_size
    else:
        chosen = [e for e in snapshot.entries if under(e.key, prefix)]
        total = sum(e.size for e in chosen)
    entries = SORTS[args.sort](chosen)
    if args.json:
        print_json(
            {
                "root": root,
                "sort": args.sort,
                "prefix": prefix,
                "entry_count": len(entries),
                "total_size": total,
                "entries": [entry_json(e) for e in entries],
            }
        )
    else:
        print_lines(_table(entries, None if args.absolute_times else time.time()))
    return EXIT_FAILURE if recorder.report_errors() else EXIT_OK


def under(key: str, prefix: str) -> bool:
    """True if ``key`` is ``prefix`` or below it, in whole components."""
    return key == prefix or key.startswith(prefix + "/")


def _table(entries: Sequence[CacheEntry], now: float | None) -> list[str]:
    """The text table; times as ages at ``now``, or local times when it is None."""

    def when(epoch: float) -> str:
        return format_time(epoch) if now is None else format_age(epoch, now)

    rows = [_HEADER] + [
        (
            display_key(e.key),
            format_size(e.size),
            str(e.access_count),
            when(e.last_access),
            when(e.created),
            format_duration(e.fill_seconds),
            "-" if e.version is None else display_key(e.version),
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    return [
        "  ".join(
            cell.ljust(width) if i in _LEFT else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
