"""``filecache replay TRACE...``: replay recorded requests to choose a policy and a limit."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._sample import SAMPLE_BY
from .._simulate import check_limit
from .._sizes import format_size, parse_size
from ..exceptions import TraceError
from ..replay import DEFAULT_LIMITS, POLICY_NAMES, ReplaySettings, default_jobs, replay
from ._common import EXIT_OK, EXIT_USAGE, CommandError, print_lines
from ._progress import CountBar
from ._target import parse_target, recommendation, smallest_sizes

if TYPE_CHECKING:
    from ._common import Subparsers

#: The file types ``--plot`` writes, by extension.
PLOT_FORMATS = (".png", ".svg")

_RATIOS = (
    ("object_miss_ratio", "object miss"),
    ("byte_miss_ratio", "byte miss"),
    ("cost_miss_ratio", "cost miss"),
)


def register(subparsers: Subparsers) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="replay recorded requests through the eviction policies",
        description=(
            "Replay request traces (CSV with the header time,key,size and optional cost and "
            "hit columns, as TraceObserver writes them) through the eviction policies at "
            "each limit, and show the object, byte and (with costs) recompute-seconds miss "
            "ratios, the best policy of each limit marked with *. By default the cache is "
            "replayed as it runs, with the library's default settings: every miss is filled; "
            "a fill that takes the total above the limit evicts at once (prompt eviction), "
            "down to --evict-to x the limit, and a background cycle runs every --interval "
            "seconds of trace time (evicting models idle for longer than --max-age); "
            "'peak over' is how far the cache went above its limit. With "
            "--exact, libCacheSim's conventions: the request index is the clock, the cache "
            "evicts before each insert and never admits an object larger than itself."
        ),
        epilog=(
            "LIMIT is a size (50G, 1.5T, a byte count; K, M, G, T, P are powers of 1024, KB, "
            "MB ... powers of 1000) or N% of the trace's unique bytes (each key's first size, "
            "summed), or a range LOW..HIGH[:COUNT] of COUNT sizes (default 16) spaced evenly "
            "on a log scale: --sizes 1%..50%:24. A rotated trace is replayed as one with "
            "--concat, oldest file first: filecache replay --concat day.csv.2 day.csv.1 day.csv"
        ),
    )
    parser.add_argument("traces", metavar="TRACE", nargs="+", help="trace files (CSV)")
    parser.add_argument(
        "--policy",
        action="append",
        metavar="NAME[,NAME]",
        help=f"policies to replay (default: all of {', '.join(POLICY_NAMES)})",
    )
    parser.add_argument(
        "--limit",
        "--sizes",
        action="append",
        metavar="LIMIT[,LIMIT]",
        # argparse formats help with %: a literal one is doubled.
        help=f"cache sizes to replay (default: {','.join(DEFAULT_LIMITS).replace('%', '%%')})",
    )
    parser.add_argument(
        "--exact", action="store_true", help="libCacheSim's conventions (see above)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="deployed mode: seconds of trace time between eviction cycles (default 60)",
    )
    parser.add_argument(
        "--evict-to",
        type=float,
        metavar="FRACTION",
        help="deployed mode: each cycle evicts down to this fraction of the limit (default 1)",
    )
    parser.add_argument(
        "--no-prompt-eviction",
        dest="prompt_eviction",
        action="store_false",
        help="deployed mode: evict only at background cycles (prompt_eviction=False)",
    )
    parser.add_argument(
        "--prompt-delay",
        type=float,
        metavar="SECONDS",
        help="deployed mode: seconds from a fill over the limit to the eviction it calls for "
        "(default 0; the leader gathers other processes' fills for up to 0.1 s)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        metavar="SECONDS",
        help="deployed mode: evict models not used for longer, at each cycle (default: none)",
    )
    parser.add_argument(
        "--min-free",
        metavar="SIZE|FRACTION",
        help="deployed mode: keep this much of --disk free (bytes, or a share below 1)",
    )
    parser.add_argument(
        "--disk",
        metavar="SIZE",
        help="deployed mode: the size of the filesystem the cache is on (for --min-free)",
    )
    parser.add_argument(
        "--concat", action="store_true", help="replay the files as one trace, in order"
    )
    parser.add_argument(
        "--sample",
        metavar="RATE",
        help="replay only the keys sampled at RATE (0.01: one key in 100; SHARDS) in "
        "miniature caches: the whole curve at RATE of the work, an estimate; "
        "'auto': the rate that keeps about 8,192 keys",
    )
    parser.add_argument(
        "--sample-by",
        choices=SAMPLE_BY,
        default=SAMPLE_BY[0],
        help="with --sample: 'size' (default) keeps a larger key more likely and weights "
        "its requests, the better estimate of the byte miss ratio; 'keys' keeps every key "
        "alike, as SHARDS does",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes for the policies (default: the CPUs available)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (it is drawn on stderr only when stderr is a terminal)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per trace, one per line, instead of tables",
    )
    parser.add_argument(
        "--target",
        metavar="MEASURE=RATIO",
        help="the miss ratio not to exceed (object, byte or cost; cost=20%%): the table "
        "says which policy meets it at the smallest size, and the plot marks it",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="also draw miss ratio against cache size to FILE (.png or .svg; needs matplotlib)",
    )
    parser.set_defaults(run=run)


def _split(values: Sequence[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",")]


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Check the options before any trace is read; a bad one is a usage error."""
    policies = _split(args.policy) or list(POLICY_NAMES)
    for name in policies:
        if name not in POLICY_NAMES:
            raise CommandError(
                f"unknown policy {name!r} (choose from {', '.join(POLICY_NAMES)})", EXIT_USAGE
            )
    limits = _split(args.limit) or list(DEFAULT_LIMITS)
    for limit in limits:
        try:
            check_limit(limit)
        except ValueError as exc:
            raise CommandError(f"--limit: {exc}", EXIT_USAGE) from None
    sample = _sample_rate(args.sample)
    if args.jobs is not None and args.jobs < 1:
        raise CommandError(f"--jobs must be at least 1: {args.jobs}", EXIT_USAGE)
    settings = _settings(args)
    if args.plot is not None:
        if not args.plot.lower().endswith(PLOT_FORMATS):
            raise CommandError(
                f"--plot: {args.plot}: the file must end in .png or .svg", EXIT_USAGE
            )
        from ._plot import check_matplotlib  # noqa: PLC0415 - only when plotting

        check_matplotlib()
    return {
        "policies": list(dict.fromkeys(policies)),
        "limits": list(dict.fromkeys(limits)),
        "exact": args.exact,
        "settings": settings,
        "concat": args.concat,
        "sample": sample,
        "sample_by": args.sample_by,
        "jobs": default_jobs() if args.jobs is None else args.jobs,
    }


