"""``filecache stats ROOT``."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import (
    BASE,
    KIB,
    MODELS,
    TOTAL,
    Model,
    Runner,
    build_cache,
    local_time,
    snapshot_tree,
)

BY_KEY = {m.key: m for m in MODELS}
LARGEST = ["engine/cfd/step9", "fuselage/mesh", "wing/run2", "wing/run1", "tail"]
LEAST_RECENT = ["fuselage/mesh", "engine/cfd/step9", "tail", "wing/run1", "wing/run2"]

STATS_KEYS = [
    "root",
    "entry_count",
    "total_size",
    "models_size",
    "staging_size",
    "trash_size",
    "evict_above",
    "overage",
    "is_over_limit",
    "largest",
    "least_recently_used",
    "taken_at",
    "by_prefix_depth",
    "by_prefix",
]


def _entry(key: str) -> dict[str, object]:
    model = BY_KEY[key]
    return {
        "key": key,
        "size": model.size,
        "access_count": model.access_count,
        "last_access": model.last_access,
        "created": BASE + model.created,
        "version": None,
    }


def _without_fill_seconds(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    """The entries without their measured fill time, which is checked to be a duration."""
    for entry in entries:
        fill_seconds = entry.pop("fill_seconds")
        assert isinstance(fill_seconds, float)
        assert fill_seconds >= 0
    return entries


def test_stats_json_reports_totals_and_top_lists(cli: Runner, cache_root: Path) -> None:
    result = cli("stats", cache_root, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert list(doc) == STATS_KEYS
    assert doc["root"] == str(cache_root)
    assert doc["entry_count"] == 5
    assert doc["total_size"] == doc["models_size"] == TOTAL
    assert doc["staging_size"] == doc["trash_size"] == 0
    assert doc["evict_above"] is None
    assert doc["overage"] is None
    assert doc["is_over_limit"] is None
    assert _without_fill_seconds(doc["largest"]) == [_entry(k) for k in LARGEST]
    assert _without_fill_seconds(doc["least_recently_used"]) == [_entry(k) for k in LEAST_RECENT]
    assert doc["by_prefix_depth"] is None
    assert doc["by_prefix"] is None


def test_stats_json_with_a_limit_reports_the_overage(cli: Runner, cache_root: Path) -> None:
    over = json.loads(cli("stats", cache_root, "--evict-above", "3M", "--json").stdout)
    assert over["evict_above"] == 3 * 1024 * KIB
    assert over["overage"] == TOTAL - 3 * 1024 * KIB
    assert over["is_over_limit"] is True
    under = json.loads(cli("stats", cache_root, "--evict-above=5MB", "--json").stdout)
    assert under["evict_above"] == 5_000_000
    assert under["overage"] == 0
    assert under["is_over_limit"] is False


def test_stats_text(cli: Runner, cache_root: Path) -> None:
    result = cli("stats", cache_root, "--evict-above", "3M")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        f"root:     {cache_root}",
        f"models:   5, 4.6 MiB ({TOTAL} bytes)",
        "staging:  0 B (0 bytes)",
        f"total:    4.6 MiB ({TOTAL} bytes)",
        "trash:    0 B (0 bytes)",
        f"limit:    3.0 MiB (3145728 bytes), over by 1.6 MiB ({TOTAL - 3145728} bytes)",
    ]
    assert lines[6] == "largest 5:"
    assert [line.split()[-1] for line in lines[7:12]] == LARGEST
    assert lines[7] == "    2.0 MiB  engine/cfd/step9"
    assert lines[12] == "least recently used 5:"
    assert lines[13:18] == [
        f"  {local_time(BY_KEY[key].last_access)}  {key}" for key in LEAST_RECENT
    ]
    assert len(lines) == 18


def test_stats_text_without_a_limit_has_no_limit_line(cli: Runner, cache_root: Path) -> None:
    result = cli("stats", cache_root, "--evict-above", "100M")
    assert "limit:    100.0 MiB (104857600 bytes), not over" in result.stdout.splitlines()
    result = cli("stats", cache_root)
    assert not any(line.startswith("limit:") for line in result.stdout.splitlines())


def test_stats_lists_at_most_five(cli: Runner, tmp_path: Path) -> None:
    models = [Model(f"m{i:02d}", (i + 1) * KIB, created=i) for i in range(8)]
    root = build_cache(tmp_path / "cache", models)
    doc = json.loads(cli("stats", root, "--json").stdout)
    assert doc["entry_count"] == 8
    assert [e["key"] for e in doc["largest"]] == ["m07", "m06", "m05", "m04", "m03"]
    assert [e["key"] for e in doc["least_recently_used"]] == ["m00", "m01", "m02", "m03", "m04"]
    assert "largest 5:" in cli("stats", root).stdout


def test_stats_of_an_empty_cache(cli: Runner, tmp_path: Path) -> None:
    root = build_cache(tmp_path / "cache", [])
    doc = json.loads(cli("stats", root, "--json").stdout)
    assert doc["entry_count"] == doc["total_size"] == 0
    assert doc["largest"] == doc["least_recently_used"] == []
    text = cli("stats", root).stdout
    assert "models:   0, 0 B (0 bytes)" in text
    assert "largest" not in text


def test_stats_reports_staging_and_trash_leftovers_and_keeps_them(
    cli: Runner, cache_root: Path
) -> None:
    staged = cache_root / ".filecache" / "staging" / "abcd.0123456789abcdef"
    staged.mkdir()
    (staged / "part.bin").write_bytes(b"s" * 1000)
    trashed = cache_root / ".filecache" / "trash" / "fedcba9876543210" / "deep"
    trashed.mkdir(parents=True)
    (trashed / "old.bin").write_bytes(b"t" * 500)
    before = snapshot_tree(cache_root)

    doc = json.loads(cli("stats", cache_root, "--json").stdout)
    assert doc["staging_size"] == 1000
    assert doc["trash_size"] == 500
    assert doc["models_size"] == TOTAL
    assert doc["total_size"] == TOTAL + 1000  # fills in progress count, as the library counts
    text = cli("stats", cache_root).stdout
    assert "staging:  1000 B (1000 bytes)" in text
    assert "trash:    500 B (500 bytes)" in text

    assert snapshot_tree(cache_root) == before  # stats swept nothing


def test_stats_changes_nothing(cli: Runner, cache_root: Path) -> None:
    before = snapshot_tree(cache_root)
    assert cli("stats", cache_root, "--evict-above", "1K").returncode == 0
    assert cli("stats", cache_root, "--evict-above", "0", "--json").returncode == 0
    assert snapshot_tree(cache_root) == before


# (depth, [(prefix, models, bytes)], largest first). The total is 4684 KiB.
BY_PREFIX = {
    1: [
        ("engine", 1, 2048 * KIB),
        ("fuselage", 1, 1536 * KIB),
        ("wing", 2, 1000 * KIB),
        ("tail", 1, 100 * KIB),
    ],
    2: [
        ("engine/cfd", 1, 2048 * KIB),
        ("fuselage/mesh", 1, 1536 * KIB),
        ("wing/run2", 1, 700 * KIB),
        ("wing/run1", 1, 300 * KIB),
        ("tail", 1, 100 * KIB),
    ],
}


def test_stats_by_prefix_json(cli: Runner, cache_root: Path) -> None:
    for depth, rows in BY_PREFIX.items():
        result = cli("stats", cache_root, "--by-prefix", str(depth), "--json")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert list(doc) == STATS_KEYS
        assert doc["by_prefix_depth"] == depth
        assert doc["by_prefix"] == [
            {"prefix": prefix, "entry_count": count, "total_size": size}
            for prefix, count, size in rows
        ]
        assert sum(row["total_size"] for row in doc["by_prefix"]) == TOTAL
    # Deeper than every key: each model is its own group.
    doc = json.loads(cli("stats", cache_root, "--by-prefix", "9", "--json").stdout)
    assert sorted(row["prefix"] for row in doc["by_prefix"]) == sorted(BY_KEY)


def test_stats_by_prefix_text(cli: Runner, cache_root: Path) -> None:
    result = cli("stats", cache_root, "--by-prefix", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("by prefix (first 1 component):")
    assert lines[start + 1 :] == [
        "     2.0 MiB   1 model  engine",
        "     1.5 MiB   1 model  fuselage",
        "  1000.0 KiB  2 models  wing",
        "   100.0 KiB   1 model  tail",
    ]
    lines = cli("stats", cache_root, "--by-prefix", "2").stdout.splitlines()
    assert "by prefix (first 2 components):" in lines
    assert "by prefix" not in cli("stats", cache_root).stdout


def test_stats_by_prefix_of_an_empty_cache(cli: Runner, tmp_path: Path) -> None:
    root = build_cache(tmp_path / "cache", [])
    doc = json.loads(cli("stats", root, "--by-prefix", "1", "--json").stdout)
    assert doc["by_prefix"] == []
    assert cli("stats", root, "--by-prefix", "1").stdout.splitlines()[-1] == (
        "by prefix (first 1 component):"
    )
