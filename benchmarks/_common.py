"""Shared pieces of the benchmarks: settings, results, timing, trees and machine facts."""

from __future__ import annotations

import cProfile
import gc
import json
import math
import os
import platform
import pstats
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage

REPO = Path(__file__).resolve().parents[1]

#: An ``evict_above`` that no benchmark tree reaches: the manager never evicts.
HUGE = 1 << 62
#: Seconds between background cycles while a benchmark runs: only the cycle at open runs.
QUIET_INTERVAL = 3600.0
#: The content every benchmark file is cut from.
BLOB = bytes(range(256)) * 64
#: The folder of a model (and of the root) that holds the cache's own files.
RESERVED = ".filecache"

Number = float | int | str | bool | None


@dataclass(frozen=True)
class Settings:
    """What one run measures, and how much."""

    quick: bool
    large: bool
    keys: int  # tiny models: hit path, contention, idle, memory
    opens: int  # timed opens on the hit path
    models: int  # models of the scan / steady-state / eviction tree
    files_per_model: int
    procs: int
    opens_per_proc: int
    repeats: int
    cycles: int
    workdir: Path
    profile_dir: Path | None

    @property
    def mode(self) -> str:
        """``quick``, ``full`` or ``large``."""
        return "quick" if self.quick else "large" if self.large else "full"


@dataclass
class Target:
    """One row of the results table: a measured value against its target."""

    name: str
    ours: float
    unit: str
    target: str
    met: bool | None
    peer: float | None = None
    peer_label: str = ""
    ratio: float | None = None
    note: str = ""
    informational: bool = False

    def as_json(self) -> dict[str, Number]:
        """The row as JSON-ready values."""
        return {
            "name": self.name,
            "ours": self.ours,
            "peer": self.peer,
            "peer_label": self.peer_label,
            "ratio": self.ratio,
            "unit": self.unit,
            "target": self.target,
            "met": self.met,
            "note": self.note,
            "informational": self.informational,
        }


def ratio_target(
    name: str,
    ours: float,
    peer: float | None,
    *,
    unit: str,
    peer_label: str,
    max_ratio: float,
    note: str = "",
) -> Target:
    """A target of the form ``ours / peer <= max_ratio``; unmet (None) without a peer."""
    if peer is None or peer <= 0:
        return Target(name, ours, unit, f"≤ {max_ratio:g}x", None, peer, peer_label, None, note)
    ratio = ours / peer
    return Target(
        name, ours, unit, f"≤ {max_ratio:g}x", ratio <= max_ratio, peer, peer_label, ratio, note
    )


def info_row(
    name: str, ours: float, *, unit: str, peer: float | None, peer_label: str, note: str = ""
) -> Target:
    """A row without a target: shown for context, never met or missed."""
    ratio = ours / peer if peer else None
    return Target(name, ours, unit, "none", None, peer, peer_label, ratio, note, True)


def limit_target(
    name: str,
    ours: float,
    *,
    unit: str,
    limit: float,
    inclusive: bool = False,
    peer: float | None = None,
    peer_label: str = "",
    note: str = "",
) -> Target:
    """A target of the form ``ours < limit`` (or ``<=``); ``peer`` is shown for context."""
    met = ours <= limit if inclusive else ours < limit
    ratio = ours / peer if peer else None
    sign = "≤" if inclusive else "<"
    return Target(name, ours, unit, f"{sign} {limit:g} {unit}", met, peer, peer_label, ratio, note)


@dataclass
class Result:
    """What one benchmark measured."""

    name: str
    title: str
    targets: list[Target] = field(default_factory=list)
    metrics: dict[str, Number] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        """The result as JSON-ready values."""
        return {
            "name": self.name,
            "title": self.title,
            "targets": [t.as_json() for t in self.targets],
            "metrics": self.metrics,
            "notes": self.notes,
            "seconds": self.seconds,
            "error": self.error,
        }


# -- statistics ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = math.ceil(q / 100 * len(sorted_values))
    return float(sorted_values[min(len(sorted_values) - 1, max(0, rank - 1))])


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def latency_summary(prefix: str, samples_ns: Sequence[int]) -> dict[str, Number]:
    """p50, p90, p99, p99.9, max and mean of latencies in ns, as microseconds."""
    ordered = sorted(samples_ns)
    out: dict[str, Number] = {f"{prefix}_n": len(ordered)}
    for label, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        out[f"{prefix}_{label}_us"] = round(percentile(ordered, q) / 1000, 2)
    out[f"{prefix}_max_us"] = round(ordered[-1] / 1000, 1)
    out[f"{prefix}_mean_us"] = round(sum(ordered) / len(ordered) / 1000, 2)
    return out


# -- trees ----------------------------------------------------------------------------------


def model_key(i: int) -> str:
    """The key of model number ``i``: 256 hashed-looking folders, like real deployments."""
    return f"{(i * 2654435761) % 256:02x}/model_{i:06d}"