def _sample_rate(text: str | None) -> float | str:
    """``--sample``: 1 when absent, ``"auto"``, or a rate in (0, 1]."""
    if text is None:
        return 1.0
    if text.strip().lower() == "auto":
        return "auto"
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0 < rate <= 1:
        raise CommandError(f"--sample must be 'auto' or in (0, 1]: {text}", EXIT_USAGE)
    return rate


def _settings(args: argparse.Namespace) -> ReplaySettings:
    """The deployed mode's settings from the options (refused with --exact)."""
    deployed_options = (
        args.interval is not None
        or args.evict_to is not None
        or not args.prompt_eviction
        or args.prompt_delay is not None
        or args.max_age is not None
        or args.min_free is not None
        or args.disk is not None
    )
    if args.exact and deployed_options:
        raise CommandError(
            "--interval, --evict-to, --no-prompt-eviction, --prompt-delay, --max-age, "
            "--min-free and --disk apply to the deployed mode, not to --exact",
            EXIT_USAGE,
        )
    defaults = ReplaySettings()
    interval = defaults.interval if args.interval is None else args.interval
    if not (math.isfinite(interval) and interval > 0):
        raise CommandError(f"--interval must be a positive number: {interval}", EXIT_USAGE)
    evict_to = defaults.evict_to if args.evict_to is None else args.evict_to
    if not 0 <= evict_to <= 1:
        raise CommandError(f"--evict-to must be between 0 and 1: {evict_to}", EXIT_USAGE)
    if args.max_age is not None and not (math.isfinite(args.max_age) and args.max_age > 0):
        raise CommandError(f"--max-age must be a positive number: {args.max_age}", EXIT_USAGE)
    if (args.min_free is None) != (args.disk is None):
        raise CommandError("--min-free and --disk go together", EXIT_USAGE)
    min_free: int | float | None = None
    disk: int | None = None
    if args.min_free is not None:
        try:
            disk = parse_size(args.disk)
        except ValueError as exc:
            raise CommandError(f"--disk: {exc}", EXIT_USAGE) from None
        min_free = _min_free(args.min_free)
    try:
        settings = ReplaySettings(
            interval=interval,
            evict_to=evict_to,
            prompt_eviction=args.prompt_eviction,
            prompt_delay=defaults.prompt_delay if args.prompt_delay is None else args.prompt_delay,
            max_age=args.max_age,
            min_free=min_free,
            disk_size=disk,
        )
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    return settings


