"""Spatially sampled traces: the miniature simulations of SHARDS.

Waldspurger et al. ("Efficient MRC Construction with SHARDS", FAST 2015; "Cache Modeling
and Optimization using Miniature Simulations", USENIX ATC 2017): hash each key, keep the
requests of the keys whose hash falls under ``rate`` of the hash space, and replay them
through a cache ``rate`` times the size. Every request of a kept key is kept, so each
key's reuse pattern is intact; the miss ratios of the miniature cache estimate the full
cache's, at ``rate`` of the work.
"""

from __future__ import annotations

import hashlib

from ._trace import Trace

#: The hash space: keys whose 64-bit hash is below ``rate x 2**64`` are kept.
SPACE = 2**64


def key_hash(key: str) -> int:
    """A stable 64-bit hash of ``key`` (the same in every process and run)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


#: ``--sample auto`` keeps about this many keys: the sample size of SHARDS's fixed-size
#: variant (8K keys, Waldspurger et al. 2015), below which errors of several points are
#: common on the shared traces (benchmarks/README.md).
AUTO_KEYS = 8192


def auto_rate(trace: Trace) -> float:
    """The rate that keeps about :data:`AUTO_KEYS` of the trace's keys (1: all of them)."""
    keys = len(set(trace.keys))
    return min(1.0, AUTO_KEYS / keys) if keys else 1.0


def sample_trace(trace: Trace, rate: float) -> Trace:
    """The requests of the keys sampled at ``rate`` (0 < rate <= 1), as a trace of their own.

    Raises:
        ValueError: ``rate`` is not in (0, 1].
    """
    if not 0 < rate <= 1:
        raise ValueError(f"the sampling rate must be in (0, 1]: {rate}")
    if rate == 1:
        return trace
    threshold = int(rate * SPACE)
    kept: dict[str, bool] = {}
    sample = Trace(f"{trace.name} (sampled at {rate:g})")
    times, keys, sizes, costs = sample.times, sample.keys, sample.sizes, sample.costs
    for t, key, size, cost in zip(trace.times, trace.keys, trace.sizes, trace.costs, strict=True):
        keep = kept.get(key)
        if keep is None:
            keep = kept[key] = key_hash(key) < threshold
        if keep:
            times.append(t)
            keys.append(key)
            sizes.append(size)
            costs.append(cost)
    sample.first_cost = {k: c for k, c in trace.first_cost.items() if kept.get(k)}
    return sample.summarize()
