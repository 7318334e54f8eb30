"""7. Memory: resident memory per 10,000 tracked models.

In a fresh process (the library already imported, the key strings already built), the
resident set (``/proc/self/statm``) is read before opening a FileCache over the tiny
tree, and again after its first cycle, a snapshot (kept alive) and one open of every
model (so the manager holds an access record for each). The difference, scaled to
10,000 models, is the figure; the peak (``VmHWM``) and the resident set after the
next cycle (which writes the records) are reported too.
"""

from __future__ import annotations

from ._common import Result, limit_target, run_child
from ._workspace import Workspace

NAME = "memory"
TITLE = "Memory: resident memory per 10,000 tracked models"
MB = 1_000_000  # decimal megabytes: the stricter reading of "10 MB"
#: The upper end of the figures measured before the change journal (7.2-7.4 MB).
EARLIER_MB = 7.4


def run(ws: Workspace) -> Result:
    """Measure RSS growth while tracking every model of the tiny tree."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root = ws.tiny_tree()
    ws.log.say(f"memory: a fresh process tracking {s.keys:,} models")
    data = run_child("memory", str(root), str(s.keys))
    scale = 10_000 / s.keys
    tracked = (int(data["rss_tracked"]) - int(data["rss_before"])) * scale / MB
    after = (int(data["rss_after_cycle"]) - int(data["rss_before"])) * scale / MB
    peak = (int(data["peak"]) - int(data["peak_before"])) * scale / MB
    result.metrics.update(
        models=s.keys,
        entries_seen=data["entries"],
        rss_before_mb=round(int(data["rss_before"]) / MB, 2),
        rss_tracked_mb=round(int(data["rss_tracked"]) / MB, 2),
        mb_per_10k_tracked=round(tracked, 2),
        mb_per_10k_after_next_cycle=round(after, 2),
        mb_per_10k_peak=round(peak, 2),
    )
    result.targets.append(
        limit_target("RSS per 10,000 tracked models", tracked, unit="MB", limit=10)
    )
    result.targets.append(
        limit_target(
            "RSS per 10,000 tracked models, no worse than before the journal",
            tracked,
            unit="MB",
            limit=EARLIER_MB,
            inclusive=True,
        )
    )
    if s.keys != 10_000:
        result.notes.append(
            f"measured with {s.keys:,} models and scaled to 10,000 (fixed costs scale too)"
        )
    return result
