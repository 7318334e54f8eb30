"""What every subcommand shares: errors, the root check, read-only scans and output."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._config import CacheManagerConfig
from .._entry import CacheEntry, CacheSnapshot, EvictionResult
from .._keys import RESERVED, validate_key
from .._manager import CacheManager
from .._simulate import POLICY_NAMES, make_policy
from .._sizes import format_size, parse_size
from ..exceptions import KeyValidationError
from ..observers.base import CacheObserver
from ..policies import EvictionPolicy
from ..storage.local import LocalStorage

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK = 0
EXIT_FAILURE = 1  # a runtime error: ROOT missing or not a cache root, I/O errors
EXIT_USAGE = 2  # bad arguments
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports `filecache ls ROOT | head`

#: A limit no cache reaches: scans made with it never count anything as over the limit.
NO_LIMIT = 2**63 - 1

#: The manager's cycle interval for the commands that open a FileCache: its background
#: thread runs one cycle when the cache opens and never another before the command ends.
ONE_DAY = 86_400.0

#: The files that mark a model directory (see storage/local.py); a root never has them.
_MODEL_MARKERS = ("meta.json", "pin.lock")

#: The built-in policies by name, in the replay's order; each call makes a new one.
POLICIES: dict[str, Callable[[], EvictionPolicy]] = {
    name: functools.partial(make_policy, name, time.time) for name in POLICY_NAMES
}


class CommandError(Exception):
    """A failure to report as one line on stderr, with the exit status to return.

    Args:
        message: what went wrong, without the ``filecache: error:`` prefix.
        status: the exit status (:data:`EXIT_FAILURE` unless the arguments are at fault).
    """

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def size_argument(text: str) -> int:
    """Parse a SIZE argument for argparse; a bad size becomes a usage error."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def key_argument(text: str) -> str:
    """Parse a KEY or key prefix argument; a malformed key becomes a usage error.

    One trailing ``/`` is dropped: shell completion adds it to folder names.
    """
    key = text[:-1] if len(text) > 1 and text.endswith("/") else text
    try:
        return validate_key(key)
    except KeyValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    """Add the positional ROOT argument every subcommand takes."""
    parser.add_argument(
        "root", metavar="ROOT", help=f"the cache root: a directory with a {RESERVED}/ folder"
    )


def add_policy_argument(parser: argparse.ArgumentParser, purpose: str) -> None:
    """Add ``--policy NAME``, its choices in the one order every command lists them."""
    parser.add_argument(
        "--policy",
        choices=list(POLICIES),
        metavar="NAME",
        help=f"{purpose}, one of {', '.join(POLICIES)} (default lru)",
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout instead of text"
    )


def check_root(path: str) -> str:
    """Return the absolute path of the cache root ``path``, or raise without touching it.

    This runs before any FileCache is opened, because opening one creates the cache
    layout: a typo must not turn a foreign directory into a cache root.

    Raises:
        CommandError: ``path`` is empty, missing, not a directory, not a cache root, a
            model directory inside a cache root, or not readable ("permission denied").
    """
    if not path:
        raise CommandError("ROOT must not be empty", EXIT_USAGE)
    root = os.path.abspath(path)
    # stat() rather than os.path.isdir(), which reads "permission denied" as "absent".
    if not stat.S_ISDIR(_stat(path, root, f"{path}: no such directory")):
        raise CommandError(f"{path}: not a directory")
    internal = os.path.join(root, RESERVED)
    try:
        has_internal = stat.S_ISDIR(os.stat(internal).st_mode)
    except PermissionError:
        raise CommandError(f"{path}: permission denied") from None
    except (FileNotFoundError, NotADirectoryError):
        has_internal = False
    if not has_internal and not LocalStorage(root).plan_v1().models:
        raise CommandError(
            f"{path}: not a cache root (it has no {RESERVED}/ folder, nor models of a "
            "vcti-file-cache 1.0 root)"
        )
    if any(os.path.exists(os.path.join(internal, name)) for name in _MODEL_MARKERS):
        raise CommandError(f"{path}: a model directory, not a cache root")
    return root


