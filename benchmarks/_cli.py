"""The command line: parse options, run the chosen benchmarks, write the results."""

from __future__ import annotations

import argparse
import datetime
import gc
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import (
    aio,
    contention,
    evict,
    hit,
    hitwalk,
    idle,
    memory,
    pressure,
    react,
    replay,
    scan,
    steady,
)
from ._common import REPO, Result, Settings, Stopwatch, machine_facts
from ._report import table, write
from ._workspace import Workspace

#: Every benchmark, in the order they run (eviction consumes the scan tree).
BENCHMARKS: dict[str, Callable[[Workspace], Result]] = {
    hit.NAME: hit.run,
    contention.NAME: contention.run,
    scan.NAME: scan.run,
    steady.NAME: steady.run,
    hitwalk.NAME: hitwalk.run,
    evict.NAME: evict.run,
    idle.NAME: idle.run,
    memory.NAME: memory.run,
    react.NAME: react.run,
    pressure.NAME: pressure.run,
    aio.NAME: aio.run,
    replay.NAME: replay.run,
}

#: Sizes of each mode: (keys, opens, models, files per model, opens per process, repeats,
#: cycles).
SIZES = {
    "quick": (1_000, 5_000, 200, 10, 500, 2, 3),
    "full": (10_000, 100_000, 2_000, 50, 5_000, 5, 10),
    "large": (10_000, 100_000, 10_000, 100, 5_000, 3, 10),
}
BLOCK = 4096  # a small file takes one block


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure vcti-file-cache against its peers and the machine's limits.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a reduced run of a few seconds")
    size.add_argument(
        "--large", action="store_true", help="the scan tree at 10,000 models x 100 files"
    )
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results",
        help="where latest.md and latest.json go (default: benchmarks/results)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where the trees are built (default: a temp dir in /tmp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the trees afterwards")
    parser.add_argument(
        "--profile", action="store_true", help="write cProfile summaries to OUT/profiles/"
    )
    parser.add_argument("--models", type=int, help="models in the scan tree")
    parser.add_argument("--files-per-model", type=int, help="files per model in the scan tree")
    parser.add_argument("--keys", type=int, help="tiny models (hit path, contention, idle, memory)")
    parser.add_argument("--opens", type=int, help="timed opens on the hit path")
    parser.add_argument("--procs", type=int, default=8, help="processes in the contention run")
    parser.add_argument("--opens-per-proc", type=int, help="timed opens per process")
    parser.add_argument("--repeats", type=int, help="runs of each repeated measurement")
    parser.add_argument("--cycles", type=int, help="timed idle cycles")
    args = parser.parse_args(argv)
    if args.only:
        unknown = set(args.only.split(",")) - set(BENCHMARKS)
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    for name in ("models", "files_per_model", "keys", "opens", "procs", "opens_per_proc"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def settings_from(args: argparse.Namespace, workdir: Path) -> Settings:
    """The run's settings: the mode's sizes, overridden by the options given."""
    mode = "quick" if args.quick else "large" if args.large else "full"
    keys, opens, models, files, per_proc, repeats, cycles = SIZES[mode]

    def pick(value: int | None, default: int) -> int:
        return default if value is None else value

    return Settings(
        quick=args.quick,
        large=args.large,
        keys=pick(args.keys, keys),
        opens=pick(args.opens, opens),
        models=pick(args.models, models),
        files_per_model=pick(args.files_per_model, files),
        procs=args.procs,
        opens_per_proc=pick(args.opens_per_proc, per_proc),
        repeats=pick(args.repeats, repeats),
        cycles=pick(args.cycles, cycles),
        workdir=workdir,
        profile_dir=args.out / "profiles" if args.profile else None,
    )


def check_space(settings: Settings, names: Sequence[str]) -> None:
    """Refuse to start when the work dir cannot hold the trees (three copies of the tree)."""
    tree = settings.models * (settings.files_per_model * BLOCK + 4 * BLOCK)
    copies = 3 + (settings.profile_dir is not None) if evict.NAME in names else 1
    # The tiny tree, and the scaling trees of the steady state (1.2x as many).
    needed = tree * copies + settings.keys * 3 * 4 * BLOCK + (1 << 30)
    free = shutil.disk_usage(settings.workdir).free
    if free < needed:
        raise SystemExit(
            f"not enough space in {settings.workdir}: about {needed / 1e9:.1f} GB needed, "
            f"{free / 1e9:.1f} GB free (use --workdir, or fewer --models)"
        )


def run_all(settings: Settings, names: Sequence[str], log: Stopwatch) -> list[Result]:
    """Run the benchmarks in order; a failing one is recorded and the others still run."""
    ws = Workspace(settings, log)
    results: list[Result] = []
    for name in names:
        log.say(f"== {name}")
        started = time.perf_counter()
        try:
            result = BENCHMARKS[name](ws)
        except Exception as exc:
            traceback.print_exc()
            result = Result(name, name, error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - started
        results.append(result)
        gc.collect()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return 1 if any of them failed to run (a missed target is 0)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only.split(",")]
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="vcti-bench-", dir=parent))
    settings = settings_from(args, workdir)
    log = Stopwatch()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    machine = machine_facts(parent)  # before the run: the commit that was imported
    try:
        check_space(settings, names)
        log.say(f"{settings.mode} run of {', '.join(names)} in {workdir}")
        results = run_all(settings, names, log)
    finally:
        if args.keep:
            log.say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta: dict[str, object] = {
        "command": shlex.join(["python", "-m", "benchmarks", *argv]),
        "mode": settings.mode,
        "started": started_at,
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(settings).items()
        },
        "machine": machine,
    }
    md, js = write(args.out, results, meta)
    print(table(results))
    log.say(f"wrote {md} and {js}")
    return 1 if any(r.error is not None for r in results) else 0
