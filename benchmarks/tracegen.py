"""A large synthetic request trace, for the sampled curves at the scale SHARDS is meant for.

``python -m benchmarks.tracegen OUT.csv`` writes a trace that ``filecache replay`` reads
(``time,key,size,cost``): by default 6 million requests over one day (86,400 s, a "day's
trace") to 300,000 models, each request drawing its model from a Zipf-like popularity
(exponent 0.8: a few hot models, a long tail of models read once or twice), sizes
heavy-tailed (lognormal around 64 MiB, a Pareto tail above 1 GiB, up to 64 GiB), each
model's fill time about proportional to its size^0.8 with tenfold noise. Seeded: the
same arguments give the same file, byte for byte. The file (some 250 MB) is not kept in
the repository.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path

MIB = 1 << 20
GIB = 1 << 30
#: The largest model.
LARGEST = 64 * GIB
#: Requests drawn at a time (bounds the memory of a long trace).
CHUNK = 200_000


def model_sizes(rng: random.Random, models: int) -> list[int]:
    """Heavy-tailed sizes: lognormal around 64 MiB; above 1 GiB a Pareto tail (alpha 1.2)."""
    sizes = []
    for _ in range(models):
        size = rng.lognormvariate(math.log(64 * MIB), 1.5)
        if size > GIB:
            size = GIB * rng.paretovariate(1.2)
        sizes.append(max(4096, min(LARGEST, int(size))))
    return sizes


def write_trace(
    out: Path,
    *,
    requests: int = 6_000_000,
    models: int = 300_000,
    zipf: float = 0.8,
    seconds: float = 86_400.0,
    seed: int = 24,
) -> None:
    """Write the trace to ``out`` (see the module)."""
    rng = random.Random(seed)
    sizes = model_sizes(rng, models)
    costs = [
        round(0.5 * (size / GIB) ** 0.8 * math.exp(rng.uniform(-1.15, 1.15)) + 0.05, 3)
        for size in sizes
    ]
    # Popularity rank r has weight 1/r^zipf; the ranks go to models in random order, so a
    # model's size says nothing of its popularity.
    ranks = list(range(models))
    rng.shuffle(ranks)
    cumulative = list(itertools.accumulate(1 / (rank + 1) ** zipf for rank in ranks))
    step = seconds / requests
    with out.open("w", encoding="utf-8", newline="") as stream:
        stream.write("time,key,size,cost\n")
        done = 0
        while done < requests:
            count = min(CHUNK, requests - done)
            drawn = rng.choices(range(models), cum_weights=cumulative, k=count)
            stream.write(
                "".join(
                    f"{(done + i) * step:.3f},m{model},{sizes[model]},{costs[model]}\n"
                    for i, model in enumerate(drawn)
                )
            )
            done += count


def main(argv: Sequence[str] | None = None) -> int:
    """Write a trace: ``python -m benchmarks.tracegen OUT.csv [--requests N] ...``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracegen", description=__doc__)
    parser.add_argument("out", type=Path, help="the CSV file to write")
    parser.add_argument("--requests", type=int, default=6_000_000)
    parser.add_argument("--models", type=int, default=300_000)
    parser.add_argument("--zipf", type=float, default=0.8, help="the popularity's exponent")
    parser.add_argument("--seconds", type=float, default=86_400.0, help="the trace's span")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.models < 1 or args.seconds <= 0:
        parser.error("--requests, --models and --seconds must be positive")
    write_trace(
        args.out,
        requests=args.requests,
        models=args.models,
        zipf=args.zipf,
        seconds=args.seconds,
        seed=args.seed,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
