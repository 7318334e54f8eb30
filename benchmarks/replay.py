"""8. Cache effectiveness: the replay's speed, its fidelity, and how good the policies are.

Measurements on the shared traces in ``../shared/traces`` next to the repository:

- **speed**: every built-in policy in both modes on ``cloudphysics_io.csv`` at 10% of its
  unique bytes, in requests per second (target: 100,000), beside libCacheSim's on the
  same trace and size (its cache driven request by request from Python, as the exactness
  check drives it), for the policies it has.
- **default grid**: ``filecache replay TRACE`` as an operator runs it (every policy, the
  default sizes, deployed mode, policies in parallel processes), timed on each trace.
- **sampling**: whole miss-ratio curves (deployed and exact modes, 12 sizes from 1% to
  50%) from spatially sampled traces (``--sample``, size-aware and uniform) against the
  full replays: the worst error in points, at 1/100 and 1/10 of the work and ``auto``.
- **grid**: both real traces x 1/5/10/25% of their unique bytes x lru, lfu, gdsf, sieve,
  largest, cost-aware, in exact mode, every lru/lfu/gdsf/sieve/largest result checked
  against the ``libcachesim`` package (same misses, same missed bytes).
- **effectiveness**: at every size, the best built-in policy's object and byte miss
  ratios against the best of 19 libCacheSim policies (default parameters): the gap in
  points.
- **costs**: the share of recompute seconds each built-in policy misses on
  ``synthetic_costs.csv``.

``--quick`` replays cuts of the traces (3,000 requests) and compares with four
libCacheSim policies, in a few seconds.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import time
from pathlib import Path
from typing import Any

from vcti.filecache.replay import (
    DEFAULT_LIMITS,
    POLICY_NAMES,
    Trace,
    default_jobs,
    parse_limit,
    read_trace,
    replay,
    simulate,
)

from ._common import REPO, Result, Target, info_row, limit_target
from ._workspace import Workspace

NAME = "replay"
TITLE = "Cache effectiveness: replay speed and fidelity, policies against libCacheSim"

TRACES = REPO / ".." / "shared" / "traces"
REAL = ("adaptsize_web.csv", "cloudphysics_io.csv")
COSTS = "synthetic_costs.csv"
SHARES = ("1%", "5%", "10%", "25%")
GRID = ("lru", "lfu", "gdsf", "sieve", "largest", "cost-aware")
REFERENCE = {"lru": "LRU", "lfu": "LFU", "gdsf": "GDSF", "sieve": "Sieve", "largest": "Size"}
LIBCACHESIM = [
    "LRU",
    "LFU",
    "FIFO",
    "Clock",
    "Sieve",
    "S3FIFO",
    "ARC",
    "TwoQ",
    "SLRU",
    "GDSF",
    "Size",
    "LHD",
    "Hyperbolic",
    "LeCaR",
    "Cacheus",
    "LIRS",
    "ClockPro",
    "WTinyLFU",
    "LFUDA",
]
QUICK_LIBCACHESIM = ("LRU", "GDSF", "Sieve", "S3FIFO")
QUICK_REQUESTS = 3_000
GRID_SECONDS = 180.0
SPEED_TRACE = "cloudphysics_io.csv"
SPEED_SHARE = "10%"
SPEED_TARGET = 100_000
CURVE = "1%..50%:12"
SAMPLING_POLICIES = ("lru", "gdsf", "sieve", "cost-aware")
#: Fixed rates, and "auto": the rate that keeps about 8,192 of the trace's keys.
SAMPLE_RATES: tuple[float | str, ...] = (0.01, 0.1, "auto")
#: The ways to sample: size-aware (the default) and uniform over keys (SHARDS).
SAMPLE_BY = ("size", "keys")


def _cut(trace: Trace, requests: int) -> Trace:
    """The first ``requests`` of ``trace``, as a trace of its own."""
    cut = Trace(
        trace.name,
        trace.times[:requests],
        trace.keys[:requests],
        trace.sizes[:requests],
        trace.costs[:requests],
    )
    for key, cost in zip(cut.keys, cut.costs, strict=True):
        if cost is not None:
            cut.first_cost.setdefault(key, cost)
    return cut.summarize()


def _generated(requests: int) -> Trace:
    """A reproducible Zipf-like trace, for when the shared traces are absent."""
    rng = random.Random(14)
    keys = [str(rng.paretovariate(0.8) // 1) for _ in range(requests)]
    sizes: dict[str, int] = {}
    trace = Trace("generated")
    for n, key in enumerate(keys):
        size = sizes.setdefault(key, rng.randint(1, 1 << 20))
        trace.times.append(float(n))
        trace.keys.append(key)
        trace.sizes.append(size)
        trace.costs.append(None)
    return trace.summarize()


def _reference(name: str, trace: Trace, capacity: int) -> tuple[int, int]:
    """Misses and missed bytes of libCacheSim's ``name`` (default parameters)."""
    import libcachesim  # noqa: PLC0415 - optional: the test extra has it

    cache = getattr(libcachesim, name)(capacity)
    request = libcachesim.Request()
    misses = miss_bytes = 0
    for key, size in zip(trace.keys, trace.sizes, strict=True):
        request.obj_id = int(key)
        request.obj_size = size
        if not cache.get(request):
            misses += 1
            miss_bytes += size
    return misses, miss_bytes


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _load(result: Result, quick: bool, shared: bool) -> dict[str, Trace]:
    """The real traces (cut in quick mode), or a generated one without them."""
    if not shared:
        result.notes.append(
            f"The shared traces are not at {TRACES.resolve()}: a generated trace stands in "
            "for the timing, and nothing is compared."
        )
        return {"generated": _generated(QUICK_REQUESTS if quick else 100_000)}
    traces = {}
    for name in REAL:
        trace = read_trace(TRACES / name)
        traces[name] = _cut(trace, QUICK_REQUESTS) if quick else trace
    return traces


