"""``filecache exporter ROOT``: a sidecar that manages a root and serves ``/metrics``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._cache import FileCache
from .._config import CacheManagerConfig
from .._entry import CacheEntry
from .._sizes import SIZE_UNITS_HELP, format_size
from ..observers.base import CacheObserver
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    NO_LIMIT,
    POLICIES,
    CommandError,
    add_policy_argument,
    add_root_argument,
    check_root,
    size_argument,
)

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ._common import Subparsers


#: The signals that stop the exporter: SIGTERM with status 0, SIGINT (Ctrl-C) with 130.
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class NoEviction:
    """A policy that chooses nothing: the manager measures and reports, and never evicts."""

    name = "none"

    def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        """Return no entry."""
        return []


def register(subparsers: Subparsers) -> None:
    """Add the ``exporter`` subcommand."""
    parser = subparsers.add_parser(
        "exporter",
        help="run the manager of a root and serve its Prometheus metrics (evicts with --evict)",
        description=(
            "A sidecar for caches filled by processes that export no metrics themselves: "
            "it runs the root's manager (scans) and serves /metrics until stopped. By "
            "default it only measures, deletes nothing and exports no limit; with --evict "
            "--evict-above SIZE it also evicts above SIZE, as a server's manager would. "
            "SIGTERM stops it with status 0, Ctrl-C (SIGINT) with status 130; a signal "
            "that comes while it stops is ignored, so that the stop stays clean."
        ),
        epilog=SIZE_UNITS_HELP,
    )
    add_root_argument(parser)
    parser.add_argument("--port", type=int, default=9464, help="port to serve (default 9464)")
    parser.add_argument("--addr", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--evict",
        action="store_true",
        help="evict above --evict-above (without it the exporter deletes nothing)",
    )
    mode.add_argument(
        "--no-evict",
        action="store_true",
        help="only measure and export, never evict (the default; accepted for scripts)",
    )
    parser.add_argument(
        "--evict-above",
        type=size_argument,
        metavar="SIZE",
        help="with --evict: the limit to evict above, exported as filecache_limit_bytes",
    )
    parser.add_argument(
        "--evict-to",
        type=size_argument,
        metavar="SIZE",
        help="with --evict: evict down to this size (default: --evict-above)",
    )
    add_policy_argument(parser, "with --evict: the eviction order")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds between cycles (default 60)"
    )
    parser.add_argument(
        "--cache-name",
        metavar="NAME",
        help="the value of the 'cache' label of every series (default: ROOT's absolute path)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache exporter`` until SIGTERM (status 0) or SIGINT (status 130)."""
    # Imported here, so that the other subcommands never import prometheus_client.
    from ..observers.prometheus import PrometheusObserver, start_metrics_server  # noqa: PLC0415

    root = check_root(args.root)
    config = _config(args, PrometheusObserver(cache_name=args.cache_name, export_limit=args.evict))
    # The signals are taken synchronously (sigwait) rather than by handlers: a handler's
    # KeyboardInterrupt, raised inside the locks of the shutdown by a second Ctrl-C, ended
    # in "RuntimeError: release unlocked lock". Blocked before any thread starts, so that
    # every thread inherits the mask and only the main thread receives them.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        received = _serve(root, args, config, start_metrics_server)
    finally:
        # Signals sent while stopping are dropped, not delivered when the mask is restored.
        while signal.sigtimedwait(_STOP_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    print("stopped", file=sys.stderr)
    return EXIT_INTERRUPTED if received == signal.SIGINT else EXIT_OK


def _config(args: argparse.Namespace, observer: CacheObserver) -> CacheManagerConfig:
    """The manager's configuration, or a usage error."""
    if not args.evict:
        given = [
            option
            for option, value in (
                ("--evict-above", args.evict_above),
                ("--evict-to", args.evict_to),
                ("--policy", args.policy),
            )
            if value is not None
        ]
        if given:
            why = "--no-evict never evicts" if args.no_evict else "only --evict evicts"
            raise CommandError(
                f"{why}: {', '.join(given)} cannot be given without --evict "
                "(the exporter deletes nothing unless asked)",
                EXIT_USAGE,
            )
    elif args.evict_above is None:
        raise CommandError("--evict needs --evict-above SIZE, the limit to evict above", EXIT_USAGE)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a port number", EXIT_USAGE)
    try:
        return CacheManagerConfig(
            evict_above=args.evict_above if args.evict else NO_LIMIT,
            evict_to=args.evict_to,
            interval=args.interval,
            policy=POLICIES[args.policy or "lru"]() if args.evict else NoEviction(),
            observer=observer,
        )
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc


def _serve(
    root: str,
    args: argparse.Namespace,
    config: CacheManagerConfig,
    start_metrics_server: Callable[[int, str], tuple[WSGIServer, threading.Thread]],
) -> int:
    """Serve until SIGINT or SIGTERM; return the signal that stopped it."""
    try:
        server, thread = start_metrics_server(args.port, args.addr)
    except OSError as exc:  # in use, no such address, a port below 1024 without root
        why = exc.strerror or str(exc)
        raise CommandError(f"cannot serve on {_address(args.addr, args.port)}: {why}") from None
    try:
        with FileCache(root=root, config=config):
            host, port = server.server_address[:2]
            mode = (
                f"evicting above {format_size(args.evict_above)}"
                if args.evict
                else "measuring only, deleting nothing"
            )
            print(f"serving http://{host!s}:{port}/metrics for {root} ({mode})", flush=True)
            return signal.sigwait(_STOP_SIGNALS)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _address(addr: str, port: int) -> str:
    """``addr:port``, with an IPv6 address in brackets (``[::1]:9464``)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
