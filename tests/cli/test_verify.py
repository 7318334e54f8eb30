"""``filecache verify``: reports drift, changes nothing without --repair."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import Runner, assert_one_line_error, snapshot_tree


def test_a_clean_root(cli: Runner, cache_root: Path) -> None:
    result = cli("verify", cache_root)
    assert result.returncode == 0, result.stderr
    assert "ok: no problems found" in result.stdout


def test_problems_are_reported_and_nothing_changes(cli: Runner, cache_root: Path) -> None:
    meta = next(cache_root.rglob("meta.json"))
    meta.write_text("garbage")
    leftover = cache_root / ".filecache" / "trash" / "0"
    leftover.mkdir()
    before = snapshot_tree(cache_root)
    result = cli("verify", cache_root)
    assert result.returncode == 1
    assert "found 2 problem(s)" in result.stdout
    assert "unreadable metadata" in result.stdout
    assert "leftover delete" in result.stdout
    assert "run with --repair" in result.stdout
    assert snapshot_tree(cache_root) == before


def test_repair(cli: Runner, cache_root: Path) -> None:
    next(cache_root.rglob("meta.json")).write_text("garbage")
    result = cli("verify", cache_root, "--repair", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["repaired"] is True
    assert len(document["problems"]) == 1
    assert document["remaining"] == []
    assert cli("verify", cache_root).returncode == 0


def test_not_a_cache_root(cli: Runner, tmp_path: Path) -> None:
    before = snapshot_tree(tmp_path)
    assert_one_line_error(cli("verify", tmp_path), 1, "not a cache root")
    assert snapshot_tree(tmp_path) == before
