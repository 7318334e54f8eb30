"""``filecache demo``: the demo server, with its own load (see :mod:`vcti.filecache.demo`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .._sizes import SIZE_UNITS_HELP, format_size
from ..demo import DemoSettings, run_demo
from ..observers.trace import TRACE_HEADER
from ._common import EXIT_USAGE, POLICIES, CommandError, size_argument

if TYPE_CHECKING:
    from ._common import Subparsers

T = TypeVar("T")

_ENV_PREFIX = "FILECACHE_DEMO_"


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def convert(text: str) -> T:
        value = kind(text)
        if not value > 0:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _file_path(text: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def check_trace(path: Path) -> None:
    """Refuse a trace file the demo could not write, or whose lines would spoil a file.

    Raises:
        CommandError: (usage) the folder is missing, or the file exists and is not a trace.
    """
    folder = path.parent
    if not folder.is_dir():
        raise CommandError(f"--trace {path}: no such directory: {folder}", EXIT_USAGE)
    if path.is_dir():
        raise CommandError(f"--trace {path}: is a directory", EXIT_USAGE)
    if not path.exists():
        return
    try:
        with path.open("rb") as file:
            head = file.read(len(TRACE_HEADER))
    except OSError as exc:
        raise CommandError(f"--trace {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    if head and head != TRACE_HEADER.encode():
        raise CommandError(
            f"--trace {path}: exists and is not a trace (its first line is not "
            f"{TRACE_HEADER.strip()!r}); give a new file",
            EXIT_USAGE,
        )


def register(subparsers: Subparsers) -> None:
    """Add the ``demo`` subcommand."""
    defaults = DemoSettings()
    parser = subparsers.add_parser(
        "demo",
        help="run the demo server with its own load generator",
        description=(
            "Serve derived data of synthetic simulation models through a FileCache, with "
            "Prometheus metrics on /metrics, spans (OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is "
            "set) and JSON events, while client threads request models with a Zipf-like "
            "popularity over a working set larger than the budget. Every option can also be "
            f"set by an environment variable {_ENV_PREFIX}NAME (for example "
            f"{_ENV_PREFIX}PORT=8001); a flag wins over the variable. Stop it with Ctrl-C "
            "(status 130), SIGTERM (status 0) or --duration; a temporary work folder is "
            "removed when it stops."
        ),
        epilog=SIZE_UNITS_HELP,
    )

    def option(
        name: str, kind: Callable[[str], object], default: object, help: str, **extra: object
    ) -> None:
        env = _ENV_PREFIX + name.upper().replace("-", "_")
        raw = os.environ.get(env)
        value = default
        if raw is not None:
            try:
                value = kind(raw)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise CommandError(f"{env}={raw!r}: {exc}", EXIT_USAGE) from exc
        parser.add_argument(f"--{name}", type=kind, default=value, help=f"{help} [{env}]", **extra)  # type: ignore[arg-type]

    option("root", Path, None, "work folder for inputs and the cache (default: a temp folder)")
    option(
        "storage",
        str,
        None,
        "where the cache lives: 'local' (ROOT/cache, the default) or s3://BUCKET/PREFIX "
        "(needs vcti-file-cache[s3]; endpoint and credentials from AWS_* variables)",
    )
    option("host", str, defaults.host, f"address to bind (default {defaults.host})")
    option("port", int, defaults.port, f"port to serve (default {defaults.port}; 0 = any)")
    option(
        "evict-above",
        size_argument,
        defaults.evict_above,
        f"the cache budget (default {format_size(defaults.evict_above)})",
    )
    option("evict-to", size_argument, None, "evict down to this size (default: the budget)")
    option(
        "interval",
        _positive(float),
        defaults.interval,
        f"seconds between manager cycles (default {defaults.interval})",
    )
    option("policy", str, defaults.policy, "eviction policy", choices=list(POLICIES))
    option(
        "models",
        _positive(int),
        defaults.models,
        f"models in the working set (default {defaults.models})",
    )
    option(
        "field-size",
        size_argument,
        defaults.field_bytes,
        f"bytes of each model's field file (default {format_size(defaults.field_bytes)})",
    )
    option(
        "parse-cost",
        _non_negative_float,
        defaults.parse_cost,
        f"CPU seconds per parse (default {defaults.parse_cost})",
    )
    option("clients", int, defaults.clients, f"load threads, 0 = none (default {defaults.clients})")
    option("zipf", _non_negative_float, defaults.zipf, f"popularity skew (default {defaults.zipf})")
    option(
        "duration",
        _positive(float),
        None,
        "stop after this many seconds (default: run until Ctrl-C)",
    )
    option(
        "tracing",
        str,
        defaults.tracing,
        "spans: auto (OTLP if OTEL_EXPORTER_OTLP_ENDPOINT is set, else a file), otlp, console, off",
        choices=("auto", "otlp", "console", "off"),
    )
    option("log-file", str, None, "JSON event log ('-' = stderr; default: ROOT/events.jsonl)")
    option(
        "max-log-size",
        _positive(size_argument),
        defaults.log_max_bytes,
        "the size at which the spans file and the event log are rotated to NAME.1 "
        f"(default {format_size(defaults.log_max_bytes)})",
    )
    option(
        "trace",
        _file_path,
        None,
        "also record every model lookup to this CSV file (time,key,size,cost,hit), what "
        "'filecache replay FILE' reads; appended to if it is a trace already, never rotated "
        "(about 55 bytes a lookup) (default: no trace)",
        metavar="FILE",
    )
    parser.add_argument("--no-progress", action="store_true", help="no refreshing progress line")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filecache demo``."""
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a port number", EXIT_USAGE)
    if args.storage not in (None, "local") and not str(args.storage).startswith("s3://"):
        raise CommandError("--storage must be 'local' or s3://BUCKET/PREFIX", EXIT_USAGE)
    if args.clients < 0:
        raise CommandError("--clients must not be negative", EXIT_USAGE)
    if args.evict_to is not None and args.evict_to > args.evict_above:
        raise CommandError("--evict-to must not be greater than --evict-above", EXIT_USAGE)
    if args.trace is not None:
        check_trace(args.trace)
    settings = DemoSettings(
        root=args.root,
        storage=args.storage,
        host=args.host,
        port=args.port,
        evict_above=args.evict_above,
        evict_to=args.evict_to,
        interval=args.interval,
        policy=args.policy,
        models=args.models,
        field_bytes=args.field_size,
        parse_cost=args.parse_cost,
        clients=args.clients,
        zipf=args.zipf,
        duration=args.duration,
        load=args.clients > 0,
        tracing=args.tracing,
        log_file=args.log_file,
        log_max_bytes=args.max_log_size,
        progress=not args.no_progress,
        trace=args.trace,
    )
    return run_demo(settings)
