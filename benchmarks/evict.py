"""5. Eviction: ``cache.evict()`` removing 20% of the tree (LRU), and hits meanwhile.

Two copies of the tree are made with ``cp -a`` before anything is timed. On the tree
itself, a cache whose ``evict_above`` is 80% of the total runs ``evict()`` alone (on a
manager that has scanned once already, as the background manager would have). The limit
is one ``rm -rf`` of the same model folders (same number, same bytes) in the first copy,
its start-up (``rm -rf`` of a missing path) subtracted. On the second copy, a second
thread opens models that the policy keeps, continuously, while ``evict()`` runs; its
p99 is compared with the same thread's p99 when nothing else runs.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from array import array
from pathlib import Path

from vcti.filecache import (
    CacheEntry,
    CacheManagerConfig,
    CacheObserver,
    CacheSnapshot,
    EvictionResult,
    FileCache,
    LruPolicy,
)

from ._common import (
    Result,
    copy_tree,
    latency_summary,
    limit_target,
    median,
    percentile,
    profiled,
    quiet_config,
    ratio_target,
    remove_tree,
    time_command,
    wait_first_cycle,
)
from ._workspace import Workspace

NAME = "evict"
TITLE = "Eviction: `cache.evict()` of 20% of the tree (LRU)"
EVICT_SHARE = 0.2


class _Phases(CacheObserver):
    """Records how long the scan and the removals of an eviction run took."""

    def __init__(self) -> None:
        self.scan = 0.0
        self.removal = 0.0

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        self.scan += duration

    def on_evict_end(self, result: EvictionResult) -> None:
        self.removal += result.duration


class HitThread(threading.Thread):
    """Opens ``keys`` round-robin until stopped, recording start times and latencies."""

    def __init__(self, cache: FileCache, keys: list[str]) -> None:
        super().__init__(name="bench-hits", daemon=True)
        self.cache = cache
        self.keys = keys
        self.starts = array("q")
        self.latencies = array("q")
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        model, keys, clock = self.cache.model, self.keys, time.perf_counter_ns
        i = 0
        while not self.stop.is_set():
            key = keys[i % len(keys)]
            i += 1
            started = clock()
            try:
                with model(key):
                    pass
            except Exception:
                self.errors += 1
            self.latencies.append(clock() - started)
            self.starts.append(started)

    def window(self, begin: int, end: int) -> list[int]:
        """Latencies of the opens that started within [begin, end] (perf_counter_ns)."""
        return [
            lat for s, lat in zip(self.starts, self.latencies, strict=False) if begin <= s <= end
        ]


def evictor_config(total: int, phases: _Phases) -> CacheManagerConfig:
    """A config whose limit is (1 - EVICT_SHARE) of ``total``, LRU."""
    return quiet_config(int(total * (1 - EVICT_SHARE)), policy=LruPolicy(), observer=phases)


def survivors(snapshot: CacheSnapshot) -> list[str]:
    """The most recently used half of the models: LRU evicts none of them."""
    ordered = sorted(snapshot.entries, key=lambda e: e.last_access, reverse=True)
    return [e.key for e in ordered[: max(1, len(ordered) // 2)]]


def evict_alone(root: Path) -> tuple[float, float, list[CacheEntry], _Phases]:
    """Time ``evict()`` on ``root``: wall and CPU seconds, the removed entries, the phases."""
    with FileCache(root=root, config=quiet_config()) as keeper:
        wait_first_cycle(keeper)
        total = keeper.snapshot().total_size
        phases = _Phases()
        with FileCache(root=root, config=evictor_config(total, phases)) as evictor:
            by_key = {e.key: e for e in evictor.snapshot().entries}
            os.sync()  # each deletion starts with nothing left to write back
            cpu = time.thread_time()
            started = time.perf_counter()
            removed = evictor.evict()
            seconds = time.perf_counter() - started
            cpu = time.thread_time() - cpu
    return seconds, cpu, [by_key[key] for key in removed], phases


def evict_with_hits(root: Path, idle_seconds: float) -> dict[str, object]:
    """Hit p99 from a second thread, first alone, then while ``evict()`` runs."""
    with FileCache(root=root, config=quiet_config()) as keeper:
        wait_first_cycle(keeper)
        snapshot = keeper.snapshot()
        keys = survivors(snapshot)
        idle = HitThread(keeper, keys)
        idle.start()
        time.sleep(idle_seconds)
        idle.stop.set()
        idle.join()
        phases = _Phases()
        with FileCache(root=root, config=evictor_config(snapshot.total_size, phases)) as evictor:
            busy = HitThread(keeper, keys)
            busy.start()
            while len(busy.latencies) < 200:
                time.sleep(0.001)
            begin = time.perf_counter_ns()
            removed = evictor.evict()
            end = time.perf_counter_ns()
            busy.stop.set()
            busy.join()
    during = busy.window(begin, end)
    hit_evicted = sorted(set(removed) & set(keys))
    return {
        "idle": list(idle.latencies),
        "during": during,
        "errors": idle.errors + busy.errors,
        "evict_seconds": (end - begin) / 1e9,
        "removed": len(removed),
        "hit_keys_evicted": len(hit_evicted),
    }


def rm_seconds(paths: list[str], missing: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds of ``rm -rf PATHS``, and the start-up of ``rm -rf MISSING``."""
    startup = median([time_command(["rm", "-rf", str(missing)]) for _ in range(5)])
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time_command(["rm", "-rf", *paths])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, startup