def _min_free(text: str) -> int | float:
    """``--min-free``: a share of the disk (a number below 1) or a size."""
    try:
        share = float(text)
    except ValueError:
        share = None
    if share is not None and 0 < share < 1:
        return share
    try:
        return parse_size(text)
    except ValueError as exc:
        raise CommandError(f"--min-free: {exc}", EXIT_USAGE) from None


def run(args: argparse.Namespace) -> int:
    """Replay the traces and print the tables (or JSON), and draw the plot if asked."""
    options = _options(args)
    target = None if args.target is None else parse_target(args.target)
    bar = None if args.quiet or not sys.stderr.isatty() else CountBar(sys.stderr)
    try:
        records = replay(
            args.traces,
            progress=None if bar is None else bar.update,
            **options,
        )
    except TraceError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    finally:
        if bar is not None:
            bar.finish()
    if target is not None:
        for record in records:
            record["target"] = {
                "measure": target.measure,
                "ratio": target.ratio,
                "smallest": smallest_sizes(record, target),
                "recommendation": recommendation(record, target),
            }
    if args.json:
        print_lines([json.dumps(record, separators=(",", ":")) for record in records])
    else:
        lines: list[str] = []
        for record in records:
            if lines:
                lines.append("")
            lines.extend(table(record, exact=options["exact"]))
            if "target" in record:
                lines.append(f"target: {record['target']['recommendation']}")
        print_lines(lines)
    if args.plot is not None:
        from ._plot import plot  # noqa: PLC0415 - matplotlib only when plotting

        plot(records, args.plot, target)
    return EXIT_OK


def table(record: dict[str, Any], exact: bool) -> list[str]:
    """Return the lines of one trace's table; the best ratio of each limit is marked ``*``."""
    results = record["results"]
    costs = any(r["cost_miss_ratio"] is not None for r in results)
    ratios = [(field, title) for field, title in _RATIOS if costs or field != "cost_miss_ratio"]
    mode = "exact (libCacheSim's conventions)" if exact else "deployed"
    sample = record.get("sample")
    sampled = (
        f"; sampled at {sample['rate']:.3g} by {sample['by']} ({sample['requests']} requests)"
        if sample
        else ""
    )
    lines = [
        f"{record['trace']}: {record['requests']} requests, unique bytes "
        f"{format_size(record['unique_bytes'])}; {mode} mode{sampled}"
    ]
    header = ["limit", "policy", "requests", "misses", *(title for _, title in ratios)]
    if not exact:
        header.append("peak over")
    rows: list[list[str]] = []
    for limit in dict.fromkeys(r["limit_bytes"] for r in results):
        group = [r for r in results if r["limit_bytes"] == limit]
        best = {field: min(r[field] for r in group) for field, _ in ratios}
        for result in group:
            row = [
                format_size(limit),
                result["policy"],
                str(record["requests"]),
                str(result["misses"]),
            ]
            for field, _ in ratios:
                mark = "*" if result[field] == best[field] else " "
                row.append(f"{100 * result[field]:.2f}%{mark}")
            if not exact:
                row.append(format_size(result["peak_overshoot_bytes"]))
            rows.append(row)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for cells in (header, *rows):
        lines.append(
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
    lines.extend(f"warning: {text}" for text in warnings(record))
    return lines


def warnings(record: dict[str, Any]) -> list[str]:
    """The record's warnings, then each result's once (a limit's apply to every policy)."""
    found = list(record.get("warnings", ()))
    for result in record["results"]:
        for text in result.get("warnings", ()):
            if text not in found:
                found.append(text)
    return found
