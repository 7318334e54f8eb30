"""The ``filecache`` command: inspect a cache root and evict from it, from the shell.

Run it as ``filecache`` (the console script) or ``python -m vcti.filecache``::

    filecache stats ROOT [--evict-above SIZE] [--by-prefix N] [--json]
    filecache ls ROOT [--sort lru|lfu|size|age] [--prefix P] [--json]
    filecache evict ROOT --evict-above SIZE [--evict-to SIZE] [--policy NAME]
                    [--dry-run] [--json]
    filecache rm ROOT KEY... [--timeout SECONDS] [--yes] [--json]
    filecache clear ROOT [--yes] [--json]
    filecache verify ROOT [--repair] [--json]
    filecache adopt ROOT [--json]
    filecache exporter ROOT [--port 9464] [--evict --evict-above SIZE [--evict-to SIZE]]
    filecache demo [--port 8000] [--duration SECONDS] ...
    filecache replay TRACE... [--policy NAME,...] [--limit LIMIT,... | --sizes LOW..HIGH:N]
                     [--exact] [--interval SECONDS] [--evict-to FRACTION]
                     [--no-prompt-eviction] [--prompt-delay SECONDS] [--max-age SECONDS]
                     [--min-free SIZE --disk SIZE] [--sample RATE|auto [--sample-by size|keys]]
                     [--target M=RATIO] [--jobs N] [--quiet] [--concat] [--json] [--plot FILE]

Only ``evict``, ``rm``, ``clear`` and ``exporter --evict`` delete models, and each only
when told what: an explicit ``--evict-above``, explicit keys, a confirmation. ``stats``,
``ls``, ``verify`` and ``evict --dry-run`` write nothing, not even on a 1.0 root, which only
``adopt`` (or a process that opens the cache for use) adopts.

Each subcommand lives in its own module with a ``register(subparsers)`` function that
adds its parser and sets ``run``; adding one is one module and one line in
:data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from .. import __version__
from ..exceptions import FileCacheError
from . import _adopt, _clear, _demo, _evict, _exporter, _ls, _replay, _rm, _stats, _verify
from ._common import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandError,
)

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["COMMANDS", "build_parser", "main"]

_SIZE_OPTIONS = frozenset({"--evict-above", "--evict-to", "--limit", "--sizes"})
_NEGATIVE = re.compile(r"-[0-9.]")

#: The subcommands, in the order ``--help`` lists them.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _demo.register,
    _stats.register,
    _ls.register,
    _evict.register,
    _rm.register,
    _clear.register,
    _verify.register,
    _adopt.register,
    _exporter.register,
    _replay.register,
)

_EPILOG = """\
exit status:
  0    success
  1    runtime error: ROOT missing or not a cache root, an I/O error, a model that
       could not be removed (rm: a KEY that is not a model, or stayed open), a no
       to rm's or clear's question
  2    usage error: bad arguments (an unknown size unit, a negative size, --evict-to
       above --evict-above, an unknown policy, a malformed key, clear without --yes
       and without a terminal), a trace that replay cannot read
  130  interrupted (Ctrl-C); 'exporter' and 'demo' stop with 0 on SIGTERM
  141  stdout was closed early (as in 'filecache ls ROOT | head')

Only evict, rm, clear and 'exporter --evict' delete models, and none without being
asked: evict needs --evict-above, rm the keys, clear a confirmation, the exporter --evict
and --evict-above. On a terminal rm and clear say what they will free and ask first
(--yes does not ask); without one, rm removes what it is given and clear needs --yes.

stats, ls, verify and 'evict --dry-run' write nothing, not even on a root written by
vcti-file-cache 1.0: 'adopt' adopts one (so does a process that opens the cache for
use), and deletes only 1.0's metadata files.

Run 'filecache COMMAND --help' for the options of a command.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``filecache: error: ...``."""

    def error(self, message: str) -> NoReturn:
        """Print ``filecache: error: MESSAGE`` on stderr and exit with status 2."""
        self.exit(EXIT_USAGE, f"filecache: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``filecache`` command, with every subcommand."""
    parser: argparse.ArgumentParser = _Parser(
        prog="filecache",
        description="Inspect a vcti.filecache cache root and evict models from it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``filecache`` command and return its exit status.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 on a runtime error, 2 on a usage error, 130 when interrupted,
        141 when stdout was closed early; every error is reported as one line on
        stderr, never as a traceback.
    """
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(_join_negative_sizes(sys.argv[1:] if argv is None else argv))
        except SystemExit as exc:  # --help and --version (0), usage errors (2)
            return _status(exc.code)
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except CommandError as exc:
        _error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`filecache ls ROOT | head`): point stdout at /dev/null so
        # the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except (OSError, FileCacheError) as exc:
        _error(_describe(exc))
        return EXIT_FAILURE


def _join_negative_sizes(argv: Sequence[str]) -> list[str]:
    """Turn ``--evict-above -5G`` into ``--evict-above=-5G``.

    argparse reads ``-5G`` as an unknown option and reports "expected one argument";
    joined, the value reaches the size parser, which says that sizes must not be negative.
    """
    joined: list[str] = []
    for token in argv:
        if joined and joined[-1] in _SIZE_OPTIONS and _NEGATIVE.match(token):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


def _status(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else EXIT_FAILURE


def _describe(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _error(message: str) -> None:
    sys.stderr.write(f"filecache: error: {message}\n")
