"""``filecache verify ROOT [--repair]``: check a cache root for drift, like ``fsck``."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._cache import FileCache
from .._config import CacheManagerConfig
from .._manager import CacheManager
from ..observers.base import CacheObserver
from ..storage.local import LocalStorage
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    NO_LIMIT,
    ONE_DAY,
    add_json_argument,
    add_root_argument,
    check_root,
    note_v1_root,
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


class ErrorLog(CacheObserver):
    """Collects what the library reports to ``on_error`` while verify runs.

    Each error is a problem: a folder that cannot be read hides the models in it, so a
    root that looks clean may not be. Metadata repairs (context ``"metadata"``) are left
    out: verify lists unreadable metadata itself. Hooks may run in the manager's thread,
    hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: list[str] = []

    def on_error(self, error: Exception, context: str) -> None:
        """Keep the error as a problem (unless it is a metadata repair)."""
        if context != "metadata":
            with self._lock:
                self._problems.append(f"{context}: {error}")

    def take(self) -> list[str]:
        """Return the problems collected since the last call, and forget them."""
        with self._lock:
            problems, self._problems = self._problems, []
        return problems


def run(args: argparse.Namespace) -> int:
    """Run ``filecache verify``."""
    root = check_root(args.root)
    errors = ErrorLog()
    config = CacheManagerConfig(evict_above=NO_LIMIT, interval=ONE_DAY, observer=errors)
    if args.repair:
        with FileCache(root=root, config=config) as cache:
            report = cache.verify(repair=True)
            problems = _merge(report.problems, errors.take())
            check = cache.verify()
            remaining = _merge(check.problems, errors.take())
    else:
        # Read-only: no FileCache.open(), which would sweep leftovers and adopt a 1.0 root.
        storage = LocalStorage(root)
        if v1 := storage.plan_v1().models:
            note_v1_root(root, len(v1))
        report = CacheManager.check(storage, config)
        problems = remaining = _merge(report.problems, errors.take())
    if args.json:
        print_json(
            {
                "root": root,
                "problems": problems,
                "repaired": report.repaired,
                "remaining": remaining,
                "entry_count": report.snapshot.entry_count,
                "total_size": report.snapshot.total_size,
            }
        )
    else:
        print_lines(_text(root, report, problems, remaining))
    return EXIT_FAILURE if remaining else EXIT_OK


def _merge(problems: Sequence[str], errors: Sequence[str]) -> list[str]:
    """The problems, then the errors, each once (a scan may report an error twice)."""
    return list(dict.fromkeys([*problems, *errors]))


def _text(
    root: str, report: VerifyReport, problems: Sequence[str], remaining: Sequence[str]
) -> list[str]:
    lines = [f"root:     {root}", f"models:   {report.snapshot.entry_count}"]
    if not problems:
        lines.append("ok: no problems found")
        return lines
    lines.append(f"found {len(problems)} problem(s):")
    lines.extend(f"  {problem}" for problem in problems)
    if report.repaired:
        if remaining:
            lines.append(f"repaired; {len(remaining)} problem(s) remain:")
            lines.extend(f"  {problem}" for problem in remaining)
        else:
            lines.append("repaired: no problems remain")
    else:
        lines.append("run with --repair to fix what can be fixed")
    return lines
