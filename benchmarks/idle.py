"""6. Manager overhead at idle: CPU seconds per hour of the background cycle.

Nothing changes in the root. ``run_once()`` runs ``cycles`` times in a thread of its own
that reads its CPU time with ``time.thread_time_ns()``; the mean per cycle is
extrapolated to one cycle a minute (``interval=60``). As a cross-check, the real
background thread is then run at a short interval and its CPU time read from
``/proc/self/task/TID/schedstat``. The limit shown is ``du -sb`` of the same root once a
minute (its CPU time, user + system, from ``RUSAGE_CHILDREN``): what re-walking the
tree every cycle costs at the least.
"""

from __future__ import annotations

import resource
import subprocess
import threading
import time
from pathlib import Path

from vcti.filecache import FileCache

from ._common import Result, limit_target, median, profiled, quiet_config, wait_first_cycle
from ._workspace import Workspace

NAME = "idle"
TITLE = "Manager overhead at idle: CPU of the background cycle, interval 60 s"
INTERVAL = 60.0
CYCLES_PER_HOUR = 3600 / INTERVAL


def cycle_cpu(cache: FileCache, cycles: int) -> tuple[list[float], list[float]]:
    """CPU and wall seconds of each of ``cycles`` ``run_once()`` calls in a fresh thread."""
    cpu: list[float] = []
    wall: list[float] = []

    def work() -> None:
        cache.manager.run_once()  # warm-up, not counted
        for _ in range(cycles):
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            cache.manager.run_once()
            cpu.append((time.thread_time_ns() - c0) / 1e9)
            wall.append((time.perf_counter_ns() - w0) / 1e9)

    thread = threading.Thread(target=work, name="bench-idle")
    thread.start()
    thread.join()
    return cpu, wall


def _schedstat_seconds(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def background_cpu(root: Path, seconds: float) -> tuple[float, int]:
    """CPU seconds per cycle of the real background thread at a 0.2 s interval."""
    with FileCache(root=root, config=quiet_config(interval=0.2)) as cache:
        wait_first_cycle(cache)
        name = f"vcti-filecache-manager {cache.storage.root}"
        thread = next(t for t in threading.enumerate() if t.name == name)
        assert thread.native_id is not None
        cpu0, cycles0 = _schedstat_seconds(thread.native_id), cache.manager.cycles
        time.sleep(seconds)
        cpu1, cycles1 = _schedstat_seconds(thread.native_id), cache.manager.cycles
    cycles = cycles1 - cycles0
    return (cpu1 - cpu0) / max(1, cycles), cycles


def du_cpu(root: Path, runs: int) -> float:
    """Median CPU seconds (user + system) of ``du -sb ROOT``."""
    samples: list[float] = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["du", "-sb", str(root)], check=True, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return median(samples)


def run(ws: Workspace) -> Result:
    """Measure the CPU of idle cycles and extrapolate to an hour."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root = ws.tiny_tree()
    ws.log.say(f"idle: cycles over {s.keys:,} models")
    with FileCache(root=root, config=quiet_config(interval=INTERVAL)) as cache:
        wait_first_cycle(cache)
        if not cache.manager.is_leader:
            raise RuntimeError("another process leads the tiny tree")
        # Cover whole periods between two scans of every model, where the library has them.
        cycles = max(s.cycles, int(getattr(cache.config, "full_scan_every", 1)))
        cpu, wall = cycle_cpu(cache, cycles)
        profiled(s, NAME, cache.manager.run_once)
    per_cycle = sum(cpu) / len(cpu)
    per_hour = per_cycle * CYCLES_PER_HOUR
    ws.log.say("idle: the real background thread at a short interval")
    bg_cycle, bg_cycles = background_cpu(root, 1.0 if s.quick else 3.0)
    du = du_cpu(root, 3)
    result.metrics.update(
        models=s.keys,
        cycles=cycles,
        cpu_per_cycle_ms=round(per_cycle * 1000, 2),
        cpu_per_cycle_median_ms=round(median(cpu) * 1000, 2),
        cpu_per_cycle_max_ms=round(max(cpu) * 1000, 2),
        wall_per_cycle_ms=round(median(wall) * 1000, 2),
        cpu_s_per_hour=round(per_hour, 3),
        background_thread_cpu_per_cycle_ms=round(bg_cycle * 1000, 2),
        background_thread_cycles=bg_cycles,
        background_thread_cpu_s_per_hour=round(bg_cycle * CYCLES_PER_HOUR, 3),
        du_cpu_per_walk_ms=round(du * 1000, 2),
        du_cpu_s_per_hour=round(du * CYCLES_PER_HOUR, 3),
    )
    result.targets.append(
        limit_target(
            f"idle manager CPU, {s.keys:,} models",
            per_hour,
            unit="CPU s/h",
            limit=1,
            peer=du * CYCLES_PER_HOUR,
            peer_label="du -sb once a minute",
        )
    )
    if s.keys != 10_000:
        result.notes.append(f"measured with {s.keys:,} models (the target is for 10,000)")
    return result
