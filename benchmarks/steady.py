"""4. The steady-state cycle: ``cache.manager.run_once()`` when (almost) nothing changed.

The cache is opened as the root's leader; after its cycle at open and one more
``run_once()``, each timed ``run_once()`` follows a cycle with nothing changed. Then, before
each further timed cycle, 1% of the models are opened and another 1% get one file
rewritten in place (a different size) or added, inside a ``model()`` context. The
reference is the full scan of the same tree (the scan benchmark of this run, or measured
here). After the last cycle, its snapshot is checked against a cold scan in a fresh
process: a cycle that skips models must still report what is on disk.
"""

from __future__ import annotations

import os
import time
from typing import Any

from vcti.filecache import CacheSnapshot, FileCache

from ._common import (
    BLOB,
    Result,
    info_row,
    median,
    model_key,
    percentile,
    profiled,
    quiet_config,
    ratio_target,
    run_child,
    wait_first_cycle,
)
from ._workspace import Workspace
from .scan import cold_scan_seconds

NAME = "steady"
TITLE = "Steady-state cycle: `manager.run_once()` with nothing changed since the last one"


def touch(cache: FileCache, opened: list[str], changed: list[str], round_no: int) -> int:
    """Open the ``opened`` models; rewrite (even) or add (odd) a file in ``changed`` ones.

    Returns the bytes by which the in-place rewrites changed the total.
    """
    for key in opened:
        with cache.model(key):
            pass
    in_place = 0
    for n, key in enumerate(changed):
        with cache.model(key) as model:
            if n % 2 == 0:  # in place: the folder's own mtime does not change
                name, size = "part_000.bin", 100 + 37 * round_no + n % 7
                in_place += size - os.path.getsize(os.path.join(model.path, name))
            else:
                name, size = f"extra_{round_no}.bin", 2048
            with open(os.path.join(model.path, name), "wb") as f:
                f.write(BLOB[:size])
    return in_place


def timed_cycle(cache: FileCache) -> tuple[float, CacheSnapshot | None]:
    """Seconds of one ``run_once()`` and its snapshot."""
    started = time.perf_counter()
    snapshot = cache.manager.run_once()
    return time.perf_counter() - started, snapshot


def agrees(snapshot: CacheSnapshot | None, cold: dict[str, Any]) -> tuple[bool, int]:
    """Whether ``snapshot`` matches a cold scan, and its error in bytes."""
    if snapshot is None:
        raise RuntimeError("run_once() returned no snapshot although this process leads")
    same = (
        snapshot.entry_count == cold["entries"]
        and snapshot.total_size == cold["total_size"]
        and sum(e.access_count for e in snapshot.entries) == cold["access_count"]
    )
    return same, snapshot.total_size - int(cold["total_size"])


def run(ws: Workspace) -> Result:
    """Time cycles with nothing changed and with 1% + 1% of the models touched."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root, _ = ws.tree()
    if ws.cold_scan_seconds is None:
        ws.log.say("steady: measuring the full-scan reference")
        ws.cold_scan_seconds = cold_scan_seconds(ws, root, max(1, s.repeats))
    full = ws.cold_scan_seconds
    step = max(1, s.models // 100)
    unchanged: list[float] = []
    touched: list[float] = []
    in_place = 0
    with FileCache(root=root, config=quiet_config()) as cache:
        wait_first_cycle(cache)
        if not cache.manager.is_leader:
            raise RuntimeError("another process leads the tree")
        # Cycles between two scans of every model, where the library has such a setting.
        period = int(getattr(cache.config, "full_scan_every", 0) or s.repeats)
        cache.manager.run_once()
        for r in range(s.repeats):
            ws.log.say(f"steady: unchanged cycle {r + 1}/{s.repeats}")
            unchanged.append(timed_cycle(cache)[0])
        profiled(s, NAME, cache.manager.run_once)
        snapshot: CacheSnapshot | None = None
        for r in range(s.repeats):
            ws.log.say(f"steady: cycle after touching 2% of the models, {r + 1}/{s.repeats}")
            base = (2 * r + 1) * step
            opened = [model_key((base + i) % s.models) for i in range(step)]
            changed = [model_key((base + step + i) % s.models) for i in range(step)]
            in_place += touch(cache, opened, changed, r)
            seconds, snapshot = timed_cycle(cache)
            touched.append(seconds)
        ws.log.say("steady: checking the last cycle's snapshot against a cold scan")
        touched_ok, touched_error = agrees(snapshot, run_child("digest", str(root)))
        ws.log.say(f"steady: {period} consecutive unchanged cycles")
        series = [timed_cycle(cache) for _ in range(period)]
        period_ok, period_error = agrees(series[-1][1], run_child("digest", str(root)))
    # Every cycle with nothing changed since the one before: the first ones and the period.
    unchanged += [t for t, _ in series]
    ours = median(unchanged)
    amortized = sum(t for t, _ in series) / len(series)
    result.metrics.update(
        models=s.models,
        files_per_model=s.files_per_model,
        unchanged_cycles=len(unchanged),
        unchanged_median_s=round(ours, 4),
        unchanged_min_s=round(min(unchanged), 4),
        unchanged_p90_s=round(percentile(sorted(unchanged), 90), 4),
        period_cycles=period,
        period_mean_s=round(amortized, 4),
        period_max_s=round(max(t for t, _ in series), 4),
        touched_median_s=round(median(touched), 4),
        touched_models_opened=step,
        touched_models_changed=step,
        full_scan_s=round(full, 4),
        touched_ratio_vs_full_scan=round(median(touched) / full, 3),
        in_place_rewrites_delta_bytes=in_place,
        touched_snapshot_matches_disk=touched_ok,
        touched_snapshot_error_bytes=touched_error,
        after_period_snapshot_matches_disk=period_ok,
        after_period_snapshot_error_bytes=period_error,
    )
    result.targets.append(
        ratio_target(
            "steady cycle, nothing changed, vs full scan",
            ours,
            full,
            unit="s",
            peer_label="full scan (cold)",
            max_ratio=0.05,
            note=f"median of {len(unchanged)} cycles",
        )
    )
    result.targets.append(
        ratio_target(
            "steady cycles, nothing changed, amortized, vs full scan",
            amortized,
            full,
            unit="s",
            peer_label="full scan (cold)",
            max_ratio=0.05,
            note=f"mean of {period} consecutive cycles",
        )
    )
    result.targets.append(
        info_row(
            "steady cycle, 1% opened + 1% changed, vs full scan",
            median(touched),
            unit="s",
            peer=full,
            peer_label="full scan (cold)",
        )
    )
    if not touched_ok:
        result.notes.append(
            f"after the touched cycles the snapshot differs from the disk by {touched_error} "
            f"bytes (the in-place rewrites changed the total by {in_place} bytes); after "
            f"{period} more cycles it {'matches' if period_ok else 'still differs'}"
        )
    result.notes.append(
        f"the median is over every unchanged cycle ({len(unchanged)}); the touched figure "
        f"is the median of {s.repeats} cycles; a touched cycle follows {step} opens and "
        f"{step} file rewrites in place or additions made inside model() contexts; the "
        f"amortized figure is the mean of {period} consecutive cycles (the library's "
        "full_scan_every when it has one), so it includes the periodic full scans"
    )
    return result
