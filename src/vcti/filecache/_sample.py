"""Spatially sampled traces: the miniature simulations of SHARDS, uniform or size-aware.

Waldspurger et al. ("Efficient MRC Construction with SHARDS", FAST 2015; "Cache Modeling
and Optimization using Miniature Simulations", USENIX ATC 2017): hash each key, keep the
requests of the keys whose hash falls under ``rate`` of the hash space, and replay them
through a cache ``rate`` times the size. Every request of a kept key is kept, so each
key's reuse pattern is intact; the miss ratios of the miniature cache estimate the full
cache's, at ``rate`` of the work (``by="keys"``).

A few large objects hold much of a trace's bytes, and whether a uniform sample has them
decides its byte miss ratio. The size-aware sample (``by="size"``, the default) keeps a
key of size ``s`` with probability ``p = min(1, λ x max(1, s / mean size))``, ``λ`` chosen
so that it keeps ``rate`` of the keys on average: the keys up to the mean size as the
uniform sample does, a larger one the more likely the larger it is, the largest for
sure. A kept key stands for ``w = 1/p`` keys (``Trace.weights``): its misses, missed bytes
and costs count ``w`` times (the Horvitz-Thompson estimator of the whole trace's), and it
takes ``w x`` its size of the cache's room, while the policy sees its true size; the
cache keeps the full limit. A uniform sample is the case ``w = 1/rate`` for every key,
that is the miniature cache of SHARDS.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools

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


#: The ways to sample: size-aware (the default; see the module), or uniform over keys
#: (SHARDS).
SAMPLE_BY = ("size", "keys")


def _chances(trace: Trace, rate: float) -> dict[str, float]:
    """Each key's chance to be kept by the size-aware sample: ``rate`` of the keys kept."""
    first: dict[str, int] = {}
    for key, size in zip(trace.keys, trace.sizes, strict=True):
        first.setdefault(key, size)
    if not first:
        return {}
    mean = sum(first.values()) / len(first)
    growth = {k: max(1.0, s / mean) if mean else 1.0 for k, s in first.items()}
    scale = _scale(sorted(growth.values()), rate * len(growth))
    return {k: min(1.0, scale * g) for k, g in growth.items()}


def _scale(growth: list[float], keys: float) -> float:
    """The ``λ`` with ``sum(min(1, λ g) for g in growth) == keys``; ``growth`` sorted, >= 1."""
    total = len(growth)
    prefix = list(itertools.accumulate(growth, initial=0.0))

    def expected(scale: float) -> float:
        sure = total - bisect.bisect_left(growth, 1 / scale)  # the keys kept for sure
        return scale * prefix[total - sure] + sure

    # expected() grows with the scale: 0 at 0, every key at 1 / the smallest growth.
    low, high = 0.0, 1 / growth[0]
    for _ in range(64):
        middle = (low + high) / 2
        if expected(middle) < keys:
            low = middle
        else:
            high = middle
    return high


def sample_trace(trace: Trace, rate: float, by: str = "keys") -> Trace:
    """The requests of the keys sampled at ``rate`` (0 < rate <= 1), as a trace of their own.

    Args:
        trace: the whole trace.
        rate: the share of the keys to keep (on average, for ``by="size"``).
        by: ``"keys"``: every key alike, the sample of SHARDS; ``"size"``: a larger key
            more likely, weighted (see the module).

    Raises:
        ValueError: ``rate`` is not in (0, 1], or ``by`` is neither.
    """
    if not 0 < rate <= 1:
        raise ValueError(f"the sampling rate must be in (0, 1]: {rate}")
    if by not in SAMPLE_BY:
        raise ValueError(f"sample by 'size' or 'keys', not {by!r}")
    if rate == 1:
        return trace
    sample = Trace(f"{trace.name} (sampled at {rate:g} by {by})")
    if by == "keys":
        threshold = int(rate * SPACE)
        kept = {key: key_hash(key) < threshold for key in dict.fromkeys(trace.keys)}
    else:
        kept = {}
        weights = sample.weights
        for key, chance in _chances(trace, rate).items():
            kept[key] = keep = key_hash(key) < chance * SPACE
            if keep:
                weights[key] = 1 / chance
    times, keys, sizes, costs = sample.times, sample.keys, sample.sizes, sample.costs
    for t, key, size, cost in zip(trace.times, trace.keys, trace.sizes, trace.costs, strict=True):
        if kept[key]:
            times.append(t)
            keys.append(key)
            sizes.append(size)
            costs.append(cost)
    sample.first_cost = {k: c for k, c in trace.first_cost.items() if kept[k]}
    return sample.summarize()
