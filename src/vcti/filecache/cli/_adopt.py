"""``filecache adopt ROOT``: adopt the models of a root written by vcti-file-cache 1.0."""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING

from .._cache import FileCache
from .._config import CacheManagerConfig
from .._entry import AdoptionReport
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    NO_LIMIT,
    ONE_DAY,
    Recorder,
    add_json_argument,
    add_root_argument,
    check_root,
    format_count,
    print_json,
    print_lines,
)

if TYPE_CHECKING:
    from ._common import Subparsers


class _Adoptions(Recorder):
    """A Recorder that also keeps what the opening of the root adopted."""

    def __init__(self) -> None:
        super().__init__()
        self._adopt_lock = threading.Lock()
        self.reports: list[AdoptionReport] = []

    def on_adopt(self, report: AdoptionReport) -> None:
        """Keep the report of the adoption made as the root opened."""
        with self._adopt_lock:
            self.reports.append(report)


def register(subparsers: Subparsers) -> None:
    """Add the ``adopt`` subcommand."""
    parser = subparsers.add_parser(
        "adopt",
        help="adopt the models of a vcti-file-cache 1.0 root (stop every 1.0 process first)",
        description=(
            "Adopt the models of a root written by vcti-file-cache 1.0: each gets this "
            "version's metadata (1.0's access count, and its last access as last access "
            "and creation time) and loses 1.0's .cache_meta. It cannot be undone, and 1.0 "
            "processes must be stopped first. A process that opens the root with FileCache "
            "adopts it too; stats, ls, verify and evict --dry-run never do. Nothing is "
            "deleted but 1.0's metadata files."
        ),
    )
    add_root_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache adopt``."""
    root = check_root(args.root)
    recorder = _Adoptions()
    config = CacheManagerConfig(evict_above=NO_LIMIT, interval=ONE_DAY, observer=recorder)
    with FileCache(root=root, config=config) as cache:
        count = cache.snapshot().entry_count
    adopted = [key for report in recorder.reports for key in report.models]
    problems = [problem for report in recorder.reports for problem in report.problems]
    failed = recorder.report_errors()
    if args.json:
        print_json({"root": root, "adopted": adopted, "problems": problems, "entry_count": count})
    else:
        lines = [f"root:     {root}", f"adopted:  {format_count(len(adopted))}"]
        lines += [f"  {key!r}" for key in adopted]
        lines += [f"problem:  {problem}" for problem in problems]
        lines.append(f"models:   {count}")
        print_lines(lines)
    return EXIT_FAILURE if failed or problems else EXIT_OK
