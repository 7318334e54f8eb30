"""10. asyncio: the event loop's lag while fills run in ``amodel()``.

One process, one event loop, a cache opened with ``async with FileCache(...)`` on a root
of tiny models. On the loop, for a few seconds, at once:

- fillers: each fills new models, one after another (``async with cache.amodel(key)``),
  writing 4 MiB in 8 files through ``asyncio.to_thread`` and then waiting 50 ms (the
  rest of a long fill, off the loop);
- waiters: for every fill, 4 tasks open the same key while it is being filled: they wait
  for the fill on the loop, then find the published model;
- hitters: tasks that open existing models as fast as they can
  (``async with cache.amodel(key): pass``);
- the probe: a task that sleeps 1 ms (``asyncio.sleep(0.001)``) in a loop and records how
  late it wakes up: the lag any request on this loop would see.

The same probe on an idle loop gives the floor. For comparison (a metric, not a target),
the blocking ``model()`` called on the loop while another thread fills the same key for
0.2 s: the loop stops for the whole fill.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vcti.filecache import FileCache

from ._common import (
    Result,
    content,
    latency_summary,
    limit_target,
    model_key,
    percentile,
    quiet_config,
)
from ._workspace import TINY_FILE_BYTES, Workspace

NAME = "aio"
TITLE = "asyncio: event-loop lag while fills run in `amodel()`"
FILLERS = 2
WAITERS = 4
HITTERS = 8
FILL_FILES = 8
FILL_FILE_BYTES = 512 * 1024
FILL_WAIT = 0.05
PROBE_SLEEP = 0.001
BLOCKING_FILL = 0.2
CHUNK = content(FILL_FILE_BYTES)


def write_fill(folder: str) -> None:
    """The files of one fill (run off the loop)."""
    for j in range(FILL_FILES):
        with open(os.path.join(folder, f"part_{j}.bin"), "wb") as f:
            f.write(CHUNK)


class Probe:
    """Sleeps ``PROBE_SLEEP`` in a loop and records how late each wake-up is (ns)."""

    def __init__(self) -> None:
        self.lags: list[int] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        clock = time.perf_counter_ns
        nominal = int(PROBE_SLEEP * 1e9)
        while not self.stop.is_set():
            started = clock()
            await asyncio.sleep(PROBE_SLEEP)
            self.lags.append(max(0, clock() - started - nominal))


async def idle_loop(seconds: float) -> list[int]:
    """The probe alone on this loop."""
    probe = Probe()
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(seconds)
    probe.stop.set()
    await task
    return probe.lags


@dataclass
class Outcome:
    """What one run measured: probe lags (ns) and what the tasks did."""

    lags: list[int] = field(default_factory=list)
    idle: list[int] = field(default_factory=list)
    blocking: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


async def busy_loop(cache: FileCache, keys: list[str], seconds: float) -> Outcome:
    """The probe while fillers, waiters and hitters share the loop."""
    probe = Probe()
    stop = probe.stop
    counts = {"fills": 0, "waits": 0, "hits": 0, "wrong": 0}

    async def waiter(key: str) -> None:
        async with cache.amodel(key) as model:
            counts["waits"] += 1
            counts["wrong"] += bool(model.new)

    async def filler(n: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"aio/f{n}/m{i:05d}"
            i += 1
            async with cache.amodel(key) as model:
                waiting = [asyncio.create_task(waiter(key)) for _ in range(WAITERS)]
                await asyncio.to_thread(write_fill, model.path)
                await asyncio.sleep(FILL_WAIT)
            await asyncio.gather(*waiting)
            counts["fills"] += 1

    async def hitter(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            async with cache.amodel(rng.choice(keys)) as model:
                counts["wrong"] += bool(model.new)
            counts["hits"] += 1

    tasks = [asyncio.create_task(probe.run())]
    tasks += [asyncio.create_task(filler(n)) for n in range(FILLERS)]
    tasks += [asyncio.create_task(hitter(n)) for n in range(HITTERS)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return Outcome(lags=probe.lags, counts=counts)


async def blocking_model(cache: FileCache) -> list[int]:
    """The probe while the loop calls the blocking ``model()`` on a key being filled."""
    key = "aio/blocking"
    entered = threading.Event()

    def fill_in_thread() -> None:
        with cache.model(key) as model:
            entered.set()
            write_fill(model.path)
            time.sleep(BLOCKING_FILL)

    probe = Probe()
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.05)
    thread = threading.Thread(target=fill_in_thread)
    thread.start()
    entered.wait()
    with cache.model(key):  # blocks the loop until the other thread has published
        pass
    await asyncio.sleep(0.05)
    probe.stop.set()
    await task
    thread.join()
    return probe.lags


async def scenario(root: Path, keys: list[str], seconds: float) -> Outcome:
    """Every measurement, on one loop."""
    idle = await idle_loop(min(1.0, seconds))
    async with FileCache(root=root, config=quiet_config()) as cache:
        outcome = await busy_loop(cache, keys, seconds)
        outcome.blocking = await blocking_model(cache)
    outcome.idle = idle
    return outcome


def run(ws: Workspace) -> Result:
    """Loop lag p50/p99 while fills, waits and hits run in ``amodel()``."""
    s = ws.settings
    result = Result(NAME, TITLE)
    models = max(100, s.keys // 10)
    root = ws.extra_tree("aio", models, 1, TINY_FILE_BYTES)
    keys = [model_key(i) for i in range(models)]
    seconds = 1.0 if s.quick else 5.0
    ws.log.say(
        f"aio: {FILLERS} fillers, {FILLERS * WAITERS} waiters, {HITTERS} hitters "
        f"and the probe for {seconds:g} s"
    )
    data = asyncio.run(scenario(root, keys, seconds))
    lags, idle, blocking = sorted(data.lags), sorted(data.idle), sorted(data.blocking)
    counts = data.counts
    result.metrics.update(
        seconds=seconds,
        fills=counts["fills"],
        waits_for_fills=counts["waits"],
        hits=counts["hits"],
        hits_per_s=round(counts["hits"] / seconds),
        wrong_outcomes=counts["wrong"],
        fill_bytes=FILL_FILES * FILL_FILE_BYTES,
    )
    result.metrics.update(latency_summary("lag", lags))
    result.metrics.update(latency_summary("lag_idle_loop", idle))
    result.metrics["blocking_model_max_lag_ms"] = round(blocking[-1] / 1e6, 1)
    result.targets.append(
        limit_target(
            "event-loop lag p99 while fills run in amodel()",
            percentile(lags, 99) / 1e6,
            unit="ms",
            limit=10,
            peer=percentile(idle, 99) / 1e6,
            peer_label="p99 on an idle loop",
            note=f"max {lags[-1] / 1e6:.1f} ms",
        )
    )
    if counts["wrong"]:
        result.notes.append(f"{counts['wrong']} opens of published models filled them again")
    result.notes.append(
        f"lag = how late asyncio.sleep({PROBE_SLEEP}) wakes up, {len(lags):,} samples; "
        f"{counts['fills']} fills of {FILL_FILES * FILL_FILE_BYTES // 2**20} MiB, "
        f"{counts['waits']} waits for them, {counts['hits']} hits; the blocking model() on "
        f"the loop, waiting for a {BLOCKING_FILL} s fill in another thread, stalls the "
        f"loop for {blocking[-1] / 1e6:.0f} ms"
    )
    return result
