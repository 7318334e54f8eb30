"""``filecache stats ROOT``: totals, the largest and the least recently used models."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
    display_key,
    entry_json,
    entry_lines,
    format_bytes,
    format_count,
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
    parser.add_argument(
        "--by-prefix",
        type=_depth,
        metavar="N",
        help=(
            "also total the models and bytes per prefix of the first N key components "
            "(a key with fewer components is its own prefix), largest first"
        ),
    )
    add_json_argument(parser)
    parser.set_defaults(run=run)


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


@dataclass(frozen=True)
class PrefixTotal:
    """The models under one key prefix and their bytes."""

    prefix: str
    entry_count: int
    total_size: int


def by_prefix(entries: Sequence[CacheEntry], depth: int) -> list[PrefixTotal]:
    """Total ``entries`` per prefix of their first ``depth`` components, largest first."""
    totals: dict[str, tuple[int, int]] = {}
    for entry in entries:
        prefix = "/".join(entry.key.split("/")[:depth])
        count, size = totals.get(prefix, (0, 0))
        totals[prefix] = (count + 1, size + entry.size)
    rows = [PrefixTotal(prefix, count, size) for prefix, (count, size) in totals.items()]
    return sorted(rows, key=lambda row: (-row.total_size, row.prefix))


def run(args: argparse.Namespace) -> int:
    """Run ``filecache stats``."""
    root = check_root(args.root)
    limit: int | None = args.evict_above
    recorder = Recorder()
    snapshot = scan(root, recorder, NO_LIMIT if limit is None else limit)
    trash = trash_size(root)
    depth: int | None = args.by_prefix
    groups = None if depth is None else by_prefix(snapshot.entries, depth)
    if args.json:
        document = _document(root, snapshot, trash, limit)
        document["by_prefix_depth"] = depth
        document["by_prefix"] = None if groups is None else [asdict(row) for row in groups]
        print_json(document)
    else:
        lines = _text(root, snapshot, trash, limit)
        if depth is not None and groups is not None:
            lines += _prefix_lines(depth, groups)
        print_lines(lines)
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


def _prefix_lines(depth: int, groups: list[PrefixTotal]) -> list[str]:
    parts = "component" if depth == 1 else "components"
    counts = [format_count(row.entry_count) for row in groups]
    sizes = [format_size(row.total_size) for row in groups]
    count_width = max((len(cell) for cell in counts), default=0)
    size_width = max((len(cell) for cell in sizes), default=0)
    return [f"by prefix (first {depth} {parts}):"] + [
        f"  {size:>{size_width}}  {count:>{count_width}}  {display_key(row.prefix)}"
        for row, count, size in zip(groups, counts, sizes, strict=True)
    ]


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
