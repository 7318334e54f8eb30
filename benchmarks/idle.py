"""6. Manager overhead at idle: CPU seconds per hour of the background thread.

Nothing changes in the root. Two parts, added up:

- the cycles: ``run_once()`` runs ``cycles`` times (at least one ``full_scan_every``
  period, so the periodic full walk is paid for) in a thread of its own that reads its
  CPU time with ``time.thread_time_ns()``, plus the CPU of the child processes it waited
  for (``RUSAGE_CHILDREN``: the full walk measures models in a walker process); the mean
  per cycle is extrapolated to one cycle a minute (``interval=60``);
- the watch: between cycles, the leader looks at the change journal every 0.25 s for
  publishes in other processes (``prompt_eviction``, on by default). The real background
  thread runs at ``interval=60`` for a few seconds after its first cycle, and its CPU
  is read from ``/proc/self/task/TID/schedstat``.

As a cross-check of the cycles, the real background thread is also run at a 0.2 s
interval (shorter than the watch's step, so it only cycles). The limit shown is ``du
-sb`` of the same root once a minute (its CPU time, user + system, from
``RUSAGE_CHILDREN``): what re-walking the tree every cycle costs at the least.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from pathlib import Path

from vcti.filecache import FileCache

from ._common import Result, limit_target, median, profiled, quiet_config, wait_first_cycle
from ._workspace import Workspace

NAME = "idle"
TITLE = "Manager overhead at idle: CPU of the background thread, interval 60 s"
INTERVAL = 60.0
CYCLES_PER_HOUR = 3600 / INTERVAL
#: The upper end of the figures measured before the change journal (0.26-0.36 CPU s/h).
EARLIER_CPU_S_PER_HOUR = 0.36


def _children_cpu() -> float:
    """CPU seconds of this process's children: those waited for, and those still running
    (the measuring process lives from cycle to cycle)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + _running_children_cpu()


def _running_children_cpu() -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids = f.read().split()
        except FileNotFoundError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def cycle_cpu(cache: FileCache, cycles: int) -> tuple[list[float], list[float], list[float], float]:
    """CPU, child-process CPU and wall seconds of ``cycles`` ``run_once()`` calls.

    The calls run in a fresh thread; the child-process CPU is that of the measuring
    process (the full walk's work). A full walk before them, not counted, starts that
    process, as a leader's first full walk does once: its child-process CPU (the
    process's start and one walk) is returned last.
    """
    cpu: list[float] = []
    children: list[float] = []
    wall: list[float] = []
    first: list[float] = []

    def work() -> None:
        k0 = _children_cpu()
        cache.manager.run_once(full=True)  # warm-up, not counted: starts the process
        first.append(_children_cpu() - k0)
        for _ in range(cycles):
            c0, k0, w0 = time.thread_time_ns(), _children_cpu(), time.perf_counter_ns()
            cache.manager.run_once()
            cpu.append((time.thread_time_ns() - c0) / 1e9)
            children.append(_children_cpu() - k0)
            wall.append((time.perf_counter_ns() - w0) / 1e9)

    thread = threading.Thread(target=work, name="bench-idle")
    thread.start()
    thread.join()
    return cpu, children, wall, first[0]


