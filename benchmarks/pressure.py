"""12. The limit under pressure: hot threads and processes filling at full speed.

Each cell opens models at full speed for 20 s on a fresh root with
``evict_above`` at 2 MB: every thread loops over 300 keys of its own, filling a model
when it is missing (one 50 kB file, or 200 files of 250 bytes), so eviction must keep
up with every fill the disk sustains; after each of those opens it opens one of 5 hot
keys that all threads share (the hits). The cells: 1, 3 and 8 hot threads in one process,
and 4 processes of one hot thread each, at ``interval=0.2`` and at the default 60 s,
with every other setting at the library's defaults (prompt eviction and its
back-pressure on). Every process is spawned fresh. ``--quick`` runs the four loads with
one-file models at ``interval=0.2`` for 1 s each.

Beside each load and model shape, its floor: the same threads and processes filling and
hitting with no limit (no eviction, no back-pressure, so no cycle to speak of), every fill
on a fresh key. A hit waits for the interpreter lock behind the load's own fills as much
as behind the cache's cycles; the floor's hit p99 is what the load alone costs.

The total on disk is sampled from the disk every 50 ms by this process (a walk of the
files under the root, not the library's own figures): the models' files, which is what
``evict_above`` limits, and everything (the cache's own metadata, staging and trash
included) beside it; the final totals are taken after the processes have closed their
caches. Each
open is timed with ``perf_counter_ns``; a hit is an open that found its model where it
was just before (an open that waited for another thread's or process's fill of the same
key is not one). The hit threads are the load's own: with 8 of them busy in Python, a hit
that gives up the interpreter lock for its system calls waits for the others' turns
(5 ms each), whatever the cache does.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

from vcti.filecache import CacheManagerConfig, FileCache

from ._common import Result, info_row, limit_target, percentile
from ._workspace import Workspace

NAME = "pressure"
TITLE = "The limit under pressure: hot threads and processes filling at full speed"
LIMIT = 2_000_000
MODEL = 50_000
KEYS = 300
HOT = 5
SHAPES = {"1 file": (1, MODEL), "200 files": (200, MODEL // 200)}
#: (label, processes, threads per process)
LOADS = [("1 thread", 1, 1), ("3 threads", 1, 3), ("8 threads", 1, 8), ("4 processes", 4, 1)]
INTERVALS = [0.2, 60.0]


def hammer(args: dict[str, Any]) -> None:
    """One process of a cell: ``threads`` hot threads until ``seconds`` have passed."""
    files, size = args["files"], args["size"]
    blob = b"x" * size
    floor = args.get("floor", False)  # no limit, and a fresh key at every fill
    config = CacheManagerConfig(evict_above=10**15 if floor else LIMIT, interval=args["interval"])
    cache = FileCache(root=args["root"], config=config).open()
    hits: list[list[int]] = [[] for _ in range(args["threads"])]
    opens = [0] * args["threads"]
    start = time.monotonic() + 0.5
    stop_at = start + args["seconds"]

    def hot(me: int) -> None:
        mine = hits[me]
        while time.monotonic() < start:
            time.sleep(0.001)
        while time.monotonic() < stop_at:
            for n in range(KEYS):
                own = f"p{args['proc']}t{me}/m{n}" + (f"-{opens[me]}" if floor else "")
                for key in (own, f"hot/m{n % HOT}"):
                    there = key in cache  # else a found model was filled by another
                    began = time.perf_counter_ns()
                    with cache.model(key) as model:
                        if model.new:
                            for f in range(files):
                                Path(model.path, f"f{f}").write_bytes(blob)
                        elif there:
                            mine.append(time.perf_counter_ns() - began)
                    opens[me] += 1
                if time.monotonic() >= stop_at:
                    break

    threads = [threading.Thread(target=hot, args=(i,)) for i in range(args["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cycles, leader = cache.manager.cycles, cache.manager.is_leader
    cache.close()
    samples = sorted(t for one in hits for t in one)
    Path(args["out"]).write_text(
        json.dumps(
            {
                "opens": sum(opens),
                "hits": len(samples),
                "hit_p50_us": percentile(samples, 50) / 1000 if samples else 0.0,
                "hit_p99_us": percentile(samples, 99) / 1000 if samples else 0.0,
                "cycles": cycles,
                "leader": leader,
            }
        )
    )


def on_disk(root: Path) -> tuple[int, int]:
    """Bytes of the models' files under ``root``, and of every file, by a fresh walk."""
    models = everything = 0
    for folder, _, files in os.walk(root):
        own = f"{os.sep}.filecache" in folder[len(str(root)) :]
        for name in files:
            try:
                size = os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # removed under the walk
            everything += size
            models += 0 if own else size
    return models, everything


