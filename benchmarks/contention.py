"""2. The hit path under contention: several processes opening models of one root.

Each process opens its own FileCache on the root, waits for its manager's first cycle,
meets the others at a barrier, then times random opens of existing models. The limit of
the machine is the same number of processes doing only the syscalls of a pin (``open`` +
``flock(LOCK_SH)`` + ``close``); with more processes than cores, both include the time a
process waits for a core. python-diskcache's LRU get from the same number of processes
is measured too (every get writes SQLite, so the writers queue on its lock).
"""

from __future__ import annotations

import fcntl
import gc
import json
import multiprocessing
import os
import random
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import (
    Result,
    latency_summary,
    limit_target,
    model_key,
    percentile,
    quiet_config,
    wait_first_cycle,
)
from ._workspace import Workspace

NAME = "contention"
TITLE = "Hit path under contention: processes opening random models of one root"


def _opener(kind: str, root: Path, dc_dir: Path | None) -> tuple[Any, Any]:
    """Return (open one key, close everything) for a worker of ``kind``."""
    if kind == "ours":
        from vcti.filecache import FileCache  # noqa: PLC0415 - imported in the worker

        cache = FileCache(root=root, config=quiet_config()).open()
        wait_first_cycle(cache)
        model = cache.model

        def open_ours(key: str) -> None:
            with model(key):
                pass

        return open_ours, cache.close
    if kind == "floor":
        paths: dict[str, str] = {}

        def open_floor(key: str) -> None:
            path = paths.get(key) or paths.setdefault(
                key, os.path.join(root, *key.split("/"), ".filecache")
            )
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.close(fd)

        return open_floor, lambda: None
    import diskcache  # noqa: PLC0415 - optional peer

    dc = diskcache.Cache(str(dc_dir), eviction_policy="least-recently-used")

    def open_dc(key: str) -> None:
        if dc.get(key) is None:
            raise KeyError(key)

    return open_dc, dc.close


@dataclass(frozen=True)
class Job:
    """What one worker process does."""

    kind: str
    root: Path
    dc_dir: Path | None
    keys: int
    opens: int
    seed: int
    out: Path


def worker(job: Job, barrier: Any) -> None:
    """One process: open the cache, wait at the barrier, time ``opens`` random opens."""
    rng = random.Random(job.seed)
    names = [model_key(i) for i in range(job.keys)]
    sequence = [rng.choice(names) for _ in range(job.opens)]
    open_one, close = _opener(job.kind, job.root, job.dc_dir)
    for key in sequence[:200]:  # warm-up
        open_one(key)
    samples = array("q", bytes(8 * job.opens))
    errors: list[str] = []
    clock = time.perf_counter_ns
    barrier.wait()
    gc.disable()
    began = clock()
    for i, key in enumerate(sequence):
        started = clock()
        try:
            open_one(key)
        except Exception as exc:
            errors.append(repr(exc))
        samples[i] = clock() - started
    ended = clock()
    gc.enable()
    close()
    job.out.write_bytes(samples.tobytes())
    summary = {"errors": len(errors), "first_errors": errors[:5], "began": began, "ended": ended}
    job.out.with_suffix(".json").write_text(json.dumps(summary))


def run_kind(
    ws: Workspace, kind: str, root: Path, dc_dir: Path | None
) -> tuple[list[int], int, float, list[str]]:
    """Run the processes of one kind; return samples, errors, wall seconds, first errors."""
    s = ws.settings
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(s.procs)
    outdir = ws.path / f"contention-{kind}"
    outdir.mkdir(exist_ok=True)
    procs = []
    for p in range(s.procs):
        job = Job(kind, root, dc_dir, s.keys, s.opens_per_proc, p, outdir / f"{p}.bin")
        proc = context.Process(target=worker, args=(job, barrier))
        proc.start()
        procs.append(proc)
    for proc in procs:
        proc.join(600)
    samples: list[int] = []
    errors, began, ended = 0, [], []
    first_errors: list[str] = []
    for p, proc in enumerate(procs):
        if proc.exitcode != 0:
            raise RuntimeError(f"contention worker {kind}/{p} exited with {proc.exitcode}")
        data = array("q")
        data.frombytes((outdir / f"{p}.bin").read_bytes())
        samples.extend(data)
        summary = json.loads((outdir / f"{p}.json").read_text())
        errors += summary["errors"]
        first_errors += summary["first_errors"]
        began.append(summary["began"])
        ended.append(summary["ended"])
    return samples, errors, (max(ended) - min(began)) / 1e9, first_errors


def run(ws: Workspace) -> Result:
    """Measure p50/p99 of hits from ``procs`` processes at once."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root = ws.tiny_tree()
    dc_dir = ws.diskcache_dir()
    kinds = ["ours", "floor"] + (["diskcache"] if dc_dir is not None else [])
    result.metrics.update(processes=s.procs, opens_per_process=s.opens_per_proc, keys=s.keys)
    p99: dict[str, float] = {}
    errors: dict[str, int] = {}
    for kind in kinds:
        ws.log.say(f"contention: {s.procs} processes x {s.opens_per_proc:,} opens ({kind})")
        samples, errors[kind], wall, first = run_kind(ws, kind, root, dc_dir)
        result.metrics.update(latency_summary(kind, samples))
        result.metrics[f"{kind}_errors"] = errors[kind]
        result.metrics[f"{kind}_opens_per_s"] = round(len(samples) / wall)
        if first:
            result.notes.append(f"{kind}: first errors: {first}")
        p99[kind] = percentile(sorted(samples), 99) / 1000
    result.targets.append(
        limit_target(
            f"contention p99 ({s.procs} processes)",
            p99["ours"] / 1000,
            unit="ms",
            limit=1,
            inclusive=True,
            peer=p99["floor"] / 1000,
            peer_label="syscall floor p99",
        )
    )
    result.targets.append(
        limit_target(
            "contention errors",
            errors["ours"],
            unit="errors",
            limit=0,
            inclusive=True,
        )
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result.notes.append(
        f"{s.procs} processes on {cores} cores: latencies include waiting for a core; "
        "the syscall floor runs under the same oversubscription"
    )
    return result