def _schedstat_seconds(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def _manager_thread(cache: FileCache) -> int:
    name = f"vcti-filecache-manager {cache.storage.root}"
    thread = next(t for t in threading.enumerate() if t.name == name)
    assert thread.native_id is not None
    return thread.native_id


def background_cpu(root: Path, seconds: float) -> tuple[float, int]:
    """CPU seconds per cycle of the real background thread at a 0.2 s interval."""
    with FileCache(root=root, config=quiet_config(interval=0.2)) as cache:
        wait_first_cycle(cache)
        tid = _manager_thread(cache)
        cpu0, cycles0 = _schedstat_seconds(tid), cache.manager.cycles
        time.sleep(seconds)
        cpu1, cycles1 = _schedstat_seconds(tid), cache.manager.cycles
    cycles = cycles1 - cycles0
    return (cpu1 - cpu0) / max(1, cycles), cycles


def watch_cpu(root: Path, seconds: float) -> tuple[float, int, bool]:
    """CPU seconds per second of the real background thread between two cycles.

    At ``interval=60`` the thread cycles once at open and then only watches the journal
    (every 0.25 s as leader, with ``prompt_eviction`` on); returns the CPU rate, the
    cycles run while measuring (0 expected) and whether this process led the root.
    """
    with FileCache(root=root, config=quiet_config(interval=INTERVAL)) as cache:
        wait_first_cycle(cache)
        time.sleep(0.3)  # past the end of the first cycle
        tid = _manager_thread(cache)
        cpu0, cycles0 = _schedstat_seconds(tid), cache.manager.cycles
        started = time.perf_counter()
        time.sleep(seconds)
        cpu1, cycles1 = _schedstat_seconds(tid), cache.manager.cycles
        elapsed = time.perf_counter() - started
        leader = cache.manager.is_leader
    return (cpu1 - cpu0) / elapsed, cycles1 - cycles0, leader


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
        cpu, children, wall, first_walk = cycle_cpu(cache, cycles)
        profiled(s, NAME, cache.manager.run_once)
    per_cycle = (sum(cpu) + sum(children)) / len(cpu)
    cycles_per_hour = per_cycle * CYCLES_PER_HOUR
    watch_seconds = 1.0 if s.quick else 8.0
    ws.log.say(f"idle: the real background thread watching for {watch_seconds:g} s")
    watch_rate, watch_cycles, watch_leader = watch_cpu(root, watch_seconds)
    watch_per_hour = watch_rate * 3600
    per_hour = cycles_per_hour + watch_per_hour
    ws.log.say("idle: the real background thread at a short interval")
    bg_cycle, bg_cycles = background_cpu(root, 1.0 if s.quick else 3.0)
    du = du_cpu(root, 3)
    result.metrics.update(
        models=s.keys,
        cycles=cycles,
        cpu_per_cycle_ms=round(per_cycle * 1000, 3),
        thread_cpu_per_cycle_median_ms=round(median(cpu) * 1000, 3),
        thread_cpu_per_cycle_max_ms=round(max(cpu) * 1000, 2),
        children_cpu_per_period_ms=round(sum(children) * 1000, 2),
        first_full_walk_children_cpu_ms=round(first_walk * 1000, 2),
        wall_per_cycle_ms=round(median(wall) * 1000, 3),
        cycles_cpu_s_per_hour=round(cycles_per_hour, 3),
        watch_seconds=watch_seconds,
        watch_cycles=watch_cycles,
        watch_leader=watch_leader,
        watch_cpu_ms_per_s=round(watch_rate * 1000, 4),
        watch_cpu_s_per_hour=round(watch_per_hour, 3),
        cpu_s_per_hour=round(per_hour, 3),
        background_thread_cpu_per_cycle_ms=round(bg_cycle * 1000, 3),
        background_thread_cycles=bg_cycles,
        background_thread_cpu_s_per_hour=round(bg_cycle * CYCLES_PER_HOUR, 3),
        du_cpu_per_walk_ms=round(du * 1000, 2),
        du_cpu_s_per_hour=round(du * CYCLES_PER_HOUR, 3),
    )
    result.targets.append(
        limit_target(
            f"idle manager CPU, {s.keys:,} models, cycles + watch",
            per_hour,
            unit="CPU s/h",
            limit=1,
            peer=du * CYCLES_PER_HOUR,
            peer_label="du -sb once a minute",
        )
    )
    result.targets.append(
        limit_target(
            "idle manager CPU, no worse than before the journal",
            per_hour,
            unit="CPU s/h",
            limit=EARLIER_CPU_S_PER_HOUR,
            inclusive=True,
            peer=watch_per_hour,
            peer_label="of which the journal watch",
        )
    )
    if watch_cycles or not watch_leader:
        result.notes.append(
            f"while the watch was measured the thread ran {watch_cycles} cycles and "
            f"{'led' if watch_leader else 'did not lead'} the root"
        )
    result.notes.append(
        f"cycles: mean of {cycles} run_once() calls (thread CPU + the measuring process) x "
        f"{CYCLES_PER_HOUR:g} an hour; watch: the real thread's CPU between two cycles, "
        f"over {watch_seconds:g} s, x 3600; the earlier figure ({EARLIER_CPU_S_PER_HOUR} "
        "CPU s/h) had no watch and measured cycles only"
    )
    result.notes.append(
        "the measuring process starts once per leader and lives from one hourly walk to "
        "the next (it exits after two idle hours): its start is paid by the leader's "
        f"first full walk ({first_walk * 1000:.0f} ms of its CPU, start and walk), not "
        "counted in the hourly figure"
    )
    if s.keys != 10_000:
        result.notes.append(f"measured with {s.keys:,} models (the target is for 10,000)")
    return result
