"""``filecache replay --target MEASURE=RATIO``: the smallest size that meets a target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._sizes import format_size
from ._common import EXIT_USAGE, CommandError

#: The measures a target may name, their result field, and how a sentence says them.
MEASURES = {
    "object": ("object_miss_ratio", "of requests"),
    "byte": ("byte_miss_ratio", "of requested bytes"),
    "cost": ("cost_miss_ratio", "of recompute seconds"),
}


@dataclass(frozen=True)
class Target:
    """A miss ratio not to exceed, in one measure."""

    measure: str
    ratio: float

    @property
    def field(self) -> str:
        """The result field the target reads."""
        return MEASURES[self.measure][0]


def parse_target(text: str) -> Target:
    """Parse ``MEASURE=RATIO`` (``cost=20%``, ``object=0.1``).

    Raises:
        CommandError: a usage error (status 2).
    """
    measure, sep, value = text.partition("=")
    measure = measure.strip().lower()
    if not sep or measure not in MEASURES:
        raise CommandError(
            f"--target: expected MEASURE=RATIO with MEASURE one of {', '.join(MEASURES)} "
            f"(cost=20%), got {text!r}",
            EXIT_USAGE,
        )
    value = value.strip()
    try:
        ratio = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise CommandError(f"--target: {value!r} is not a ratio (20% or 0.2)", EXIT_USAGE) from None
    if not 0 <= ratio <= 1:
        raise CommandError(f"--target: {value!r} is not between 0 and 100%", EXIT_USAGE)
    return Target(measure, ratio)


def smallest_sizes(record: dict[str, Any], target: Target) -> dict[str, int | None]:
    """Each policy's smallest replayed size that meets ``target`` (None: no size does)."""
    found: dict[str, int | None] = {}
    for result in sorted(record["results"], key=lambda r: r["limit_bytes"]):
        policy = result["policy"]
        found.setdefault(policy, None)
        value = result[target.field]
        if found[policy] is None and value is not None and value <= target.ratio:
            found[policy] = result["limit_bytes"]
    return found


def recommendation(record: dict[str, Any], target: Target) -> str:
    """One sentence: the policy that meets ``target`` at the smallest size, and LRU's size."""
    sizes = smallest_sizes(record, target)
    what = f"{100 * target.ratio:g}% {MEASURES[target.measure][1]}"
    met = {policy: size for policy, size in sizes.items() if size is not None}
    if not met:
        largest = max(r["limit_bytes"] for r in record["results"])
        return (
            f"no policy misses at most {what} at the sizes replayed (up to "
            f"{format_size(largest)}): replay larger sizes"
        )
    best = min(met, key=lambda policy: (met[policy], list(sizes).index(policy)))
    sentence = f"{best} at {format_size(met[best])} misses at most {what}"
    if best != "lru" and "lru" in sizes:
        lru = sizes["lru"]
        sentence += (
            f"; lru needs {format_size(lru)}"
            if lru is not None
            else "; lru does not at any size replayed"
        )
    return sentence
