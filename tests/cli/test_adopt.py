"""A root written by vcti-file-cache 1.0: read-only commands leave it alone, ``adopt`` adopts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ..test_compat_v1 import make_v1_root
from .helpers import Runner, snapshot_tree

NOW = time.time()

#: key -> (bytes of its one file, 1.0's access count, 1.0's last access)
V1_MODELS = {
    "ab/old": (100, 7, NOW - 3 * 86_400),
    "ab/new": (300, 2, NOW - 10),
    "outer": (50, 1, NOW - 100),
    "outer/inner": (20, 1, NOW - 100),  # 1.0 allowed a model inside a model
}


@pytest.fixture
def v1_root(tmp_path: Path) -> Path:
    """A root as 1.0 left it: a ``.cache_meta`` in each model, its mtime the last access."""
    root = tmp_path / "v1"
    make_v1_root(root, V1_MODELS)
    (root / "ab" / "old" / ".cache_meta.123.456.tmp").write_text("{")  # a 1.0 crash
    for folder in sorted((p for p in [root, *root.rglob("*")] if p.is_dir()), reverse=True):
        os.utime(folder, (NOW - 5000, NOW - 5000))  # any write would move these
    return root


NOTE = "is a vcti-file-cache 1.0 root: 3 models not adopted yet"


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["stats", "--json", "--evict-above", "1K"],
        ["ls"],
        ["ls", "--json", "--sort", "size"],
        ["verify"],
        ["verify", "--json"],
        ["evict", "--dry-run", "--evict-above", "200"],
    ],
    ids=" ".join,
)
def test_read_only_commands_leave_a_1_0_root_unchanged(
    cli: Runner, v1_root: Path, command: list[str]
) -> None:
    before = snapshot_tree(v1_root)
    contents = {p: p.read_bytes() for p in v1_root.rglob("*") if p.is_file()}
    result = cli(command[0], v1_root, *command[1:])
    assert snapshot_tree(v1_root) == before  # every path, kind, size and mtime
    assert {p: p.read_bytes() for p in v1_root.rglob("*") if p.is_file()} == contents
    assert not (v1_root / ".filecache").exists()
    assert NOTE in result.stderr
    assert f"filecache adopt {v1_root}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == (1 if command[0] == "verify" else 0), result.stderr


def test_ls_shows_the_1_0_models_as_1_0_recorded_them(cli: Runner, v1_root: Path) -> None:
    result = cli("ls", v1_root, "--json")
    entries = {e["key"]: e for e in json.loads(result.stdout)["entries"]}
    assert sorted(entries) == ["ab/new", "ab/old", "outer"]
    assert entries["ab/old"]["access_count"] == 7
    assert entries["ab/old"]["last_access"] == pytest.approx(V1_MODELS["ab/old"][2], abs=1)
    assert entries["ab/new"]["size"] == 300  # its files, without 1.0's metadata


def test_evict_dry_run_plans_over_the_1_0_models(cli: Runner, v1_root: Path) -> None:
    result = cli("evict", v1_root, "--dry-run", "--evict-above", "450", "--json")
    document = json.loads(result.stdout)
    assert [e["key"] for e in document["removed"]] == ["ab/old"]  # the least recently used


def test_adopt_adopts_and_reports(cli: Runner, v1_root: Path) -> None:
    listed = json.loads(cli("ls", v1_root, "--json").stdout)["entries"]
    result = cli("adopt", v1_root, "--json")
    assert result.returncode == 1, result.stderr  # the nested 1.0 model is a problem
    document = json.loads(result.stdout)
    assert sorted(document["adopted"]) == ["ab/new", "ab/old", "outer"]
    assert any("outer/inner" in problem for problem in document["problems"])
    assert not (v1_root / "ab" / "old" / ".cache_meta").exists()
    assert not (v1_root / "ab" / "old" / ".cache_meta.123.456.tmp").exists()
    # What ls showed before adoption is what the adopted models are.
    after = cli("ls", v1_root, "--json")
    assert NOTE not in after.stderr
    assert json.loads(after.stdout)["entries"] == listed
    again = cli("adopt", v1_root, "--json")
    assert json.loads(again.stdout)["adopted"] == []


def test_adopt_refuses_a_folder_that_is_no_cache_root(cli: Runner, tmp_path: Path) -> None:
    result = cli("adopt", tmp_path)
    assert result.returncode == 1
    assert "not a cache root" in result.stderr
    assert list(tmp_path.iterdir()) == []
