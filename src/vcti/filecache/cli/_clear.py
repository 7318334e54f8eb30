"""``filecache clear ROOT``: remove every model that is not open, once confirmed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .._cache import FileCache
from .._config import CacheManagerConfig
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    NO_LIMIT,
    ONE_DAY,
    CommandError,
    Recorder,
    add_json_argument,
    add_root_argument,
    add_yes_argument,
    check_root,
    confirm,
    display_key,
    error,
    format_bytes,
    format_count,
    interactive,
    print_json,
    print_lines,
    scan,
)

if TYPE_CHECKING:
    from ._common import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add the ``clear`` subcommand."""
    parser = subparsers.add_parser(
        "clear",
        help="remove every model not open (asks first, or --yes)",
        description=(
            "Remove every model of a cache root, except those open in a running process, "
            "which are kept and listed. On a terminal it first says how many models it "
            "will remove and how much that frees, and asks (unless --yes). Without a "
            "terminal on stdin and without --yes it refuses (status 2) and deletes nothing."
        ),
    )
    add_root_argument(parser)
    add_yes_argument(parser, "every model not open")
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache clear``."""
    if not args.yes and not interactive():
        raise CommandError(
            "clear removes every model not open; add --yes to confirm (nothing was deleted)",
            EXIT_USAGE,
        )
    root = check_root(args.root)
    if not args.yes:
        planned = scan(root, Recorder())  # read-only: nothing is opened before the answer
        if planned.entry_count and not confirm(
            [
                f"clear will remove {format_count(planned.entry_count)}, "
                f"{format_bytes(planned.total_size)}, from {root} (models open in a "
                "process are kept)"
            ],
            "Remove them?",
        ):
            error("nothing was removed")
            return EXIT_FAILURE
    recorder = Recorder()
    config = CacheManagerConfig(evict_above=NO_LIMIT, interval=ONE_DAY, observer=recorder)
    with FileCache(root=root, config=config) as cache:
        before = cache.snapshot()
        removed = cache.clear()
        after = cache.snapshot()
    kept = sorted(entry.key for entry in after.entries)
    freed = max(0, before.total_size - after.total_size)
    failed = recorder.report_errors()  # warnings first: the summary refers to them
    if args.json:
        print_json(
            {
                "root": root,
                "before": {"entry_count": before.entry_count, "total_size": before.total_size},
                "removed_count": removed,
                "freed": freed,
                "kept_count": len(kept),
                "kept": kept,
                "after": {"entry_count": after.entry_count, "total_size": after.total_size},
            }
        )
    else:
        lines = [
            f"root:     {root}",
            f"before:   {format_count(before.entry_count)}, {format_bytes(before.total_size)}",
            f"removed:  {format_count(removed)}, {format_bytes(freed)}",
        ]
        if kept:
            why = "open, or see the warnings above" if failed else "open in a process"
            lines.append(
                f"kept:     {format_count(len(kept))} ({why}): {', '.join(map(display_key, kept))}"
            )
        else:
            lines.append("kept:     0 models")
        lines.append(
            f"after:    {format_count(after.entry_count)}, {format_bytes(after.total_size)}"
        )
        print_lines(lines)
    return EXIT_FAILURE if failed else EXIT_OK
