"""Replay a request trace through the eviction policies, to choose a policy and a size.

``filecache replay TRACE...`` is this module on the command line;
:func:`replay` returns the same records as its ``--json``::

    from vcti.filecache.replay import replay

    for record in replay(["day.csv"], policies=["lru", "cost-aware"], limits=["10%", "2T"]):
        for result in record["results"]:
            print(result["policy"], result["limit_bytes"], result["cost_miss_ratio"])

A trace is CSV with the header ``time,key,size`` and optional ``cost`` (seconds a fill
takes) and ``hit`` columns, one request per line: what :class:`~vcti.filecache.
observers.TraceObserver` writes. Each request is replayed through the library's own
policy objects and the victim walk that the cache's eviction uses, in one of two modes:

- **deployed** (the default): the cache as it runs, with :class:`CacheManagerConfig`'s
  settings (:class:`ReplaySettings`; the library's defaults unless told otherwise). Every miss
  is filled at once; with ``prompt_eviction`` (the default) a fill that takes the total
  above the limit runs a cycle at once, and a background cycle runs every ``interval``
  seconds of trace time; a cycle evicts the models idle for longer than ``max_age``, then
  down to ``evict_to`` x the limit when the total is above it (or the free space under
  ``min_free``). ``peak_overshoot_bytes`` says how far above its limit the cache went.
- **exact** (libCacheSim's conventions, for comparison with simulators): the clock is the
  request index; before each insert, evict until the object fits; an object larger than
  the whole cache is never admitted (still a miss, nothing evicted).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

from . import _grid
from ._grid import Progress, default_jobs
from ._sample import SAMPLE_BY as _SAMPLE_BY
from ._sample import auto_rate as _auto_rate
from ._sample import sample_trace
from ._simulate import (
    DEFAULT_LIMITS,
    POLICY_NAMES,
    ReplaySettings,
    Result,
    expand_limit,
    make_policy,
    parse_limit,
    simulate,
)
from ._simulate import check_limit as _check_limit
from ._simulate import trace_warnings as _trace_warnings
from ._trace import Trace, read_trace
from ._whatif import WhatIf
from .exceptions import TraceError
from .policies import base as _base

__all__ = [
    "DEFAULT_LIMITS",
    "POLICY_NAMES",
    "ReplaySettings",
    "Result",
    "Trace",
    "TraceError",
    "WhatIf",
    "default_jobs",
    "expand_limit",
    "make_policy",
    "parse_limit",
    "read_trace",
    "replay",
    "sample_trace",
    "simulate",
]


def _policies(
    chosen: Iterable[str | _base.EvictionPolicy] | None,
) -> list[str | _base.EvictionPolicy]:
    if chosen is None:
        return list(POLICY_NAMES)
    policies = list(chosen)
    for policy in policies:
        if isinstance(policy, str) and policy not in POLICY_NAMES:
            raise ValueError(f"unknown policy {policy!r} (choose from {', '.join(POLICY_NAMES)})")
    return policies


def replay(
    traces: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    policies: Iterable[str | _base.EvictionPolicy] | None = None,
    limits: Iterable[str | int] = DEFAULT_LIMITS,
    exact: bool = False,
    interval: float | None = None,
    evict_to: float | None = None,
    settings: ReplaySettings | None = None,
    concat: bool = False,
    sample: float | str = 1.0,
    sample_by: str = "size",
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Replay each trace through each policy at each limit; return the ``--json`` records.

    Args:
        traces: trace files; each is replayed on its own, or all as one with ``concat``.
        policies: built-in names or policy objects (default: every built-in policy).
        limits: sizes (``"50G"``, bytes as int) or shares of each trace's unique bytes
            (``"10%"``), or ranges of them, ``LOW..HIGH[:N]``: N sizes (default 16)
            spaced evenly on a log scale (``"1%..50%:24"``).
        exact: libCacheSim's conventions instead of the deployed cache's (see the module).
        interval: deployed mode: seconds of trace time between background cycles
            (overrides ``settings``).
        evict_to: deployed mode: each eviction goes down to this fraction of the limit
            (overrides ``settings``).
        settings: deployed mode: the cache's settings (default: the library's;
            :meth:`ReplaySettings.from_config` takes them from a :class:`CacheManagerConfig`).
        concat: replay the files as one trace, in the order given (a rotated trace).
        sample: replay only the keys sampled at this rate (SHARDS: a stable hash of each
            key), in miniature caches: an estimate of the whole curve at ``sample`` of the
            work; the record's ``sample`` says the rate, the way and the requests.
            ``"auto"``: the rate that keeps about 8,192 of each trace's keys (all of them
            in a smaller trace), the sample size of SHARDS's fixed-size variant.
        sample_by: ``"size"``: a key the more likely kept the larger it is, its requests
            weighted (the better estimate of the byte miss ratio); ``"keys"``: every key
            alike, as SHARDS samples (see :func:`sample_trace`).
        jobs: worker processes for the built-in policies (1: all in this process).
        progress: called with (trace name, cells done, cells) after each cell.

    Returns:
        One record per trace: ``{"trace", "requests", "unique_bytes", "warnings",
        "results"}``, the results being :class:`Result` as dictionaries, limit by limit,
        policy by policy; ``warnings`` (the record's and each result's) say why a result
        may not mean much.

    Raises:
        TraceError: a trace cannot be read (the message names the file and line).
        ValueError: an unknown policy, a bad limit, ``interval <= 0``, ``evict_to``
            outside ``[0, 1]``, ``sample`` neither ``"auto"`` nor in ``(0, 1]``, ``sample_by``
            neither ``"size"`` nor ``"keys"``,
            ``jobs < 1``.
    """
    paths = [traces] if isinstance(traces, (str, os.PathLike)) else list(traces)
    chosen = _policies(policies)
    wanted = list(limits)
    for limit in wanted:
        _check_limit(limit)  # a bad limit is an error before any trace is read
    if sample != "auto" and not (isinstance(sample, (int, float)) and 0 < sample <= 1):
        raise ValueError(f"sample must be 'auto' or in (0, 1]: {sample}")
    if sample_by not in _SAMPLE_BY:
        raise ValueError(f"sample_by must be 'size' or 'keys': {sample_by!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1: {jobs}")
    settings = settings or ReplaySettings()
    if interval is not None or evict_to is not None:
        settings = dataclasses.replace(
            settings,
            interval=settings.interval if interval is None else interval,
            evict_to=settings.evict_to if evict_to is None else evict_to,
        )
    groups = [paths] if concat else [[path] for path in paths]
    records: list[dict[str, Any]] = []
    for group in groups:
        trace = read_trace(group)
        sizes = dict.fromkeys(
            size for limit in wanted for size in expand_limit(limit, trace.unique_bytes)
        )
        rate = _auto_rate(trace) if sample == "auto" else float(sample)
        sampled = sample_trace(trace, rate, sample_by)
        results = _grid.run_grid(
            trace,
            [(policy, size) for size in sizes for policy in chosen],
            exact=exact,
            settings=settings,
            sample=rate,
            sampled=sampled,
            jobs=jobs,
            progress=progress,
        )
        records.append(
            {
                "trace": trace.name,
                "requests": trace.requests,
                "unique_bytes": trace.unique_bytes,
                "warnings": _trace_warnings(trace, settings, exact),
                **(
                    {"sample": {"rate": rate, "by": sample_by, "requests": sampled.requests}}
                    if rate < 1
                    else {}
                ),
                "results": results,
            }
        )
    return records
