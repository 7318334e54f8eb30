"""Measurements that need a fresh process: ``python -m benchmarks._child COMMAND ...``.

``scan ROOT [PROFILE]``: one full scan with a cold in-process state (the caller holds the
root's leader lock, so the cache opened here never scans by itself); prints JSON.
``digest ROOT``: what a cold scan sees (entries, total, access counts), for checks.
``memory ROOT N``: resident memory before and after tracking N models; prints JSON.
"""

from __future__ import annotations

import cProfile
import gc
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from vcti.filecache import CacheObserver, CacheSnapshot, FileCache

from ._common import model_key, quiet_config, wait_first_cycle, write_profile


class _ScanTimer(CacheObserver):
    """Records the durations the library reports for its scans."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        self.durations.append(duration)


def python_walk(top: str) -> int:
    """Bytes of the regular files below ``top``: the plainest os.scandir walk."""
    total = 0
    stack = [top]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def scan(root: str, profile_path: str | None) -> dict[str, object]:
    """Time one ``cache.snapshot()`` in this fresh process."""
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
    started = time.perf_counter()
    walked = python_walk(root)
    walk_seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "library_reported": timer.durations[-1] if timer.durations else None,
        "entries": snapshot.entry_count,
        "total_size": snapshot.total_size,
        "python_walk_seconds": walk_seconds,
        "python_walk_bytes": walked,
    }


def digest(root: str) -> dict[str, object]:
    """Entry count, total, summed access counts and a hash of (key, size, count)."""
    with FileCache(root=root, config=quiet_config()) as cache:
        wait_first_cycle(cache)
        snapshot = cache.snapshot()
    h = hashlib.sha256()
    for e in sorted(snapshot.entries, key=lambda e: e.key):
        h.update(f"{e.key}\0{e.size}\0{e.access_count}\n".encode())
    return {
        "entries": snapshot.entry_count,
        "total_size": snapshot.total_size,
        "access_count": sum(e.access_count for e in snapshot.entries),
        "hash": h.hexdigest(),
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
