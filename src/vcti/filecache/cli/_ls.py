"""``filecache ls ROOT``: one line per model, in a chosen order."""

from __future__ import annotations

import argparse
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
    entry_json,
    format_time,
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

_HEADER = ("KEY", "SIZE", "ACCESSES", "LAST ACCESS", "CREATED")


def register(subparsers: Subparsers) -> None:
    """Add the ``ls`` subcommand."""
    parser = subparsers.add_parser(
        "ls",
        help="list the models",
        description=(
            "List the models of a cache root: key, size, access count, last access and "
            "creation time (local time). Nothing is evicted or deleted."
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
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache ls``."""
    root = check_root(args.root)
    recorder = Recorder()
    snapshot = scan(root, recorder)
    entries = SORTS[args.sort](snapshot.entries)
    if args.json:
        print_json(
            {
                "root": root,
                "sort": args.sort,
                "entry_count": snapshot.entry_count,
                "total_size": snapshot.total_size,
                "entries": [entry_json(e) for e in entries],
            }
        )
    else:
        print_lines(_table(entries))
    return EXIT_FAILURE if recorder.report_errors() else EXIT_OK


def _table(entries: Sequence[CacheEntry]) -> list[str]:
    rows = [_HEADER] + [
        (
            e.key,
            format_size(e.size),
            str(e.access_count),
            format_time(e.last_access),
            format_time(e.created),
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    return [
        "  ".join(
            # the key and the times read left to right; numbers align on the right
            cell.ljust(width) if i in (0, 3, 4) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