def file_size(j: int) -> int:
    """Size of file number ``j`` of every model: 1-4 KiB, the same in every model."""
    return 1024 + (j * 997) % 3073


def quiet_config(evict_above: int = HUGE, **kwargs: object) -> CacheManagerConfig:
    """A config whose manager runs its cycle at open and then sleeps for an hour."""
    kwargs.setdefault("interval", QUIET_INTERVAL)
    return CacheManagerConfig(evict_above=evict_above, **kwargs)


def wait_first_cycle(cache: FileCache, timeout: float = 600.0) -> None:
    """Wait until the background cycle that runs at open has finished."""
    deadline = time.monotonic() + timeout
    while cache.manager.cycles < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the manager's first cycle did not finish")
        time.sleep(0.005)


def content(size: int) -> bytes:
    """``size`` bytes cut from repeats of ``BLOB``."""
    return (BLOB * (size // len(BLOB) + 1))[:size]


def build_tree(root: Path, models: int, files_per_model: int, file_bytes: int = 0) -> int:
    """Fill ``models`` models through the library; return the bytes written.

    Every model holds ``files_per_model`` files of ``file_size(j)`` bytes (or of
    ``file_bytes`` when given), so all models have the same size.
    """
    sizes = [file_bytes or file_size(j) for j in range(files_per_model)]
    _fill(root, models, sizes)
    os.sync()  # no write-back of the build competes with the measurements
    # The builder's per-root manager lives on (a reference cycle) until collected: a cache
    # opened next on the root would share it, and its count of cycles, in this process.
    gc.collect()
    return models * sum(sizes)


def _fill(root: Path, models: int, sizes: list[int]) -> None:
    names = [f"part_{j:03d}.bin" for j in range(len(sizes))]
    with FileCache(root=root, config=quiet_config()) as cache:
        wait_first_cycle(cache)
        for i in range(models):
            with cache.model(model_key(i)) as model:
                if not model.new:
                    raise RuntimeError(f"model {model_key(i)} already exists in {root}")
                for name, size in zip(names, sizes, strict=True):
                    with open(os.path.join(model.path, name), "wb") as f:
                        f.write(content(size))


@contextmanager
def held_leadership(root: Path) -> Iterator[None]:
    """Hold the root's leader lock, so a FileCache opened meanwhile never scans by itself."""
    lock = LocalStorage(root).try_lead()
    if lock is None:
        raise RuntimeError(f"another process leads {root}")
    try:
        yield
    finally:
        lock.release()


# -- processes ------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of a child Python: the benchmarks package importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_child(*args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks._child ARGS`` and return the JSON it prints last."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._child", *args],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def time_command(argv: Sequence[str]) -> float:
    """Wall seconds of one run of ``argv`` (process start-up included)."""
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def copy_tree(src: Path, dest: Path) -> None:
    """``cp -a SRC DEST``, then flush to disk so write-back does not disturb timings."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    os.sync()


def remove_tree(path: Path) -> None:
    """Delete a tree if it exists."""
    shutil.rmtree(path, ignore_errors=True)


# -- profiles -------------------------------------------------------------------------------


def profiled(settings: Settings, name: str, func: Callable[[], object]) -> None:
    """Run ``func`` under cProfile and write the top of the profile to profiles/NAME.txt."""
    if settings.profile_dir is None:
        return
    profile = cProfile.Profile()
    profile.runcall(func)
    write_profile(profile, settings.profile_dir / f"{name}.txt")


def write_profile(profile: cProfile.Profile, path: Path) -> None:
    """Write the 30 heaviest functions by cumulative and by own time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        stats = pstats.Stats(profile, stream=out)
        stats.strip_dirs()
        out.write("== by cumulative time ==\n")
        stats.sort_stats("cumulative").print_stats(30)
        out.write("== by own time ==\n")
        stats.sort_stats("tottime").print_stats(30)


# -- the machine ----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/self/mounts)."""
    target = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                mount = parts[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, parts[2]
    except OSError:
        pass
    return fstype


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    from importlib import metadata  # noqa: PLC0415 - only needed for the machine facts

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def source_state() -> str:
    """The commit of the measured checkout, and whether src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        # --no-optional-locks: a read-only look that never rewrites the index.
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", "src"],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes in src/" if dirty.stdout else "")


def machine_facts(workdir: Path) -> dict[str, Number]:
    """CPU, cores, memory, Python, kernel, filesystem of the work dir, library versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _mem_total_gib(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "filesystem": _fs_type(workdir),
        "workdir": str(workdir),
        "vcti_file_cache": _version("vcti-file-cache"),
        "source": source_state(),
        "diskcache": _version("diskcache"),
    }


class Stopwatch:
    """Thread-safe progress lines on stderr with the elapsed time."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        """Print one progress line."""
        with self._lock:
            elapsed = time.perf_counter() - self._started
            print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)
