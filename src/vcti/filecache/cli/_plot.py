"""``filecache replay --plot FILE``: how much disk, for which policy.

One row per trace; one panel per measure (object, byte and, with costs, recompute-seconds
miss ratio, from 0) and one for the disk the cache really needs (the limit plus the peak
overshoot), against the cache size in the unit that suits the range. Each policy has a
fixed colour, marker and line style; curves that coincide are drawn with markers of
decreasing size, so each stays visible, and the legend says which equal which. With
``--target`` the target is a dashed line on its panel and each policy's smallest size that
meets it a mark on the curve.

matplotlib is an optional dependency (``pip install 'vcti-file-cache[plot]'``), imported
only here and only when a plot is asked for.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .._simulate import POLICY_NAMES
from ._common import EXIT_FAILURE, CommandError
from ._target import Target, smallest_sizes

_PANELS = (
    ("object_miss_ratio", "object miss ratio (share of requests)"),
    ("byte_miss_ratio", "byte miss ratio (share of bytes)"),
    ("cost_miss_ratio", "cost miss ratio (share of recompute seconds)"),
)
_DISK = "disk needed (limit + peak overshoot)"

#: Each built-in policy's look, whatever the order or the set of policies drawn.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINES = ("-", "--", "-.", ":", "-", "--", "-.", ":")
_UNITS = (("B", 1), ("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40), ("PiB", 2**50))


def check_matplotlib() -> None:
    """Raise a one-line error unless matplotlib can be imported."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a module set to None in sys.modules
        found = False
    if not found:
        raise CommandError(
            "--plot needs matplotlib: pip install 'vcti-file-cache[plot]'", EXIT_FAILURE
        )


def style(policy: str) -> dict[str, Any]:
    """The colour, marker and line style of ``policy`` (fixed for the built-in ones)."""
    index = (
        POLICY_NAMES.index(policy)
        if policy in POLICY_NAMES
        else len(POLICY_NAMES) + sum(map(ord, policy))
    )
    return {
        "color": _COLOURS[index % len(_COLOURS)],
        "marker": _MARKERS[index % len(_MARKERS)],
        "linestyle": _LINES[index % len(_LINES)],
    }


def unit_for(largest: int) -> tuple[str, int]:
    """The binary unit in which ``largest`` reads as 1 to 1023 (B, KiB ... PiB)."""
    chosen = _UNITS[0]
    for unit in _UNITS:
        if largest >= unit[1]:
            chosen = unit
    return chosen


def _series(record: dict[str, Any], policy: str, field: str) -> list[tuple[int, float]]:
    return sorted(
        (r["limit_bytes"], r[field])
        for r in record["results"]
        if r["policy"] == policy and r[field] is not None
    )


def plot(records: list[dict[str, Any]], path: str, target: Target | None = None) -> None:
    """Draw one row per trace, one panel per measure and the disk needed; save to ``path``."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")  # no display: write a file
        from matplotlib import pyplot, ticker  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError(
            f"--plot needs matplotlib: pip install 'vcti-file-cache[plot]' ({exc})", EXIT_FAILURE
        ) from None
    columns = 1 + max(sum(1 for field, _ in _PANELS if _has(r, field)) for r in records)
    figure, axes = pyplot.subplots(
        len(records), columns, figsize=(5.2 * columns, 4.2 * len(records)), squeeze=False
    )
    for row, record in enumerate(records):
        sizes = [r["limit_bytes"] for r in record["results"]]
        name, scale = unit_for(max(sizes) if sizes else 1)
        panels = [(field, title) for field, title in _PANELS if _has(record, field)]
        panels.append(("disk", _DISK))
        for column, (field, title) in enumerate(panels):
            _panel(
                axes[row][column],
                record,
                field=field,
                title=title,
                unit=(name, scale),
                target=target,
                ticker=ticker,
            )
        for column in range(len(panels), columns):
            axes[row][column].set_visible(False)
    figure.tight_layout()
    try:
        figure.savefig(path)
    finally:
        pyplot.close(figure)


def _panel(
    ax: Any,
    record: dict[str, Any],
    *,
    field: str,
    title: str,
    unit: tuple[str, int],
    target: Target | None,
    ticker: Any,
) -> None:
    """Draw one measure of one trace, every policy on it."""
    name, scale = unit
    sizes = [r["limit_bytes"] for r in record["results"]]
    drawn: dict[tuple[tuple[int, float], ...], str] = {}
    for rank, policy in enumerate(dict.fromkeys(r["policy"] for r in record["results"])):
        if field == "disk":
            points = [
                (limit, (limit + over) / scale)
                for limit, over in _series(record, policy, "peak_overshoot_bytes")
            ]
        else:
            points = _series(record, policy, field)
        if not points:
            continue
        same = drawn.setdefault(tuple(points), policy)
        ax.plot(
            [x / scale for x, _ in points],
            [y for _, y in points],
            label=policy if same == policy else f"{policy} (= {same})",
            # Curves that coincide stay visible: later ones drawn smaller, on top.
            markersize=max(3.0, 9.0 - 0.8 * rank),
            linewidth=max(0.8, 2.4 - 0.2 * rank),
            markerfacecolor="none" if rank % 2 else None,
            **style(policy),
        )
    if target is not None and field == target.field:
        ax.axhline(target.ratio, color="0.3", linestyle="--", linewidth=1)
        for policy, size in smallest_sizes(record, target).items():
            if size is not None:
                ax.plot(
                    size / scale,
                    target.ratio,
                    marker="|",
                    markersize=18,
                    markeredgewidth=2,
                    color=style(policy)["color"],
                )
    if len(set(sizes)) > 1 and max(sizes) > 10 * max(1, min(sizes)):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(numticks=6))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel(f"cache size ({name})")
    if field == "disk":
        ax.set_ylabel(f"disk needed ({name})")
    else:
        ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
        ax.set_ylabel(title)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{record['trace'].rsplit('/', 1)[-1]}: {title}", fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")


def _has(record: dict[str, Any], field: str) -> bool:
    return any(r[field] is not None for r in record["results"])
