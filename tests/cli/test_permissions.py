"""Folders the command may not read, as a service that is not root meets them.

As root the tests drop the capabilities that bypass file permissions
(``setpriv --bounding-set=-dac_override,-dac_read_search,-fowner``); they are skipped, with
the reason, where ``setpriv`` is missing or cannot drop them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import assert_one_line_error, snapshot_tree

DROP = ["--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _service_prefix() -> list[str]:
    """The command prefix that runs a child without permission-bypassing capabilities."""
    if os.geteuid() != 0:
        return []  # file permissions already apply
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(
            "setpriv (util-linux) is not installed: as root the permission checks cannot "
            "drop CAP_DAC_OVERRIDE, so unreadable folders would read fine"
        )
    probe = subprocess.run([setpriv, *DROP, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return [setpriv, *DROP]


def as_service(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run ``filecache ARGS`` as a non-root service would."""
    return subprocess.run(
        [*_service_prefix(), sys.executable, "-m", "vcti.filecache", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        timeout=120,
        check=False,
    )


def models(root: Path) -> dict[str, tuple[str, int, int]]:
    """The model files of a snapshot_tree(), the cache's own bookkeeping left out."""
    return {p: v for p, v in snapshot_tree(root).items() if ".filecache" not in p}


@pytest.fixture(params=["a model folder", "the root's listing"])
def unreadable(request: pytest.FixtureRequest, cache_root: Path) -> Iterator[Path]:
    """``cache_root`` with a folder of models that cannot be read (``wing``, or ROOT itself).

    ROOT keeps its search permission, so ROOT/.filecache is still found: the command starts,
    and its scan cannot list what the folder holds. The folder is readable again after the
    test.
    """
    folder, mode = (
        (cache_root / "wing", 0o000)
        if request.param == "a model folder"
        else (cache_root, 0o311)  # --wx: search, no read
    )
    folder.chmod(mode)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def test_verify_reports_an_unreadable_folder(cache_root: Path, unreadable: Path) -> None:
    result = as_service("verify", cache_root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ok: no problems found" not in result.stdout
    assert f"Permission denied: '{unreadable}'" in result.stdout
    assert "Traceback" not in result.stderr

    document = json.loads(as_service("verify", cache_root, "--json").stdout)
    assert any(f"'{unreadable}'" in problem for problem in document["problems"])
    assert document["remaining"] == document["problems"]


def test_verify_repair_cannot_fix_it_and_exits_1(cache_root: Path, unreadable: Path) -> None:
    result = as_service("verify", cache_root, "--repair", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert any(f"'{unreadable}'" in problem for problem in document["remaining"])


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["stats", "--json"],
        ["ls"],
        ["ls", "--json"],
        ["evict", "--evict-above", "0", "--dry-run"],
        ["evict", "--evict-above", "0"],
    ],
)
def test_reading_commands_report_an_unreadable_folder(
    cache_root: Path, unreadable: Path, command: list[str]
) -> None:
    result = as_service(command[0], cache_root, *command[1:])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"Permission denied: '{unreadable}'" in result.stderr
    unreadable.chmod(0o755)
    wing = cache_root / "wing"
    assert sorted(p.name for p in wing.iterdir()) == ["run1", "run2"]  # nothing unseen went


ROOT_COMMANDS = [
    ["stats"],
    ["ls"],
    ["verify"],
    ["verify", "--repair"],
    ["evict", "--evict-above", "0", "--dry-run"],
    ["evict", "--evict-above", "0"],
    ["exporter", "--no-evict"],
    ["rm", "tail"],
    ["clear", "--yes"],
]


@pytest.mark.parametrize("command", ROOT_COMMANDS, ids=" ".join)
def test_an_unreadable_root_is_permission_denied(cache_root: Path, command: list[str]) -> None:
    cache_root.chmod(0o000)
    try:
        result = as_service(command[0], cache_root, *command[1:])
    finally:
        cache_root.chmod(0o755)
    assert_one_line_error(result, 1, f"{cache_root}: permission denied")


@pytest.mark.parametrize("command", ROOT_COMMANDS, ids=" ".join)
def test_a_root_behind_an_unreadable_folder_is_permission_denied(
    cache_root: Path, command: list[str]
) -> None:
    # Not "no such directory": the root may well be there.
    parent = cache_root.parent
    parent.chmod(0o000)
    try:
        result = as_service(command[0], cache_root, *command[1:])
    finally:
        parent.chmod(0o755)
    assert_one_line_error(result, 1, f"{cache_root}: permission denied")


@pytest.fixture
def locked_wing(cache_root: Path) -> Iterator[Path]:
    """``cache_root`` whose ``wing`` folder may be read but not written: its models stay."""
    wing = cache_root / "wing"
    wing.chmod(0o555)
    try:
        yield wing
    finally:
        wing.chmod(0o755)


def test_rm_reports_a_model_it_may_not_remove(cache_root: Path, locked_wing: Path) -> None:
    before = models(locked_wing)
    result = as_service("rm", cache_root, "wing/run1", "tail")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "removed tail (100.0 KiB)\nfreed 100.0 KiB (102400 bytes)\n"
    assert result.stderr.splitlines() == [
        "filecache: error: not removed: 'wing/run1' (Permission denied)"
    ]
    assert models(locked_wing) == before
    assert not (cache_root / "tail").exists()
    doc = json.loads(as_service("rm", cache_root, "wing/run2", "--json").stdout)
    assert doc["failed"] == [{"key": "wing/run2", "error": "Permission denied"}]


def test_clear_reports_models_it_may_not_remove(cache_root: Path, locked_wing: Path) -> None:
    before = models(locked_wing)
    result = as_service("clear", cache_root, "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert all(
        line.startswith("filecache: warning: evict: ") and "Permission denied" in line
        for line in warnings
    )
    assert any(line.startswith("removed:  3 models, ") for line in result.stdout.splitlines())
    assert (
        "kept:     2 models (open, or see the warnings above): wing/run1, wing/run2"
        in result.stdout.splitlines()
    )
    assert models(locked_wing) == before


def test_ls_reports_a_1_0_model_it_may_not_measure(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    for key in ("readable", "locked"):
        (root / key / "sub").mkdir(parents=True)
        (root / key / "sub" / "mesh.vtu").write_bytes(b"m" * 100)
        (root / key / ".cache_meta").write_text('{"size": 100, "access_count": 2}')
    (root / "locked" / "sub").chmod(0o000)
    try:
        before = snapshot_tree(root)
        result = as_service("ls", root, "--json")
    finally:
        (root / "locked" / "sub").chmod(0o755)
    assert result.returncode == 1, result.stdout + result.stderr
    assert [e["key"] for e in json.loads(result.stdout)["entries"]] == ["readable"]
    assert "filecache: warning: scan: " in result.stderr
    assert "Permission denied" in result.stderr
    assert snapshot_tree(root) == before
