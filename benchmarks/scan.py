"""3. A full scan: ``cache.snapshot()`` of the whole tree with a cold in-process state.

Each scan runs in a fresh process (nothing remembered from an earlier scan) while this
process holds the root's leader lock, so the cache opened there does not scan at open;
the page cache is warm. The limit is ``du -sb ROOT``, which walks the same tree and sums
the same sizes in C; its process start-up is measured with ``du -sb`` of an empty folder
and subtracted (both figures are reported). Runs alternate between the two.
"""

from __future__ import annotations

from pathlib import Path

from ._common import (
    Result,
    held_leadership,
    median,
    ratio_target,
    run_child,
    time_command,
)
from ._workspace import Workspace

NAME = "scan"
TITLE = "Full scan: `cache.snapshot()` of the tree, cold process, warm page cache"


def cold_scan(root: Path, profile: Path | None = None) -> dict[str, object]:
    """One cold scan in a fresh process; the caller holds the leader lock."""
    args = ["scan", str(root)] + ([str(profile)] if profile is not None else [])
    return run_child(*args)


def cold_scan_seconds(ws: Workspace, root: Path, runs: int) -> float:
    """The median of ``runs`` cold scans of ``root``."""
    with held_leadership(root):
        times = [float(cold_scan(root)["seconds"]) for _ in range(runs)]
    return median(times)


def run(ws: Workspace) -> Result:
    """Time cold scans against ``du -sb`` of the same tree."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root, tree_bytes = ws.tree()
    empty = ws.path / "empty"
    empty.mkdir(exist_ok=True)
    result.metrics.update(models=s.models, files_per_model=s.files_per_model, tree_bytes=tree_bytes)
    scans: list[float] = []
    reported: list[float] = []
    walks: list[float] = []
    du_raw: list[float] = []
    du_empty: list[float] = []
    du = ["du", "-sb"]
    with held_leadership(root):
        ws.log.say("scan: warm-up (du and one scan)")
        time_command([*du, str(root)])
        first = cold_scan(root)
        if first["entries"] != s.models:
            raise RuntimeError(f"the scan saw {first['entries']} models, not {s.models}")
        for r in range(s.repeats):
            ws.log.say(f"scan: run {r + 1}/{s.repeats}")
            pair = ["ours", "du"] if r % 2 == 0 else ["du", "ours"]
            for who in pair:
                if who == "du":
                    du_empty.append(time_command([*du, str(empty)]))
                    du_raw.append(time_command([*du, str(root)]))
                else:
                    one = cold_scan(root)
                    scans.append(float(one["seconds"]))
                    reported.append(float(one["library_reported"]))
                    walks.append(float(one["python_walk_seconds"]))
        if s.profile_dir is not None:
            cold_scan(root, s.profile_dir / f"{NAME}.txt")
    ours = median(scans)
    ws.cold_scan_seconds = ours
    raw, startup = median(du_raw), median(du_empty)
    adjusted = max(raw - startup, 1e-6)
    files = s.models * s.files_per_model
    result.metrics.update(
        ours_median_s=round(ours, 4),
        ours_min_s=round(min(scans), 4),
        ours_library_reported_s=round(median(reported), 4),
        ours_us_per_model=round(ours / s.models * 1e6, 1),
        ours_us_per_file=round(ours / files * 1e6, 2),
        du_raw_s=round(raw, 4),
        du_startup_s=round(startup, 4),
        du_adjusted_s=round(adjusted, 4),
        python_scandir_walk_s=round(median(walks), 4),
        ratio_vs_du_raw=round(ours / raw, 2),
        ratio_vs_python_walk=round(ours / median(walks), 2),
    )
    result.targets.append(
        ratio_target(
            "full scan vs du -sb",
            ours,
            adjusted,
            unit="s",
            peer_label="du -sb (start-up subtracted)",
            max_ratio=1.2,
            note=f"vs du raw ({raw:.3f} s): {ours / raw:.2f}x",
        )
    )
    result.notes.append(
        f"median of {s.repeats} runs each; python_scandir_walk_s is a plain os.scandir walk "
        "summing sizes in the same child process (the floor for any Python walk)"
    )
    return result
