"""``filecache stats ROOT``: totals, the largest and the least recently used models."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .._entry import CacheEntry, CacheSnapshot
from .._sizes import SIZE_UNITS_HELP, format_size
from ..policies import LruPolicy
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    NO_LIMIT,
    Recorder,
    add_json_argument,
    add_root_argument,
    check_root,
    entry_json,
    entry_lines,
    format_bytes,
    format_time,
    print_json,
    print_lines,
    scan,
    size_argument,
    trash_size,
)

if TYPE_CHECKING:
    from ._common import Subparsers

#: How many models the largest and least-recently-used lists show.
TOP = 5


def register(subparsers: Subparsers) -> None:
    """Add the ``stats`` subcommand."""
    parser = subparsers.add_parser(
        "stats",
        help="show totals, the largest and the least recently used models",
        description=(
            "Show the total size of a cache root, its model count, the 5 largest and the 5 "
            "least recently used models, and the bytes left in staging and trash. "
            "Nothing is evicted or deleted."
        ),
        epilog=SIZE_UNITS_HELP,
    )
    add_root_argument(parser)
    parser.add_argument(
        "--evict-above",
        type=size_argument,
        metavar="SIZE",
        help="a limit to compare the total with, to show the overage (nothing is evicted)",
    )
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache stats``."""
    root = check_root(args.root)
    limit: int | None = args.evict_above
    recorder = Recorder()
    snapshot = scan(root, recorder, NO_LIMIT if limit is None else limit)
    trash = trash_size(root)
    if args.json:
        print_json(_document(root, snapshot, trash, limit))
    else:
        print_lines(_text(root, snapshot, trash, limit))
    return EXIT_FAILURE if recorder.report_errors() else EXIT_OK


def _largest(snapshot: CacheSnapshot) -> list[CacheEntry]:
    return sorted(snapshot.entries, key=lambda e: (-e.size, e.key))[:TOP]


def _least_recent(snapshot: CacheSnapshot) -> list[CacheEntry]:
    return LruPolicy().order(snapshot.entries)[:TOP]


def _document(root: str, snapshot: CacheSnapshot, trash: int, limit: int | None) -> dict[str, Any]:
    return {
        "root": root,
        "entry_count": snapshot.entry_count,
        "total_size": snapshot.total_size,
        "models_size": snapshot.total_size - snapshot.staging_size,
        "staging_size": snapshot.staging_size,
        "trash_size": trash,
        "evict_above": limit,
        "overage": None if limit is None else snapshot.overage,
        "is_over_limit": None if limit is None else snapshot.is_over_limit,
        "largest": [entry_json(e) for e in _largest(snapshot)],
        "least_recently_used": [entry_json(e) for e in _least_recent(snapshot)],
        "taken_at": snapshot.taken_at,
    }


def _text(root: str, snapshot: CacheSnapshot, trash: int, limit: int | None) -> list[str]:
    models = snapshot.total_size - snapshot.staging_size
    lines = [
        f"root:     {root}",
        f"models:   {snapshot.entry_count}, {format_bytes(models)}",
        f"staging:  {format_bytes(snapshot.staging_size)}",
        f"total:    {format_bytes(snapshot.total_size)}",
        f"trash:    {format_bytes(trash)}",
    ]
    if limit is not None:
        over = f"over by {format_bytes(snapshot.overage)}" if snapshot.is_over_limit else "not over"
        lines.append(f"limit:    {format_bytes(limit)}, {over}")
    if snapshot.entries:
        lines.append(f"largest {min(TOP, snapshot.entry_count)}:")
        lines += entry_lines(_largest(snapshot), lambda e: format_size(e.size))
        lines.append(f"least recently used {min(TOP, snapshot.entry_count)}:")
        lines += entry_lines(_least_recent(snapshot), lambda e: format_time(e.last_access))
    return lines
