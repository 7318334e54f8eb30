"""Measurements that need a fresh process: ``python -m benchmarks._child COMMAND ...``.

``scan ROOT [PROFILE]``: one scan with a cold in-process state (the caller holds the
root's leader lock, so the cache opened here never scans by itself); prints JSON.
``fullwalk ROOT [PROFILE]``: open the root as its leader, then time one full reconciling
walk (``run_once(full=True)``); prints JSON.
``digest ROOT``: what a cold scan sees (entries, access counts) and, walked without the
library, the size of every model on disk, for checks.
``memory ROOT N``: resident memory before and after tracking N models; prints JSON.
"""

from __future__ import annotations

import cProfile
import functools
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

from vcti.filecache import CacheObserver, CacheSnapshot, FileCache

from ._common import RESERVED, model_key, quiet_config, wait_first_cycle, write_profile


class _ScanTimer(CacheObserver):
    """Records the durations the library reports for its scans, and when cycles end."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.cycles_done: list[float] = []

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        self.durations.append(duration)

    def on_cycle_complete(self, total_size: int, entry_count: int) -> None:
        self.cycles_done.append(time.perf_counter())


def python_walk(top: str, skip: str | None = None) -> int:
    """Bytes of the regular files below ``top``: the plainest os.scandir walk.

    ``skip`` names an entry of ``top`` itself to leave out (a model's own ``.filecache``).
    """
    total = 0
    stack = [top]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if not (folder == top and entry.name == skip):
                        stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def scan(root: str, profile_path: str | None) -> dict[str, object]:
    """Time one ``cache.snapshot()`` in this fresh process (sizes recorded are trusted)."""
    timer = _ScanTimer()
    with FileCache(root=root, config=quiet_config(observer=timer)) as cache:
        wait_first_cycle(cache)
        if cache.manager.is_leader:
            raise RuntimeError("the caller must hold the leader lock of the root")
        profile = cProfile.Profile() if profile_path else None
        started = time.perf_counter()
        snapshot = cache.snapshot() if profile is None else profile.runcall(cache.snapshot)
        seconds = time.perf_counter() - started
        if profile is not None and profile_path:
            write_profile(profile, Path(profile_path))
    return {
        "seconds": seconds,
        "library_reported": timer.durations[-1] if timer.durations else None,
        "entries": snapshot.entry_count,
        "total_size": snapshot.total_size,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fullwalk(root: str, profile_path: str | None) -> dict[str, object]:
    """Open the root as its leader, then time one ``run_once(full=True)``.

    The cycle at open is this process's first scan, timed from ``open()`` to the end of
    that cycle; the timed ``run_once(full=True)`` measures every model, in a child
    process when there are many (the library's walker), which is why the CPU of child
    processes is reported too.
    """
    timer = _ScanTimer()
    opened = time.perf_counter()
    with FileCache(root=root, config=quiet_config(observer=timer)) as cache:
        wait_first_cycle(cache)
        first_cycle = timer.cycles_done[0] - opened
        first_scan = timer.durations[0]
        if not cache.manager.is_leader:
            raise RuntimeError("another process leads the root")
        run = functools.partial(cache.manager.run_once, full=True)
        profile = cProfile.Profile() if profile_path else None
        children, cpu = _children_cpu(), time.thread_time()
        started = time.perf_counter()
        snapshot = run() if profile is None else profile.runcall(run)
        seconds = time.perf_counter() - started
        cpu, children = time.thread_time() - cpu, _children_cpu() - children
        full_scan = timer.durations[-1]
        if profile is not None and profile_path:
            write_profile(profile, Path(profile_path))
    if snapshot is None:
        raise RuntimeError("run_once() returned no snapshot although this process leads")
    started = time.perf_counter()
    walked = python_walk(root)
    walk_seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "children_cpu_seconds": children,
        "first_cycle_seconds": first_cycle,
        "first_scan_reported": first_scan,
        "library_reported": full_scan,
        "entries": snapshot.entry_count,
        "total_size": snapshot.total_size,
        "python_walk_seconds": walk_seconds,
        "python_walk_bytes": walked,
    }


def disk_sizes(root: str) -> dict[str, int]:
    """Every model below ``root`` and its bytes on disk, found without the library.

    A model is a folder holding a ``.filecache`` folder; its size is that of its regular
    files, its own ``.filecache`` left out (what the library counts).
    """
    sizes: dict[str, int] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            subfolders = [e for e in entries if e.is_dir(follow_symlinks=False)]
        names = {e.name for e in subfolders}
        if folder != root and RESERVED in names:
            sizes[os.path.relpath(folder, root)] = python_walk(folder, RESERVED)
            continue
        stack.extend(e.path for e in subfolders if e.name != RESERVED)
    return sizes


def digest(root: str) -> dict[str, object]:
    """A cold scan's entries and access counts, and every model's size walked on disk."""
    with FileCache(root=root, config=quiet_config()) as cache:
        wait_first_cycle(cache)
        snapshot = cache.snapshot()
    disk = disk_sizes(root)
    return {
        "entries": snapshot.entry_count,
        "total_size": snapshot.total_size,
        "access_count": sum(e.access_count for e in snapshot.entries),
        "disk_entries": len(disk),
        "disk_total_size": sum(disk.values()),
        "disk_sizes": disk,
    }


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """VmHWM: the peak resident set of this process image (ru_maxrss survives exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def memory(root: str, n: int) -> dict[str, object]:
    """RSS before and after a snapshot plus one open of every model."""
    keys = [model_key(i) for i in range(n)]
    gc.collect()
    before = _rss()
    peak_before = _peak_rss()
    cache = FileCache(root=root, config=quiet_config()).open()
    wait_first_cycle(cache)
    if not cache.manager.is_leader:
        raise RuntimeError("another process leads the root")
    snapshot = cache.snapshot()
    for key in keys:
        with cache.model(key):
            pass
    gc.collect()
    tracked = _rss()
    peak = _peak_rss()
    cache.manager.run_once()  # writes the recorded accesses
    gc.collect()
    flushed = _rss()
    entries = snapshot.entry_count
    cache.close()
    return {
        "models": n,
        "entries": entries,
        "rss_before": before,
        "rss_tracked": tracked,
        "rss_after_cycle": flushed,
        "peak_before": peak_before,
        "peak": peak,
    }


def main(argv: list[str]) -> int:
    """Run one command and print its JSON result."""
    command, args = argv[0], argv[1:]
    if command == "scan":
        result = scan(args[0], args[1] if len(args) > 1 else None)
    elif command == "fullwalk":
        result = fullwalk(args[0], args[1] if len(args) > 1 else None)
    elif command == "digest":
        result = digest(args[0])
    elif command == "memory":
        result = memory(args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