def _stat(given: str, path: str, missing: str) -> int:
    """The mode of ``path``; a CommandError saying ``missing`` or "permission denied"."""
    try:
        return os.stat(path).st_mode
    except PermissionError:
        raise CommandError(f"{given}: permission denied") from None
    except (FileNotFoundError, NotADirectoryError):
        raise CommandError(missing) from None


class Recorder(CacheObserver):
    """Collects what the library reports while a command runs: eviction runs and errors.

    Hooks may run in the manager's background thread, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results: list[EvictionResult] = []
        self.errors: list[tuple[str, Exception]] = []

    def on_evict_end(self, result: EvictionResult) -> None:
        """Keep the result of every eviction run, manual or background."""
        with self._lock:
            self.results.append(result)

    def on_error(self, error: Exception, context: str) -> None:
        """Keep the error, to report it as a warning when the command ends."""
        with self._lock:
            self.errors.append((context, error))

    def report_errors(self) -> bool:
        """Print each recorded error as a warning on stderr.

        Returns:
            True if any error was more than a repaired metadata file (the library
            rebuilds those and carries on).
        """
        with self._lock:
            errors = list(self.errors)
            self.errors.clear()
        for context, error in errors:
            warn(f"{context}: {error}")
        return any(context != "metadata" for context, _ in errors)


def scan(root: str, observer: CacheObserver, evict_above: int = NO_LIMIT) -> CacheSnapshot:
    """Scan the cache root once with the library's scan, read-only.

    Unlike ``FileCache.open()`` this starts no manager thread, sweeps no leftovers and
    writes nothing: a model with unreadable metadata is shown with defaults (no accesses,
    times now) and left as it is. The models of a vcti-file-cache 1.0 root are shown as
    1.0 recorded them, with a note on stderr that they are not adopted yet: adopting
    cannot be undone, and is for ``filecache adopt`` or a process that uses the cache.

    Args:
        root: a path accepted by :func:`check_root`.
        observer: receives the scan's errors.
        evict_above: the limit the snapshot's ``overage`` and ``is_over_limit`` use.
    """
    config = CacheManagerConfig(evict_above=NO_LIMIT, interval=ONE_DAY, observer=observer)
    storage = LocalStorage(root)
    v1 = storage.inspect_v1(lambda exc: observer.on_error(exc, "scan"))
    if v1:
        note_v1_root(root, len(v1))
    snapshot = CacheManager.inspect(storage, config)
    if v1:
        known = {entry.key for entry in snapshot.entries}
        entries = snapshot.entries + [entry for entry in v1 if entry.key not in known]
        snapshot = dataclasses.replace(snapshot, entries=entries)
    # Any limit, 0 included: the snapshot derives its overage from the one it is given.
    return dataclasses.replace(snapshot, evict_above=evict_above)


def note_v1_root(root: str, count: int) -> None:
    """Say on stderr that ``root`` holds ``count`` models of 1.0 not adopted, and how to."""
    sys.stderr.write(
        f"filecache: note: {root} is a vcti-file-cache 1.0 root: {format_count(count)} not "
        "adopted yet, shown as 1.0 recorded them, and left unchanged. Stop every 1.0 "
        f"process, then run 'filecache adopt {root}' to adopt them.\n"
    )


def trash_size(root: str) -> int:
    """Bytes under ``ROOT/.filecache/trash``: evicted models not yet deleted (0 if none)."""
    return LocalStorage(root).trash_size()


def entry_json(entry: CacheEntry) -> dict[str, Any]:
    """Return ``entry`` as a JSON object (times in epoch seconds)."""
    return {
        "key": entry.key,
        "size": entry.size,
        "access_count": entry.access_count,
        "last_access": entry.last_access,
        "created": entry.created,
        "fill_seconds": entry.fill_seconds,
        "version": entry.version,
    }


def print_json(document: dict[str, Any]) -> None:
    """Print ``document`` on stdout as one indented JSON document."""
    _write(json.dumps(document, indent=2) + "\n")


def print_lines(lines: Sequence[str]) -> None:
    """Print ``lines`` on stdout."""
    _write("".join(f"{line}\n" for line in lines))


def _write(text: str) -> None:
    # Write to the descriptor until every byte is out, inside main(), so that a closed pipe
    # is reported there (BrokenPipeError, status 141). Through sys.stdout an unbuffered
    # stream (PYTHONUNBUFFERED=1, usual in containers) drops the rest of a partial write:
    # `filecache ls ROOT | head -c 10` then exited 0 with its output cut short.
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (io.StringIO, a capture)
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    data = memoryview(text.encode(stream.encoding or "utf-8", stream.errors or "strict"))
    while data:
        data = data[os.write(fd, data) :]


def format_time(epoch: float) -> str:
    """Return ``epoch`` as local time, ``2024-05-01 12:00:00``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