def run_cell(
    ws: Workspace,
    label: str,
    load: tuple[int, int],
    shape: str,
    interval: float,
    *,
    floor: bool = False,
) -> dict[str, Any]:
    """One cell: the peak and final totals on disk, cycles, hit latencies.

    ``load`` is (processes, hot threads in each). ``floor``: the same fills and hits with
    no limit (no eviction, no back-pressure), every fill on a fresh key: the hit latency
    the load alone makes.
    """
    procs, threads = load
    files, size = SHAPES[shape]
    seconds = 1.0 if ws.settings.quick else 20.0
    tag = f"pressure-{label}-{shape}-{interval}{'-floor' if floor else ''}".replace(" ", "_")
    root = ws.path / tag
    context = multiprocessing.get_context("spawn")
    jobs = [
        {
            "root": str(root),
            "proc": p,
            "threads": threads,
            "files": files,
            "size": size,
            "interval": interval,
            "seconds": seconds,
            "floor": floor,
            "out": str(ws.path / f"{tag}-{p}.json"),
        }
        for p in range(procs)
    ]
    workers = [context.Process(target=hammer, args=(job,)) for job in jobs]
    for worker in workers:
        worker.start()
    peak = peak_all = 0
    while any(worker.is_alive() for worker in workers):
        models, everything = on_disk(root)
        peak, peak_all = max(peak, models), max(peak_all, everything)
        time.sleep(0.05)
    for p, worker in enumerate(workers):
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"pressure {tag} process {p} exited with {worker.exitcode}")
    final, final_all = on_disk(root)
    data = [json.loads(Path(job["out"]).read_text()) for job in jobs]
    return {
        "peak": max(peak, final),
        "final": final,
        "peak_everything": max(peak_all, final_all),
        "final_everything": final_all,
        "opens_per_s": sum(d["opens"] for d in data) / seconds,
        "hits": sum(d["hits"] for d in data),
        "hit_p50_us": max(d["hit_p50_us"] for d in data),
        "hit_p99_us": max(d["hit_p99_us"] for d in data),
        "cycles": sum(d["cycles"] for d in data if d["leader"]) or max(d["cycles"] for d in data),
    }


def run(ws: Workspace) -> Result:
    """Every cell; targets on the peak, the final total and the hit p99 of each."""
    result = Result(NAME, TITLE)
    result.metrics.update(limit_bytes=LIMIT, model_bytes=MODEL, keys_per_thread=KEYS)
    allowed = LIMIT * 1.1 + MODEL
    quick = ws.settings.quick  # one shape at one interval, for a few seconds
    for label, procs, threads in LOADS:
        for shape in list(SHAPES)[:1] if quick else SHAPES:
            ws.log.say(f"pressure: {label}, {shape}, no limit (the floor)")
            floor = run_cell(ws, label, (procs, threads), shape, INTERVALS[0], floor=True)
            prefix = f"{label}_{shape}_floor".replace(" ", "_")
            for key in ("opens_per_s", "hits", "hit_p50_us", "hit_p99_us"):
                result.metrics[f"{prefix}_{key}"] = round(floor[key], 2)
            for interval in INTERVALS[:1] if quick else INTERVALS:
                name = f"{label}, {shape}, interval {interval:g} s"
                ws.log.say(f"pressure: {name}")
                cell = run_cell(ws, label, (procs, threads), shape, interval)
                prefix = name.replace(", ", "_").replace(" ", "_").replace(".", "_")
                for key, value in cell.items():
                    result.metrics[f"{prefix}_{key}"] = round(value, 2)
                result.targets.append(
                    limit_target(
                        f"peak on disk, {name}",
                        cell["peak"] / LIMIT,
                        unit="x limit",
                        limit=allowed / LIMIT,
                        inclusive=True,
                        note=(
                            f"{cell['cycles']} cycles, {cell['opens_per_s']:.0f} opens/s; "
                            f"everything on disk {cell['peak_everything'] / LIMIT:.2f}x"
                        ),
                    )
                )
                result.targets.append(
                    limit_target(
                        f"final on disk, {name}",
                        cell["final"] / LIMIT,
                        unit="x limit",
                        limit=1.0,
                        inclusive=True,
                    )
                )
                if cell["hits"]:
                    result.targets.append(
                        limit_target(
                            f"hit p99, {name}",
                            cell["hit_p99_us"],
                            unit="µs",
                            limit=1000,
                            peer=floor["hit_p99_us"] or None,
                            peer_label="p99 of the same load with no limit",
                            note=f"{cell['hits']} hits, p50 {cell['hit_p50_us']:.0f} µs",
                        )
                    )
                else:
                    result.targets.append(
                        info_row(f"hit p99, {name}", 0, unit="µs", peer=None, peer_label="")
                    )
    return result
