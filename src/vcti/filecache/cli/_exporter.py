"""``filecache exporter ROOT``: a sidecar that manages a root and serves ``/metrics``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._cache import FileCache
from .._config import CacheManagerConfig
from .._entry import CacheEntry
from .._sizes import SIZE_UNITS_HELP
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    NO_LIMIT,
    POLICIES,
    CommandError,
    add_root_argument,
    check_root,
    size_argument,
)

if TYPE_CHECKING:
    from ._common import Subparsers


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
        help="run the manager of a root and serve its Prometheus metrics",
        description=(
            "A sidecar for caches filled by processes that export no metrics themselves: "
            "it runs the root's manager (scans, and evicts above --evict-above) and serves "
            "/metrics until interrupted. With --no-evict it only measures."
        ),
        epilog=SIZE_UNITS_HELP,
    )
    add_root_argument(parser)
    parser.add_argument("--port", type=int, default=9464, help="port to serve (default 9464)")
    parser.add_argument("--addr", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--evict-above", type=size_argument, metavar="SIZE", help="the limit")
    parser.add_argument("--evict-to", type=size_argument, metavar="SIZE")
    parser.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="lru",
        help="the eviction order (default lru; see 'filecache evict --help')",
    )
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds between cycles (default 60)"
    )
    parser.add_argument(
        "--no-evict", action="store_true", help="only measure and export, never evict"
    )
    parser.add_argument("--cache-name", help="the 'cache' label (default: ROOT)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache exporter`` until SIGINT or SIGTERM."""
    # Imported here, so that the other subcommands never import prometheus_client.
    from ..observers.prometheus import PrometheusObserver, start_metrics_server  # noqa: PLC0415

    root = check_root(args.root)
    if args.evict_above is None and not args.no_evict:
        raise CommandError(
            "give --evict-above SIZE (nothing is evicted without a limit) or --no-evict",
            EXIT_USAGE,
        )
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a port number", EXIT_USAGE)
    try:
        config = CacheManagerConfig(
            evict_above=NO_LIMIT if args.evict_above is None else args.evict_above,
            evict_to=args.evict_to,
            interval=args.interval,
            policy=NoEviction() if args.no_evict else POLICIES[args.policy](),
            observer=PrometheusObserver(cache_name=args.cache_name),
        )
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server, _ = start_metrics_server(args.port, args.addr)
    try:
        with FileCache(root=root, config=config):
            host, port = server.server_address[:2]
            mode = "measuring only" if args.no_evict else f"evicting above {args.evict_above} B"
            print(f"serving http://{host!s}:{port}/metrics for {root} ({mode})", flush=True)
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        server.shutdown()
        server.server_close()
    print("stopped", file=sys.stderr)
    return EXIT_OK
