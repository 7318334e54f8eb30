"""``filecache clear ROOT --yes``: removes every model not open, and only when told to."""

from __future__ import annotations

import json
from pathlib import Path

from vcti.filecache import CacheManagerConfig, FileCache

from .helpers import MODELS, TOTAL, Runner, assert_one_line_error, build_cache, snapshot_tree


def present(root: Path) -> list[str]:
    return sorted(m.key for m in MODELS if (root / m.key / "data.bin").exists())


def test_clear_refuses_without_yes(cli: Runner, cache_root: Path) -> None:
    before = snapshot_tree(cache_root.parent)
    for extra in ([], ["--json"]):
        result = cli("clear", cache_root, *extra)
        assert_one_line_error(
            result,
            2,
            "clear removes every model not open; add --yes to confirm (nothing was deleted)",
        )
    assert snapshot_tree(cache_root.parent) == before


def test_clear_removes_every_model(cli: Runner, cache_root: Path) -> None:
    result = cli("clear", cache_root, "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"root:     {cache_root}",
        f"before:   5 models, 4.6 MiB ({TOTAL} bytes)",
        f"removed:  5 models, 4.6 MiB ({TOTAL} bytes)",
        "kept:     0 models",
        "after:    0 models, 0 B (0 bytes)",
    ]
    assert present(cache_root) == []
    assert sorted(p.name for p in cache_root.iterdir()) == [".filecache"]  # still a cache root
    assert cli("ls", cache_root, "--json").returncode == 0


def test_clear_json(cli: Runner, cache_root: Path) -> None:
    result = cli("clear", cache_root, "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "root": str(cache_root),
        "before": {"entry_count": 5, "total_size": TOTAL},
        "removed_count": 5,
        "freed": TOTAL,
        "kept_count": 0,
        "kept": [],
        "after": {"entry_count": 0, "total_size": 0},
    }


def test_clear_keeps_open_models(cli: Runner, cache_root: Path) -> None:
    config = CacheManagerConfig(evict_above=2**62, interval=3600)
    with FileCache(root=cache_root, config=config) as cache, cache.model("fuselage/mesh"):
        result = cli("clear", cache_root, "--yes", "--json")
        text = cli("clear", cache_root, "--yes")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["removed_count"] == 4
    assert doc["kept_count"] == 1
    assert doc["kept"] == ["fuselage/mesh"]
    assert doc["after"] == {"entry_count": 1, "total_size": 1536 * 1024}
    assert present(cache_root) == ["fuselage/mesh"]
    assert text.returncode == 0, text.stderr
    assert "removed:  0 models, 0 B (0 bytes)" in text.stdout.splitlines()
    assert "kept:     1 model (open in a process): fuselage/mesh" in text.stdout.splitlines()


def test_clear_of_an_empty_cache(cli: Runner, tmp_path: Path) -> None:
    root = build_cache(tmp_path / "cache", [])
    doc = json.loads(cli("clear", root, "--yes", "--json").stdout)
    assert doc["removed_count"] == 0
    assert doc["after"] == {"entry_count": 0, "total_size": 0}
