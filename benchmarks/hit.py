"""1. The hit path: ``with cache.model(key)`` on an existing model, in one thread.

The peer is python-diskcache's ``Cache.get`` with ``eviction_policy="least-recently-used"``
on the same keys: like ``model()``, it records the access on every call (an SQLite
``UPDATE`` of the access time), which is what an LRU cache must do. The syscall floor
(``open`` + ``flock(LOCK_SH)`` + ``close`` of the model's pin file, the kernel work a
cross-process pin cannot avoid) is measured alongside for the analysis.
"""

from __future__ import annotations

import fcntl
import gc
import os
import random
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vcti.filecache import FileCache

from ._common import (
    Result,
    latency_summary,
    limit_target,
    model_key,
    percentile,
    profiled,
    quiet_config,
    ratio_target,
    wait_first_cycle,
)
from ._workspace import Workspace

NAME = "hit"
TITLE = "Hit path: `with cache.model(key)` on an existing model, one thread"

Loop = Callable[[Sequence[str], array], None]


def ours_loop(cache: FileCache) -> Loop:
    """Time ``with cache.model(key): pass`` for each key."""
    model = cache.model

    def loop(keys: Sequence[str], out: array) -> None:
        clock = time.perf_counter_ns
        for i, key in enumerate(keys):
            started = clock()
            with model(key):
                pass
            out[i] = clock() - started

    return loop


def diskcache_loop(dc: Any) -> Loop:
    """Time ``dc.get(key)`` for each key (an LRU get: one SQLite read and one write)."""
    get = dc.get

    def loop(keys: Sequence[str], out: array) -> None:
        clock = time.perf_counter_ns
        for i, key in enumerate(keys):
            started = clock()
            get(key)
            out[i] = clock() - started

    return loop


def pin_path(root: Path, key: str) -> str:
    """The folder a pin locks: the model's ``.filecache`` (see ``LocalStorage``'s layout)."""
    return os.path.join(root, *key.split("/"), ".filecache")


def floor_loop(root: Path) -> Loop:
    """Time the syscalls of a cross-process pin: open, flock(LOCK_SH), close."""
    paths: dict[str, str] = {}

    def loop(keys: Sequence[str], out: array) -> None:
        clock = time.perf_counter_ns
        for i, key in enumerate(keys):
            path = paths.get(key) or paths.setdefault(key, pin_path(root, key))
            started = clock()
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.close(fd)
            out[i] = clock() - started

    return loop


def alternate(
    loops: dict[str, Loop], keys: Sequence[str], blocks: int, gc_off: bool
) -> dict[str, list[int]]:
    """Run every loop over ``keys`` in ``blocks`` blocks, rotating who goes first."""
    names = list(loops)
    samples: dict[str, list[int]] = {name: [] for name in names}
    size = -(-len(keys) // blocks)
    for b in range(blocks):
        chunk = keys[b * size : (b + 1) * size]
        if not chunk:
            break
        order = names[b % len(names) :] + names[: b % len(names)]
        for name in order:
            out = array("q", bytes(8 * len(chunk)))
            if gc_off:
                gc.collect()
                gc.disable()
            try:
                loops[name](chunk, out)
            finally:
                gc.enable()
            samples[name].extend(out)
    return samples


def run(ws: Workspace) -> Result:
    """Measure p50/p99 of hits, ours against diskcache's LRU get."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root = ws.tiny_tree()
    dc_dir = ws.diskcache_dir()
    rng = random.Random(1)
    keys = [model_key(i) for i in range(s.keys)]
    opens = [rng.choice(keys) for _ in range(s.opens)]
    result.metrics.update(keys=s.keys, opens=s.opens)
    dc: Any = None
    if dc_dir is not None:
        import diskcache  # noqa: PLC0415 - optional peer

        dc = diskcache.Cache(str(dc_dir), eviction_policy="least-recently-used")
        if dc.get(keys[0]) is None:
            raise RuntimeError("the diskcache peer does not hold the keys")
    else:
        result.notes.append("python-diskcache is not installed: no peer measured")
    try:
        with FileCache(root=root, config=quiet_config()) as cache:
            wait_first_cycle(cache)
            loops: dict[str, Loop] = {"ours": ours_loop(cache)}
            if dc is not None:
                loops["diskcache"] = diskcache_loop(dc)
            loops["floor"] = floor_loop(root)
            ws.log.say(f"hit: warm-up, then {len(opens):,} timed opens per subject")
            alternate(loops, opens[: min(len(opens), 2000)], 1, gc_off=True)
            blocks = 4 if s.quick else 10
            with_gc_off = alternate(loops, opens, blocks, gc_off=True)
            with_gc_on = alternate(loops, opens, blocks, gc_off=False)
            out = array("q", bytes(8 * min(len(opens), 20000)))
            profiled(s, NAME, lambda: loops["ours"](opens[: len(out)], out))
    finally:
        if dc is not None:
            dc.close()
    for name, samples in with_gc_off.items():
        result.metrics.update(latency_summary(name, samples))
    for name, samples in with_gc_on.items():
        result.metrics.update(latency_summary(f"{name}_gc_on", samples))
    ours = sorted(with_gc_off["ours"])
    ours_p50, ours_p99 = percentile(ours, 50) / 1000, percentile(ours, 99) / 1000
    peer_p50 = peer_p99 = None
    if "diskcache" in with_gc_off:
        peer = sorted(with_gc_off["diskcache"])
        peer_p50, peer_p99 = percentile(peer, 50) / 1000, percentile(peer, 99) / 1000
    result.targets.append(
        ratio_target(
            "hit p50: model() vs diskcache LRU get",
            ours_p50,
            peer_p50,
            unit="µs",
            peer_label="diskcache LRU get p50" if dc is not None else "diskcache not installed",
            max_ratio=0.5,
        )
    )
    result.targets.append(
        limit_target(
            "hit p99",
            ours_p99,
            unit="µs",
            limit=100,
            peer=peer_p99,
            peer_label="diskcache LRU get p99" if dc is not None else "diskcache not installed",
        )
    )
    result.notes.append(
        "gc disabled in the timed loops (figures with gc on are in the *_gc_on metrics); "
        "subjects alternate in blocks over the same random key sequence, rotating who goes "
        "first; 'floor' is open+flock(LOCK_SH)+close of the pin file, no Python around it"
    )
    return result
