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
  settings (:class:`Deployed`; the library's defaults unless told otherwise). Every miss
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
from dataclasses import asdict
from typing import Any

from ._simulate import (
    DEFAULT_LIMITS,
    POLICY_NAMES,
    Deployed,
    Result,
    make_policy,
    parse_limit,
    simulate,
    trace_warnings,
)
from ._trace import Trace, read_trace
from .exceptions import TraceError
from .policies import base as _base

__all__ = [
    "DEFAULT_LIMITS",
    "POLICY_NAMES",
    "Deployed",
    "Result",
    "Trace",
    "TraceError",
    "make_policy",
    "parse_limit",
    "read_trace",
    "replay",
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


def _record(result: Result) -> dict[str, Any]:
    """A result as its JSON object (warnings as a list)."""
    return {**asdict(result), "warnings": list(result.warnings)}


def replay(
    traces: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    policies: Iterable[str | _base.EvictionPolicy] | None = None,
    limits: Iterable[str | int] = DEFAULT_LIMITS,
    exact: bool = False,
    interval: float | None = None,
    evict_to: float | None = None,
    settings: Deployed | None = None,
    concat: bool = False,
) -> list[dict[str, Any]]:
    """Replay each trace through each policy at each limit; return the ``--json`` records.

    Args:
        traces: trace files; each is replayed on its own, or all as one with ``concat``.
        policies: built-in names or policy objects (default: every built-in policy).
        limits: sizes (``"50G"``, bytes as int) or shares of each trace's unique bytes
            (``"10%"``).
        exact: libCacheSim's conventions instead of the deployed cache's (see the module).
        interval: deployed mode: seconds of trace time between background cycles
            (overrides ``settings``).
        evict_to: deployed mode: each eviction goes down to this fraction of the limit
            (overrides ``settings``).
        settings: deployed mode: the cache's settings (default: the library's;
            :meth:`Deployed.from_config` takes them from a :class:`CacheManagerConfig`).
        concat: replay the files as one trace, in the order given (a rotated trace).

    Returns:
        One record per trace: ``{"trace", "requests", "unique_bytes", "warnings",
        "results"}``, the results being :class:`Result` as dictionaries, limit by limit,
        policy by policy; ``warnings`` (the record's and each result's) say why a result
        may not mean much.

    Raises:
        TraceError: a trace cannot be read (the message names the file and line).
        ValueError: an unknown policy, a bad limit, ``interval <= 0`` or ``evict_to``
            outside ``[0, 1]``.
    """
    paths = [traces] if isinstance(traces, (str, os.PathLike)) else list(traces)
    chosen = _policies(policies)
    wanted = list(limits)
    for limit in wanted:
        parse_limit(limit, 0)  # a bad limit is an error before any trace is read
    settings = settings or Deployed()
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
        results = [
            _record(
                simulate(
                    trace,
                    policy,
                    parse_limit(limit, trace.unique_bytes),
                    exact=exact,
                    settings=settings,
                )
            )
            for limit in wanted
            for policy in chosen
        ]
        records.append(
            {
                "trace": trace.name,
                "requests": trace.requests,
                "unique_bytes": trace.unique_bytes,
                "warnings": trace_warnings(trace, settings, exact),
                "results": results,
            }
        )
    return records