def _grid(result: Result, traces: dict[str, Trace]) -> dict[tuple[str, str, str], Any]:
    """Replay and time the grid; return every result by (trace, share, policy)."""
    ours: dict[tuple[str, str, str], Any] = {}
    seconds = dict.fromkeys(GRID, 0.0)
    replayed = dict.fromkeys(GRID, 0)
    started = time.perf_counter()
    for (name, trace), share, policy in itertools.product(traces.items(), SHARES, GRID):
        t0 = time.perf_counter()
        ours[name, share, policy] = simulate(
            trace, policy, parse_limit(share, trace.unique_bytes), exact=True
        )
        seconds[policy] += time.perf_counter() - t0
        replayed[policy] += trace.requests
    grid = time.perf_counter() - started
    runs = len(traces) * len(SHARES) * len(GRID)
    result.targets.append(
        limit_target(f"grid of {runs} exact replays", grid, unit="s", limit=GRID_SECONDS)
    )
    result.metrics["grid_seconds"] = round(grid, 2)
    for policy in GRID:
        rate = replayed[policy] / seconds[policy]
        result.metrics[f"requests_per_second_{policy}"] = round(rate)
        result.targets.append(
            info_row(f"{policy} speed", rate, unit="req/s", peer=None, peer_label="")
        )
    return ours


def _their_speed(name: str, trace: Trace, capacity: int) -> float:
    """libCacheSim's requests per second for ``name``, driven from Python."""
    t0 = time.perf_counter()
    _reference(name, trace, capacity)
    return trace.requests / (time.perf_counter() - t0)


def _speed(result: Result, trace: Trace, compare: bool) -> None:
    """Every built-in policy in both modes: requests per second, beside libCacheSim's."""
    limit = parse_limit(SPEED_SHARE, trace.unique_bytes)
    slowest = math.inf
    if compare:
        _reference("LRU", _cut(trace, 10), 1)  # the import, outside the timing
    for policy in POLICY_NAMES:
        reference = REFERENCE.get(policy)
        theirs = _their_speed(reference, trace, limit) if compare and reference else None
        for exact in (True, False):
            t0 = time.perf_counter()
            simulate(trace, policy, limit, exact=exact)
            rate = trace.requests / (time.perf_counter() - t0)
            slowest = min(slowest, rate)
            mode = "exact" if exact else "deployed"
            result.metrics[f"requests_per_second_{policy}_{mode}"] = round(rate)
            result.targets.append(
                Target(
                    f"{policy} speed, {mode}",
                    round(rate),
                    "req/s",
                    f"≥ {SPEED_TARGET:,}",
                    rate >= SPEED_TARGET,
                    None if theirs is None else round(theirs),
                    f"libCacheSim {reference}" if theirs is not None else "",
                    None if theirs is None else rate / theirs,
                    f"{Path(trace.name).name}, {SPEED_SHARE}",
                )
            )
    result.metrics["requests_per_second_slowest"] = round(slowest)


def _default_grids(result: Result, paths: list[Path], quick: bool) -> None:
    """``filecache replay TRACE`` as an operator runs it, on each trace."""
    jobs = default_jobs()
    for path in paths:
        t0 = time.perf_counter()
        if quick:
            replay(path, policies=["lru", "idle-size"], limits=["10%"], jobs=1)
        else:
            replay(path, jobs=jobs)
        seconds = time.perf_counter() - t0
        result.metrics[f"default_grid_seconds_{path.stem}"] = round(seconds, 2)
        result.targets.append(
            info_row(
                f"default grid, {path.name}",
                round(seconds, 2),
                unit="s",
                peer=None,
                peer_label="",
                note=f"8 policies x {len(DEFAULT_LIMITS)} sizes, deployed, {jobs} processes"
                if not quick
                else "quick: 2 policies x 1 size",
            )
        )


