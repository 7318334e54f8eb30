"""``filecache replay --plot FILE``: miss ratio against cache size, one line per policy.

matplotlib is an optional dependency (``pip install 'vcti-file-cache[plot]'``), imported
only here and only when a plot is asked for.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ._common import EXIT_FAILURE, CommandError

_PANELS = (
    ("object_miss_ratio", "object miss ratio"),
    ("byte_miss_ratio", "byte miss ratio"),
    ("cost_miss_ratio", "recompute seconds missed"),
)


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


def plot(records: list[dict[str, Any]], path: str) -> None:
    """Draw one row per trace and one panel per ratio, and save the figure to ``path``."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")  # no display: write a file
        from matplotlib import pyplot  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError(
            f"--plot needs matplotlib: pip install 'vcti-file-cache[plot]' ({exc})", EXIT_FAILURE
        ) from None
    columns = max(sum(1 for field, _ in _PANELS if _has(record, field)) for record in records)
    figure, axes = pyplot.subplots(
        len(records), columns, figsize=(5 * columns, 3.6 * len(records)), squeeze=False
    )
    for row, record in enumerate(records):
        panels = [(field, title) for field, title in _PANELS if _has(record, field)]
        for column, (field, title) in enumerate(panels):
            ax = axes[row][column]
            for policy in dict.fromkeys(r["policy"] for r in record["results"]):
                points = sorted(
                    (r["limit_bytes"], r[field]) for r in record["results"] if r["policy"] == policy
                )
                ax.plot(
                    [x / 2**30 for x, _ in points],
                    [y for _, y in points],
                    marker="o",
                    label=policy,
                )
            limits = [r["limit_bytes"] for r in record["results"] if r["limit_bytes"] > 0]
            if limits and max(limits) > 10 * min(limits):
                ax.set_xscale("log")
            ax.set_xlabel("cache size (GiB)")
            ax.set_ylabel(title)
            ax.set_title(record["trace"].rsplit("/", 1)[-1], fontsize="small")
            ax.grid(alpha=0.3)
        for column in range(len(panels), columns):
            axes[row][column].set_visible(False)
        axes[row][0].legend(fontsize="small")
    figure.tight_layout()
    try:
        figure.savefig(path)
    finally:
        pyplot.close(figure)


def _has(record: dict[str, Any], field: str) -> bool:
    return any(r[field] is not None for r in record["results"])
