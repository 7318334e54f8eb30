"""The benchmarks run end to end in their quick form and report every target.

Only the shape of the results is checked: wall-clock figures depend on the machine, so
no test asserts them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = (
    "hit",
    "contention",
    "scan",
    "steady",
    "hitwalk",
    "evict",
    "idle",
    "memory",
    "react",
    "pressure",
    "aio",
    "replay",
)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_run_reports_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    data = json.loads((out / "latest.json").read_text())
    assert data["mode"] == "quick"
    assert set(data["benchmarks"]) == set(BENCHMARKS)
    has_peer = importlib.util.find_spec("diskcache") is not None
    for name, result in data["benchmarks"].items():
        assert result["error"] is None, (name, result["error"])
        assert result["targets"], name
        assert any(is_number(v) for v in result["metrics"].values()), name
        for target in result["targets"]:
            assert is_number(target["ours"]), (name, target)
            if target["informational"]:
                assert target["met"] is None, (name, target)
            elif target["met"] is None:  # only a ratio to a peer that is not installed
                assert not has_peer, (name, target)
                assert target["peer"] is None, (name, target)
            else:
                assert isinstance(target["met"], bool), (name, target)
            if target["ratio"] is not None:
                assert is_number(target["ratio"]), (name, target)

    table = (out / "latest.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| benchmark | ours | peer/limit | ratio | target | met? |")
    for name in BENCHMARKS:
        assert any(row.startswith(f"| {name}: ") for row in rows[1:]), name
    assert not list(tmp_path.glob("vcti-bench-*")), "the trees were not cleaned up"


def test_the_trace_generator_writes_a_seeded_heavy_tailed_trace(tmp_path: Path) -> None:
    from benchmarks.tracegen import main

    from vcti.filecache.replay import read_trace

    paths = [tmp_path / name for name in ("a.csv", "b.csv", "c.csv")]
    for path, seed in zip(paths, ("1", "1", "2"), strict=True):
        args = [str(path), "--requests", "20000", "--models", "2000", "--seconds", "100"]
        assert main([*args, "--seed", seed]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()  # the same seed, the same file
    assert paths[0].read_bytes() != paths[2].read_bytes()
    trace = read_trace(paths[0])  # what filecache replay reads
    assert trace.requests == 20_000
    assert trace.has_costs
    assert trace.times[0] == 0
    assert trace.times[-1] < 100
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for key, size in zip(trace.keys, trace.sizes, strict=True):
        counts[key] = counts.get(key, 0) + 1
        assert sizes.setdefault(key, size) == size  # one size per model
    assert 1000 < len(counts) <= 2000
    # Zipf-like: the most requested model far above the median one.
    ranked = sorted(counts.values(), reverse=True)
    assert ranked[0] > 50 * ranked[len(ranked) // 2]
    # Heavy-tailed sizes: the largest models hold much more than their share of bytes.
    by_size = sorted(sizes.values(), reverse=True)
    assert sum(by_size[: len(by_size) // 100]) > 0.1 * sum(by_size)
