"""``filecache rm ROOT KEY...``: remove the given models, waiting a little for open ones."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from .._cache import FileCache
from .._config import CacheManagerConfig
from .._sizes import format_size
from ..exceptions import LockTimeoutError
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    NO_LIMIT,
    ONE_DAY,
    Recorder,
    add_json_argument,
    add_root_argument,
    add_yes_argument,
    check_root,
    confirm,
    display_key,
    entry_lines,
    error,
    format_bytes,
    format_count,
    interactive,
    key_argument,
    print_json,
    print_lines,
    scan,
)

if TYPE_CHECKING:
    from ._common import Subparsers

#: Seconds ``rm`` waits, by default, for a model open in a process to be closed: a
#: request reading a model holds it for moments, so longer means something is stuck.
DEFAULT_TIMEOUT = 10.0


def register(subparsers: Subparsers) -> None:
    """Add the ``rm`` subcommand."""
    parser = subparsers.add_parser(
        "rm",
        help="remove the given models",
        description=(
            "Remove the models KEY... from a cache root. A model open in a process is "
            "removed as soon as it is closed, waiting up to --timeout seconds. Every KEY is "
            "checked first: one malformed KEY and nothing is removed (status 2). A KEY that "
            "is not a model, or stays open, is reported after the others are removed "
            "(status 1), as rm does. On a terminal it first says which models it will "
            "remove and how much that frees, and asks (unless --yes); without a terminal "
            "on stdin (a script, a cron job) it removes them without asking."
        ),
    )
    add_root_argument(parser)
    parser.add_argument(
        "keys",
        metavar="KEY",
        nargs="+",
        type=key_argument,
        help="a model key: its path relative to ROOT, such as cfd/wing-a/steady",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=(
            "how long to wait for a model open in a process to be closed "
            f"(default {DEFAULT_TIMEOUT:g})"
        ),
    )
    add_yes_argument(parser, "the models")
    add_json_argument(parser)
    parser.set_defaults(run=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``filecache rm``."""
    root = check_root(args.root)
    keys: list[str] = list(dict.fromkeys(args.keys))  # each once, in the order given
    timeout: float = args.timeout
    recorder = Recorder()
    config = CacheManagerConfig(
        evict_above=NO_LIMIT, interval=ONE_DAY, lock_timeout=timeout, observer=recorder
    )
    if not args.yes and interactive() and not _confirmed(root, keys):
        error("nothing was removed")
        return EXIT_FAILURE
    removed: dict[str, int] = {}  # key -> the bytes it held
    missing: list[str] = []
    still_open: list[str] = []
    failed: dict[str, str] = {}
    with FileCache(root=root, config=config) as cache:
        for key in keys:
            try:
                entry = cache.get_entry(key)
                if cache.remove(key):
                    removed[key] = 0 if entry is None else entry.size
                else:
                    missing.append(key)
            except LockTimeoutError:
                still_open.append(key)
            except OSError as exc:
                failed[key] = exc.strerror or str(exc)
    warned = recorder.report_errors()
    freed = sum(removed.values())
    if args.json:
        print_json(
            {
                "root": root,
                "removed": list(removed),
                "freed": freed,
                "missing": missing,
                "open": still_open,
                "failed": [{"key": key, "error": why} for key, why in failed.items()],
                "timeout": timeout,
            }
        )
    else:
        lines = [
            f"removed {display_key(key)} ({format_size(size)})" for key, size in removed.items()
        ]
        if removed:
            lines.append(f"freed {format_bytes(freed)}")
        print_lines(lines)
    reasons = [f"{key!r} (no such model)" for key in missing]
    reasons += [f"{key!r} (still open after {timeout:g}s)" for key in still_open]
    reasons += [f"{key!r} ({why})" for key, why in failed.items()]
    if reasons:
        error(f"not removed: {', '.join(reasons)}")
        return EXIT_FAILURE
    return EXIT_FAILURE if warned else EXIT_OK


def _confirmed(root: str, keys: list[str]) -> bool:
    """Say what removing ``keys`` frees, from a read-only scan, and ask; True if yes."""
    found = {e.key: e for e in scan(root, Recorder()).entries if e.key in set(keys)}
    if not found:
        return True  # nothing to remove: the removal reports each missing KEY
    chosen = [found[key] for key in keys if key in found]
    size = sum(entry.size for entry in chosen)
    lines = [f"rm will remove {format_count(len(chosen))}, {format_bytes(size)}, from {root}:"]
    lines += entry_lines(chosen, lambda e: format_size(e.size))
    return confirm(lines, "Remove them?")
