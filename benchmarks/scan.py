"""3. Scans: a new process opening a root whose sizes are recorded, and the full walk.

The tree was built through the library, so every model's metadata records its size with
the stamps it was measured under (and the cache was opened and closed on it, as a
restarted server finds it). Two measurements, each in a fresh process, page cache warm:

- cold scan: one ``cache.snapshot()`` while this process holds the root's leader lock (so
  the cache opened there does not scan at open): a process's first scan, which walks the
  stamps and trusts the recorded sizes whose stamps still match;
- cold start as the leader: the child opens the root and leads it; from ``open()`` to
  the end of the manager's cycle at open (a restarted server that is alone on its root);
- full walk: in the same child, then one ``run_once(full=True)``, the periodic
  reconciliation that measures every model (in a child process of its own once there are
  many), for changes made behind the library's back.

The limit is ``du -sb ROOT``, which walks the same tree and sums the same apparent sizes
in C; its process start-up, timed as ``du -sb`` of an empty folder, is subtracted (raw and
adjusted are both reported; targets use the adjusted, stricter one). Runs rotate among the
three.
"""

from __future__ import annotations

from pathlib import Path

from ._common import (
    Result,
    held_leadership,
    info_row,
    median,
    ratio_target,
    run_child,
    time_command,
)
from ._workspace import Workspace

NAME = "scan"
TITLE = "Scans: a cold process trusting recorded sizes, and the full reconciling walk"


def cold_scan(root: Path, profile: Path | None = None) -> dict[str, object]:
    """One cold scan in a fresh process; the caller holds the leader lock."""
    args = ["scan", str(root)] + ([str(profile)] if profile is not None else [])
    return run_child(*args)


def full_walk(root: Path, profile: Path | None = None) -> dict[str, object]:
    """One ``run_once(full=True)`` in a fresh process that leads the root."""
    args = ["fullwalk", str(root)] + ([str(profile)] if profile is not None else [])
    return run_child(*args)


def cold_scan_seconds(ws: Workspace, root: Path, runs: int) -> float:
    """The median of ``runs`` cold scans of ``root``."""
    with held_leadership(root):
        times = [float(cold_scan(root)["seconds"]) for _ in range(runs)]
    return median(times)


def full_walk_seconds(ws: Workspace, root: Path, runs: int) -> float:
    """The median of ``runs`` full walks of ``root``, each in a fresh process."""
    return median([float(full_walk(root)["seconds"]) for _ in range(runs)])


def run(ws: Workspace) -> Result:
    """Time cold scans and full walks against ``du -sb`` of the same tree."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root, tree_bytes = ws.tree()
    empty = ws.path / "empty"
    empty.mkdir(exist_ok=True)
    result.metrics.update(models=s.models, files_per_model=s.files_per_model, tree_bytes=tree_bytes)
    runs: dict[str, list[dict[str, object]]] = {"cold": [], "full": []}
    du_raw: list[float] = []
    du_empty: list[float] = []
    du = ["du", "-sb"]
    ws.log.say("scan: warm-up (du, one cold scan, one full walk)")
    time_command([*du, str(root)])
    with held_leadership(root):
        first = cold_scan(root)
    if first["entries"] != s.models:
        raise RuntimeError(f"the scan saw {first['entries']} models, not {s.models}")
    full_walk(root)
    subjects = ["cold", "du", "full"]
    for r in range(s.repeats):
        ws.log.say(f"scan: run {r + 1}/{s.repeats}")
        for who in subjects[r % 3 :] + subjects[: r % 3]:
            if who == "du":
                du_empty.append(time_command([*du, str(empty)]))
                du_raw.append(time_command([*du, str(root)]))
            elif who == "cold":
                with held_leadership(root):
                    runs["cold"].append(cold_scan(root))
            else:
                runs["full"].append(full_walk(root))
    if s.profile_dir is not None:
        with held_leadership(root):
            cold_scan(root, s.profile_dir / f"{NAME}.txt")
        full_walk(root, s.profile_dir / f"{NAME}-full.txt")

    def values(kind: str, field: str) -> list[float]:
        return [float(str(one[field])) for one in runs[kind]]

    def med(kind: str, field: str) -> float:
        return median(values(kind, field))

    cold, full = med("cold", "seconds"), med("full", "seconds")
    start = med("full", "first_cycle_seconds")
    ws.cold_scan_seconds, ws.full_walk_seconds = cold, full
    raw, startup = median(du_raw), median(du_empty)
    adjusted = max(raw - startup, 1e-6)
    files = s.models * s.files_per_model
    walk = med("full", "python_walk_seconds")
    result.metrics.update(
        cold_median_s=round(cold, 4),
        cold_min_s=round(min(values("cold", "seconds")), 4),
        cold_library_reported_s=round(med("cold", "library_reported"), 4),
        cold_us_per_model=round(cold / s.models * 1e6, 1),
        cold_ratio_vs_du_raw=round(cold / raw, 3),
        full_walk_median_s=round(full, 4),
        full_walk_min_s=round(min(values("full", "seconds")), 4),
        full_walk_scan_reported_s=round(med("full", "library_reported"), 4),
        full_walk_cpu_s=round(med("full", "cpu_seconds"), 4),
        full_walk_children_cpu_s=round(med("full", "children_cpu_seconds"), 4),
        full_walk_us_per_file=round(full / files * 1e6, 2),
        full_walk_ratio_vs_du_raw=round(full / raw, 2),
        leader_open_to_first_cycle_s=round(start, 4),
        leader_first_scan_reported_s=round(med("full", "first_scan_reported"), 4),
        du_raw_s=round(raw, 4),
        du_startup_s=round(startup, 4),
        du_adjusted_s=round(adjusted, 4),
        python_scandir_walk_s=round(walk, 4),
        full_walk_ratio_vs_python_walk=round(full / walk, 2),
    )
    result.targets.append(
        ratio_target(
            "cold scan, sizes recorded: a new process's first snapshot(), vs du -sb",
            cold,
            adjusted,
            unit="s",
            peer_label="du -sb (start-up subtracted)",
            max_ratio=0.3,
            note=f"vs du raw ({raw:.3f} s): {cold / raw:.2f}x",
        )
    )
    result.targets.append(
        ratio_target(
            "cold start as the leader: open() to the end of the cycle at open, vs du -sb",
            start,
            adjusted,
            unit="s",
            peer_label="du -sb (start-up subtracted)",
            max_ratio=0.3,
            note=f"its scan {med('full', 'first_scan_reported'):.3f} s",
        )
    )
    result.targets.append(
        info_row(
            "full reconciling walk, run_once(full=True), vs du -sb",
            full,
            unit="s",
            peer=adjusted,
            peer_label="du -sb (start-up subtracted)",
            note=f"vs du raw: {full / raw:.2f}x",
        )
    )
    result.notes.append(
        f"medians of {s.repeats} runs each, every run in a fresh process; the cold scan is "
        "the first snapshot() of a process that does not lead the root (this one holds the "
        "leader lock meanwhile), trusting sizes recorded under stamps that still hold; the "
        "cold start is open() of a process that becomes the leader, until its cycle at open "
        "has ended (the thread's start, a sweep, a scan); "
        "the full walk is one run_once(full=True) (sweep, scan measuring every model, no "
        "eviction) in a process that leads the root; full_walk_children_cpu_s is the CPU of "
        "the walker process it starts; python_scandir_walk_s is a plain os.scandir walk "
        "summing sizes in the same process (the floor of any walk in Python)"
    )
    return result
