"""``filecache verify ROOT [--repair]``: check a cache root for drift, like ``fsck``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .._cache import FileCache
from .._config import CacheManagerConfig
from .._manager import CacheManager
from ..storage.local import LocalStorage
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    NO_LIMIT,
    ONE_DAY,
    Recorder,
    add_json_argument,
    add_root_argument,
    check_root,
    print_json,
    print_lines,
)

if TYPE_CHECKING:
    from .._entry import VerifyReport
    from ._common import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify",
        help="check a cache root for drift (and repair it with --repair)",
        description=(
            "Check that a cache root's bookkeeping agrees with what is on disk: leftovers "
            "of interrupted fills and deletes, unreadable or missing metadata, missing lock "
            "files, models nested in models. Without --repair nothing is changed. Exits 1 "
            "if problems remain."
        ),
    )
    add_root_argument(parser)
    parser.add_argument(
        "--repair",
        action="store_true",
        help="fix what can be fixed without losing user data (nested models are only reported)",
    )
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache verify``."""
    root = check_root(args.root)
    recorder = Recorder()
    config = CacheManagerConfig(evict_above=NO_LIMIT, interval=ONE_DAY, observer=recorder)
    if args.repair:
        with FileCache(root=root, config=config) as cache:
            report = cache.verify(repair=True)
            remaining = cache.verify().problems
    else:
        # Read-only: no FileCache.open(), which would sweep leftovers.
        report = CacheManager.check(LocalStorage(root), config)
        remaining = report.problems
    if args.json:
        print_json(
            {
                "root": root,
                "problems": list(report.problems),
                "repaired": report.repaired,
                "remaining": list(remaining),
                "entry_count": report.snapshot.entry_count,
                "total_size": report.snapshot.total_size,
            }
        )
    else:
        print_lines(_text(root, report, remaining))
    recorder.report_errors()
    return EXIT_FAILURE if remaining else EXIT_OK


def _text(root: str, report: VerifyReport, remaining: tuple[str, ...]) -> list[str]:
    lines = [f"root:     {root}", f"models:   {report.snapshot.entry_count}"]
    if report.ok:
        lines.append("ok: no problems found")
        return lines
    lines.append(f"found {len(report.problems)} problem(s):")
    lines.extend(f"  {problem}" for problem in report.problems)
    if report.repaired:
        if remaining:
            lines.append(f"repaired; {len(remaining)} problem(s) remain:")
            lines.extend(f"  {problem}" for problem in remaining)
        else:
            lines.append("repaired: no problems remain")
    else:
        lines.append("run with --repair to fix them")
    return lines