def run(ws: Workspace) -> Result:
    """Time eviction of 20% against rm -rf, and the hit p99 during eviction."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root, _ = ws.tree()
    ws.consume_tree()
    rm_copy, hits_copy = ws.path / "evict-rm", ws.path / "evict-hits"
    profile_copy = ws.path / "evict-profile"
    ws.log.say("evict: copying the tree twice (cp -a)")
    copy_tree(root, rm_copy)
    copy_tree(root, hits_copy)
    if s.profile_dir is not None:
        copy_tree(root, profile_copy)
    try:
        ws.log.say("evict: evict() alone")
        ours, ours_cpu, removed, phases = evict_alone(root)
        ws.log.say(f"evict: rm -rf of the same {len(removed)} model folders in the copy")
        paths = [str(rm_copy.joinpath(*e.key.split("/"))) for e in removed]
        rm_raw, rm_cpu, rm_startup = rm_seconds(paths, ws.path / "missing")
        ws.log.say("evict: hits from a second thread, alone and during evict()")
        hits = evict_with_hits(hits_copy, max(0.5, ours))
        if s.profile_dir is not None:
            ws.log.say("evict: profiling evict() on a third copy")
            profiled(s, NAME, lambda: evict_alone(profile_copy))
    finally:
        for path in (root, rm_copy, hits_copy, profile_copy):
            remove_tree(path)
    rm_adjusted = max(rm_raw - rm_startup, 1e-6)
    during = sorted(hits["during"])
    idle = sorted(hits["idle"])
    result.metrics.update(
        models=s.models,
        removed_models=len(removed),
        removed_bytes=sum(e.size for e in removed),
        evict_s=round(ours, 4),
        evict_cpu_s=round(ours_cpu, 4),
        evict_scan_phase_s=round(phases.scan, 4),
        evict_removal_phase_s=round(phases.removal, 4),
        rm_raw_s=round(rm_raw, 4),
        rm_startup_s=round(rm_startup, 4),
        rm_adjusted_s=round(rm_adjusted, 4),
        rm_cpu_s=round(rm_cpu, 4),
        cpu_ratio_vs_rm=round(ours_cpu / rm_cpu, 2) if rm_cpu > 0 else None,
        removal_phase_ratio_vs_rm=round(phases.removal / rm_adjusted, 2),
        evict_with_hits_s=round(float(hits["evict_seconds"]), 4),
        hit_errors=hits["errors"],
        hit_keys_evicted=hits["hit_keys_evicted"],
    )
    result.metrics.update(latency_summary("hits_idle", idle))
    result.metrics.update(latency_summary("hits_during_evict", during))
    result.targets.append(
        ratio_target(
            "evict 20% vs rm -rf",
            ours,
            rm_adjusted,
            unit="s",
            peer_label="rm -rf of the same folders (start-up subtracted)",
            max_ratio=1.2,
            note=f"scan {phases.scan:.3f} s + removal {phases.removal:.3f} s",
        )
    )
    result.targets.append(
        limit_target(
            "hit p99 during eviction",
            percentile(during, 99) / 1e6,
            unit="ms",
            limit=1,
            peer=percentile(idle, 99) / 1e6,
            peer_label="same thread's p99 without eviction",
        )
    )
    if hits["errors"] or hits["hit_keys_evicted"]:
        result.notes.append(
            f"hits failed {hits['errors']} times; {hits['hit_keys_evicted']} hit models evicted"
        )
    result.notes.append(
        "the hit thread runs unthrottled in the evicting process with gc on, as a busy "
        "server thread would; evict_with_hits_s is the eviction time while it runs"
    )
    return result
