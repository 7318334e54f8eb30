"""4. The steady-state cycle: ``cache.manager.run_once()`` when nothing or little changed.

The cache is opened as the root's leader; after its cycle at open and one more
``run_once()``, each timed ``run_once()`` follows a cycle with nothing changed. Then, before
each further timed cycle, 1% of the models are opened and another 1% get one file
rewritten in place (a different size) or added, inside a ``model()`` context. The
reference is the full reconciling walk of the same tree (``run_once(full=True)``, from
the scan benchmark of this run, or measured here). After the last touched cycle, its
snapshot is compared with the disk, every model folder walked without the library: a
cycle that skips models must still report what is on disk, in-place rewrites included.

Then the same number of models is touched on two roots of tiny models, one five times
the other, to show that a cycle costs what changed, not what is cached.
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
    limit_target,
    median,
    model_key,
    percentile,
    profiled,
    quiet_config,
    ratio_target,
    run_child,
    wait_first_cycle,
)
from ._workspace import TINY_FILE_BYTES, Workspace
from .scan import full_walk_seconds

NAME = "steady"
TITLE = "Steady-state cycle: `manager.run_once()` with nothing or little changed"
#: The same changes on 5x the models may cost at most this much more (a cost that grew
#: with the cache would be 5x; what every cycle does per model, such as building the
#: snapshot, is allowed for).
SCALE_MAX_RATIO = 1.5


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


def agrees(snapshot: CacheSnapshot | None, cold: dict[str, Any]) -> tuple[int, int, bool]:
    """Compare ``snapshot`` with the disk (``digest``): models whose size differs (or that
    only one of them has), the error of the total in bytes, and whether the access counts
    agree with a cold scan's."""
    if snapshot is None:
        raise RuntimeError("run_once() returned no snapshot although this process leads")
    disk: dict[str, int] = cold["disk_sizes"]
    seen = {e.key: e.size for e in snapshot.entries}
    wrong = sum(1 for key in seen.keys() | disk.keys() if seen.get(key) != disk.get(key))
    counts = sum(e.access_count for e in snapshot.entries) == cold["access_count"]
    return wrong, snapshot.total_size - int(cold["disk_total_size"]), counts


def touched_cycles(
    cache: FileCache, models: int, changes: int, rounds: int, first: int = 0
) -> tuple[list[float], CacheSnapshot | None, int]:
    """Before each of ``rounds`` timed cycles, open ``changes`` models and change ``changes``.

    Returns the cycle times, the last cycle's snapshot and the bytes by which the in-place
    rewrites changed the total. Each round touches models no earlier round touched.
    """
    times: list[float] = []
    snapshot: CacheSnapshot | None = None
    in_place = 0
    for r in range(rounds):
        base = first + 2 * r * changes
        opened = [model_key((base + i) % models) for i in range(changes)]
        changed = [model_key((base + changes + i) % models) for i in range(changes)]
        in_place += touch(cache, opened, changed, r)
        seconds, snapshot = timed_cycle(cache)
        times.append(seconds)
    return times, snapshot, in_place