def _rate_text(asked: float | str, rate: float) -> str:
    """The rate asked for, and the one chosen for it (``auto (0.204)``)."""
    return f"{asked:g}" if isinstance(asked, float) else f"{asked} ({rate:.3g})"


def _errors(whole: dict[str, Any], sampled: dict[str, Any]) -> dict[str, float]:
    """The worst error of each miss ratio over the results, in points."""
    return {
        field: max(
            100 * abs(a[field] - b[field])
            for a, b in zip(whole["results"], sampled["results"], strict=True)
        )
        for field in ("object_miss_ratio", "byte_miss_ratio")
    }


def _sampling(result: Result, paths: list[Path], quick: bool) -> None:
    """Sampled curves against full ones: the worst error in points, per rate and way."""
    policies = SAMPLING_POLICIES[:1] if quick else SAMPLING_POLICIES
    modes = (False,) if quick else (False, True)
    rows: list[list[str]] = []
    full: dict[tuple[Path, bool], tuple[dict[str, Any], float]] = {}
    for path, exact in itertools.product(paths, modes):
        t0 = time.perf_counter()
        (record,) = replay(path, policies=policies, limits=[CURVE], exact=exact)
        full[path, exact] = (record, time.perf_counter() - t0)
    for rate, by in itertools.product(SAMPLE_RATES, SAMPLE_BY):
        label = f"{rate:g}" if isinstance(rate, float) else rate
        worst_all = 0.0
        for path in paths:
            errors = dict.fromkeys(("object_miss_ratio", "byte_miss_ratio"), 0.0)
            seconds = {"full": 0.0, "sampled": 0.0}
            for exact in modes:
                whole, full_seconds = full[path, exact]
                t0 = time.perf_counter()
                (sampled,) = replay(
                    path, policies=policies, limits=[CURVE], exact=exact, sample=rate, sample_by=by
                )
                seconds["sampled"] += time.perf_counter() - t0
                seconds["full"] += full_seconds
                for field, error in _errors(whole, sampled).items():
                    errors[field] = max(errors[field], error)
            worst = max(errors.values())
            worst_all = max(worst_all, worst)
            replayed = sampled.get("sample", {"requests": whole["requests"]})["requests"]
            rows.append(
                [
                    path.name,
                    _rate_text(rate, sampled.get("sample", {}).get("rate", 1.0)),
                    by,
                    f"{replayed:,} ({100 * replayed / whole['requests']:.2f}%)",
                    f"{errors['object_miss_ratio']:.2f}",
                    f"{errors['byte_miss_ratio']:.2f}",
                    f"{seconds['full']:.2f} s",
                    f"{seconds['sampled']:.2f} s",
                ]
            )
            result.metrics[f"sampling_worst_points_{path.stem}_{label}_{by}"] = round(worst, 2)
        result.targets.append(
            limit_target(
                f"sampled curve at {label} by {by}: worst error (every size, trace, policy)",
                round(worst_all, 2),
                unit="points",
                limit=1.0,
                inclusive=True,
                note=f"{', '.join(policies)}; object and byte miss ratios; {CURVE}",
            )
        )
    mode_text = "deployed mode" if quick else "deployed and exact modes"
    result.notes.append(
        f"Sampled curves ({mode_text}, sizes "
        + CURVE
        + ") against full replays: the worst error over the sizes, the policies, the modes "
        "and the object and byte miss ratios, in points; the requests the sample replays, "
        "and the time of each (reading the trace included, the modes added):\n\n"
        + _table(
            ["trace", "rate", "by", "requests replayed", "object", "byte", "full", "sampled"],
            rows,
        )
    )


def run(ws: Workspace) -> Result:
    """Replay the grid, compare with libCacheSim, and measure recompute seconds."""
    result = Result(NAME, TITLE)
    quick = ws.settings.quick
    shared = all((TRACES / name).is_file() for name in (*REAL, COSTS))
    traces = _load(result, quick, shared)
    ws.log.say("replay: the grid")
    ours = _grid(result, traces)
    compare = shared and importlib.util.find_spec("libcachesim") is not None
    ws.log.say("replay: speed")
    _speed(result, traces.get(SPEED_TRACE) or next(iter(traces.values())), compare)
    if shared:
        paths = [TRACES / name for name in (*REAL, COSTS)]
        ws.log.say("replay: the default grid")
        _default_grids(result, paths, quick)
        ws.log.say("replay: sampled curves")
        _sampling(result, paths[:1] if quick else paths, quick)

    # -- fidelity and effectiveness ---------------------------------------------------
    if shared and importlib.util.find_spec("libcachesim") is not None:
        ws.log.say("replay: libCacheSim")
        _compare(result, traces, ours, QUICK_LIBCACHESIM if quick else LIBCACHESIM)
    elif shared:
        result.notes.append("libcachesim is not installed: no comparison (pip install libcachesim)")

    # -- recompute seconds ------------------------------------------------------------
    if not shared:
        return result
    ws.log.say("replay: recompute seconds")
    costs = read_trace(TRACES / COSTS)
    if quick:
        costs = _cut(costs, QUICK_REQUESTS * 3)
    _costs(result, costs)
    return result