#: (seconds, singular, plural) from the largest unit down, for :func:`format_age`.
_AGE_UNITS = (
    (365 * 86_400, "year", "years"),
    (30 * 86_400, "month", "months"),
    (7 * 86_400, "week", "weeks"),
    (86_400, "day", "days"),
    (3_600, "hour", "hours"),
    (60, "minute", "minutes"),
    (1, "second", "seconds"),
)


def format_age(epoch: float, now: float) -> str:
    """Return how long before ``now`` ``epoch`` was: ``3 days ago``, ``1 hour ago``.

    Whole units, rounded down, as ``huggingface-cli scan-cache`` and ``git log`` show them;
    a time less than a second old, or ahead of ``now`` (clocks of two hosts), is ``just now``.
    """
    seconds = int(now - epoch)
    for length, one, many in _AGE_UNITS:
        if seconds >= length:
            count = seconds // length
            return f"{count} {one if count == 1 else many} ago"
    return "just now"


def format_duration(seconds: float | None) -> str:
    """Return a duration as ``0.8 s``, ``12 min``, ``2.5 h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3_600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h"


def display_key(key: str) -> str:
    """Return ``key`` as printed in a text table: control characters escaped.

    A key may hold any character but ``\\`` and NUL; a newline or a terminal escape
    printed raw would split its row or drive the terminal (as ``ls`` escapes odd file
    names). Escaped as Python writes them (``\\n``, ``\\x1b``): unambiguous, since a key
    has no backslash of its own. ``--json`` output keeps keys as they are.
    """
    if key.isprintable():
        return key
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in key)


def format_bytes(size: int) -> str:
    """Return ``size`` human-readable and exact: ``1.5 MiB (1572864 bytes)``."""
    return f"{format_size(size)} ({size} bytes)"


def format_count(count: int) -> str:
    """Return ``1 model`` or ``N models``."""
    return f"{count} model" if count == 1 else f"{count} models"


def entry_lines(entries: Sequence[CacheEntry], column: Callable[[CacheEntry], str]) -> list[str]:
    """Return one indented line per entry: ``column(entry)`` right-aligned, then the key."""
    cells = [column(entry) for entry in entries]
    width = max((len(cell) for cell in cells), default=0)
    return [
        f"  {cell:>{width}}  {display_key(entry.key)}"
        for cell, entry in zip(cells, entries, strict=True)
    ]


def add_yes_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--yes``: remove ``what`` without asking."""
    parser.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help=f"remove {what} without asking (on a terminal, the command asks first)",
    )


def interactive() -> bool:
    """True if a person can answer a question: stdin is a terminal."""
    return sys.stdin is not None and sys.stdin.isatty()


def confirm(lines: Sequence[str], question: str) -> bool:
    """Print ``lines`` and ``question [y/N]`` on stderr; True if the answer is yes.

    Only for :func:`interactive` use: the answer is read from stdin. End of input (Ctrl-D)
    is no.
    """
    sys.stderr.write("".join(f"{line}\n" for line in lines) + f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")


def error(message: str) -> None:
    """Print ``filecache: error: MESSAGE`` on stderr (for errors found after some output)."""
    sys.stderr.write(f"filecache: error: {message}\n")


def warn(message: str) -> None:
    """Print ``filecache: warning: MESSAGE`` on stderr."""
    sys.stderr.write(f"filecache: warning: {message}\n")