def scaling(ws: Workspace) -> dict[str, float]:
    """Touched cycles with the same changes on two cache sizes, and 5x the changes.

    Two roots of tiny models (one 512-byte file each): ``keys / 5`` and ``keys`` models;
    1% of the smaller one is opened and as many changed before each timed cycle.
    """
    s = ws.settings
    big = s.keys
    small = max(100, big // 5)
    changes = max(2, small // 100)
    rounds = max(3, s.repeats)
    out: dict[str, float] = {"small_models": small, "big_models": big, "changes": changes}
    for label, models in (("small", small), ("big", big)):
        root = ws.extra_tree(f"scale-{label}", models, 1, TINY_FILE_BYTES)
        with FileCache(root=root, config=quiet_config()) as cache:
            wait_first_cycle(cache)
            cache.manager.run_once()
            ws.log.say(f"steady: {changes} + {changes} models touched of {models:,}")
            times, _, _ = touched_cycles(cache, models, changes, rounds)
            out[f"{label}_s"] = median(times)
            out[f"{label}_unchanged_s"] = median([timed_cycle(cache)[0] for _ in range(rounds)])
            if label == "big":
                ws.log.say(f"steady: {5 * changes} + {5 * changes} models touched of {models:,}")
                more, _, _ = touched_cycles(
                    cache, models, 5 * changes, rounds, first=2 * rounds * changes
                )
                out["big_5x_changes_s"] = median(more)
    return out


def run(ws: Workspace) -> Result:
    """Time cycles with nothing changed and with 1% + 1% of the models touched."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root, _ = ws.tree()
    if ws.full_walk_seconds is None:
        ws.log.say("steady: measuring the full-walk reference")
        ws.full_walk_seconds = full_walk_seconds(ws, root, max(1, s.repeats))
    full = ws.full_walk_seconds
    step = max(1, s.models // 100)
    unchanged: list[float] = []
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
        ws.log.say(f"steady: {s.repeats} cycles, each after touching 2% of the models")
        touched, snapshot, in_place = touched_cycles(cache, s.models, step, s.repeats, step)
        if s.profile_dir is not None:
            more = [model_key((s.models // 2 + i) % s.models) for i in range(2 * step)]
            touch(cache, more[:step], more[step:], s.repeats)
            profiled(s, f"{NAME}-touched", cache.manager.run_once)
        ws.log.say("steady: checking the last cycle's snapshot against the disk")
        touched_wrong, touched_error, touched_counts = agrees(
            snapshot, run_child("digest", str(root))
        )
        ws.log.say(f"steady: {period} consecutive unchanged cycles")
        series = [timed_cycle(cache) for _ in range(period)]
        period_wrong, period_error, period_counts = agrees(
            series[-1][1], run_child("digest", str(root))
        )
    scale = scaling(ws)
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
        touched_max_s=round(max(touched), 4),
        touched_models_opened=step,
        touched_models_changed=step,
        full_walk_s=round(full, 4),
        touched_ratio_vs_full_walk=round(median(touched) / full, 4),
        in_place_rewrites_delta_bytes=in_place,
        touched_models_differing_from_disk=touched_wrong,
        touched_snapshot_error_bytes=touched_error,
        touched_access_counts_agree=touched_counts,
        after_period_models_differing_from_disk=period_wrong,
        after_period_snapshot_error_bytes=period_error,
        after_period_access_counts_agree=period_counts,
        scale_small_models=scale["small_models"],
        scale_big_models=scale["big_models"],
        scale_changes=scale["changes"],
        scale_small_touched_s=round(scale["small_s"], 4),
        scale_big_touched_s=round(scale["big_s"], 4),
        scale_big_5x_changes_s=round(scale["big_5x_changes_s"], 4),
        scale_small_unchanged_s=round(scale["small_unchanged_s"], 4),
        scale_big_unchanged_s=round(scale["big_unchanged_s"], 4),
    )
    result.targets.append(
        ratio_target(
            "steady cycle, nothing changed, vs full walk",
            ours,
            full,
            unit="s",
            peer_label="full walk",
            max_ratio=0.05,
            note=f"median of {len(unchanged)} cycles",
        )
    )
    result.targets.append(
        ratio_target(
            "steady cycles, nothing changed, amortized, vs full walk",
            amortized,
            full,
            unit="s",
            peer_label="full walk",
            max_ratio=0.05,
            note=f"mean of {period} consecutive cycles",
        )
    )
    result.targets.append(
        ratio_target(
            "steady cycle, 1% opened + 1% changed, vs full walk",
            median(touched),
            full,
            unit="s",
            peer_label="full walk",
            max_ratio=0.04,
            note=f"median of {s.repeats} cycles, {step} + {step} models",
        )
    )
    result.targets.append(
        limit_target(
            "snapshot after in-place rewrites in model() contexts vs the disk",
            touched_wrong,
            unit="models differ",
            limit=0,
            inclusive=True,
            note=f"total off by {touched_error} bytes",
        )
    )
    small, big, changes = int(scale["small_models"]), int(scale["big_models"]), scale["changes"]
    result.targets.append(
        ratio_target(
            f"cycle after {changes:g} + {changes:g} changes, {big:,} models vs {small:,}",
            scale["big_s"],
            scale["small_s"],
            unit="s",
            peer_label=f"the same changes on {small:,} models",
            max_ratio=SCALE_MAX_RATIO,
            note=f"{big / small:g}x the models",
        )
    )
    result.targets.append(
        info_row(
            f"cycle after {5 * changes:g} + {5 * changes:g} changes, {big:,} models",
            scale["big_5x_changes_s"],
            unit="s",
            peer=scale["big_s"],
            peer_label=f"{changes:g} + {changes:g} changes",
            note="5x the changes",
        )
    )
    if touched_wrong or not touched_counts:
        result.notes.append(
            f"after the touched cycles {touched_wrong} models differ from the disk (total off "
            f"by {touched_error} bytes; the in-place rewrites changed it by {in_place} bytes); "
            f"access counts {'agree' if touched_counts else 'differ'}; after {period} more "
            f"cycles {period_wrong} models differ"
        )
    result.notes.append(
        f"the median is over every unchanged cycle ({len(unchanged)}); a touched cycle "
        f"follows {step} opens and {step} file rewrites in place or additions made inside "
        f"model() contexts (median of {s.repeats}); the amortized figure is the mean of "
        f"{period} consecutive cycles (the library's full_scan_every), so it includes the "
        "periodic full walk; the reference is the full walk of the scan benchmark. The "
        "disk check walks every model folder without the library. The scaling rows use "
        f"roots of tiny models ({small:,} and {big:,}, one 512-byte file each), the same "
        f"{changes:g} opened + {changes:g} changed models before each cycle (median of "
        f"{max(3, s.repeats)}); a cost that grew with the cache would be {big / small:g}x"
    )
    return result