def _compare(
    result: Result,
    traces: dict[str, Trace],
    ours: dict[tuple[str, str, str], Any],
    names: tuple[str, ...] | list[str],
) -> None:
    matches = checked = 0
    worst = {"object": -1e9, "byte": -1e9}
    rows: list[list[str]] = []
    for (name, trace), share in itertools.product(traces.items(), SHARES):
        capacity = parse_limit(share, trace.unique_bytes)
        total_bytes = sum(trace.sizes)
        theirs = {n: _reference(n, trace, capacity) for n in names}
        for policy, reference in REFERENCE.items():
            if reference in theirs:
                checked += 1
                mine = ours[name, share, policy]
                matches += (mine.misses, mine.miss_bytes) == theirs[reference]
        built_in = {p: r for (t, s, p), r in ours.items() if t == name and s == share}
        cells = [name.split("_")[0], share]
        for kind in ("object", "byte"):
            if kind == "object":
                their_ratio = {n: m / trace.requests for n, (m, _) in theirs.items()}
                our_ratio = {p: r.object_miss_ratio for p, r in built_in.items()}
            else:
                their_ratio = {n: b / total_bytes for n, (_, b) in theirs.items()}
                our_ratio = {p: r.byte_miss_ratio for p, r in built_in.items()}
            best_theirs = min(their_ratio, key=their_ratio.__getitem__)
            best_ours = min(our_ratio, key=our_ratio.__getitem__)
            gap = 100 * (our_ratio[best_ours] - their_ratio[best_theirs])
            worst[kind] = max(worst[kind], gap)
            cells += [
                f"{best_ours} {100 * our_ratio[best_ours]:.2f}%",
                f"{best_theirs} {100 * their_ratio[best_theirs]:.2f}%",
                f"{gap:+.2f}",
            ]
        rows.append(cells)
    result.targets.append(
        Target(
            "exact replays equal to libcachesim",
            matches,
            f"of {checked}",
            f"= {checked}",
            matches == checked,
        )
    )
    for kind in ("object", "byte"):
        result.targets.append(
            limit_target(
                f"best built-in minus best libCacheSim, {kind} miss ratio (worst size)",
                worst[kind],
                unit="points",
                limit=1.0,
                inclusive=True,
                note=f"{len(names)} libCacheSim policies",
            )
        )
        result.metrics[f"worst_gap_{kind}_points"] = round(worst[kind], 2)
    result.metrics["libcachesim_policies"] = ", ".join(names)
    result.notes.append(
        "Best built-in against the best libCacheSim policy, miss ratios (gap in points, "
        "positive: libCacheSim better):\n\n"
        + _table(
            [
                "trace",
                "size",
                "object: ours",
                "object: libCacheSim",
                "gap",
                "byte: ours",
                "byte: libCacheSim",
                "gap",
            ],
            rows,
        )
    )


def _costs(result: Result, trace: Trace) -> None:
    policies = ("lru", "lfu", "sized-lru", "idle-size", "gdsf", "cost-aware", "sieve", "largest")
    rows: list[list[str]] = []
    wins = 0
    for share in SHARES:
        limit = parse_limit(share, trace.unique_bytes)
        ratios = {p: simulate(trace, p, limit, exact=True).cost_miss_ratio or 0.0 for p in policies}
        best = min(ratios, key=ratios.__getitem__)
        wins += best == "cost-aware"
        rows.append([share, *(f"{100 * ratios[p]:.1f}%" for p in policies), best])
        result.metrics[f"cost_miss_{share}_cost_aware"] = round(ratios["cost-aware"], 4)
        result.metrics[f"cost_miss_{share}_lru"] = round(ratios["lru"], 4)
    result.targets.append(
        Target(
            "sizes where cost-aware misses the fewest recompute seconds",
            wins,
            f"of {len(SHARES)}",
            f"= {len(SHARES)}",
            wins == len(SHARES),
        )
    )
    result.notes.append(
        f"Recompute seconds missed on {Path(trace.name).name} ({trace.requests} requests), "
        "exact mode:\n\n" + _table(["size", *policies, "best"], rows)
    )
