"""Running a replay's grid (policies x limits on one trace), in parallel processes.

Each cell is one :func:`~vcti.filecache._simulate.simulate`; the cells of built-in policies
run in a pool of worker processes that receive the trace once each (the replay is CPU
bound, and the interpreter runs one thread at a time). A policy object the caller made
runs in this process: it may not survive a trip to another one.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from typing import Any

from ._simulate import ReplaySettings, Result, result_warnings, simulate
from ._trace import Trace
from .policies.base import EvictionPolicy

#: Called with (the trace's name, its cells done, its cells) after each cell.
Progress = Callable[[str, int, int], None]

#: Below this many requests x cells, a pool costs more than it saves.
_PARALLEL_WORK = 400_000

#: The trace and settings of the grid, in each worker (set once by the initializer).
_WORKER: dict[str, Any] = {}


def default_jobs() -> int:
    """Worker processes by default: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def as_record(result: Result) -> dict[str, Any]:
    """A result as its JSON object (warnings as a list)."""
    return {**asdict(result), "warnings": list(result.warnings)}


def _init(trace: Trace, exact: bool, settings: ReplaySettings) -> None:
    _WORKER.update(trace=trace, exact=exact, settings=settings)


def _cell(policy: str, limit: int) -> Result:
    return simulate(
        _WORKER["trace"], policy, limit, exact=_WORKER["exact"], settings=_WORKER["settings"]
    )


def run_grid(
    trace: Trace,
    cells: Sequence[tuple[str | EvictionPolicy, int]],
    *,
    exact: bool,
    settings: ReplaySettings,
    sample: float = 1.0,
    sampled: Trace | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Replay ``trace`` at each ``(policy, limit)`` cell; return the results as records.

    Args:
        sample, sampled: replay ``sampled``, the keys sampled from ``trace`` at the rate
            ``sample`` (see :mod:`._sample`), and report the full trace's estimated
            figures; a uniform sample through caches ``sample`` times smaller.
        jobs: worker processes for the built-in policies (1: all in this process).
        progress: told after each cell.
    """
    replayed = sampled if sampled is not None and sample < 1 else trace
    # A weighted sample's keys take the room of the keys they stand for: the cache keeps
    # its size. A uniform sample's keys each stand for 1/sample keys: the cache shrinks.
    shrink = 1.0 if replayed.weights else sample
    scaled = [(policy, max(1, round(limit * shrink)) if limit else 0) for policy, limit in cells]
    results: list[Result | None] = [None] * len(cells)
    done = 0
    # Prompt eviction bounds the overshoot by one fill, whatever the sample; otherwise
    # it is the fills of a cycle's interval, of which the sample holds ``sample``.
    overshoot = 1.0 if exact or (settings.prompt_eviction and not settings.prompt_delay) else shrink

    sampled_keys = len(set(replayed.keys)) if sample < 1 else 0
    # The room the sample's largest object takes, against which a cache is small.
    weights = replayed.weights
    sizes = zip(replayed.keys, replayed.sizes, strict=True)
    largest_room = (
        max((size * weights[key] for key, size in sizes), default=0)
        if weights
        else replayed.largest / sample
    )

    def finish(index: int, result: Result) -> None:
        nonlocal done
        limit = cells[index][1]
        if sample < 1:
            result = _rescale(result, trace, replayed, limit, shrink, overshoot)
            warned = _sample_warnings(sampled_keys, largest_room, limit)
            result = replace(result, warnings=result.warnings + warned)
        results[index] = result
        done += 1
        if progress is not None:
            progress(trace.name, done, len(cells))

    parallel = [i for i, (policy, _) in enumerate(scaled) if isinstance(policy, str)]
    workers = min(jobs, len(parallel))
    if workers > 1 and replayed.requests * len(parallel) >= _PARALLEL_WORK:
        # forkserver: safe in a process with threads; each worker gets the trace once.
        context = multiprocessing.get_context(
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init, initargs=(replayed, exact, settings)
        ) as pool:
            futures: dict[Future[Result], int] = {
                pool.submit(_cell, scaled[i][0], scaled[i][1]): i  # type: ignore[arg-type]
                for i in parallel
            }
            here = set(range(len(scaled))) - set(parallel)
            for i in sorted(here):
                policy, limit = scaled[i]
                finish(i, simulate(replayed, policy, limit, exact=exact, settings=settings))
            for future in as_completed(futures):
                finish(futures[future], future.result())
    else:
        for i, (policy, limit) in enumerate(scaled):
            finish(i, simulate(replayed, policy, limit, exact=exact, settings=settings))
    return [as_record(result) for result in results if result is not None]


#: A sample with fewer keys than this, or a miniature cache that holds fewer than this many
#: of the trace's largest objects, gives errors of several points (measured on the shared
#: traces: see benchmarks/README.md).
MIN_SAMPLED_KEYS = 5_000
MIN_LARGEST_HELD = 10


def _sample_warnings(keys: int, largest_room: float, limit: int) -> tuple[str, ...]:
    """Why a sampled result may be far from the full replay's."""
    found: list[str] = []
    if keys < MIN_SAMPLED_KEYS:
        found.append(
            f"the sample holds {keys} keys (fewer than {MIN_SAMPLED_KEYS:,}): expect an error "
            "of several points; sample at a higher rate"
        )
    if largest_room and limit < MIN_LARGEST_HELD * largest_room:
        found.append(
            f"the sampled cache holds fewer than {MIN_LARGEST_HELD} of the sample's largest "
            "objects: expect an error of several points"
        )
    return tuple(found)


def _rescale(  # noqa: PLR0917 - one call, in run_grid
    result: Result, trace: Trace, sampled: Trace, limit: int, rate: float, overshoot_rate: float
) -> Result:
    """A sampled cell's result, as the full trace's estimate at the full ``limit``.

    The sample's figures are divided by what the sample was expected to hold, ``rate``
    of the trace's requests, bytes and costs, not by what it holds (SHARDS's adjustment):
    a sample that missed a few very popular keys would otherwise count too few hits.
    """

    def share(part: float, whole: float) -> float:
        return min(1.0, part / (rate * whole)) if whole else 0.0

    miss_cost = (result.cost_miss_ratio or 0.0) * sampled.total_cost
    object_ratio = share(result.misses, trace.requests)
    byte_ratio = share(result.miss_bytes, trace.total_bytes)
    overshoot = round(result.peak_overshoot_bytes / overshoot_rate)
    return replace(
        result,
        limit_bytes=limit,
        misses=round(object_ratio * trace.requests),
        miss_bytes=round(byte_ratio * trace.total_bytes),
        object_miss_ratio=object_ratio,
        byte_miss_ratio=byte_ratio,
        cost_miss_ratio=share(miss_cost, trace.total_cost) if trace.has_costs else None,
        peak_overshoot_bytes=overshoot,
        # The sample's largest object is not the trace's: judge the limit on the trace.
        warnings=result_warnings(trace, limit, overshoot),
    )
